"""``mlloss bench`` runs, pairs each loss with its framework's own and reports ratios (timings
themselves are measured in benchmarks/, never asserted in a test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mlloss import backends, bench
from mlloss.cli import main

torch = pytest.importorskip("torch")


def test_rows_pair_each_loss_with_its_native_and_the_public_reference():
    rows = bench.run(["sigmoid_bce", "asl", "zlpr"], ["torch"], shapes=[(8, 5)], repeat=1)
    by = {(r.loss, r.dtype): r for r in rows}
    assert {d for _, d in by} == {"float32", "float16", "bfloat16"}
    bce = by[("sigmoid_bce", "float32")]
    assert bce.native == "torch.nn.functional.binary_cross_entropy_with_logits"
    assert bce.vs_native is not None and bce.vs_native > 0
    asl = by[("asl", "float32")]
    assert asl.native is None and asl.public == "ASL paper reference (torch)"
    assert by[("zlpr", "float32")].native is None
    assert bce.saved_mb is not None and bce.saved_mb > 0
    assert bce.peak_mb is not None and bce.native_peak_mb is not None


def test_asl_reference_computes_asl():
    """The public reference written from the paper is the same loss as mlloss's asl."""
    import mlloss

    x = torch.randn(6, 5, dtype=torch.float64)
    y = (torch.rand(6, 5) < 0.4).double()
    reference = bench._asl_reference(torch)(x, y, eps=0.0)
    ours = mlloss.get("asl", backend="torch")(x, y)
    torch.testing.assert_close(reference, ours, rtol=1e-10, atol=1e-12)


def test_focal_reference_computes_focal():
    """torchvision's focal computation, written in torch, is mlloss's focal without alpha."""
    import mlloss

    x = torch.randn(6, 5, dtype=torch.float64)
    y = (torch.rand(6, 5) < 0.4).double()
    reference = bench._torchvision_focal_reference(torch)(x, y)
    ours = mlloss.get("focal", backend="torch", gamma=2.0)(x, y)
    torch.testing.assert_close(reference, ours, rtol=1e-10, atol=1e-12)


def test_cli_bench_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            "--loss",
            "sigmoid_bce",
            "--backend",
            "torch",
            "--shape",
            "4x3",
            "--repeat",
            "1",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    assert "| sigmoid_bce | torch | cpu | 4x3 | float32 |" in capsys.readouterr().out
    rows = json.loads(out.read_text())
    assert {"vs_native", "passes", "saved_mb"} <= set(rows[0])


def test_cli_bench_rejects_a_bad_shape(capsys):
    assert main(["bench", "--shape", "big"]) == 2
    assert "--shape expects NxC" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("backend", "native"),
    [
        ("tensorflow", "tf.nn.sigmoid_cross_entropy_with_logits"),
        ("jax", "optax.losses.sigmoid_binary_cross_entropy"),
    ],
)
def test_compiled_backends_pair_with_their_natives(backend, native):
    pytest.importorskip(backend)
    (row,) = bench.run(["sigmoid_bce"], [backend], shapes=[(4, 3)], repeat=1)
    assert (row.backend, row.dtype, row.native) == (backend, "float32", native)
    assert row.native_ms is not None and row.native_ms > 0 and row.saved_mb is None


def test_tensorflow_takes_keras_where_tf_nn_has_no_such_loss():
    """Keras is TensorFlow's own high-level API: its focal loss is the native TensorFlow
    counterpart of mlloss's, and runs as one (called labels first, the class configured)."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("keras")
    (row,) = bench.run(["focal"], ["tensorflow"], shapes=[(4, 3)], repeat=1)
    assert row.native is not None and row.native.startswith("keras.losses.")
    assert row.native_ms is not None and row.native_ms > 0


HAS_CUDA = torch.cuda.is_available()


@pytest.mark.skipif(HAS_CUDA, reason="a GPU is present: the CUDA rows run instead")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="device 'cuda' is not available to torch here"):
        bench.run(["sigmoid_bce"], ["torch"], shapes=[(4, 3)], repeat=1, device="cuda")
    with pytest.raises(ValueError, match="device expects 'cpu' or 'cuda'; got 'tpu'"):
        bench.run(["sigmoid_bce"], ["torch"], shapes=[(4, 3)], repeat=1, device="tpu")


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device on this machine")
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_cuda_rows_run_on_the_gpu(backend):
    pytest.importorskip(backend)
    if "cuda" not in backends.load(backend).devices():
        pytest.skip(f"{backend} sees no GPU here (a CPU-only build)")
    rows = bench.run(["sigmoid_bce", "focal"], [backend], [(256, 1000)], repeat=1, device="cuda")
    size = 256 * 1000 * 4 / 2**20
    for row in (r for r in rows if r.dtype == "float32"):
        assert row.device == "cuda" and row.mlloss_ms > 0 and row.floor_ms > 0
        # the gradient, a logits-sized buffer, is among what the step allocates
        assert row.peak_mb is not None and row.peak_mb >= size * 0.99


def test_peak_memory_of_a_step():
    """The torch timeline counts what a step allocates: the fused sigmoid_bce holds one
    temporary in forward, freed before the backward writes the gradient, so its peak is one
    logits-sized buffer; the formula without the kernel holds several at once."""
    import mlloss

    x = torch.randn(256, 100, requires_grad=True)
    y = (torch.rand(256, 100) < 0.3).float()
    size = x.numel() * x.element_size() / 2**20

    def step(loss):
        def run():
            x.grad = None
            loss(x, y).backward()

        return run

    fused = bench.torch_peak_mb(step(mlloss.get("sigmoid_bce", backend="torch")))
    spec = mlloss.spec("sigmoid_bce")
    plain = mlloss.Loss(spec, "torch", "mean", spec.resolve_params({}))
    plain._kernels["torch"] = None
    formula = bench.torch_peak_mb(step(plain))
    assert fused is not None and formula is not None
    assert fused == pytest.approx(size, rel=0.01)
    assert formula > 2 * size


def _assert_peak_reported(peak_mb, native_peak_mb):
    # at least the gradient, a logits-sized output of the step
    assert peak_mb is not None and peak_mb >= 256 * 1000 * 4 / 2**20
    assert native_peak_mb is not None and native_peak_mb > 0


def test_jax_reports_peak_memory():
    pytest.importorskip("jax")
    (row,) = bench.run(["sigmoid_bce"], ["jax"], shapes=[(256, 1000)], repeat=1)
    _assert_peak_reported(row.peak_mb, row.native_peak_mb)


def test_tensorflow_reports_peak_memory_where_its_allocator_keeps_statistics():
    """TensorFlow's default CPU allocator keeps statistics on some machines and not on others
    (where the row says "—"); its pooling allocator (TF_CPU_ALLOCATOR_USE_BFC, read when
    TensorFlow starts: a fresh interpreter) keeps them everywhere."""
    pytest.importorskip("tensorflow")
    code = (
        "from mlloss import bench\n"
        "(row,) = bench.run(['sigmoid_bce'], ['tensorflow'], shapes=[(256, 1000)], repeat=1)\n"
        "print(row.peak_mb, row.native_peak_mb)"
    )
    env = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    peak, native = (None if v == "None" else float(v) for v in done.stdout.split()[-2:])
    _assert_peak_reported(peak, native)


def test_import_time_is_measured_in_fresh_interpreters(monkeypatch):
    """A positive time from fresh interpreters, and an error, not a time, when the import
    loads a module it must not (here a standard module mlloss does import stands in for a
    framework)."""
    assert 0 < bench.import_ms(repeat=1) < float("inf")
    monkeypatch.setattr(bench, "FRAMEWORKS", ("dataclasses",))
    with pytest.raises(RuntimeError, match="dataclasses"):
        bench.import_ms(repeat=1)


def test_each_timed_call_of_a_large_input_starts_with_the_cache_flushed():
    """Inputs beyond a core's L2 cache: a buffer twice the last-level cache is written before
    every timed call (not the warm-up ones); small inputs and a GPU's are left alone."""
    assert bench.cache_flush(64 * 80 * 4 * 2, "cpu") is None
    assert bench.cache_flush(2**30, "cuda") is None
    flush = bench.cache_flush(2**30, "cpu")
    assert flush is not None
    (buffer,) = [cell.cell_contents for cell in flush.__closure__]
    assert buffer.nbytes >= 2 * (bench._cache_bytes(3) or 32 * 2**20)
    events = []
    bench.medians_ms(
        [lambda: events.append("a"), lambda: events.append("b")],
        repeat=3,
        warmup=1,
        rounds=1,
        before=lambda: events.append("flush"),
    )
    assert events == ["a"] + ["flush", "a"] * 3 + ["b"] + ["flush", "b"] * 3
    flush()
    assert float(buffer[0]) == 1.0  # it writes the whole buffer
    assert float(buffer[-1]) == 1.0


def test_a_pairwise_loss_is_left_out_where_its_pairs_would_exhaust_memory(monkeypatch):
    """multilabel_hinge's formula holds N x C x C pairs: at 1024x1000 that is 4 GiB per
    intermediate, so a run on a backend and device that computes the formula leaves it out
    with the reason (once per shape) instead of being killed; at 8x12 it runs. torch's
    kernel holds no pairs, nor JAX's and TensorFlow's on the CPU: they run at any shape (so
    here TensorFlow's CPU is taken off that list)."""
    pytest.importorskip("tensorflow")
    monkeypatch.setattr(bench, "_UNPAIRED", bench._UNPAIRED - {("tensorflow", "cpu")})
    told = []
    rows = bench.run(
        ["multilabel_hinge"],
        ["tensorflow"],
        [(8, 12), (1024, 1000)],
        repeat=1,
        on_skip=told.append,
    )
    assert {(r.shape, r.dtype) for r in rows} == {("8x12", "float32")}
    assert told == [
        "skipped: multilabel_hinge on tensorflow at 1024x1000 holds 1.0e+09 pairs (N x C x C), "
        "4 GiB for each float32 intermediate"
    ]


def test_the_sorted_row_kernels_run_a_pairwise_loss_at_any_shape():
    assert bench._too_large("sigmoid_bce", (4096, 20000), "jax", "cuda") is None
    for backend in ("torch", "jax", "tensorflow"):
        assert bench._too_large("multilabel_hinge", (4096, 1000), backend) is None
    assert bench._too_large("multilabel_hinge", (4096, 1000), "torch", "cuda") is None
    for backend in ("jax", "tensorflow"):
        assert bench._too_large("multilabel_hinge", (4096, 1000), backend, "cuda") is not None
