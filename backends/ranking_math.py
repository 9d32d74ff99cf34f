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
for the batch, from the same log-sum-exps along both axes) is here too, and multilabel_hinge's
sorted rows (:func:`multilabel_hinge_plain`: sorts and searches, not log-sum-exps).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

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


def _two_way_axis(
    ops: Any, m_n: Any, m_p: Any, s_n: Any, s_p: Any, has_p: Any, has_n: Any, tp: float, tn: float
) -> tuple[Any, Any, Any]:
    """One axis's share of two_way: ``(mean of softplus(L) over the slices with a positive,
    f_n, f_p)``, with L = tn (m_n + log S_n) + tp (m_p + log S_p) for each slice (-inf
    without a negative or without a positive) and a negative's derivative ``e f_n``, a
    positive's ``-e f_p``, ``e = exp(z - m)`` with its set's shift:
    ``f = sigmoid(L) / (S count)``, 0 where a set is empty."""
    both = has_p & has_n
    pairs = ops.where(both, tn * (m_n + ops.log(s_n)) + tp * (m_p + ops.log(s_p)), float("-inf"))
    count = ops.maximum(ops.sum(ops.where(has_p, 1.0, ops.zeros_like(s_p))), 1.0)
    weight = ops.sigmoid(pairs) / count  # 0 where a set is empty (pairs -inf)
    f_n = ops.where(both, weight / ops.where(both, s_n, 1.0), 0.0)
    f_p = ops.where(both, weight / ops.where(both, s_p, 1.0), 0.0)
    return ops.sum(ops.softplus(pairs)) / count, f_n, f_p


def two_way_z(ops: Any, x: Any, positive: Any, tp: float, tn: float) -> Any:
    """z = x / tn at negatives, -x / tp at positives."""
    return ops.where(positive, -x / tp, x / tn)


def two_way_plain(ops: Any, x: Any, y: Any, tp: float, tn: float) -> tuple[Any, Any]:
    """two_way's one value for the batch and its gradient, for hard labels and finite logits:
    along each axis (over samples for each class, then over classes for each sample), with
    z = x / tn at negatives and -x / tp at positives, L = tn A_n + tp A_p (A: the set's
    log-sum-exp of z), the mean of softplus(L) over the slices with a positive; a negative's
    derivative sigmoid(L) exp(z - A_n), a positive's -sigmoid(L) exp(z - A_p), over that
    count (0 for a slice without a positive or without a negative). The derivatives reuse the
    exponentials of the log-sum-exps: ``exp(z - A) = e / S``, so a negative's is
    ``e sigmoid(L) / S_n``. Each slice is shifted by its own largest z (one exponential per
    axis); :func:`two_way_shared` shifts the batch once."""
    positive = y > 0.5
    z = two_way_z(ops, x, positive, tp, tn)
    total, grad = 0.0, ops.zeros_like(x)
    for axis in (0, 1):
        m_n, m_p, s_n, s_p, e = _logsum_parts(ops, z, positive, axis)
        # each set's sum is at least 1 where it has an entry (its largest term is 1)
        share, f_n, f_p = _two_way_axis(ops, m_n, m_p, s_n, s_p, s_p > 0.0, s_n > 0.0, tp, tn)
        total = total + share
        grad = grad + e * ops.where(positive, -f_p, f_n)
    return total, grad


def two_way_shared(ops: Any, x: Any, y: Any, tp: float, tn: float) -> tuple[Any, Any, Any]:
    """:func:`two_way_plain` with each set shifted once for the whole batch (by its largest
    z): each entry's exponential ``e = exp(z - m)`` then serves its set's sums along both
    axes, and a negative's derivative is ``e (f_n of its column + f_n of its row)``. Returns
    ``(value, gradient, holds)``, ``holds`` a 0-d boolean: whether the shared shift lost
    nothing.

    A shared shift can only lose digits to underflow: terms below the smallest normal number
    (``tiny``), at most a slice's length of them, each off by at most tiny 2^-p against the
    slice's sum S. Where every slice's S is at least tiny 2^30 times the longer axis (or the
    set is empty there), what is lost is below 2^-30 of S and of the slice's share of every
    derivative, and the result is the per-slice one to rounding. Below it (a slice's largest z
    about 58 units under the batch's in float32, 700 in float64), ``holds`` is false and the
    caller takes :func:`two_way_plain`."""
    positive = y > 0.5
    z = two_way_z(ops, x, positive, tp, tn)
    below = float("-inf")
    m_n = two_way_shift(ops, ops.max(ops.where(positive, below, z)))
    m_p = two_way_shift(ops, ops.max(ops.where(positive, z, below)))
    e_n, e_p = two_way_exponentials(ops, z, positive, m_n, m_p)
    # every label is 0 or 1 here: the labels' sum counts the positives (a sum of the labels
    # fuses into XLA's reduction, where a 0/1 array made from the comparison was written out)
    labels = ops.cast(y, ops.dtype_name(x))
    slices = [
        (ops.sum(e_n, axis, True), ops.sum(e_p, axis, True), ops.sum(labels, axis, True))
        for axis in (0, 1)
    ]
    total, holds, f_n, f_p = two_way_shares(ops, m_n, m_p, slices, x.shape, tp, tn)
    # one of the two terms is 0
    return total, e_n * (f_n[0] + f_n[1]) - e_p * (f_p[0] + f_p[1]), holds


def two_way_shift(ops: Any, m: Any) -> Any:
    """A set's shift from its largest z: a set the batch lacks is never shifted (it has no
    entries, and its largest z is -inf): 0 stands in."""
    return ops.where(m > float("-inf"), m, 0.0)


def two_way_exponentials(ops: Any, z: Any, positive: Any, m_n: Any, m_p: Any) -> tuple[Any, Any]:
    """Each set's exponentials ``exp(z - m)`` apart, 0 outside it: each written once for the
    sums along both axes and the gradient (one array of both and two masked copies of it
    cost XLA on the CPU a write and a read more: 4096x1000 float32 JAX, 29 -> 27 ms)."""
    below = float("-inf")
    e_n = ops.exp(ops.where(positive, below, z - m_n))
    return e_n, ops.exp(ops.where(positive, z - m_p, below))


def two_way_shares(
    ops: Any, m_n: Any, m_p: Any, slices: Any, shape: tuple[int, int], tp: float, tn: float
) -> tuple[Any, Any, list[Any], list[Any]]:
    """:func:`two_way_shared`'s value from its sums: ``slices`` holds, for the columns (over
    the samples) and then the rows (over the classes), each slice's sums ``(S_n, S_p)`` of
    ``exp(z - m)`` over its negatives and its positives (kept along the axis summed) and how
    many positives it has. Returns ``(value, holds, f_n, f_p)``, ``f_n`` and ``f_p`` the
    columns' and the rows' factors of a negative's and a positive's exponential in the
    gradient, ``holds`` whether the shared shift lost nothing (see :func:`two_way_shared`)."""
    floor = float(np.finfo(ops.dtype_name(slices[0][0])).tiny) * 2.0**30 * max(shape)
    total, holds, f_n, f_p = 0.0, True, [], []
    for axis, (s_n, s_p, count) in enumerate(slices):
        # a set's sum may underflow to 0 here: whether it has an entry is counted
        has_p, has_n = count > 0.0, count < shape[axis]
        low = ((s_n < floor) & has_n) | ((s_p < floor) & has_p)
        holds = holds & ~ops.any(low)
        share, f_n_axis, f_p_axis = _two_way_axis(ops, m_n, m_p, s_n, s_p, has_p, has_n, tp, tn)
        total = total + share
        f_n.append(f_n_axis)
        f_p.append(f_p_axis)
    return total, holds, f_n, f_p


class Rows(Protocol):
    """What :func:`multilabel_hinge_plain` needs of a backend beyond its ops, along the last
    axis of each row."""

    def sort(self, a: Any) -> Any:
        """``a`` sorted ascending (it holds no NaN)."""

    def search(self, ordered: Any, queries: Any, right: bool) -> Any:
        """For each query, how many entries of its row of ``ordered`` are below it (at or
        below it with ``right``), as integers."""

    def take(self, a: Any, index: Any) -> Any:
        """``a[..., i]`` for each ``i`` in ``index`` (integers), clipped into the row."""

    def suffix_sum(self, a: Any) -> Any:
        """``a[..., k:].sum(-1)`` for each k in 0..n-1 (n = a's length)."""


def multilabel_hinge_plain(ops: Any, rows: Rows, margin: float) -> Plain:
    """multilabel_hinge's per-row value and gradient for labels in {0, 1} and finite logits,
    in O(C log C) from two sorts of each row, where the formula holds C x C pairs (4096x1000:
    4.1e9, 16 GB for each float32 intermediate). With v the row's negatives sorted, a
    positive j's active negatives (x_i > t_j = x_j - m, where m - (x_j - x_i) > 0) are the
    n_j = K - q_j after its place q_j in v (K negatives); its share of the row's sum is

        sum_{k >= q_j} (v_k - v_{q_j}) + n_j (m - (x_j - v_{q_j})),

    the first sum as ``sum_{k >= q_j} g_k (K - 1 - k)`` over the gaps ``g_k = v_{k+1} - v_k``:
    every term is non-negative, so nothing cancels (a prefix sum of the logits themselves
    would lose the value's digits to the logits' size, as at 1e4 in float32), and the last
    term is the formula's own difference for the nearest active pair. A positive's derivative
    is -n_j, a negative's the positives whose threshold lies below it (a search of its logit
    among the positives' sorted thresholds), each over the C classes. Positives: y > 0.5."""

    def plain(x: Any, y: Any) -> tuple[Any, Any]:
        classes = x.shape[-1]
        if classes < 2:  # no pairs (and no gaps to sum)
            return ops.sum(0.0 * x, -1, True), 0.0 * x
        dtype = ops.dtype_name(x)
        positive = y > 0.5
        thresholds = x - margin
        # the negatives first, ascending; the positives' thresholds likewise
        v = rows.sort(ops.where(positive, float("inf"), x))
        u = rows.sort(ops.where(positive, thresholds, float("inf")))
        negatives = ops.sum(ops.where(positive, 0.0, ops.zeros_like(x) + 1.0), -1, True)
        place = rows.search(v, thresholds, right=True)  # negatives at or below t_j
        below = ops.cast(rows.search(u, x, right=False), dtype)  # thresholds below x_i
        k = ops.arange(classes, x)
        # g_k (K - 1 - k) for k < K - 1, and 0 from there on (the positives' +inf)
        gaps = ops.where(k[:-1] + 1.0 < negatives, v[..., 1:] - v[..., :-1], 0.0)
        weighted = gaps * (negatives - 1.0 - k[:-1])
        beyond = rows.suffix_sum(weighted)
        active = negatives - ops.cast(place, dtype)
        has = positive & (active > 0.0)
        nearest = ops.where(has, rows.take(v, place), 0.0)
        past = ops.where(place < classes - 1, rows.take(beyond, place), 0.0)
        share = past + active * (margin - (x - nearest))
        value = ops.sum(ops.where(has, share, 0.0), -1, True) / classes
        grad = ops.where(positive, -active, below) / classes
        return value, grad

    return plain


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

__all__ = [
    "PLAIN",
    "Rows",
    "bp_mll_plain",
    "lsep_plain",
    "multilabel_hinge_plain",
    "two_way_exponentials",
    "two_way_plain",
    "two_way_shared",
    "two_way_shares",
    "two_way_shift",
    "two_way_z",
    "zlpr_plain",
]
