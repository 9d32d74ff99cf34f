"""Gradients with respect to the targets (soft targets from another network, learned label
distributions): the fused paths' backward is a closed form with respect to the logits and the
heads only, so a call whose targets are differentiated gets the framework's autodiff of the
formula for them, as with ``fused=False``, never a silent zero or a missing gradient."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import backend_params, to_backend, to_numpy

import mlloss

RNG = np.random.default_rng(11)
X = RNG.normal(scale=2.0, size=(6, 5))
SOFT = RNG.random((6, 5))
HARD = (SOFT > 0.5).astype(np.float64)

# losses with a torch, JAX or TensorFlow kernel among them (sigmoid_bce, softmax_ce, poly1,
# asl, bce) and losses on the spec's closed-form backward alone (zlpr, hill)
CASES = [
    ("sigmoid_bce", SOFT),
    ("softmax_ce", SOFT),
    ("poly1", SOFT),
    ("asl", HARD),
    ("bce", SOFT),
    ("zlpr", SOFT),
    ("hill", SOFT),
]


def _inputs(name):
    x = X if mlloss.spec(name).input_kind == "logits" else 1.0 / (1.0 + np.exp(-X))
    return x


def _torch_grads(name, y, fused):
    import torch

    x = torch.tensor(_inputs(name), requires_grad=True)
    t = torch.tensor(y, requires_grad=True)
    mlloss.get(name, backend="torch", fused=fused)(x, t).backward()
    assert t.grad is not None
    return x.grad.numpy(), t.grad.numpy()


def _jax_grads(name, y, fused, jit):
    import jax

    loss = mlloss.get(name, backend="jax", fused=fused)
    grad = jax.grad(lambda a, b: loss(a, b), argnums=(0, 1))
    grad = jax.jit(grad) if jit else grad
    gx, gy = grad(to_backend("jax", _inputs(name), "float32"), to_backend("jax", y, "float32"))
    return np.asarray(gx), np.asarray(gy)


def _tensorflow_grads(name, y, fused, variable):
    import tensorflow as tf

    x = tf.constant(_inputs(name))
    t = tf.Variable(y) if variable else tf.constant(y)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        if not variable:
            tape.watch(t)
        value = mlloss.get(name, backend="tensorflow", fused=fused)(x, t)
    gx, gy = tape.gradient(value, x), tape.gradient(value, t)
    assert gy is not None
    return gx.numpy(), gy.numpy()


def _grads(backend, name, y, fused, how):
    if backend == "torch":
        return _torch_grads(name, y, fused)
    if backend == "jax":
        return _jax_grads(name, y, fused, jit=how == "jit")
    return _tensorflow_grads(name, y, fused, variable=how == "variable")


@pytest.mark.parametrize(
    ("backend", "how"),
    [
        pytest.param(*pair, marks=param.marks)
        for param in backend_params(("torch", "tensorflow", "jax"))
        for pair in {
            "torch": [("torch", "eager")],
            "jax": [("jax", "eager"), ("jax", "jit")],
            "tensorflow": [("tensorflow", "watched"), ("tensorflow", "variable")],
        }[param.values[0]]
    ],
)
@pytest.mark.parametrize(("name", "y"), CASES, ids=[name for name, _ in CASES])
def test_targets_get_the_formulas_gradient(backend, how, name, y):
    fast_x, fast_y = _grads(backend, name, y, True, how)
    slow_x, slow_y = _grads(backend, name, y, False, how)
    assert np.abs(slow_y).max() > 0  # the loss depends on its targets: a zero would show
    tolerance = 1e-5 if backend == "jax" else 1e-12  # JAX: float32
    np.testing.assert_allclose(fast_y, slow_y, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(fast_x, slow_x, rtol=tolerance, atol=tolerance)


def test_inside_tf_function_the_fused_paths_give_the_targets_no_gradient():
    """A tape outside a tf.function cannot be seen from inside its trace: there the fused
    paths hold the targets constant, and the tape says so with None (never a wrong number);
    ``fused=False`` differentiates them (documented in README's contract)."""
    tf = pytest.importorskip("tensorflow")
    x, t = tf.constant(X), tf.constant(SOFT)
    for fused, connected in ((True, False), (False, True)):
        loss = mlloss.get("softmax_ce", backend="tensorflow", fused=fused)
        step = tf.function(lambda a, b, loss=loss: loss(a, b))
        with tf.GradientTape() as tape:
            tape.watch(t)
            value = step(x, t)
        assert (tape.gradient(value, t) is not None) == connected


def test_targets_held_constant_keep_the_kernel():
    """Targets that no gradient is asked for take the fused path (the kernels' speed)."""
    torch = pytest.importorskip("torch")
    loss = mlloss.get("sigmoid_bce", backend="torch")
    x = torch.tensor(X, requires_grad=True)
    value = loss(x, torch.tensor(SOFT))
    assert type(value.grad_fn).__name__ == "_KernelFunctionBackward"
    with torch.no_grad():  # a target that requires grad, but nothing records
        assert float(loss(x, torch.tensor(SOFT, requires_grad=True))) == pytest.approx(
            float(value), rel=1e-12
        )
    assert to_numpy("torch", value).shape == ()
