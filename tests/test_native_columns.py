"""The native columns of the conformance matrix: frameworks' own losses on the fixtures."""

from __future__ import annotations

import dataclasses

import pytest

import mlloss
from mlloss import registry
from mlloss.cli import main
from mlloss.conformance import natives as columns
from mlloss.conformance import runner

INSTALLED = [f for f in columns.FRAMEWORKS if columns.installed(f)]


@pytest.fixture(scope="module")
def report():
    return runner.run(backend_names=[], natives=INSTALLED, dtypes=["float64", "float32"])


def test_every_installed_native_column_passes(report):
    assert INSTALLED, "no framework with natives is installed"
    failing = [
        (c.loss, c.backend, c.dtype, [(f.case, f.path) for f in c.failures[:3]])
        for c in report.cells
        if c.status == "fail"
    ]
    assert failing == []
    assert not report.failed


def test_every_native_of_an_installed_framework_is_compared(report):
    compared = {(c.loss, comparison.path) for c in report.cells for comparison in c.comparisons}
    for spec, native in (
        pair
        for pair in ((mlloss.spec(n), r) for n in mlloss.names() for r in mlloss.spec(n).natives)
    ):
        if native.framework in INSTALLED:
            assert (spec.name, native.name) in compared, native.name
    counted = [c for cell in report.cells for c in cell.comparisons if not c.known]
    assert len(counted) > 1000


def test_declared_differences_are_reported_not_counted(report):
    known = [c for cell in report.cells for c in cell.known]
    assert known and all(not c.passed or c.known for c in known)
    assert {c.case for c in known} >= {"infinite"}


def test_a_wrong_translation_fails_its_column(monkeypatch):
    """Swap torch's weight and pos_weight in the mapping: the column must fail."""
    pytest.importorskip("torch")
    spec = mlloss.spec("sigmoid_bce")
    torch_native = spec.natives[0]
    wrong = dataclasses.replace(
        torch_native, rename={"weight": "pos_weight", "pos_weight": "class_weight"}
    )
    monkeypatch.setitem(registry._specs, "sigmoid_bce", dataclasses.replace(spec, natives=(wrong,)))
    (cell,) = columns.run_framework("torch", ["sigmoid_bce"], ["float64"], ["cpu"])
    assert cell.status == "fail"
    assert {f.case for f in cell.failures} == {"benign@1"}  # the pos_weight setting


def test_cli_conform_a_native_column(capsys):
    if "torch" not in INSTALLED:
        pytest.skip("torch is not installed")
    code = main(
        [
            "conform",
            "--backend",
            "native:torch",
            "--loss",
            "sigmoid_bce",
            "--dtype",
            "float64",
            "--workers",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "native:torch" in out and "native:torch 2." in out
