"""TensorFlow's own fused sparse softmax cross-entropy, used where it computes the spec.

TensorFlow runs a ``tf.function`` graph op by op on the CPU (nothing fuses element-wise
chains unless XLA is asked for), so the spec's formula costs a pass over the logits per
operation. TensorFlow has one fused kernel for this loss,
``SparseSoftmaxCrossEntropyWithLogits``, which computes each sample's value and its gradient
together. It computes exactly the spec's value and gradient wherever both are finite, so the
kernel here calls it and takes the spec's formula for the whole batch when they are not:

- a label out of range (the op would raise) or a non-finite value (a NaN or infinite logit,
  which the spec gives a NaN or its limit) sends the batch to the formula, chosen by
  ``tf.cond`` so only one of the two runs (in the backward too: the formula's gradient is
  taken there only for such a batch);
- ignored samples (``ignore_index``) add nothing: their values and gradients are multiplied
  by 0, which is exact because on this path every value is finite;
- label smoothing is not what the op computes: those settings take the formula.

The conformance suite checks this kernel through ``mlloss.get``, and
tests/test_tensorflow_kernels.py compares it with the formula on ordinary and non-finite
inputs, eagerly and inside ``tf.function``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf


def _sparse(params: Mapping[str, Any], fallback: Callable[..., tf.Tensor]):
    if params["label_smoothing"] or params.get("class_weight") is not None:
        return None

    def fn(x, y, mask):
        classes = x.shape[-1]
        if classes == 0:
            return fallback(x, y, mask)
        flat_y = tf.reshape(y, [-1])
        if flat_y.dtype not in (tf.int32, tf.int64):
            flat_y = tf.cast(flat_y, tf.int64)
        if classes is None:  # a shape known only when the graph runs
            classes = tf.cast(tf.shape(x)[-1], flat_y.dtype)
        flat_x = tf.reshape(x, tf.stack([-1, tf.cast(classes, tf.int32)]))
        in_range = tf.reduce_all((flat_y >= 0) & (flat_y < classes))
        # the op raises for a label out of range: such a batch runs it on clipped labels
        # and takes the formula
        clipped = tf.clip_by_value(flat_y, 0, classes - 1)
        kept = tf.cast(tf.reshape(mask, [-1]), x.dtype)

        @tf.custom_gradient
        def values(logits):
            loss, backprop = tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(
                features=flat_x, labels=clipped
            )
            finite = in_range & tf.reduce_all(tf.math.is_finite(loss))
            out = tf.cond(
                finite,
                lambda: tf.reshape(loss * kept, tf.shape(y)),
                lambda: fallback(logits, y, mask),
            )

            def grad(g):
                def fast():
                    scale = tf.reshape(g, [-1]) * kept
                    return tf.reshape(scale[:, None] * backprop, tf.shape(logits))

                def formula():  # the spec's own backward, run only for this batch
                    with tf.GradientTape() as tape:
                        tape.watch(logits)
                        again = fallback(logits, y, mask)
                    return tape.gradient(again, logits, output_gradients=g)

                return tf.cond(finite, fast, formula)

            return out, grad

        return values(x)

    return fn


KERNELS = {"sparse_softmax_ce": _sparse}


def values_kernel(
    name: str, params: Mapping[str, Any], fallback: Callable[..., tf.Tensor]
) -> Callable[..., tf.Tensor] | None:
    """``fn(x, y, mask) -> per-sample values`` (NaN policy and masks included), taking
    ``fallback(x, y, mask)`` (the spec's formula) where the fast path does not apply; or None
    when the formula computes these settings."""
    build = KERNELS.get(name)
    return None if build is None else build(params, fallback)


__all__ = ["KERNELS", "values_kernel"]
