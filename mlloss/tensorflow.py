"""mlloss in TensorFlow's idiom: :func:`loss`, a function for custom training loops under
``tf.function`` (and ``jit_compile=True``), and for ``tf.distribute`` strategies.

>>> loss_fn = mlloss.tensorflow.loss("softmax_ce")           # doctest: +SKIP
>>> with tf.GradientTape() as tape:                           # doctest: +SKIP
...     value = loss_fn(model(x), y)

``data_parallel=True`` inside ``strategy.run`` (``MirroredStrategy`` and the like): each
replica returns its shard's sum over the global count (all-reduced across replicas), so that
the gradients, which the optimizer sums across replicas, are the global batch mean's, and the
replicas' values sum to it (``strategy.reduce("SUM", ...)``); see docs/data-parallel.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

import mlloss
from mlloss.loss import require_shardable


def loss(
    name: str,
    /,
    *,
    reduction: str = "mean",
    mean_over_classes: bool = False,
    data_parallel: bool = False,
    **params: Any,
) -> Callable[..., Any]:
    """``fn(logits, targets, **heads)`` on TensorFlow tensors."""
    bound = mlloss.get(
        name,
        backend="tensorflow",
        reduction=reduction,
        mean_over_classes=mean_over_classes,
        **params,
    )
    if data_parallel:
        require_shardable(bound, "data_parallel=True")

    def fn(logits: Any, targets: Any, **heads: Any) -> Any:
        context = tf.distribute.get_replica_context()
        replicas = 1 if context is None else context.num_replicas_in_sync
        if not data_parallel or replicas == 1 or reduction == "none":
            return bound(logits, targets, **heads)
        total, count = bound.sum_and_count(logits, targets, **heads)
        if reduction == "sum":
            return total
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(count))
        return total / tf.where(count > 0, count, tf.ones_like(count))

    fn.__name__ = fn.__qualname__ = bound.name
    fn.__doc__ = f"{bound!r} on TensorFlow tensors: {bound.spec.summary}"
    fn.autograph_info__ = frozenset()  # plain Python: nothing for autograph to convert
    return fn


__all__ = ["loss"]
