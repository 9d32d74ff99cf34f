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


def test_conform_one_loss_one_dtype_writes_every_case(tmp_path, capsys):
    path = tmp_path / "report.json"
    code = main(["conform", "--loss", "sigmoid_bce", "--dtype", "float32", "--json", str(path)])
    assert code == 0
    out = capsys.readouterr().out
    report = json.loads(path.read_text())
    assert report["passed"] is True
    cells = {(c["backend"], c["device"]): c for c in report["cells"]}
    for name in backends.BACKENDS:
        cpu = cells[(name, "cpu")]
        if backends.installed(name):
            assert cpu["status"] == "pass"
            cases = {c["case"] for c in cpu["comparisons"]}
            assert {"worked_example", "infinite", "nan", "empty_batch"} <= cases
            assert report["versions"][backends.FRAMEWORK_MODULE[name]]
        else:
            assert cpu["status"] == "not installed"
        assert name in out
    assert "sigmoid_bce" in out and "worked example on numpy: pass" in out


def test_conform_unknown_backend_loss_or_dtype_exit_2(capsys):
    assert main(["conform", "--backend", "mxnet"]) == 2
    assert "unknown backend 'mxnet'" in capsys.readouterr().err
    assert main(["conform", "--loss", "focall"]) == 2
    assert "unknown loss 'focall'" in capsys.readouterr().err
    assert main(["conform", "--loss", "bce", "--dtype", "float8"]) == 2
    assert "unknown dtype 'float8'" in capsys.readouterr().err


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
