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

__all__ = ["PLAIN", "abs_kl_plain", "observed", "probability_ce_plain"]
