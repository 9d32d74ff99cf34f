"""Fused values for the softmax cross-entropies (and poly1) on JAX, proved equal to their specs.

Under ``jax.jit`` the spec's formula already compiles into fused loops, but its general
pieces (a ``log_softmax`` with limits for infinite rows, a one-hot target, the NaN policy's
own pass over the logits, a backward that computes the softmax again) cost several passes
more than the frameworks' own cross-entropy. These kernels compute the same per-sample values
from two reductions of the logits and a gather, and their backward is one element-wise pass:

- the exponentials ``e = exp(x - m)`` (``m`` the row maximum) are computed once, and the
  backward keeps them in place of the logits (the same bytes; the frameworks' own losses keep
  them too), with one sum per sample and the targets;
- the value is a sum of non-negative terms, ``log sum exp(z) - sum_c q_c z_c`` with
  ``z = x - m <= 0``, so nothing cancels: where a sample is predicted confidently its value
  has the digits of ``log sum exp(z)``, as the formula's ``log_softmax`` has;
- the spec's edge cases come out of the same formula: a row holding a NaN has a NaN value
  and gradient (the maximum propagates it, so the NaN policy needs no pass of its own), a row
  whose maximum is ``+inf`` (or that is all ``-inf``) takes the spec's limits (the ``k``
  entries equal to the maximum share the softmax), and masked classes or ignored samples add
  nothing.

The dense cross-entropy's formula is written once over the backend's ops
(backends/softmax_math.py): TensorFlow's XLA kernels compute the same one.

The spec stays the definition: the conformance suite checks these kernels through
``mlloss.get`` like any other path, and tests/test_values_kernels.py compares each with the
path it replaces (the formula with its closed-form backward) on ordinary and non-finite
inputs, and with autodiff of the formula away from the edges.

A kernel has the signature of the loss's fused function, ``fn(x, y, mask) -> per-sample
values``, for losses with no per-class weights and no extra heads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from mlloss.backends import softmax_math
from mlloss.losses.softmax import POLY1_CROSS_ENTROPY, _distribution
from mlloss.spec import Prepared


def _ops() -> Any:
    from mlloss.backends.jax import ops

    return ops


def _sparse(params: Mapping[str, Any]) -> Callable[..., jax.Array]:
    """-sum_c q_c log softmax(x)_c with q = (1 - s) onehot(y) + s / C, 0 for ignored samples;
    an unvalidated index outside [0, C) has an all-zero one-hot, as in the spec."""
    s = float(params["label_smoothing"])

    ops = _ops()

    def value(x, y, mask, m, total):
        classes = x.shape[-1]
        valid = ((y >= 0) & (y < classes))[..., None]
        picked = jnp.take_along_axis(x, jnp.clip(y, 0, classes - 1)[..., None], axis=-1)
        z_mean = jnp.mean(softmax_math.shifted(ops, x, m), axis=-1, keepdims=True) if s else None
        at_label = softmax_math.shifted(ops, picked, m)
        loss = softmax_math.sparse_value(ops, jnp.log(total), at_label, z_mean, valid, s)
        return jnp.where(mask, loss[..., 0], 0.0)

    def forward(x, y, mask):
        m, _, e, total = softmax_math.exp_shifted(ops, x)
        return value(x, y, mask, m, total), (e, total, y, mask)

    @jax.custom_vjp
    def fn(x, y, mask):
        return forward(x, y, mask)[0]

    def backward(res, g):
        e, total, y, mask = res
        classes = e.shape[-1]
        valid = ((y >= 0) & (y < classes))[..., None]
        hit = y[..., None] == jnp.arange(classes)
        local = softmax_math.sparse_grad(ops, e, total, hit, valid, s)
        return jnp.where(mask[..., None], g[..., None] * local, 0.0), None, None

    fn.defvjp(forward, backward)
    return fn


def _dense(params: Mapping[str, Any], epsilon: float = 0.0) -> Callable[..., jax.Array]:
    """-sum_c q_c log softmax(x)_c over the observed classes, q the spec's own distribution
    (normalized and smoothed as asked); with ``epsilon`` (poly1, q = y) plus
    epsilon (sum_c q_c - p_t), p_t = sum_c q_c softmax_c (backends/softmax_math.py)."""
    ops = _ops()

    def target(y, mask):
        return _distribution(ops, Prepared(y, mask, None), params)

    def forward(x, y, mask):
        values, parts, _ = softmax_math.dense(ops, x, target(y, mask), mask, epsilon)
        return values, (parts, y, mask)

    @jax.custom_vjp
    def fn(x, y, mask):
        return forward(x, y, mask)[0]

    def backward(res, g):
        parts, y, mask = res
        local = softmax_math.dense_grad(parts, target(y, mask), epsilon)
        return g[..., None] * local, None, None

    fn.defvjp(forward, backward)
    return fn


def _poly1(params: Mapping[str, Any]) -> Callable[..., jax.Array]:
    return _dense(POLY1_CROSS_ENTROPY, float(params["epsilon"]))


def _unweighted(params: Mapping[str, Any]) -> bool:
    return params.get("class_weight") is None


KERNELS: dict[str, tuple[Callable[..., Callable[..., jax.Array]], Callable[..., bool]]] = {
    "sparse_softmax_ce": (_sparse, _unweighted),
    "softmax_ce": (_dense, _unweighted),
    "poly1": (_poly1, lambda params: True),
}


def values_kernel(name: str, params: Mapping[str, Any]) -> Callable[..., jax.Array] | None:
    """``fn(x, y, mask) -> per-sample values`` (NaN policy included) for this loss and these
    settings, or None when the spec's formula computes it."""
    found = KERNELS.get(name)
    if found is None or not found[1](params):
        return None
    return found[0](params)


__all__ = ["KERNELS", "values_kernel"]
