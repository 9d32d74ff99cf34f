"""sigmoid_bce and bce mean what the frameworks' own losses mean, checked live against them
(inputs without missing labels, which the natives do not know)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from cases import inputs

import mlloss

needs = {
    name: pytest.mark.skipif(not importlib.util.find_spec(name), reason=f"{name} is not installed")
    for name in ("torch", "tensorflow", "keras", "optax")
}
PW = np.array([1.0, 2.0, 0.5, 3.0, 0.0])
CW = np.array([1.0, 0.0, 2.0, 1.0, 0.5])


def _soft_inputs(seed=0, name="sigmoid_bce"):
    return inputs(name, {}, seed=seed, missing=False)


@needs["torch"]
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize(
    "params", [{}, {"pos_weight": PW}, {"class_weight": CW}, {"pos_weight": PW, "class_weight": CW}]
)
def test_sigmoid_bce_is_torch_bce_with_logits(params, reduction):
    import torch

    x, y = _soft_inputs()
    ours = mlloss.get("sigmoid_bce", backend="numpy", reduction=reduction, **params)(x, y)
    theirs = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor(x),
        torch.tensor(y),
        weight=None if "class_weight" not in params else torch.tensor(CW),
        pos_weight=None if "pos_weight" not in params else torch.tensor(PW),
        reduction=reduction,
    )
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12, atol=1e-15)


@needs["tensorflow"]
def test_sigmoid_bce_is_tf_sigmoid_cross_entropy_with_logits():
    import tensorflow as tf

    x, y = _soft_inputs(1)
    theirs = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.constant(y), logits=tf.constant(x))
    ours = mlloss.get("sigmoid_bce", backend="numpy", reduction="none")(x, y)
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12, atol=1e-15)


@needs["optax"]
def test_sigmoid_bce_is_optax_sigmoid_binary_cross_entropy():
    import jax.numpy as jnp
    import optax

    x, y = _soft_inputs(2)
    theirs = optax.sigmoid_binary_cross_entropy(jnp.asarray(x), jnp.asarray(y))
    ours = mlloss.get("sigmoid_bce", backend="numpy", reduction="none")(x, y)
    np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-12, atol=1e-15)


@needs["keras"]
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_label_smoothing_moves_binary_targets_toward_half_as_keras_does(smoothing):
    """Keras averages over the last axis; mlloss's "none" keeps every element."""
    import keras

    x, y = _soft_inputs(3)
    native = keras.losses.BinaryCrossentropy(
        from_logits=True, label_smoothing=smoothing, reduction=None, dtype="float64"
    )
    theirs = keras.ops.convert_to_numpy(native(y, x))
    ours = mlloss.get("sigmoid_bce", reduction="none", label_smoothing=smoothing)(x, y)
    np.testing.assert_allclose(ours.mean(axis=-1), theirs, rtol=1e-12)


@needs["keras"]
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_bce_is_keras_binary_crossentropy_on_probabilities(smoothing):
    import keras

    p, y = _soft_inputs(4, name="bce")
    p[0, 0], p[1, 1] = 1e-12, 1.0 - 1e-12  # inside the clip region, both ends
    native = keras.losses.BinaryCrossentropy(
        label_smoothing=smoothing, reduction=None, dtype="float64"
    )
    theirs = keras.ops.convert_to_numpy(native(y, p))
    ours = mlloss.get(
        "bce", reduction="none", eps=keras.config.epsilon(), label_smoothing=smoothing
    )
    np.testing.assert_allclose(ours(p, y).mean(axis=-1), theirs, rtol=1e-12)


def test_sigmoid_bce_limits_at_infinite_logits():
    x = np.array([[np.inf, -np.inf, np.inf, -np.inf]])
    y = np.array([[1.0, 0.0, 0.0, 1.0]])
    value, grad = mlloss.get("sigmoid_bce", reduction="none").value_and_grad(x, y)
    np.testing.assert_array_equal(value, [[0.0, 0.0, np.inf, np.inf]])
    np.testing.assert_array_equal(grad, [[0.0, 0.0, 1.0, -1.0]])
