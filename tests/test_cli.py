"""The mlloss command: list, show, conform; the console script and python -m are one program."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import mlloss
from mlloss import backends
from mlloss.cli import main


def test_list_prints_every_loss(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in mlloss.names():
        assert name in out


def test_show_prints_formula_params_and_natives(capsys):
    assert main(["show", "sigmoid_bce"]) == 0
    out = capsys.readouterr().out
    assert "pos_weight" in out and "softplus" in out
    assert "tf.nn.sigmoid_cross_entropy_with_logits" in out


def test_show_unknown_loss_exits_2_with_suggestion(capsys):
    assert main(["show", "sigmoid_bc"]) == 2
    assert "did you mean 'sigmoid_bce'" in capsys.readouterr().err


def test_conform_checks_every_installed_backend(tmp_path, capsys):
    path = tmp_path / "report.json"
    assert main(["conform", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    report = json.loads(path.read_text())
    statuses = {r["backend"]: r["status"] for r in report["results"]}
    assert set(statuses) == set(backends.BACKENDS)
    for name, status in statuses.items():
        assert status == ("pass" if backends.installed(name) else "not installed")
        assert name in out


def test_conform_one_backend_and_unknown_backend(capsys):
    assert main(["conform", "--backend", "numpy"]) == 0
    assert main(["conform", "--backend", "mxnet"]) == 2
    assert "unknown backend 'mxnet'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "mlloss"],
        # the script pip installed beside this interpreter
        [str(Path(sys.executable).with_name("mlloss"))],
    ],
    ids=["python-m", "console-script"],
)
def test_console_script_and_python_m_are_the_same_program(command):
    listing = subprocess.run([*command, "list"], capture_output=True, text=True, check=True)
    assert (
        listing.stdout
        == subprocess.run(
            [sys.executable, "-c", "from mlloss.cli import main; main(['list'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    version = subprocess.run([*command, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"mlloss {mlloss.__version__}"
