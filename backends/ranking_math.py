"""zlpr's, lsep's and bp_mll's value and gradient for hard labels, written once over a backend's
ops for the compiled whole-loss kernels (JAX's ``jit``, jax_kernels; TensorFlow's XLA,
tensorflow_kernels), beside the focal family's in backends/binary_math.py.

For labels ``y`` in {0, 1} and finite logits, with ``z = x (1 - 2y)`` (a negative's logit, a
positive's negated), each of the three losses is a function of each row's log-sum-exp of z over
its negatives, ``A_n``, and over its positives, ``A_p`` (-inf for an empty set):

- zlpr: ``softplus(A_n) + softplus(A_p)``; a negative's derivative ``exp(z - softplus(A_n))``,
  a positive's ``-exp(z - softplus(A_p))``;
- lsep: ``softplus(A_n + A_p)``; a negative's derivative ``sigmoid(L) exp(z - A_n)``, a
  positive's ``-sigmoid(L) exp(z - A_p)``, ``L = A_n + A_p``; 0 for a row without a positive or
  without a negative;
- bp_mll: ``exp(A_n + A_p) / (n_pos n_neg)``; a negative's derivative
  ``exp(z + A_p) / (n_pos n_neg)``, a positive's ``-exp(z + A_n) / (n_pos n_neg)``; 0 for a
  row without a positive or without a negative.

Every exponent is at most 0 but bp_mll's (whose value is that large), so nothing overflows. The
spec's general formula (soft labels, missing labels, the limits at infinite logits) masks and
shifts each set through its generic log-sum-exp and log-softmax, about three times the
operations; the caller checks the batch (every label 0 or 1, every logit finite) and takes the
spec's path for any batch that is not. Values are per row, shaped (..., 1). two_way (one value
for the batch, from the same log-sum-exps along both axes) is here too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Plain = Callable[[Any, Any], tuple[Any, Any]]


def _logsum_parts(ops: Any, z: Any, positive: Any, axis: int = -1) -> tuple[Any, ...]:
    """``(m_n, m_p, S_n, S_p, e)``: along ``axis``, each set's shift (its largest z, 0 for an
    empty set), ``e = exp(z - m)`` with the shift of each entry's set (at most 1), and each
    set's sum of it (at least 1, 0 for an empty set), the sums kept along ``axis``."""
    below = float("-inf")
    m_n = ops.max(ops.where(positive, below, z), axis=axis, keepdims=True)
    m_p = ops.max(ops.where(positive, z, below), axis=axis, keepdims=True)
    # an empty set's largest is -inf: shift it by 0 (its sum is 0 whatever the shift)
    m_n = ops.where(m_n > below, m_n, 0.0)
    m_p = ops.where(m_p > below, m_p, 0.0)
    e = ops.exp(z - ops.where(positive, m_p, m_n))
    s_n = ops.sum(ops.where(positive, 0.0, e), axis=axis, keepdims=True)
    s_p = ops.sum(ops.where(positive, e, 0.0), axis=axis, keepdims=True)
    return m_n, m_p, s_n, s_p, e


def _logsums(ops: Any, z: Any, positive: Any, axis: int = -1) -> tuple[Any, Any]:
    """``(A_n, A_p)``: the log-sum-exp of z along ``axis`` over the negatives and over the
    positives (kept along it; -inf for an empty set), from one exponential of z shifted by
    its own set's largest."""
    m_n, m_p, s_n, s_p, _ = _logsum_parts(ops, z, positive, axis)
    return m_n + ops.log(s_n), m_p + ops.log(s_p)


def _set_logsums(ops: Any, x: Any, y: Any) -> tuple[Any, ...]:
    """``(z, positive, A_n, A_p)`` for hard labels, z = x (1 - 2y), each row's log-sum-exps
    shaped (..., 1)."""
    positive = y > 0.5
    z = x * (1.0 - 2.0 * y)
    return z, positive, *_logsums(ops, z, positive)


def _set_parts(ops: Any, x: Any, y: Any) -> tuple[Any, ...]:
    """``(positive, m_n, m_p, S_n, S_p, e)`` of :func:`_logsum_parts` for hard labels along
    each row, z = x (1 - 2y)."""
    positive = y > 0.5
    return positive, *_logsum_parts(ops, x * (1.0 - 2.0 * y), positive)


def zlpr_plain(ops: Any, x: Any, y: Any) -> tuple[Any, Any]:
    positive, m_n, m_p, s_n, s_p, e = _set_parts(ops, x, y)
    softplus_n, softplus_p = ops.softplus(m_n + ops.log(s_n)), ops.softplus(m_p + ops.log(s_p))
    # exp(z - softplus(A)) = e exp(m - softplus(A)): the exponentials of the sums reused
    f_n, f_p = ops.exp(m_n - softplus_n), ops.exp(m_p - softplus_p)
    return softplus_n + softplus_p, e * ops.where(positive, -f_p, f_n)


def lsep_plain(ops: Any, x: Any, y: Any) -> tuple[Any, Any]:
    positive, m_n, m_p, s_n, s_p, e = _set_parts(ops, x, y)
    both = (s_n > 0.0) & (s_p > 0.0)
    pairs = ops.where(both, m_n + m_p + ops.log(s_n * s_p), float("-inf"))
    # sigmoid(L) exp(z - A) = e sigmoid(L) / S; a row without both sets has none
    weight = ops.sigmoid(pairs)
    f_n = ops.where(both, weight / ops.where(both, s_n, 1.0), 0.0)
    f_p = ops.where(both, weight / ops.where(both, s_p, 1.0), 0.0)
    return ops.softplus(pairs), e * ops.where(positive, -f_p, f_n)


def bp_mll_plain(ops: Any, x: Any, y: Any) -> tuple[Any, Any]:
    z, positive, a_n, a_p = _set_logsums(ops, x, y)
    both = (a_n > float("-inf")) & (a_p > float("-inf"))
    count = ops.sum(ops.where(positive, 1.0, ops.zeros_like(x)), axis=-1, keepdims=True)
    norm = ops.where(both, count * (x.shape[-1] - count), 1.0)
    log_norm = ops.log(norm)
    value = ops.where(both, ops.exp(ops.where(both, a_n + a_p, 0.0) - log_norm), 0.0)
    exponent = z + ops.where(positive, a_n, a_p) - log_norm
    grad = ops.where(both, ops.exp(ops.where(both, exponent, 0.0)), 0.0)
    return value, ops.where(positive, -grad, grad)


def two_way_plain(ops: Any, x: Any, y: Any, tp: float, tn: float) -> tuple[Any, Any]:
    """two_way's one value for the batch and its gradient, for hard labels and finite logits:
    along each axis (over samples for each class, then over classes for each sample), with
    z = x / tn at negatives and -x / tp at positives, L = tn A_n + tp A_p (A: the set's
    log-sum-exp of z), the mean of softplus(L) over the slices with a positive; a negative's
    derivative sigmoid(L) exp(z - A_n), a positive's -sigmoid(L) exp(z - A_p), over that
    count (0 for a slice without a positive or without a negative). The derivatives reuse the
    exponentials of the log-sum-exps: ``exp(z - A) = e / S``, so a negative's is
    ``e sigmoid(L) / S_n``."""
    positive = y > 0.5
    z = ops.where(positive, -x / tp, x / tn)
    below = float("-inf")
    total, grad = 0.0, ops.zeros_like(x)
    for axis in (0, 1):
        m_n, m_p, s_n, s_p, e = _logsum_parts(ops, z, positive, axis)
        has_positive = s_p > 0.0
        both = has_positive & (s_n > 0.0)
        pairs = ops.where(both, tn * (m_n + ops.log(s_n)) + tp * (m_p + ops.log(s_p)), below)
        count = ops.maximum(ops.sum(ops.where(has_positive, 1.0, ops.zeros_like(s_p))), 1.0)
        total = total + ops.sum(ops.softplus(pairs)) / count
        weight = ops.sigmoid(pairs) / count  # 0 where a set is empty (pairs -inf)
        f_n = ops.where(both, weight / ops.where(both, s_n, 1.0), 0.0)
        f_p = ops.where(both, weight / ops.where(both, s_p, 1.0), 0.0)
        grad = grad + e * ops.where(positive, -f_p, f_n)
    return total, grad


#: the ranking losses with a plain form (one value per row): ``PLAIN[name](ops, params) ->
#: plain(x, y) -> (values shaped (..., 1), gradient)`` for labels in {0, 1} and finite logits
PLAIN: dict[str, Callable[[Any, Mapping[str, Any]], Plain | None]] = {
    "zlpr": lambda ops, params: lambda x, y: zlpr_plain(ops, x, y),
    "lsep": lambda ops, params: lambda x, y: lsep_plain(ops, x, y),
    "bp_mll": lambda ops, params: lambda x, y: bp_mll_plain(ops, x, y),
    # one value for the batch
    "two_way": lambda ops, params: (
        lambda x, y: two_way_plain(ops, x, y, float(params["tp"]), float(params["tn"]))
    ),
}

__all__ = ["PLAIN", "bp_mll_plain", "lsep_plain", "two_way_plain", "zlpr_plain"]
