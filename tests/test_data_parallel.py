"""Data parallelism on real engines, each in a process of its own (tests/scripts/): torch
DistributedDataParallel over two gloo processes, JAX with the batch sharded over four host
devices under jax.jit, TensorFlow's MirroredStrategy over two logical CPU devices. For every
loss the value and the parameter gradients of the data-parallel step equal one process on the
whole batch (float64; uneven shards, missing labels and ignored samples spread unevenly).
A control shows the setting can fail: the replicas' own means, averaged, are off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mlloss

SCRIPTS = Path(__file__).parent / "scripts"
# float64 on 12 samples: a handful of roundings; the conformance suite's float64 tolerance
# is larger than this
TOLERANCE = 1e-13
BATCH_LEVEL = {n for n in mlloss.names() if mlloss.spec(n).per == "batch"}


def _run(script: str) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _check(results: dict, refused: set[str], also: set[str] = frozenset()) -> None:
    control = results.pop("naive mean of means (sigmoid_bce)", None)
    assert set(results) == set(mlloss.names()) | also
    for name, errors in results.items():
        if name in refused:
            assert "couples every sample" in errors["refused"], name
            continue
        assert errors["value"] <= TOLERANCE, (name, errors)
        assert errors["grad"] <= TOLERANCE, (name, errors)
    if control is not None:
        assert control["grad"] > 1e-3, control


def test_torch_distributed_data_parallel_gloo():
    pytest.importorskip("torch")
    _check(_run("torch_ddp.py"), refused=BATCH_LEVEL)


def test_jax_jit_with_the_batch_sharded_over_four_devices():
    pytest.importorskip("jax")
    # XLA computes over the global array: the batch-level losses need no gather; and the
    # shard_map recipe (sum_and_count, psum) for every loss without a batch-level term
    recipe = {f"shard_map: {n}" for n in mlloss.names() if n not in BATCH_LEVEL}
    _check(_run("jax_sharded.py"), refused=set(), also=recipe)


def test_jax_multilabel_hinge_float32_sharded_over_two_devices():
    """A float32 batch sharded over two host devices, large enough for multilabel_hinge's
    whole-loss kernel: it completes (a numpy callback there deadlocked XLA's all-reduce)
    and equals the formula to float32's rounding."""
    pytest.importorskip("jax")
    errors = _run("jax_hinge_sharded.py")
    assert errors["value"] <= 1e-6 and errors["grad"] <= 1e-6, errors


def test_tensorflow_mirrored_strategy_two_devices():
    pytest.importorskip("tensorflow")
    _check(_run("tf_mirrored.py"), refused=BATCH_LEVEL)


def test_sum_and_count_add_up_across_shards():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 4))
    y = (rng.random((9, 4)) < 0.4).astype(float)
    y[0, 1] = y[5, :] = -1.0
    for name in ("sigmoid_bce", "softmax_ce", "zlpr", "focal"):
        for reduction in ("mean", "sum"):
            loss = mlloss.get(name, backend="numpy", reduction=reduction)
            parts = [loss.sum_and_count(x[s], y[s]) for s in (slice(0, 4), slice(4, 9))]
            total = sum(p[0] for p in parts)
            value = total / sum(p[1] for p in parts) if reduction == "mean" else total
            np.testing.assert_allclose(value, loss(x, y), rtol=1e-14)


def test_sum_and_count_refuses_a_batch_level_loss():
    import numpy as np

    with pytest.raises(ValueError, match="couples every sample"):
        mlloss.get("two_way").sum_and_count(np.zeros((2, 3)), np.ones((2, 3)))
