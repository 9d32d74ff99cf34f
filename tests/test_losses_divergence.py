"""abs_kl and partition. partition takes a count head: its value and both gradients (logits and
count) on every backend and gradient path, its decode rule, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
from cases import CORE_REDUCTIONS, inputs
from conftest import FRAMEWORKS, backend_params, to_backend, to_numpy

import mlloss

SETTINGS = [{}, {"count_loss": "poisson", "count_weight": 0.5}, {"count_floor": 0.5}]


def _partition_inputs(seed=0, missing=True):
    x, y = inputs("partition", {}, seed=seed, missing=missing)
    count = np.maximum(y, 0).sum(axis=-1) + np.linspace(-0.8, 0.9, num=len(y))
    count[0] = 0.004  # below the default floor
    return x, y, count


@pytest.mark.parametrize("params", SETTINGS)
def test_partition_value_equals_its_definition(params):
    x, y, count = _partition_inputs(missing=False)
    y[:, 0] = 1.0  # the textbook form divides by the number of labels
    loss = mlloss.get("partition", reduction="none", **params)
    z = np.maximum(count, loss.params["count_floor"])
    n = y.sum(axis=-1)
    target = y / n[:, None]
    log_softmax = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    kl = np.sum(
        np.where(target > 0, target * (np.log(np.where(target > 0, target, 1)) - log_softmax), 0),
        axis=-1,
    )
    mse = loss.params["count_loss"] == "mse"
    count_term = (z - n) ** 2 if mse else z - n * np.log(z)
    expected = kl + loss.params["count_weight"] * count_term
    np.testing.assert_allclose(loss(x, y, count=count), expected, rtol=1e-12)


@pytest.mark.parametrize("params", SETTINGS)
def test_partition_gradients_match_finite_differences(params):
    x, y, count = _partition_inputs(seed=1)
    loss = mlloss.get("partition", reduction="mean", **params)
    _, (d_x, d_count) = loss.value_and_grad(x, y, count=count)
    h = 1e-6
    for array, grad, other in ((x, d_x, "x"), (count, d_count, "count")):
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            up, down = array.copy(), array.copy()
            up[index] += h
            down[index] -= h
            if other == "x":
                f_up, f_down = loss(up, y, count=count), loss(down, y, count=count)
            else:
                f_up, f_down = loss(x, y, count=up), loss(x, y, count=down)
            numeric[index] = (f_up - f_down) / (2 * h)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "autodiff"])
@pytest.mark.parametrize("backend", backend_params(FRAMEWORKS))
@pytest.mark.parametrize("reduction", CORE_REDUCTIONS)
def test_partition_backends_agree_with_numpy(reduction, backend, fused):
    x, y, count = _partition_inputs(seed=2)
    params = {"count_loss": "poisson"}
    ref_value, (ref_x, ref_count) = mlloss.get(
        "partition", "numpy", reduction, **params
    ).value_and_grad(x, y, count=count)
    loss = mlloss.get("partition", backend, reduction, fused=fused, **params)
    value, (d_x, d_count) = loss.value_and_grad(
        to_backend(backend, x), to_backend(backend, y), count=to_backend(backend, count)
    )
    np.testing.assert_allclose(to_numpy(backend, value), ref_value, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(backend, d_x), ref_x, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(to_numpy(backend, d_count), ref_count, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("backend", backend_params(["jax"]))
def test_partition_under_jit_and_grad(backend):
    import jax
    import jax.numpy as jnp

    x, y, count = _partition_inputs(seed=3)
    loss = mlloss.get("partition")
    grads = jax.jit(jax.grad(lambda a, c: loss(a, jnp.asarray(y), count=c), argnums=(0, 1)))(
        jnp.asarray(x), jnp.asarray(count)
    )
    _, (ref_x, ref_count) = mlloss.get("partition", "numpy").value_and_grad(x, y, count=count)
    np.testing.assert_allclose(np.asarray(grads[0]), ref_x, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.asarray(grads[1]), ref_count, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("backend", backend_params())
def test_partition_decodes_the_top_round_count(backend):
    x = np.array([[0.1, 3.0, -1.0, 2.0], [2.0, -2.0, 0.5, 1.0]])
    count = np.array([2.4, 0.001])
    out = mlloss.get("partition").decode(to_backend(backend, x), count=to_backend(backend, count))
    np.testing.assert_array_equal(to_numpy(backend, out), [[0, 1, 0, 1], [0, 0, 0, 0]])


def test_partition_heads_are_checked():
    x, y, count = _partition_inputs()
    loss = mlloss.get("partition")
    with pytest.raises(TypeError, match="partition: missing input 'count'; it takes count="):
        loss(x, y)
    with pytest.raises(TypeError, match="partition: unknown input 'counts'"):
        loss(x, y, count=count, counts=count)
    with pytest.raises(ValueError, match=r"partition: count expects shape \(6,\)"):
        loss(x, y, count=count[:3])
    with pytest.raises(TypeError, match="sigmoid_bce: unknown input 'count'; it takes no extra"):
        mlloss.get("sigmoid_bce")(x, y, count=count)


def test_abs_kl_is_the_answers_keras_formula():
    q, y = inputs("abs_kl", {}, seed=4, missing=False)
    eps = 1e-7
    p_, q_ = np.clip(y, eps, None), np.clip(q, eps, None)
    expected = np.sum(np.abs((p_ - q_) * np.log(p_ / q_)), axis=-1)
    np.testing.assert_allclose(mlloss.get("abs_kl", reduction="none")(q, y), expected, rtol=1e-12)


@pytest.mark.parametrize("backend", backend_params())
def test_partition_over_nothing_observed_is_zero_with_zero_gradients(backend):
    x, y, count = _partition_inputs()
    y = -np.ones_like(y)
    count[2] = np.nan  # a head of a sample with nothing observed never reaches the formula
    loss = mlloss.get("partition", backend=backend)
    value, grads = loss.value_and_grad(
        to_backend(backend, x), to_backend(backend, y), count=to_backend(backend, count)
    )
    assert to_numpy(backend, value) == 0.0
    for grad in grads:
        assert np.all(to_numpy(backend, grad) == 0.0)
