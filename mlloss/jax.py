"""mlloss in JAX's idiom: :func:`loss`, a pure function for ``jax.jit``, ``jax.vmap``,
``jax.grad`` and optax training loops.

>>> loss_fn = mlloss.jax.loss("sigmoid_bce")                # doctest: +SKIP
>>> grads = jax.grad(lambda w: loss_fn(x @ w, y))(w)          # doctest: +SKIP

Under ``jax.jit`` with the batch sharded over devices the loss is the global batch's: XLA
computes the mean over the whole (global) array, counts included; nothing to add. Under
``shard_map`` or ``pmap``, where each device sees its shard, use
``mlloss.get(...).sum_and_count`` and ``jax.lax.psum`` both parts (docs/data-parallel.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlloss


def loss(
    name: str, /, *, reduction: str = "mean", mean_over_classes: bool = False, **params: Any
) -> Callable[..., Any]:
    """``fn(logits, targets, **heads)``: the loss on JAX arrays, a pure function (no state, no
    side effects; target values are checked where they can be read: eagerly, and under
    ``jit`` when they are a constant the function closes over)."""
    bound = mlloss.get(
        name, backend="jax", reduction=reduction, mean_over_classes=mean_over_classes, **params
    )

    def fn(logits: Any, targets: Any, **heads: Any) -> Any:
        return bound(logits, targets, **heads)

    fn.__name__ = fn.__qualname__ = bound.name
    fn.__doc__ = f"{bound!r} on JAX arrays: {bound.spec.summary}"
    return fn


__all__ = ["loss"]
