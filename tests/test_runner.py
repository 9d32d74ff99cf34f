"""The conformance runner: the suite passes, covers its whole matrix, can fail, and a
third-party backend can be run through it.

The whole suite on every backend is `mlloss conform`, the README's main job, which CI runs
(`make conform`) before these tests. Running all of it again here doubled CI's time (22 min on
the 2-core machine, TensorFlow and JAX compiling an XLA computation for every fixture's shape
and dtype). Here the runner runs every loss on NumPy and torch (the closed-form, fused and
autodiff paths; 25 s) and the losses of ``XLA_SLICE`` on TensorFlow and JAX (about a minute a
loss), and the matrix and coverage checks below hold for every cell it ran."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

import mlloss
from mlloss import backends
from mlloss.backends.numpy import NumpyOps
from mlloss.cli import main
from mlloss.conformance import cases, runner
from mlloss.conformance.tolerances import TABLE

# sigmoid_bce: a binary loss on the XLA whole-loss kernels; sparse_softmax_ce: class indices.
XLA_SLICE = ("sigmoid_bce", "sparse_softmax_ce")
EAGER = ("numpy", "torch")
XLA = ("tensorflow", "jax")


@pytest.fixture(scope="module")
def full_report():
    eager = runner.run(backend_names=EAGER, workers=2)
    xla = runner.run(XLA_SLICE, XLA, workers=2)
    return runner.Report(
        eager.cells + xla.cells,
        eager.seed + xla.seed,
        {**eager.versions, **xla.versions},
        eager.elapsed_s + xla.elapsed_s,
    )


def test_the_suite_passes(full_report):
    failing = [
        (
            c.loss,
            c.backend,
            c.dtype,
            c.device,
            [(f.case, f.path, f.reduction, f.quantity) for f in c.failures[:3]],
        )
        for c in full_report.cells
        if c.status == "fail"
    ]
    assert failing == []
    assert not full_report.failed


def test_every_cell_runs_every_case_path_and_reduction(full_report):
    for cell in full_report.cells:
        if cell.status != "pass":
            continue
        spec = mlloss.spec(cell.loss)
        expected_cases = {c.id for c in cases.cases_for(cell.loss) if cell.dtype in c.dtypes}
        assert expected_cases
        assert {c.case for c in cell.comparisons} == expected_cases
        autodiff = backends.load(cell.backend).autodiff
        paths = {"fused", "autodiff"} if autodiff else {"closed_form"}
        if spec.grad is None:
            paths = {"autodiff"}
        assert {c.path for c in cell.comparisons} == paths
        assert {c.reduction for c in cell.comparisons} == set(runner.REDUCTIONS)
        heads = {f"grad_{h}" for h in spec.heads}
        assert {c.quantity for c in cell.comparisons} == {"value", "grad", *heads}


def test_matrix_covers_every_loss_backend_dtype_and_device(full_report):
    keys = {(c.loss, c.backend, c.dtype, c.device) for c in full_report.cells}
    ran = {b: mlloss.names() for b in EAGER} | {b: XLA_SLICE for b in XLA}
    assert set(ran) == set(backends.names())
    expected = {
        (loss, b, dtype, device)
        for b, losses in ran.items()
        for loss in losses
        for dtype in runner.DTYPES
        for device in runner.DEVICES
    }
    assert keys == expected and len(full_report.cells) == len(expected)
    assert {s.backend for s in full_report.seed} == set(backends.names())
    for cell in full_report.cells:
        if cell.status == "skipped":
            assert cell.device == "cuda" and cell.reason
        if cell.status == "not installed":
            assert not backends.installed(cell.backend)
    assert json.loads(json.dumps(full_report.as_dict()))["passed"] is True


def test_a_perturbed_primitive_fails_the_suite_naming_backend_and_cases(monkeypatch, capsys):
    """softplus 1e-3 off on torch: `mlloss conform` exits 1 and says where."""
    ops = backends.load("torch")
    real = type(ops).softplus
    monkeypatch.setattr(type(ops), "softplus", lambda self, x: real(self, x) + 1e-3)
    argv = ["conform", "--backend", "torch", "--loss", "sigmoid_bce", "--dtype", "float32"]
    code = main([*argv, "--workers", "1"])  # in this process, where the primitive is patched
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILURES" in out and "sigmoid_bce torch float32 cpu: benign" in out
    assert "FAIL" in out


def test_a_perturbed_closed_form_gradient_fails_only_the_gradient(monkeypatch):
    spec = mlloss.spec("softmax_ce")
    from dataclasses import replace

    from mlloss import registry

    wrong = replace(spec, grad=lambda ops, x, t, p: spec.grad(ops, x, t, p) * 1.001)
    monkeypatch.setitem(registry._specs, "softmax_ce", wrong)
    report = runner.run(["softmax_ce"], ["numpy"], ["float64"], ["cpu"], with_seed=False)
    (cell,) = report.cells
    assert cell.status == "fail"
    assert {f.quantity for f in cell.failures} == {"grad"}


class TanhOps(NumpyOps):
    """A small third-party backend: NumPy arrays, its own sigmoid and softplus."""

    name = "tanh_numpy"

    def sigmoid(self, x):
        return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.result_type(x))

    def softplus(self, x):
        with np.errstate(over="ignore"):
            return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def test_check_backend_runs_the_suite_on_a_third_party_backend():
    try:
        report = runner.check_backend(TanhOps(), with_seed=False)
        cells = [c for c in report.cells if c.device == "cpu"]
        assert {c.backend for c in report.cells} == {"tanh_numpy"}
        assert {c.status for c in cells} == {"pass"}, [
            (c.loss, c.dtype, c.failures[:2]) for c in cells if c.status == "fail"
        ]
        assert all(
            c.reason == "tanh_numpy runs on the CPU only"
            for c in report.cells
            if c.device == "cuda"
        )
    finally:
        backends.unregister("tanh_numpy")


def test_entry_point_backends_are_found_by_mlloss_conform(tmp_path, monkeypatch, capsys):
    (tmp_path / "demo_mlloss_backend.py").write_text(
        textwrap.dedent(
            """
            from mlloss.backends.numpy import NumpyOps

            class DemoOps(NumpyOps):
                name = "demo"

            def make():
                return DemoOps()
            """
        )
    )
    info = tmp_path / "demo_mlloss_backend-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: demo-mlloss-backend\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text("[mlloss.backends]\ndemo = demo_mlloss_backend:make\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        code = main(["conform", "--backend", "demo", "--loss", "bce", "--dtype", "float64"])
        out = capsys.readouterr().out
        assert code == 0
        assert "demo" in out and "PASS" in out
    finally:
        if "demo" in backends.names():
            backends.unregister("demo")


def _compare(got, expected, dtype="float32"):
    hi = np.asarray(expected, dtype=np.float64)
    return runner.compare(
        "c",
        "fused",
        "none",
        "value",
        np.asarray(got, dtype=np.float64),
        hi,
        np.zeros_like(hi),
        dtype,
        TABLE[dtype],
        1.0,
    )


def test_compare_rules():
    eps = np.finfo(np.float32).eps
    assert _compare([1.0, 2.0], [1.0, 2.0]).passed
    assert _compare([1.0 + 4 * eps], [1.0]).passed
    assert not _compare([1.0 + 100 * eps], [1.0]).passed
    nan_moved = _compare([np.nan, 1.0], [1.0, np.nan])
    assert not nan_moved.passed and "non-finite" in nan_moved.note
    assert _compare([np.nan, np.inf], [np.nan, np.inf]).passed
    assert not _compare([-np.inf], [np.inf]).passed
    # a golden value beyond float16's range is expected as float16's infinity
    assert _compare([np.inf], [1e6], dtype="float16").passed
    assert not _compare([65504.0], [1e6], dtype="float16").passed
    assert not _compare([1.0, 2.0], [1.0]).passed  # shape


def test_a_registered_loss_without_a_fixture_is_reported_not_crashed():
    from dataclasses import replace

    mlloss.register(replace(mlloss.spec("bce"), name="test_unfixtured", aliases=()))
    try:
        report = runner.run(["test_unfixtured"], ["numpy"], ["float64"], ["cpu"], with_seed=False)
    finally:
        mlloss.unregister("test_unfixtured")
    (cell,) = report.cells
    assert cell.status == "no fixture" and "mlloss golden --loss test_unfixtured" in cell.reason
