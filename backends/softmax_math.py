"""The softmax cross-entropy's per-sample value and gradient from one pass of exponentials,
written once over a backend's ops for the compiled kernels (JAX's ``jit``, TensorFlow's XLA).

For logits ``x`` and target mass ``q`` over the observed classes, with ``m`` the row maximum,
``z = x - m <= 0``, ``e = exp(z)`` and ``S = sum e``:

- value ``log(S) sum q - sum q z``: a sum of non-negative terms, so nothing cancels (where a
  sample is predicted confidently the value keeps the digits of ``log S``, as the formula's
  ``log_softmax`` does); poly1 adds ``epsilon (sum q - p_t)``, ``p_t = sum q e / S``;
- gradient of the value ``e (sum q) / S - q``; poly1's is
  ``softmax (sum q + epsilon p_t - epsilon q) - q``.

Two forms of the same formula:

- *plain* (``mask`` None): no logit infinite and every label observed. Nothing is masked,
  so a compiler's loops carry no selects; the caller checks the batch (from the row maxima
  this returns, and the row minima) and takes the general form for any batch that is not.
- *general*: the spec's edge cases come out of it: a row holding a NaN has a NaN value and
  gradient (the maximum propagates it, so the NaN policy needs no pass of its own), a row
  whose maximum is ``+inf`` (or that is all ``-inf``) takes the spec's limits (the ``k``
  entries equal to the maximum share the softmax), and masked classes add nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

INF = float("inf")


class Parts(NamedTuple):
    """What the gradient needs besides the targets, each reduced value shaped (..., 1)."""

    e: Any
    total: Any
    mass: Any
    p_t: Any  # None without poly1's epsilon


def shifted(ops: Any, x: Any, m: Any) -> Any:
    """``x - m`` for the row maximum ``m``, or where ``m`` is infinite (``+inf``, or ``-inf``
    for a row with nothing observed) its limit: 0 at the entries equal to ``m``, ``-inf``
    elsewhere. A NaN maximum takes the ordinary path (NaN out)."""
    infinite = ops.abs(m) == INF
    limit = ops.where(x == m, ops.zeros_like(x), -INF)
    return ops.where(infinite, limit, x - ops.where(infinite, 0.0, m))


def exp_shifted(ops: Any, x: Any) -> tuple[Any, Any, Any, Any]:
    """(m, z, e, S) of the general form: the row maximum, ``z`` (with the limits of
    :func:`shifted`), ``e = exp(z)`` and ``S = sum e``."""
    m = ops.max(x, axis=-1, keepdims=True)
    z = shifted(ops, x, m)
    e = ops.exp(z)
    return m, z, e, ops.sum(e, axis=-1, keepdims=True)


def dense(
    ops: Any, x: Any, q: Any, mask: Any, epsilon: float = 0.0, limits: bool = False
) -> tuple[Any, Parts, Any]:
    """``(values, parts, m)``: each sample's value, what :func:`dense_grad` needs, and the row
    maxima of the (observed) logits, shaped (..., 1). The plain form (``mask`` None) is the
    formula where no logit is infinite; a row holding a NaN has NaN ``z``, and so a NaN value
    and gradient, in either form. ``limits`` with ``mask`` None: the general form with every
    class observed (infinite logits take the spec's limits, and no select masks a class)."""
    if mask is None and not limits:
        m = ops.max(x, axis=-1, keepdims=True)
        z = x - m
        e = ops.exp(z)
        total = ops.sum(e, axis=-1, keepdims=True)
        cross = ops.sum(q * z, axis=-1, keepdims=True)
    else:
        m, z, e, total = exp_shifted(ops, x if mask is None else ops.where(mask, x, -INF))
        cross = ops.sum(ops.xmul(q, z), axis=-1, keepdims=True)
    mass = ops.sum(q, axis=-1, keepdims=True)
    value = ops.log(total) * mass - cross
    p_t = None
    if epsilon:
        p_t = ops.sum(q * e, axis=-1, keepdims=True) / total
        value = value + epsilon * (mass - p_t)
    return value[..., 0], Parts(e, total, mass, p_t), m


def dense_grad(parts: Parts, q: Any, epsilon: float = 0.0) -> Any:
    """The gradient of each sample's value with respect to its logits."""
    e, total, mass, p_t = parts
    if epsilon:  # softmax (n + eps p_t - eps q) - q
        return (e / total) * (mass + epsilon * p_t - epsilon * q) - q
    return e * (mass / total) - q


def sparse_value(ops: Any, log_total: Any, at_label: Any, z_mean: Any, valid: Any, s: float) -> Any:
    """The sparse cross-entropy against ``(1 - s) onehot(y) + s / C``:
    ``(1 - s)(log S - z_y) + s (log S - mean z)``, ``z_y`` the label's shifted logit; an
    index outside [0, C) (``valid`` False) has an all-zero one-hot, as in the spec, and keeps
    only ``0 log S`` of the first term (a NaN row stays NaN). Shapes (..., 1)."""
    loss = (1.0 - s) * ops.where(valid, log_total - at_label, 0.0 * log_total)
    if s:
        loss = loss + s * (log_total - z_mean)
    return loss


def sparse_grad(ops: Any, e: Any, total: Any, hit: Any, valid: Any, s: float) -> Any:
    """The gradient of :func:`sparse_value` with respect to the logits: the softmax times the
    target mass (1, or ``s`` for an index out of range) less the target; ``hit`` is where a
    class is the sample's label."""
    dtype = ops.dtype_name(e)
    mass = (1.0 - s) * ops.cast(valid, dtype) + s
    classes = ops.shape(e)[-1]
    return e * (mass / total) - (1.0 - s) * ops.cast(hit, dtype) - s / classes


def dense_plain(ops: Any, x: Any, y: Any, params: Mapping[str, Any]) -> tuple[Any, Any]:
    """softmax_ce's ``(values shaped (..., 1), gradient)`` for a whole-loss kernel where every
    target is observed (:func:`observed`): the general form, its limits for infinite logits
    and its NaN out for a NaN one kept, with no mask; the target distribution is the spec's
    (mlloss/losses/softmax.py ``_distribution``) with every class observed, so smoothing
    spreads ``s / C``."""
    q = y
    if params["normalize_targets"]:
        n = ops.sum(q, axis=-1, keepdims=True)
        q = q / ops.where(n > 0, n, 1.0)  # a row with no label stays all zero
    s = float(params["label_smoothing"])
    if s:
        q = q * (1.0 - s) + s / ops.shape(x)[-1]
    values, parts, _ = dense(ops, x, q, None, limits=True)
    return values[..., None], dense_grad(parts, q)


def observed(ops: Any, x: Any, y: Any) -> Any:
    """Whether every target is observed (none negative) and none NaN, as a 0-d boolean: one
    sum of non-negative terms over the targets alone (``0 y`` is NaN for a NaN or an
    infinity), 0 exactly then. The logits need no check: :func:`dense_plain` keeps the
    spec's limits."""
    return ops.sum(ops.maximum(-y, 0.0) + 0.0 * y) == 0.0


def _softmax_ce(ops: Any, params: Mapping[str, Any]) -> Callable[[Any, Any], Any] | None:
    """None with class weights."""
    if params.get("class_weight") is not None:
        return None
    return lambda x, y: dense_plain(ops, x, y, params)


#: the softmax losses with a plain form for whole-loss kernels (JAX's, backends/jax_kernels.py;
#: TensorFlow's XLA kernels compute softmax_ce through :func:`dense` themselves), holding
#: where :func:`observed` does. (poly1 keeps JAX's values kernel: whole, its runs measured
#: 0.6x-1.3x optax against 0.9x-1.0x, with a third more peak memory.)
PLAIN: dict[str, Callable[[Any, Mapping[str, Any]], Any]] = {"softmax_ce": _softmax_ce}


__all__ = [
    "PLAIN",
    "Parts",
    "dense",
    "dense_grad",
    "dense_plain",
    "exp_shifted",
    "observed",
    "shifted",
    "sparse_grad",
    "sparse_value",
]
