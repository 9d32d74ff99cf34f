"""The Ops composites behave the same on every backend, at the edges included."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import FRAMEWORKS, backend_params, to_backend, to_numpy

from mlloss import backends

INF = math.inf


@pytest.mark.parametrize("backend", backend_params())
def test_masked_logsumexp_edges(backend):
    ops = backends.load(backend)
    x = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [INF, 0.0, 1.0], [-INF, -INF, 0.0]])
    mask = np.array([[True, True, False], [False, False, False], [True, True, True], [True] * 3])
    out = to_numpy(
        backend, ops.logsumexp(to_backend(backend, x), axis=-1, where=to_backend(backend, mask))
    )
    np.testing.assert_allclose(out[0], np.logaddexp(1.0, 2.0), rtol=1e-15)
    assert out[1] == -INF  # an empty selection
    assert out[2] == INF  # +inf in, +inf out (not inf - inf)
    assert out[3] == 0.0


@pytest.mark.parametrize("backend", backend_params(FRAMEWORKS))
def test_masked_logsumexp_gradient_is_finite_and_zero_off_the_mask(backend):
    ops = backends.load(backend)
    x = to_backend(backend, np.array([[1.0, 500.0, 3.0], [2.0, 4.0, 1.0]]))
    mask = to_backend(backend, np.array([[True, False, True], [False, False, False]]))
    _, grad = ops.value_and_grad(lambda v: ops.logsumexp(v, axis=-1, where=mask), x)
    grad = to_numpy(backend, grad)
    softmax = np.exp([1.0, 3.0]) / np.exp([1.0, 3.0]).sum()
    np.testing.assert_allclose(grad[0], [softmax[0], 0.0, softmax[1]], rtol=1e-14)
    np.testing.assert_array_equal(grad[1], [0.0, 0.0, 0.0])


@pytest.mark.parametrize("backend", backend_params())
def test_xlogy_xmul_xdivy_are_zero_where_the_coefficient_is(backend):
    ops = backends.load(backend)
    a = to_backend(backend, np.array([0.0, 0.0, 2.0]))
    b = to_backend(backend, np.array([0.0, INF, 4.0]))
    np.testing.assert_array_equal(to_numpy(backend, ops.xlogy(a, b)), [0.0, 0.0, 2 * np.log(4)])
    np.testing.assert_array_equal(to_numpy(backend, ops.xmul(a, b)), [0.0, 0.0, 8.0])
    np.testing.assert_array_equal(to_numpy(backend, ops.xdivy(a, b)), [0.0, 0.0, 0.5])


@pytest.mark.parametrize("backend", backend_params(FRAMEWORKS))
def test_clip_subgradient_is_one_on_the_closed_interval(backend):
    """The frameworks' own clips disagree at the bounds (JAX splits a tie 0.5/0.5); the Ops
    clip declares 1 at the bounds and 0 outside, on every backend."""
    ops = backends.load(backend)
    x = to_backend(backend, np.array([0.05, 0.1, 0.5, 0.9, 0.95]))
    _, grad = ops.value_and_grad(lambda v: ops.clip(v, 0.1, 0.9), x)
    np.testing.assert_array_equal(to_numpy(backend, grad), [0.0, 1.0, 1.0, 1.0, 0.0])


@pytest.mark.parametrize("backend", backend_params())
def test_softplus_and_log_sigmoid_are_exact_in_float64(backend):
    ops = backends.load(backend)
    x = np.array([-800.0, -40.0, -20.0, -1.0, 0.0, 1e-10, 1.0, 20.0, 21.0, 40.0, 800.0])
    expected = np.logaddexp(0.0, x)
    out = to_numpy(backend, ops.softplus(to_backend(backend, x)))
    np.testing.assert_allclose(out, expected, rtol=4e-16, atol=0)
    out = to_numpy(backend, ops.log_sigmoid(to_backend(backend, x)))
    np.testing.assert_allclose(out, -np.logaddexp(0.0, -x), rtol=4e-16, atol=0)


@pytest.mark.parametrize("backend", backend_params())
def test_sigmoid_limits(backend):
    ops = backends.load(backend)
    out = to_numpy(backend, ops.sigmoid(to_backend(backend, np.array([-INF, 0.0, INF]))))
    np.testing.assert_array_equal(out, [0.0, 0.5, 1.0])


@pytest.mark.parametrize("backend", backend_params())
def test_one_hot_and_max_of_nothing(backend):
    ops = backends.load(backend)
    index = to_backend(backend, np.array([0, 2, -100]))
    np.testing.assert_array_equal(
        to_numpy(backend, ops.one_hot(index, 3, "float64")),
        [[1, 0, 0], [0, 0, 1], [0, 0, 0]],
    )
    empty = to_backend(backend, np.zeros((2, 0)))
    np.testing.assert_array_equal(to_numpy(backend, ops.max(empty, axis=-1)), [-INF, -INF])


@pytest.mark.parametrize(
    "shape, axis",
    [((37, 9000), 0), ((5, 3, 9000), 1), ((3, 7, 3000), 0), ((9, 9000), -2), ((2, 9000), 0)],
)
def test_jax_sum_and_max_over_a_leading_axis_of_a_wide_array_by_halving(shape, axis, monkeypatch):
    """JaxOps reduces a leading axis of a wide floating array on the CPU by halving (XLA's own
    reduction there took 11-13 ms at 256x20000): the same maximum exactly, the same sum to
    float32's rounding (pairwise, here within 2 ulps of the exact sum of the magnitudes),
    keepdims and the gradient as jnp's; half precision summed in float32."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    from mlloss.backends import jax as jax_backend

    halved = []
    reduce = jax_backend._halving_reduce
    monkeypatch.setattr(
        jax_backend, "_halving_reduce", lambda *a: halved.append(a[1]) or reduce(*a)
    )
    ops = backends.load("jax")
    a = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    a.reshape(-1)[:: 7 * shape[-1] + 3] = -INF  # an entry of -inf in some columns
    wide = a.astype(np.float64)
    for keepdims in (False, True):
        got = np.asarray(ops.sum(jnp.asarray(np.where(np.isinf(a), 0, a)), axis, keepdims))
        exact = np.where(np.isinf(wide), 0, wide).sum(axis=axis, keepdims=keepdims)
        scale = np.abs(np.where(np.isinf(wide), 0, wide)).sum(axis=axis, keepdims=keepdims)
        assert got.shape == exact.shape and got.dtype == np.float32
        assert np.all(np.abs(got - exact) <= 2 * np.finfo(np.float32).eps * scale)
        most = np.asarray(ops.max(jnp.asarray(a), axis, keepdims))
        np.testing.assert_array_equal(most, a.max(axis=axis, keepdims=keepdims))
    assert len(halved) == 4, "the halving reduction computed every one of them"
    half = jnp.asarray(a[..., :9001].clip(-4, 4), dtype=jnp.float16)
    got = ops.sum(half, axis)
    assert got.dtype == jnp.float16
    np.testing.assert_array_equal(np.asarray(got), np.asarray(jnp.sum(half, axis=axis)))
    weights = np.random.default_rng(1).normal(size=a.sum(axis=axis).shape).astype(np.float32)
    finite = jnp.asarray(np.where(np.isinf(a), 0, a))
    grad = jax.grad(lambda v: jnp.sum(ops.sum(v, axis) * jnp.asarray(weights)))(finite)
    np.testing.assert_array_equal(
        np.asarray(grad), np.broadcast_to(np.expand_dims(weights, axis), shape)
    )


@pytest.mark.parametrize("shape, axis", [((37, 8192), 0), ((37, 9000), -1), ((1, 9000), 0)])
def test_jax_sum_keeps_xlas_reduction_where_it_is_fast(shape, axis, monkeypatch):
    """A narrow array, the last axis, or an axis of one entry: XLA's own reduction."""
    jax = pytest.importorskip("jax")
    from mlloss.backends import jax as jax_backend

    def refused(*args):
        raise AssertionError("halved")

    monkeypatch.setattr(jax_backend, "_halving_reduce", refused)
    ops = backends.load("jax")
    a = jax.numpy.asarray(np.random.default_rng(0).normal(size=shape))
    ops.sum(a, axis)
    ops.max(a, axis)
    ops.sum(jax.numpy.asarray(np.ones(shape, dtype=bool)), axis)
