"""probability_ce's and abs_kl's value and gradient for targets with no label missing, written
once over a backend's ops for the compiled whole-loss kernels (JAX's ``jit``, jax_kernels;
TensorFlow's XLA, tensorflow_kernels), beside backends/binary_math.py.

Both take probabilities and targets in [0, 1] (soft ones included). Where every target is
observed (none negative, none NaN) and every probability finite, the spec's masks and its NaN
policy change nothing, and what is left is a clip, a log or two and one row sum:

- probability_ce: ``-sum_c y'_c log clip(u_c, eps, 1 - eps)``, ``u = x / S`` (S the row's sum,
  1 where it is not positive), ``y' = y (1 - s) + s / C``; the derivative
  ``(sum_c y'_c m_c - y'_j m_j / q_j) / S`` with m where the clip passes u (there ``q = u``);
- abs_kl: ``sum_c (P - Q)(log P - log Q)``, ``P = max(y, eps)``, ``Q = max(x, eps)``; the
  derivative ``log Q - log P + 1 - P / Q`` where ``x >= eps``, 0 below.

Values are per row, shaped (..., 1). The caller checks the batch (:func:`observed`) and takes
the spec's path for any batch that is not.

sparse_probability_ce (class indices, ``INDEX_PLAIN``) is ``log S - log q_y`` with
``q = clip(x, eps, 1 - eps)`` and ``S`` its row's sum, where every index is a class
(:func:`indices_in_range`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mlloss.losses.binary import clip_bounds

Plain = Callable[[Any, Any], tuple[Any, Any]]


def observed(ops: Any, x: Any, y: Any) -> Any:
    """Whether every target is observed (not negative, not NaN) and every probability finite,
    as a 0-d boolean: one sum of non-negative terms (0 x and 0 y are NaN for a NaN or an
    infinity), 0 exactly then."""
    return ops.sum(ops.maximum(-y, 0.0) + 0.0 * y + 0.0 * x) == 0.0


def probability_ce_plain(ops: Any, x: Any, y: Any, params: Mapping[str, Any]) -> tuple[Any, Any]:
    lo, hi = clip_bounds(ops, x, params)
    s = float(params["label_smoothing"])
    target = y if not s else y * (1.0 - s) + s / x.shape[-1]
    row = ops.sum(x, axis=-1, keepdims=True)
    row = ops.where(row > 0, row, 1.0)
    u = x / row
    q = ops.clip(u, lo, hi)
    values = -ops.sum(target * ops.log(q), axis=-1, keepdims=True)
    weighted = ops.where(q == u, target, 0.0)  # y' m
    local = (ops.sum(weighted, axis=-1, keepdims=True) - weighted / q) / row
    return values, local


def abs_kl_plain(ops: Any, x: Any, y: Any, params: Mapping[str, Any]) -> tuple[Any, Any]:
    eps = ops.scalar(params["eps"], x)
    target = ops.maximum(y, eps)
    q = ops.maximum(x, eps)
    log_ratio = ops.log(q) - ops.log(target)
    values = ops.sum((q - target) * log_ratio, axis=-1, keepdims=True)
    local = ops.where(x < eps, 0.0, log_ratio + 1.0 - target / q)
    return values, local


def sparse_probability_ce_plain(
    ops: Any, x: Any, y: Any, params: Mapping[str, Any]
) -> tuple[Any, Any]:
    """sparse_probability_ce for class indices ``y`` all in [0, C) (:func:`indices_in_range`):
    ``log S - log q_y``, ``q = clip(x, eps, 1 - eps)``, ``S = sum_c q_c``; the derivative
    ``1 / S - [j = y] / q_j`` where the clip passes x, 0 outside."""
    lo, hi = clip_bounds(ops, x, params)
    q = ops.clip(x, lo, hi)
    one_hot = ops.one_hot(y, ops.shape(x)[-1], ops.dtype_name(x))
    total = ops.sum(q, axis=-1, keepdims=True)
    picked = ops.sum(one_hot * q, axis=-1, keepdims=True)
    values = ops.log(total) - ops.log(picked)
    inside = ~((x < lo) | (x > hi))  # the spec's closed interval (NaN stays inside)
    local = ops.where(inside, 1.0 / total - one_hot / q, 0.0)
    return values, local


def indices_in_range(ops: Any, x: Any, y: Any) -> Any:
    """Whether every class index is in [0, C) (none ignored: the plain form takes ignore_index
    outside that range only) and every probability finite, as a 0-d boolean."""
    outside = ops.any((y < 0) | (y >= ops.shape(x)[-1]))
    return ~outside & (ops.sum(0.0 * x) == 0.0)


def _sparse_probability_ce(ops: Any, params: Mapping[str, Any]) -> Plain | None:
    """None without a clip (eps = 0: a log of 0) or with an ignore_index that may be a class."""
    if params["eps"] <= 0.0 or params["ignore_index"] >= 0:
        return None
    return lambda x, y: sparse_probability_ce_plain(ops, x, y, params)


def _probability_ce(ops: Any, params: Mapping[str, Any]) -> Plain | None:
    """None without a clip (eps = 0: a log of 0) or with class weights."""
    if params["eps"] <= 0.0 or params.get("class_weight") is not None:
        return None
    return lambda x, y: probability_ce_plain(ops, x, y, params)


#: ``PLAIN[name](ops, params) -> plain(x, y) -> (values shaped (..., 1), gradient)`` where
#: :func:`observed` holds
PLAIN: dict[str, Callable[[Any, Mapping[str, Any]], Plain | None]] = {
    "probability_ce": _probability_ce,
    "abs_kl": lambda ops, params: lambda x, y: abs_kl_plain(ops, x, y, params),
}

#: the same for class indices: ``INDEX_PLAIN[name](ops, params) -> plain(x, y)`` with ``y`` of
#: shape (...,), where :func:`indices_in_range` holds (JAX's whole-loss kernels)
INDEX_PLAIN: dict[str, Callable[[Any, Mapping[str, Any]], Plain | None]] = {
    "sparse_probability_ce": _sparse_probability_ce,
}

__all__ = [
    "INDEX_PLAIN",
    "PLAIN",
    "abs_kl_plain",
    "indices_in_range",
    "observed",
    "probability_ce_plain",
    "sparse_probability_ce_plain",
]
