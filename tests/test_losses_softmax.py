"""softmax_ce and sparse_softmax_ce mean what the frameworks' own losses mean, checked live."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from cases import inputs

import mlloss

needs = {
    name: pytest.mark.skipif(not importlib.util.find_spec(name), reason=f"{name} is not installed")
    for name in ("torch", "tensorflow", "optax")
}
CW = np.array([1.0, 2.0, 0.5, 1.0, 3.0])


def _distribution_inputs(seed=0):
    x, y = inputs("softmax_ce", {}, seed=seed, missing=False)
    y[:, 0] += 0.1  # no row without mass
    return x, y / y.sum(axis=-1, keepdims=True)


@needs["torch"]
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("params", [{}, {"label_smoothing": 0.2}, {"class_weight": CW}])
def test_softmax_ce_is_torch_cross_entropy_with_probabilities(params, reduction):
    import torch

    x, y = _distribution_inputs()
    theirs = torch.nn.functional.cross_entropy(
        torch.tensor(x),
        torch.tensor(y),
        weight=torch.tensor(CW) if "class_weight" in params else None,
        label_smoothing=params.get("label_smoothing", 0.0),
        reduction=reduction,
    )
    ours = mlloss.get("softmax_ce", reduction=reduction, **params)(x, y)
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12)


@needs["torch"]
def test_normalize_targets_divides_a_multi_hot_row_by_its_count():
    """The question's answer 2: a multi-hot row made a distribution before softmax CE."""
    import torch

    x, y = inputs("softmax_ce", {}, seed=1, missing=False)
    y = (y > 0.5).astype(np.float64)
    y[0] = 0.0  # a row with no label stays zero: loss 0
    ours = mlloss.get("softmax_ce", reduction="none", normalize_targets=True)(x, y)
    counts = y.sum(axis=-1, keepdims=True)
    theirs = torch.nn.functional.cross_entropy(
        torch.tensor(x), torch.tensor(y / np.maximum(counts, 1)), reduction="none"
    )
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12)
    assert ours[0] == 0.0


@needs["tensorflow"]
def test_softmax_ce_is_tf_softmax_cross_entropy_with_logits():
    import tensorflow as tf

    x, y = _distribution_inputs(2)
    theirs = tf.nn.softmax_cross_entropy_with_logits(labels=tf.constant(y), logits=tf.constant(x))
    ours = mlloss.get("softmax_ce", reduction="none")(x, y)
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12)


@needs["optax"]
def test_softmax_ce_is_optax_softmax_cross_entropy():
    import jax.numpy as jnp
    import optax

    x, y = _distribution_inputs(3)
    theirs = optax.softmax_cross_entropy(jnp.asarray(x), jnp.asarray(y))
    ours = mlloss.get("softmax_ce", reduction="none")(x, y)
    np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-12)


def test_missing_labels_leave_their_class_out_of_the_softmax():
    x, y = _distribution_inputs(4)
    y_missing = y.copy()
    y_missing[:, 2] = -1.0
    ours = mlloss.get("softmax_ce", reduction="none")(x, y_missing)
    kept = [0, 1, 3, 4]
    expected = mlloss.get("softmax_ce", reduction="none")(x[:, kept], y[:, kept])
    np.testing.assert_allclose(ours, expected, rtol=1e-14)


@needs["torch"]
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"label_smoothing": 0.1},
        {"class_weight": CW},
        {"class_weight": CW, "label_smoothing": 0.3, "ignore_index": 2},
    ],
)
def test_sparse_softmax_ce_is_torch_cross_entropy_with_indices(params):
    import torch

    x, y = inputs("sparse_softmax_ce", params, seed=5)
    theirs = torch.nn.functional.cross_entropy(
        torch.tensor(x),
        torch.tensor(y),
        weight=torch.tensor(CW) if "class_weight" in params else None,
        ignore_index=params.get("ignore_index", -100),
        label_smoothing=params.get("label_smoothing", 0.0),
        reduction="none",
    )
    ours = mlloss.get("sparse_softmax_ce", reduction="none", **params)(x, y)
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12, atol=1e-15)
    # the mean leaves ignored samples out of the count (torch's unweighted mean does too)
    if "class_weight" not in params:
        mean = torch.nn.functional.cross_entropy(
            torch.tensor(x),
            torch.tensor(y),
            ignore_index=params.get("ignore_index", -100),
            label_smoothing=params.get("label_smoothing", 0.0),
        )
        ours_mean = mlloss.get("sparse_softmax_ce", **params)(x, y)
        np.testing.assert_allclose(ours_mean, mean.numpy(), rtol=1e-12)


@needs["tensorflow"]
def test_sparse_softmax_ce_is_tf_sparse_softmax_cross_entropy_with_logits():
    import tensorflow as tf

    x, y = inputs("sparse_softmax_ce", {}, seed=6, missing=False)
    theirs = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.constant(y), logits=tf.constant(x)
    )
    ours = mlloss.get("sparse_softmax_ce", reduction="none")(x, y)
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12)


@needs["optax"]
def test_sparse_softmax_ce_is_optax_with_integer_labels():
    import jax.numpy as jnp
    import optax

    x, y = inputs("sparse_softmax_ce", {}, seed=7, missing=False)
    theirs = optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(x), jnp.asarray(y))
    ours = mlloss.get("sparse_softmax_ce", reduction="none")(x, y)
    np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-12)
