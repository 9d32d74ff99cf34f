"""The fused JAX kernels (backends/jax_kernels.py): each gives the spec formula's values and
gradients (``fused=False``), on ordinary inputs and on every edge the spec defines: missing
labels and ignored samples, NaN rows, infinite logits, rows with nothing observed."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

import mlloss  # noqa: E402
from mlloss import backends  # noqa: E402
from mlloss.backends.jax_kernels import KERNELS  # noqa: E402

OPS = backends.load("jax")

SETTINGS = [
    ("sparse_softmax_ce", {}),
    ("sparse_softmax_ce", {"label_smoothing": 0.2}),
    ("sparse_softmax_ce", {"ignore_index": 2}),
    ("softmax_ce", {}),
    ("softmax_ce", {"label_smoothing": 0.2}),
    ("softmax_ce", {"normalize_targets": True}),
    ("softmax_ce", {"normalize_targets": True, "label_smoothing": 0.3}),
]
SHAPE = (12, 7)


def _inputs(name, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=SHAPE) * 3).astype(dtype)
    if mlloss.spec(name).target_kind == "class_index":
        return x, rng.integers(0, SHAPE[-1], size=SHAPE[:-1])
    return x, (rng.random(SHAPE) < 0.3).astype(dtype)


def _edges(name, dtype):
    """Logits and targets with every edge case, one per row."""
    x, y = _inputs(name, dtype, seed=1)
    x[0, 1] = np.nan  # a NaN row
    x[1, 2] = np.inf  # +inf, one entry
    x[2, [0, 3]] = np.inf  # +inf, two entries
    x[3, :] = -np.inf  # every logit -inf
    x[4, 5] = -np.inf  # -inf, one entry
    if mlloss.spec(name).target_kind == "class_index":
        y[1], y[2], y[4] = 2, 1, 5  # the label on the +inf, beside two +inf, on the -inf
        y[5] = -100  # ignored
        x[5, 0] = np.nan  # a NaN in an ignored sample counts for nothing
    else:
        y[1, :], y[1, 2] = 0, 1
        y[2, :], y[2, 1] = 0, 1
        y[4, :], y[4, 5] = 0, 1
        y[5, :3] = -1  # missing labels, one logit behind them NaN
        x[5, 0] = np.nan
        y[6, :] = -1  # nothing observed
        y[7, :] = 0  # no positive
    return x, y


def _both(name, params, x, y, reduction="none"):
    """(value, grad) through the kernel and through the path it replaces: the spec's formula
    with its closed-form gradient (which, unlike autodiff of the formula, gives rows with an
    infinite logit their limit gradient)."""
    kernel = mlloss.get(name, backend="jax", reduction=reduction, validate=False, **params)
    assert kernel._fused_fn(OPS)[1], "the kernel is used"
    spec = mlloss.spec(name)
    closed_form = mlloss.Loss(spec, "jax", reduction, spec.resolve_params(params), validate=False)
    closed_form._fused_fns[OPS.name] = (closed_form._spec_fused_fn(OPS), False)
    x, y = jnp.asarray(x), jnp.asarray(y)
    return kernel.value_and_grad(x, y), closed_form.value_and_grad(x, y)


def _close(a, b, rtol):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=rtol)


def test_every_kernel_is_covered():
    assert {name for name, _ in SETTINGS} == set(KERNELS)


@pytest.mark.parametrize("name, params", SETTINGS)
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 2e-6)])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_kernel_equals_formula(name, params, dtype, rtol, reduction):
    x, y = _inputs(name, dtype)
    (value, grad), (value_f, grad_f) = _both(name, params, x, y, reduction)
    assert value.dtype == grad.dtype == dtype
    _close(value, value_f, rtol)
    _close(grad, grad_f, rtol)
    # and autodiff of the formula itself, away from the edges
    formula = mlloss.get(name, backend="jax", reduction=reduction, fused=False, **params)
    value_a, grad_a = formula.value_and_grad(jnp.asarray(x), jnp.asarray(y))
    _close(value, value_a, rtol)
    _close(grad, grad_a, rtol)


@pytest.mark.parametrize("name, params", SETTINGS)
def test_edge_cases_equal_the_formula(name, params):
    """NaN where the formula has NaN, the same limits where it has infinities."""
    x, y = _edges(name, np.float64)
    (value, grad), (value_f, grad_f) = _both(name, params, x, y)
    np.testing.assert_array_equal(np.isnan(value), np.isnan(value_f))
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(grad_f))
    _close(value, value_f, 1e-13)
    _close(grad, grad_f, 1e-13)


def test_soft_targets():
    rng = np.random.default_rng(3)
    x = rng.normal(size=SHAPE) * 3
    y = rng.random(SHAPE)
    (value, grad), (value_f, grad_f) = _both("softmax_ce", {}, x, y)
    _close(value, value_f, 1e-13)
    _close(grad, grad_f, 1e-13)


@pytest.mark.parametrize("margin", [5.0, 10.0, 15.0])
def test_confident_samples_lose_no_more_than_the_formula(margin):
    """Samples predicted with a margin have small losses; in float32 the kernel's values are
    as close to the exact ones as the formula's (its terms are all non-negative: nothing
    cancels)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=SHAPE).astype(np.float32)
    labels = rng.integers(0, SHAPE[-1], size=SHAPE[0])
    x[np.arange(SHAPE[0]), labels] += margin
    kwargs = {"backend": "jax", "reduction": "none"}
    kernel = mlloss.get("sparse_softmax_ce", **kwargs)
    formula = mlloss.get("sparse_softmax_ce", fused=False, **kwargs)
    exact = np.asarray(kernel(jnp.asarray(x, dtype=jnp.float64), jnp.asarray(labels)))
    error = np.abs(np.asarray(kernel(jnp.asarray(x), jnp.asarray(labels))) - exact)
    error_f = np.abs(np.asarray(formula(jnp.asarray(x), jnp.asarray(labels))) - exact)
    assert np.all(error <= error_f + 4 * np.finfo(np.float32).eps * exact)


def test_under_jit_and_vmap():
    x, y = _inputs("sparse_softmax_ce", np.float32)
    loss = mlloss.get("sparse_softmax_ce", backend="jax")
    direct = loss(jnp.asarray(x), jnp.asarray(y))
    jitted = jax.jit(jax.value_and_grad(loss))(jnp.asarray(x), jnp.asarray(y))
    _close(jitted[0], direct, 1e-6)
    per_sample = jax.vmap(loss)(jnp.asarray(x)[:, None], jnp.asarray(y)[:, None])
    _close(per_sample.mean(), direct, 1e-6)


def test_class_weights_take_the_formula():
    loss = mlloss.get("softmax_ce", backend="jax", class_weight=[1.0] * SHAPE[-1])
    assert not loss._fused_fn(OPS)[1]
