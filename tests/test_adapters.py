"""The framework adapters: mlloss.keras.Loss on Keras's three backends (each in its own
process, since Keras picks its backend once), mlloss.torch.Loss as an nn.Module (buffers,
autocast, torch.compile), mlloss.jax.loss under jit/vmap/grad/optax, and mlloss.tensorflow.loss
in a custom training loop under tf.function."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mlloss

SCRIPTS = Path(__file__).parent / "scripts"


def _data(seed=0, n=64, features=6, classes=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    w = rng.normal(size=(features, classes))
    y = (x @ w > 0.3).astype(np.float64)
    y[::5, 1] = -1.0  # missing labels
    return x, y, w


# Keras ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_keras_loss_trains_saves_and_loads(backend):
    pytest.importorskip("keras")
    pytest.importorskip(backend)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "keras_train.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["backend"] == backend
    for loss in ("focal", "sigmoid_bce", "sparse_softmax_ce"):
        run = out[loss]
        assert run["history"][-1] < 0.8 * run["history"][0], (loss, run["history"])
        assert run["reloaded_max_diff"] == 0.0
        assert run["reloaded_config"] == run["config"]
        # what Keras reports is mlloss's value of the model's logits
        assert run["evaluate"] == pytest.approx(run["direct"], rel=1e-5)


def test_keras_refuses_sample_weight_on_a_reduced_value():
    pytest.importorskip("keras")
    import mlloss.keras

    loss = mlloss.keras.Loss("sigmoid_bce")
    with pytest.raises(ValueError, match="sample_weight"):
        loss(np.ones((2, 3), "float32"), np.zeros((2, 3), "float32"), sample_weight=np.ones(2))


# torch ------------------------------------------------------------------------------------------


def test_torch_module_is_the_loss_with_buffers():
    torch = pytest.importorskip("torch")
    import mlloss.torch

    x, y, _ = _data()
    weight = [1.0, 2.0, 0.5, 1.5]
    criterion = mlloss.torch.Loss("sigmoid_bce", pos_weight=weight, label_smoothing=0.1)
    assert set(dict(criterion.named_buffers())) == {"pos_weight"}
    assert "pos_weight" in criterion.state_dict()
    logits, targets = torch.tensor(x[:, :4]), torch.tensor(y)
    expected = mlloss.get("sigmoid_bce", backend="torch", pos_weight=weight, label_smoothing=0.1)
    torch.testing.assert_close(criterion(logits, targets), expected(logits, targets))
    # the loss follows its buffers: written in place, loaded, or moved
    criterion.pos_weight.mul_(2.0)
    doubled = mlloss.get(
        "sigmoid_bce", backend="torch", pos_weight=[2 * w for w in weight], label_smoothing=0.1
    )
    torch.testing.assert_close(criterion(logits, targets), doubled(logits, targets))
    criterion.load_state_dict({"pos_weight": torch.tensor(weight)})
    torch.testing.assert_close(criterion(logits, targets), expected(logits, targets))
    moved = criterion.to(torch.float64)
    assert moved.pos_weight.dtype == torch.float64
    torch.testing.assert_close(moved(logits, targets), expected(logits, targets))


def test_torch_module_trains_and_decodes():
    torch = pytest.importorskip("torch")
    import mlloss.torch

    x, y, _ = _data()
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 4).double()
    criterion = mlloss.torch.Loss("asl")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        value = criterion(model(torch.tensor(x)), torch.tensor(y))
        value.backward()
        optimizer.step()
        losses.append(value.item())
    assert losses[-1] < 0.5 * losses[0]
    assert criterion.decode(model(torch.tensor(x))).dtype == torch.int32


def test_torch_module_under_autocast_computes_in_float32():
    torch = pytest.importorskip("torch")
    import mlloss.torch

    x, y, _ = _data()
    model = torch.nn.Linear(6, 4)
    criterion = mlloss.torch.Loss("softmax_ce", normalize_targets=True)
    inputs, targets = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(inputs)
        assert logits.dtype == torch.bfloat16
        value = criterion(logits, targets)
    assert value.dtype == torch.float32
    expected = mlloss.get("softmax_ce", backend="torch", normalize_targets=True)
    torch.testing.assert_close(value, expected(logits.float(), targets), rtol=0, atol=0)
    value.backward()
    assert model.weight.grad is not None and torch.isfinite(model.weight.grad).all()


@pytest.mark.slow
def test_torch_module_under_torch_compile():
    torch = pytest.importorskip("torch")
    import mlloss.torch

    x, y, _ = _data()
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 4).double()
    criterion = mlloss.torch.Loss("focal", gamma=2.0)

    def step(inputs, targets):
        value = criterion(model(inputs), targets)
        value.backward()
        return value

    inputs, targets = torch.tensor(x), torch.tensor(y)
    eager = step(inputs, targets)
    eager_grad = model.weight.grad.clone()
    model.zero_grad()
    compiled = torch.compile(step)(inputs, targets)
    torch.testing.assert_close(compiled, eager, rtol=1e-12, atol=0)
    torch.testing.assert_close(model.weight.grad, eager_grad, rtol=1e-12, atol=0)


# JAX --------------------------------------------------------------------------------------------


def test_jax_loss_under_jit_vmap_grad_and_optax():
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    import mlloss.jax

    x, y, _ = _data()
    loss_fn = mlloss.jax.loss("focal", gamma=2.0)
    reference = mlloss.get("focal", backend="numpy", gamma=2.0)
    w0 = jnp.zeros((6, 4), dtype=x.dtype)

    def objective(w):
        return loss_fn(jnp.asarray(x) @ w, jnp.asarray(y))

    value = jax.jit(objective)(w0)
    np.testing.assert_allclose(float(value), float(reference(x @ np.asarray(w0), y)), rtol=1e-6)
    # vmap: one value per sample, each the mean over its observed classes
    per_sample = jax.vmap(loss_fn)(jnp.asarray(x @ np.ones((6, 4))), jnp.asarray(y))
    expected = mlloss.get("focal", backend="numpy", reduction="none", mean_over_classes=True)
    np.testing.assert_allclose(
        np.asarray(per_sample), expected(x @ np.ones((6, 4)), y), rtol=1e-5, atol=1e-7
    )
    optimizer = optax.adam(0.1)
    w, state = w0, optimizer.init(w0)
    step = jax.jit(jax.value_and_grad(objective))
    values = []
    for _ in range(30):
        value, grad = step(w)
        updates, state = optimizer.update(grad, state)
        w = optax.apply_updates(w, updates)
        values.append(float(value))
    assert values[-1] < 0.5 * values[0]


# TensorFlow -------------------------------------------------------------------------------------


def test_tensorflow_loss_in_a_custom_training_loop():
    tf = pytest.importorskip("tensorflow")
    import mlloss.tensorflow

    x, y, _ = _data()
    loss_fn = mlloss.tensorflow.loss("sigmoid_bce", label_smoothing=0.05)
    w = tf.Variable(tf.zeros((6, 4), dtype=tf.float64))
    inputs, targets = tf.constant(x), tf.constant(y)

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            value = loss_fn(inputs @ w, targets)
        w.assign_sub(0.5 * tape.gradient(value, w))
        return value

    values = [float(step()) for _ in range(30)]
    assert values[-1] < 0.7 * values[0]
    eager = float(loss_fn(inputs @ w, targets))
    expected = mlloss.get("sigmoid_bce", backend="numpy", label_smoothing=0.05)
    assert eager == pytest.approx(float(expected(x @ w.numpy(), y)), rel=1e-12)


def test_adapters_load_on_first_use_only():
    code = "import sys, mlloss; print(any(f'mlloss.{a}' in sys.modules for a in mlloss._ADAPTERS))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    with pytest.raises(AttributeError, match="no attribute 'pytorch'"):
        mlloss.pytorch  # noqa: B018
