"""The two reductions natives need: ``mean_over_classes`` (Keras's mean over the last axis)
and ``reduction="weighted_mean"`` (torch's weighted mean for class indices), on every backend,
against references computed here from the unreduced values."""

from __future__ import annotations

import numpy as np
import pytest
from cases import inputs
from conftest import backend_params, to_backend, to_numpy

import mlloss

ELEMENT_LOSSES = [n for n in mlloss.names() if mlloss.spec(n).per == "element"]


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("name", ELEMENT_LOSSES)
def test_mean_over_classes_is_each_samples_mean_over_its_observed_classes(name, reduction):
    x, y = inputs(name, {}, seed=4)  # one missing label, and a row with every label missing
    unreduced = mlloss.get(name, "numpy", "none")(x, y)
    observed = (y >= 0).sum(axis=-1)
    per_sample = unreduced.sum(axis=-1) / np.maximum(observed, 1)
    expected = {
        "none": per_sample,
        "sum": per_sample.sum(),
        "mean": per_sample.sum() / (observed > 0).sum(),
    }[reduction]
    loss = mlloss.get(name, "numpy", reduction, mean_over_classes=True)
    np.testing.assert_allclose(loss(x, y), expected, rtol=1e-13)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_mean_over_classes_gradient_on_every_backend(backend, reduction):
    """NumPy's closed form (its own chain through the per-sample mean) against each
    framework's autodiff through the fused loss, and against finite differences."""
    x, y = inputs("focal", {}, seed=5)
    loss = mlloss.get("focal", backend, reduction, mean_over_classes=True, label_smoothing=0.1)
    value, grad = loss.value_and_grad(to_backend(backend, x), to_backend(backend, y))
    reference = mlloss.get("focal", "numpy", reduction, mean_over_classes=True, label_smoothing=0.1)

    def total(v):
        return float(np.sum(reference(v, y)))

    numeric = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = 1e-6
        numeric[index] = (total(x + step) - total(x - step)) / 2e-6
    np.testing.assert_allclose(to_numpy(backend, value), reference(x, y), rtol=1e-12)
    np.testing.assert_allclose(to_numpy(backend, grad), numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_weighted_mean_divides_by_the_targets_class_weights(backend, smoothing):
    x, y = inputs("sparse_softmax_ce", {"ignore_index": -1}, seed=6)
    weight = np.array([1.0, 2.0, 0.5, 0.25, 3.0])
    params = {"class_weight": weight, "ignore_index": -1, "label_smoothing": smoothing}
    unreduced = mlloss.get("sparse_softmax_ce", "numpy", "none", **params)(x, y)
    counted = y != -1
    expected = unreduced.sum() / weight[y[counted]].sum()
    loss = mlloss.get("sparse_softmax_ce", backend, "weighted_mean", **params)
    value, grad = loss.value_and_grad(to_backend(backend, x), to_backend(backend, y))
    np.testing.assert_allclose(to_numpy(backend, value), expected, rtol=1e-13)
    sum_grad = mlloss.get("sparse_softmax_ce", "numpy", "sum", **params).value_and_grad(x, y)[1]
    np.testing.assert_allclose(
        to_numpy(backend, grad), sum_grad / weight[y[counted]].sum(), rtol=1e-12, atol=1e-15
    )


def test_weighted_mean_without_weights_is_the_mean():
    x, y = inputs("sparse_softmax_ce", {}, seed=7)
    weighted = mlloss.get("sparse_softmax_ce", "numpy", "weighted_mean")(x, y)
    assert weighted == mlloss.get("sparse_softmax_ce", "numpy", "mean")(x, y)


def test_weighted_mean_with_nothing_counted_is_zero():
    x = np.zeros((2, 3))
    y = np.array([-100, -100])
    weight = np.array([1.0, 2.0, 3.0])
    loss = mlloss.get("sparse_softmax_ce", "numpy", "weighted_mean", class_weight=weight)
    assert loss(x, y) == 0.0


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("softmax_ce", {"mean_over_classes": True}, r"softmax_ce: mean_over_classes expects an "),
        ("sigmoid_bce", {"mean_over_classes": 1}, r"mean_over_classes expects True or False"),
        ("sigmoid_bce", {"reduction": "weighted_mean"}, r"'weighted_mean' expects a loss on class"),
    ],
)
def test_reduction_errors(name, kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        mlloss.get(name, **kwargs)
