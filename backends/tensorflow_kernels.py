"""Fewer passes for two losses on TensorFlow, each used only where it computes the spec.

TensorFlow runs a ``tf.function`` graph op by op on the CPU (nothing fuses element-wise
chains unless XLA is asked for), so the spec's formula costs a pass over the logits per
operation, and its general pieces (masks, the NaN policy, limits at infinite logits) cost
passes of their own. Here:

- ``sparse_softmax_ce`` calls TensorFlow's fused ``SparseSoftmaxCrossEntropyWithLogits``,
  which computes each sample's value and gradient together, exactly the spec's wherever both
  are finite;
- ``sigmoid_bce`` is written in eight element-wise ops forward and three backward (its
  closed-form gradient, where autodiff of TensorFlow's own loss takes about ten), exact for
  every label in [0, 1].

Each checks cheaply whether the batch is in its domain (labels in range, values finite) and
takes the spec's formula for the whole batch when it is not, by ``tf.cond``: only one of the
two runs, in the backward too (the formula's gradient is taken only for such a batch). The
conformance suite checks these kernels through ``mlloss.get``, and tests/test_values_kernels.py
compares them with the formula on ordinary and non-finite inputs, eagerly and inside
``tf.function``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf

from mlloss.losses.binary import smooth_binary

Fast = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor, Callable[[tf.Tensor], tf.Tensor]]]


def _guarded(x: tf.Tensor, fast: Fast, formula: Callable[[tf.Tensor], tf.Tensor]) -> tf.Tensor:
    """``fast(x) -> (values, taken, grad)``: its values where ``taken`` (a boolean scalar),
    else ``formula(x)``'s; the gradient of the one taken. Both choices are one ``tf.cond``,
    so only one side runs, in the forward and in the backward alike (the formula's gradient
    is taken only for a batch that went its way)."""

    @tf.custom_gradient
    def values(logits):
        out, taken, grad = fast(logits)
        out = tf.cond(taken, lambda: out, lambda: formula(logits))

        def backward(g):
            def spec():
                with tf.GradientTape() as tape:
                    tape.watch(logits)
                    again = formula(logits)
                return tape.gradient(again, logits, output_gradients=g)

            return tf.cond(taken, lambda: grad(g), spec)

        return out, backward

    return values(x)


def _sparse(params: Mapping[str, Any], fallback: Callable[..., tf.Tensor]):
    """TensorFlow's ``SparseSoftmaxCrossEntropyWithLogits``: each sample's value and gradient
    in one fused op. Taken when every label is in range and every value finite; an ignored
    sample's logits are replaced by 0 before the op (so they cannot make the batch leave this
    path) and its value and gradient multiplied by 0 (exact: everything is finite there)."""
    if params["label_smoothing"] or params.get("class_weight") is not None:
        return None

    def fn(x, y, mask):
        classes = x.shape[-1]
        if classes == 0:
            return fallback(x, y, mask)
        flat_y = tf.reshape(y, [-1])
        if flat_y.dtype not in (tf.int32, tf.int64):
            flat_y = tf.cast(flat_y, tf.int64)
        width = classes  # the reshape's, static where the graph knows it
        if classes is None:  # a shape known only when the graph runs
            width = tf.shape(x)[-1]
            classes = tf.cast(width, flat_y.dtype)
        in_range = tf.reduce_all((flat_y >= 0) & (flat_y < classes))
        # the op raises for a label out of range: such a batch runs it on clipped labels
        # and takes the formula
        clipped = tf.clip_by_value(flat_y, 0, classes - 1)
        kept = tf.cast(tf.reshape(mask, [-1]), x.dtype)

        flat_mask = tf.reshape(mask, [-1])
        every_sample = tf.reduce_all(flat_mask)

        def fast(logits):
            flat_x = tf.reshape(logits, [-1, width])
            # an ignored sample's logits never reach the op (whatever they are, NaN or inf,
            # the batch stays on this path with the same values for the others)
            flat_x = tf.cond(
                every_sample,
                lambda: flat_x,
                lambda: tf.where(flat_mask[:, None], flat_x, tf.zeros_like(flat_x)),
            )
            loss, backprop = tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(
                features=flat_x, labels=clipped
            )
            taken = in_range & tf.reduce_all(tf.math.is_finite(loss))

            def grad(g):
                scale = tf.reshape(g, [-1]) * kept
                return tf.reshape(scale[:, None] * backprop, tf.shape(logits))

            return tf.reshape(loss * kept, tf.shape(y)), taken, grad

        return _guarded(x, fast, lambda logits: fallback(logits, y, mask))

    return fn


def _dense(params: Mapping[str, Any], fallback: Callable[..., tf.Tensor]):
    """TensorFlow's ``SoftmaxCrossEntropyWithLogits`` on the spec's target distribution q
    divided by its mass n = sum_c q_c: the op gives -sum_c (q_c / n) log softmax_c and
    softmax - q / n, so n times them are the spec's value and gradient (softmax n - q) for any
    mass, 0 included. Taken when no label is missing (the op has no mask) and every value is
    finite."""
    if params.get("class_weight") is not None:
        return None
    from mlloss.backends.tensorflow import ops
    from mlloss.losses.softmax import _distribution
    from mlloss.spec import Prepared

    def fn(x, y, mask):
        classes = x.shape[-1]
        if classes == 0 or classes is None or x.shape.rank != 2:
            return fallback(x, y, mask)
        q = _distribution(ops, Prepared(y, mask, None), params)
        mass = tf.reduce_sum(q, axis=-1)
        share = q / tf.where(mass > 0, mass, tf.ones_like(mass))[:, None]
        observed = tf.reduce_all(mask)

        def fast(logits):
            loss, backprop = tf.raw_ops.SoftmaxCrossEntropyWithLogits(features=logits, labels=share)
            taken = observed & tf.reduce_all(tf.math.is_finite(loss))

            def grad(g):
                return (g * mass)[:, None] * backprop

            return loss * mass, taken, grad

        return _guarded(x, fast, lambda logits: fallback(logits, y, mask))

    return fn


def _sigmoid_bce(params: Mapping[str, Any], fallback: Callable[..., tf.Tensor]):
    """softplus(z) + (r - y) x with r = round(y) and z = x (1 - 2r): the exact per-entry loss
    (for hard labels the second term is 0, and softplus(z) has no cancellation at confident
    logits), in eight element-wise ops, and g (sigmoid(x) - y) as its gradient in three.
    TensorFlow's own loss also composes eight ops, and its autodiff adds about ten more for
    the backward. Taken when every label is in
    [0, 1] (none missing); a NaN or infinite logit needs nothing else (softplus and sigmoid
    give the spec's values and limits, and the correction is 0 where r = y)."""
    if params.get("pos_weight") is not None or params.get("class_weight") is not None:
        return None
    smoothing = params.get("label_smoothing", 0.0)

    def fn(x, y, mask):
        # y is the prepared targets: a missing label's entry is 0 there and False in mask
        in_domain = tf.reduce_all(mask) & (tf.reduce_max(y) <= 1)
        target = smooth_binary(y, smoothing)

        def fast(logits):
            hard = tf.round(target)
            z = logits * (1.0 - 2.0 * hard)
            # 0 where r = y, even at an infinite logit (0 * inf would be NaN)
            correction = tf.math.multiply_no_nan(logits, hard - target)
            values = tf.math.softplus(z) + correction

            def grad(g):
                return g * (tf.math.sigmoid(logits) - target)

            return values, in_domain, grad

        return _guarded(x, fast, lambda logits: fallback(logits, y, mask))

    return fn


KERNELS = {
    "sparse_softmax_ce": _sparse,
    "softmax_ce": _dense,
    "sigmoid_bce": _sigmoid_bce,
}


def values_kernel(
    name: str, params: Mapping[str, Any], fallback: Callable[..., tf.Tensor]
) -> Callable[..., tf.Tensor] | None:
    """``fn(x, y, mask) -> per-sample values`` (NaN policy and masks included), taking
    ``fallback(x, y, mask)`` (the spec's formula) where the fast path does not apply; or None
    when the formula computes these settings."""
    build = KERNELS.get(name)
    return None if build is None else build(params, fallback)


__all__ = ["KERNELS", "values_kernel"]
