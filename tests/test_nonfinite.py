"""The non-finite policy, the same on every backend: NaN in gives NaN out in the same places;
+-inf logits give the mathematical limit where one exists. (The conformance suite checks both
for every loss, dtype and device: its 'nan', 'infinite', 'extreme_1e4' and 'near_float16_max'
cases; these are the policy's examples, stated as tests.)"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import backend_params, to_backend, to_numpy

import mlloss

INF = np.inf


@pytest.mark.parametrize("backend", backend_params())
def test_sigmoid_bce_limits_at_infinity(backend):
    x = np.array([[INF, -INF, INF, -INF]])
    y = np.array([[1.0, 1.0, 0.0, 0.0]])
    loss = mlloss.get("sigmoid_bce", backend=backend, reduction="none")
    value, grad = loss.value_and_grad(to_backend(backend, x), to_backend(backend, y))
    # +inf with label 1: 0, gradient 0; -inf with label 1: +inf, gradient -1 (the limit)
    np.testing.assert_array_equal(to_numpy(backend, value), [[0.0, INF, INF, 0.0]])
    np.testing.assert_array_equal(to_numpy(backend, grad), [[0.0, -1.0, 1.0, 0.0]])


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("name", ["sigmoid_bce", "focal", "asl", "softmax_ce", "zlpr"])
def test_nan_in_nan_out_in_the_same_places(name, backend):
    x = np.array([[0.5, np.nan, -1.0], [2.0, 0.0, 1.0]])
    y = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    loss = mlloss.get(name, backend=backend, reduction="none")
    value, grad = loss.value_and_grad(to_backend(backend, x), to_backend(backend, y))
    value, grad = to_numpy(backend, value), to_numpy(backend, grad)
    if mlloss.spec(name).per == "element":
        np.testing.assert_array_equal(np.isnan(value), np.isnan(x))
        np.testing.assert_array_equal(np.isnan(grad), np.isnan(x))
    else:  # one value per sample: the NaN sample is NaN, with its whole gradient row
        np.testing.assert_array_equal(np.isnan(value), [True, False])
        np.testing.assert_array_equal(np.isnan(grad), [[True] * 3, [False] * 3])


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize(("dtype", "scale"), [("float64", 1e4), ("float32", 1e4), ("float16", 6e4)])
def test_large_finite_logits_give_finite_values_and_gradients(backend, dtype, scale):
    """Finite wherever the exact value, rounded to the dtype, is finite (a cross-entropy of
    1.2e5 is beyond float16's largest, 65504, and is inf there, as it must be)."""
    x = np.array([[scale, -scale, scale / 2], [-scale, scale, 0.0]])
    y = np.array([[1.0, 0.0, 0.3], [1.0, 0.0, 1.0]])
    x = x.astype(dtype).astype(np.float64)  # the inputs as the dtype holds them
    for name in ("sigmoid_bce", "focal", "asl", "hill", "softmax_ce", "zlpr", "lsep"):
        reference = mlloss.get(name, backend="numpy", reduction="none")
        exact, exact_grad = reference.value_and_grad(x, y)
        loss = mlloss.get(name, backend=backend, reduction="none")
        value, grad = loss.value_and_grad(
            to_backend(backend, x, dtype), to_backend(backend, y, dtype)
        )
        representable = np.isfinite(exact.astype(dtype))
        assert np.array_equal(np.isfinite(to_numpy(backend, value)), representable), (name, dtype)
        assert np.isfinite(exact_grad).all()
        assert np.isfinite(to_numpy(backend, grad)).all(), (name, dtype)
