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

``focal``, ``asl`` and the other losses with a plain form (the focal family and bce_focal,
sigmoid_bce and multilabel_soft_margin (soft targets too: binary_math.BCE_PLAIN), zlpr,
lsep, bp_mll and two_way, probability_ce and abs_kl; softmax_ce whole, not in blocks,
where every target is observed: backends/softmax_math.py; multilabel_hinge from sorted rows,
ranking_math.multilabel_hinge_plain: ``WHOLE``, through ``fused_kernel``) have whole-loss
kernels: the reduced value and its gradient in one computation. XLA on the CPU materialises
every intermediate that more than one expression reads (the exponentials a value and its gradient
share, a power computed as ``s * s``), each a fresh buffer of the logits' size, so the spec's
formula costs about twenty passes. The kernel takes a plain form (backends/binary_math.py: one
exponential, a ``log1p`` or two and one reciprocal per entry) when every label is 0 or 1 and
every logit finite (each plain form's own check: ``binary_math.holds``), which one reduction
over the batch tells, and the spec's own path (its
value and closed-form gradient, through ``fallback``) otherwise, in a ``lax.cond``: each
branch computes its outputs from the logits and the targets themselves, so neither writes
anything for the other. The plain form runs block by block of rows, each block's temporaries
in the cache, and only the gradient is written out (two_way, one value for the batch, in
three passes over blocks of rows above 4 MB, whole below). So does the spec's path (but
two_way's): XLA reserves both branches' buffers in one allocation, which above 32 MB the CPU
maps afresh each call, faulting in every page the plain form touches. These kernels run on
the CPU only: a GPU fuses the spec's formula itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from mlloss.backends import (
    binary_math,
    hinge_rows,
    probability_math,
    ranking_math,
    softmax_math,
)
from mlloss.backends.jax import materialized, other_cotangents, perturbed
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

    def values(x, y, mask):
        return softmax_math.dense(ops, x, target(y, mask), mask, epsilon)

    def forward(*primals):
        x, y, mask = (primal.value for primal in primals)
        out, parts, _ = values(x, y, mask)
        return out, (parts, x, y, mask, perturbed(primals[1:]))

    @jax.custom_vjp
    def fn(x, y, mask):
        return values(x, y, mask)[0]

    def backward(res, g):
        parts, x, y, mask, others = res
        g = materialized(g)
        local = softmax_math.dense_grad(parts, target(y, mask), epsilon)
        rest = other_cotangents(lambda *a: values(*a)[0], (x, y, mask), 1, others, g)
        return g[..., None] * local, *rest

    fn.defvjp(forward, backward, symbolic_zeros=True)
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


# whole-loss kernels ---------------------------------------------------------------------------

Plain = binary_math.Plain


def _sorted_rows(a: jax.Array) -> jax.Array:
    """``a`` sorted along its last axis, as floats that are ordered as integers: XLA on the CPU
    sorts integers about 4.5x faster than floats (whose comparator orders NaNs too; 4096x1000
    float32: 155 ms against 700 ms). A float's bits read as a signed integer, with the lower
    bits of a negative one flipped, order as the float does (-0 just before +0, equal as
    floats); the same flip maps them back. ``a`` holds no NaN."""
    ints = jnp.int64 if a.dtype == jnp.float64 else jnp.int32
    info = jnp.iinfo(ints)

    def flip(bits):
        return bits ^ ((bits >> (info.bits - 1)) & info.max)

    keys = jax.lax.sort(flip(jax.lax.bitcast_convert_type(a, ints)), dimension=a.ndim - 1)
    return jax.lax.bitcast_convert_type(flip(keys), a.dtype)


class _Rows:
    """The row operations of ranking_math.multilabel_hinge_plain on JAX."""

    sort = staticmethod(_sorted_rows)

    @staticmethod
    def search(ordered: jax.Array, queries: jax.Array, right: bool) -> jax.Array:
        side = "right" if right else "left"
        classes = ordered.shape[-1]
        rows = jax.vmap(lambda a, b: jnp.searchsorted(a, b, side=side, method="scan"))
        flat = rows(ordered.reshape(-1, classes), queries.reshape(-1, queries.shape[-1]))
        return flat.reshape(queries.shape)

    @staticmethod
    def take(a: jax.Array, index: jax.Array) -> jax.Array:
        return jnp.take_along_axis(a, jnp.clip(index, 0, a.shape[-1] - 1), axis=-1)

    @staticmethod
    def suffix_sum(a: jax.Array) -> jax.Array:
        return jnp.cumsum(a[..., ::-1], axis=-1)[..., ::-1]


def _two_way(ops: Any, params: Mapping[str, Any]) -> Plain:
    """two_way with each set shifted once for the whole batch (one exponential for both axes:
    4096x1000 float32, 35-44 ms per-slice against 23-28 ms), and each slice's own shifts
    where the shared one would lose digits to underflow (ranking_math.two_way_shared). The
    per-slice form is a ``lax.cond`` branch: it runs only for such a batch. A batch larger
    than ``_WHOLE_BYTES`` takes the shared shift in blocks of rows (:func:`_two_way_in_blocks`:
    whole, its buffers and the other branch's pass 32 MB, and are mapped afresh each call;
    in blocks the exponentials are computed twice: at 1024x1000 float32 3.5 ms whole against
    5.1 in blocks, at 1536x1000 10.6 against 9.5, at 4096x1000 26.8-32.6 against 19.2-21.8,
    at 256x20000 43-46 against 28-32)."""
    tp, tn = float(params["tp"]), float(params["tn"])

    def plain(x, y):
        block = max(1, _BLOCK_ENTRIES // x.shape[-1])
        if x.shape[0] > block and x.size * x.dtype.itemsize > _WHOLE_BYTES:
            total, holds, gradient = _two_way_in_blocks(ops, x, y, tp, tn, block)
        else:
            total, grad, holds = ranking_math.two_way_shared(ops, x, y, tp, tn)

            def gradient():
                return grad

        return jax.lax.cond(
            holds,
            lambda: (total, gradient()),
            lambda: ranking_math.two_way_plain(ops, x, y, tp, tn),
        )

    return plain


def _as_rows(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``x`` as rows of its classes, and ``y`` as their targets (class indices: one a row)."""
    classes = x.shape[-1]
    rows = x.size // classes
    return x.reshape(rows, classes), (
        y.reshape(rows) if y.ndim < x.ndim else y.reshape(rows, classes)
    )


def _over_row_blocks(step: Callable[..., Any], carry: Any, x: jax.Array, y: jax.Array, block: int):
    """``carry`` through ``step(carry, x_block, y_block, start)`` for each block of ``block``
    rows of ``x`` and ``y`` in turn (a ``fori_loop``), the rows past the last whole block in a
    call of their own (no block overlaps another, none is padded)."""
    rows = x.shape[0]
    count, rest = divmod(rows, block)

    def one(i, carry):
        start = i * block
        part = (jax.lax.dynamic_slice_in_dim(a, start, block) for a in (x, y))
        return step(carry, *part, start)

    carry = jax.lax.fori_loop(0, count, one, carry)
    if rest:
        carry = step(carry, x[count * block :], y[count * block :], count * block)
    return carry


def _two_way_in_blocks(ops: Any, x: jax.Array, y: jax.Array, tp: float, tn: float, block: int):
    """ranking_math.two_way_shared's ``(value, holds, gradient())`` in three passes over blocks
    of rows: the sets' largest z and the columns' positives; each set's exponentials, summed
    along both axes (the rows' sums written into their rows, the columns' added up); the
    exponentials again, times the slices' factors, into the gradient. Every intermediate holds
    a block's entries, where the whole batch's form writes out both sets' exponentials (see
    :func:`_two_way` for the times). The exponentials are computed twice, the same expressions
    of the same values."""
    rows, classes = x.shape
    below = float("-inf")

    def sets(xb, yb):
        positive = yb > 0.5
        return positive, ranking_math.two_way_z(ops, xb, positive, tp, tn)

    def positives(yb, axis):  # every label is 0 or 1: their sum counts the positives
        return ops.sum(yb.astype(x.dtype), axis=axis, keepdims=True)

    def largest(carry, xb, yb, start):
        m_n, m_p, column_count = carry
        positive, z = sets(xb, yb)
        m_n = jnp.maximum(m_n, jnp.max(jnp.where(positive, below, z)))
        m_p = jnp.maximum(m_p, jnp.max(jnp.where(positive, z, below)))
        return m_n, m_p, column_count + positives(yb, 0)

    lowest = jnp.full((), below, x.dtype)
    columns = jnp.zeros((1, classes), x.dtype)
    m_n, m_p, column_count = _over_row_blocks(largest, (lowest, lowest, columns), x, y, block)
    m_n, m_p = ranking_math.two_way_shift(ops, m_n), ranking_math.two_way_shift(ops, m_p)

    def exponentials(xb, yb):
        positive, z = sets(xb, yb)
        return ranking_math.two_way_exponentials(ops, z, positive, m_n, m_p)

    def sums(carry, xb, yb, start):
        column_n, column_p, row_n, row_p, row_count = carry
        e_n, e_p = exponentials(xb, yb)

        def put(into, rows_sum):
            return jax.lax.dynamic_update_slice_in_dim(into, rows_sum, start, 0)

        return (
            column_n + ops.sum(e_n, axis=0, keepdims=True),
            column_p + ops.sum(e_p, axis=0, keepdims=True),
            put(row_n, jnp.sum(e_n, axis=1, keepdims=True)),
            put(row_p, jnp.sum(e_p, axis=1, keepdims=True)),
            put(row_count, positives(yb, 1)),
        )

    per_row = jnp.zeros((rows, 1), x.dtype)
    carry = (columns, columns, per_row, per_row, per_row)
    column_n, column_p, row_n, row_p, row_count = _over_row_blocks(sums, carry, x, y, block)
    total, holds, f_n, f_p = ranking_math.two_way_shares(
        ops,
        m_n,
        m_p,
        ((column_n, column_p, column_count), (row_n, row_p, row_count)),
        x.shape,
        tp,
        tn,
    )

    def gradient(grad, xb, yb, start):
        e_n, e_p = exponentials(xb, yb)
        rows_of = functools.partial(
            jax.lax.dynamic_slice_in_dim, start_index=start, slice_size=xb.shape[0]
        )
        local = e_n * (f_n[0] + rows_of(f_n[1])) - e_p * (f_p[0] + rows_of(f_p[1]))
        return jax.lax.dynamic_update_slice_in_dim(grad, local, start, 0)

    return total, holds, lambda: _over_row_blocks(gradient, jnp.zeros_like(x), x, y, block)


def _hinge(ops: Any, params: Mapping[str, Any]) -> Plain:
    """multilabel_hinge: float32 rows (half precision computed in them) by numpy's sort of
    packed keys on the host (backends/hinge_rows.py, a ``pure_callback``: the kernels run on
    the CPU only; 4096x1000 float32 61 ms against XLA's 259), other dtypes by XLA's sorted
    rows (ranking_math.multilabel_hinge_plain). So do batches where JAX has more than one
    device: a computation sharded over several CPU devices deadlocked in its all-reduce
    around the callback (jax 0.10.2, ``--xla_force_host_platform_device_count=2``)."""
    margin = float(params["margin"])
    sorted_rows = ranking_math.multilabel_hinge_plain(ops, _Rows, margin)

    def plain(x, y):
        classes = x.shape[-1]
        if x.dtype != jnp.float32 or classes > hinge_rows.MAX_CLASSES or jax.device_count() > 1:
            return sorted_rows(x, y)
        shapes = (
            jax.ShapeDtypeStruct((*x.shape[:-1], 1), jnp.float32),
            jax.ShapeDtypeStruct(x.shape, jnp.float32),
        )
        host = functools.partial(hinge_rows.batch, margin=margin)
        return jax.pure_callback(host, shapes, x, y, vmap_method="sequential")

    return plain


#: the losses with a whole-loss kernel: ``WHOLE[name](ops, params) -> plain form or None``
#: (the plain forms TensorFlow's kernels use too; multilabel_hinge's with JAX's row operations,
#: two_way's choosing its shifts by a ``lax.cond``)
WHOLE = {
    **binary_math.PLAIN,
    **binary_math.BCE_PLAIN,
    **softmax_math.PLAIN,
    **probability_math.INDEX_PLAIN,
    "multilabel_hinge": _hinge,
    "two_way": _two_way,
}

_HALF = (jnp.float16, jnp.bfloat16)


#: below this many (sample, class, class) triples multilabel_hinge's formula, all pairs at once,
#: is the faster (64x128 float32, value and gradient: 1.0 ms against the sorted rows' 1.5 ms;
#: 64x256: 21 ms against 3.0 ms; 1024x80: 28 ms against 8.5 ms)
_FEW_PAIRS = 2**21

#: the most (sample, class, class) triples multilabel_hinge's formula holds at once where the
#: kernel runs it for a batch its plain form does not hold for (64 MB a float32 intermediate)
_PAIR_BLOCK = 2**24

#: entries per block of rows when a plain form runs tiled on the CPU: 2 MB of float32, so that
#: a block's temporaries stay in the cache
_BLOCK_ENTRIES = 2**19

#: the largest batch (bytes of logits) two_way's kernel computes whole (see ``_two_way``)
_WHOLE_BYTES = 2**22


def _on_cpu() -> bool:
    """Whether the computation runs on the CPU, where XLA writes every intermediate that two
    expressions read to a fresh buffer of the logits' size (each costing its page faults).
    Only there do the whole-loss kernels run, tiled: a GPU fuses the spec's formula into one
    kernel anyway, and a ``lax.cond`` there waits for its predicate on the host (measured on an
    H100: focal 0.17 ms through the formula, 0.31 ms through the kernel)."""
    return jax.default_backend() == "cpu"


def _targets(y: jax.Array, compute: Any) -> jax.Array:
    """Targets in the compute dtype; class indices as they are."""
    return y if jnp.issubdtype(y.dtype, jnp.integer) else y.astype(compute)


def _plain_sum(
    plain: Plain,
    x: jax.Array,
    y: jax.Array,
    compute: Any,
    with_grad: bool,
    scale: float,
    tiled: bool = True,
):
    """``(scale * sum of the values, scale * gradient or None)`` of the plain form, in
    ``compute`` and (the gradient) ``x``'s dtype; ``y`` as the plain form takes it (targets
    in ``compute``, or class indices as they are, one per row). On the CPU, block by block of
    rows (a ``fori_loop``), so that each block's intermediates stay in the cache: the last
    block starts early enough to end at the last row, and counts only the rows no earlier
    block counted (it writes the same gradient over the rows they share)."""
    classes = x.shape[-1]
    rows = x.size // classes
    block = max(1, _BLOCK_ENTRIES // classes)
    if rows <= block or not tiled:
        values, local = plain(x.astype(compute), _targets(y, compute))
        return jnp.sum(values) * scale, ((local * scale).astype(x.dtype) if with_grad else None)
    x2, y2 = _as_rows(x, y)
    count = -(-rows // block)

    def step(i, carry):
        total, grad = carry
        start = jnp.minimum(i * block, rows - block)
        xb = jax.lax.dynamic_slice_in_dim(x2, start, block).astype(compute)
        yb = _targets(jax.lax.dynamic_slice_in_dim(y2, start, block), compute)
        values, local = plain(xb, yb)
        fresh = (start + jnp.arange(block) >= i * block)[:, None]
        total = total + jnp.sum(jnp.where(fresh, values, 0.0))
        if grad is not None:
            local = (local * scale).astype(x.dtype)
            grad = jax.lax.dynamic_update_slice_in_dim(grad, local, start, 0)
        return total, grad

    zero = jnp.zeros((), compute)
    if not with_grad:
        total = jax.lax.fori_loop(0, count, lambda i, t: step(i, (t, None))[0], zero)
        return total * scale, None
    total, grad = jax.lax.fori_loop(0, count, step, (zero, jnp.zeros_like(x2)))
    return total * scale, grad.reshape(x.shape)


def _in_row_blocks(
    fallback: Callable[..., Any],
    x: jax.Array,
    y: jax.Array,
    block: int,
    with_grad: bool,
    reduction: str,
) -> tuple[jax.Array, jax.Array | None]:
    """The spec's path, reduced, and its gradient (or None), computed ``block`` rows at a time
    (:func:`_over_row_blocks`), so that its intermediates hold a block's entries rather than
    the batch's: a formula over pairs of classes block x C x C rather than N x C x C, any
    other formula a few blocks of rows. XLA reserves the buffers of both branches of a
    ``lax.cond`` in one allocation per call, and on the CPU one above 32 MB (glibc's largest
    threshold) is mapped afresh each call, so the formula's full-size intermediates cost the
    plain form page faults on every call: at 4096x1000 float32, forward and backward, the
    plain forms ran 5-24% faster in blocks (focal 17.5 -> 14.6 ms, splc 25.9 -> 19.6; the
    spec's path itself 17-53%). Each block gives the sum of its values and what a mean
    divides by (``fallback(x, y, parts=True)``); the batch's sum is their totals' sum, its
    mean that over the sum of what the blocks' means divide by."""
    x2, y2 = _as_rows(x, y)

    def one(xb, yb):
        if not with_grad:
            total, denominator = fallback(xb, yb, parts=True)
            return total, denominator, None
        total, pullback, denominator = jax.vjp(
            lambda v: fallback(v, yb, parts=True), xb, has_aux=True
        )
        (grad,) = pullback(jnp.ones_like(total))
        return total, denominator, grad

    def step(carry, xb, yb, start):
        total, denominator, grad = carry
        part = one(xb, yb)
        if grad is not None:
            grad = jax.lax.dynamic_update_slice_in_dim(grad, part[2], start, 0)
        return total + part[0], denominator + part[1], grad

    total, denominator, _ = jax.eval_shape(one, x2[:block], y2[:block])
    carry = (
        jnp.zeros((), total.dtype),
        jnp.zeros((), denominator.dtype),
        jnp.zeros_like(x2) if with_grad else None,
    )
    total, denominator, grad = _over_row_blocks(step, carry, x2, y2, block)
    denominator = denominator if reduction == "mean" else jnp.ones_like(total)
    divide = jnp.where(denominator > 0, denominator, 1.0)
    value = total / divide
    if not with_grad:
        return value, None
    return value, (grad / divide).reshape(x.shape).astype(x.dtype)


def _whole(
    plain: Plain,
    fallback: Callable[..., jax.Array],
    reduction: str,
    holds: Callable[..., Any] = binary_math.hard_labels,
    per: str = "element",
    tiled: bool = True,
    pairs: bool = False,
):
    """``fn(x, y) -> the reduced value``: the plain form where the batch allows it, else
    ``fallback(x, y)`` (the spec's path, reduced, in the compute dtype); a custom VJP whose
    backward multiplies the gradient the forward computed by the cotangent. ``tiled``: block
    by block of rows on the CPU (never for a loss per batch). ``pairs``: the spec's formula
    holds C x C entries a row, and runs on blocks of rows of at most ``_PAIR_BLOCK`` entries
    (any other on blocks of ``_BLOCK_ENTRIES``, unless a loss per batch): XLA reserves the
    buffers of both branches of a ``lax.cond``, so a formula over the whole batch would cost
    its memory (N x C x C entries for pairs) even where the plain form computes it
    (:func:`_in_row_blocks`)."""

    def spec_path(x, y, compute, with_grad):
        classes = x.shape[-1]
        entries = _PAIR_BLOCK // classes if pairs else _BLOCK_ENTRIES
        block = max(1, entries // classes)
        if per != "batch" and x.size // classes > block:
            value, grad = _in_row_blocks(fallback, x, y, block, with_grad, reduction)
            return value.astype(compute), grad
        if not with_grad:
            return fallback(x, y).astype(compute), None
        value, pullback = jax.vjp(lambda v: fallback(v, y), x)
        (grad,) = pullback(jnp.ones_like(value))
        return value.astype(compute), grad

    def reduced(x, y, compute, with_grad):
        # every entry observed: a mean is over all of them (over the rows for a loss per
        # sample)
        rows = x.size // x.shape[-1]
        count = {"element": x.size, "sample": rows}.get(per, 1)  # a batch: one value
        scale = 1.0 if reduction == "sum" else 1.0 / count
        # a batch's one value couples its rows: never block by block
        return _plain_sum(plain, x, y, compute, with_grad, scale, tiled and per != "batch")

    def parts(x, y, with_grad):
        compute = jnp.float32 if x.dtype in _HALF else x.dtype
        is_plain = holds(_ops(), x.astype(compute), _targets(y, compute))
        if not with_grad:  # the value alone: neither branch computes a gradient
            return jax.lax.cond(
                is_plain,
                lambda: reduced(x, y, compute, False)[0],
                lambda: spec_path(x, y, compute, False)[0],
            ).astype(x.dtype)
        value, grad = jax.lax.cond(
            is_plain,
            lambda: reduced(x, y, compute, True),
            lambda: spec_path(x, y, compute, True),
        )
        return value.astype(x.dtype), grad

    @jax.custom_vjp
    def fn(x, y):
        return parts(x, y, with_grad=False)

    def forward(x, y):
        value, grad = parts(x.value, y.value, with_grad=True)
        return value, (grad, x.value, y.value, perturbed((y,)))

    def backward(res, g):
        grad, x, y, others = res
        g = materialized(g)
        # the targets' cotangent, where asked for: autodiff of the spec's path
        (d_y,) = other_cotangents(fallback, (x, y), 1, others, g)
        return (g * grad).astype(grad.dtype), d_y

    fn.defvjp(forward, backward, symbolic_zeros=True)
    return fn


def fused_kernel(
    name: str,
    params: Mapping[str, Any],
    reduction: str,
    per: str,
    mean_over_classes: bool,
    fallback: Callable[..., jax.Array] | None = None,
) -> Callable[..., jax.Array | None] | None:
    """The loss as one computation, ``fn(x, y, checked) -> value | None`` (None: take the
    spec's path), under ``jit`` and eagerly alike, taking ``fallback(x, y)`` (the spec's path,
    reduced) for a batch its plain form does not hold for; or None when no kernel computes this
    loss with these settings."""
    build = WHOLE.get(name)
    if build is None or fallback is None or mean_over_classes:
        return None
    if reduction not in ("mean", "sum"):
        return None
    plain = build(_ops(), params)
    if plain is None:
        return None
    # softmax_ce whole: XLA fuses its row reductions with the exponentials over the whole
    # batch, and in blocks it ran slower (4096x1000 float32: 1.15x-1.30x optax's
    # softmax_cross_entropy tiled, 1.05x whole, in one session's runs)
    # multilabel_hinge whole: numpy works through its float32 rows in blocks itself, and
    # shares them among threads (in XLA's blocks of 2^19 entries, 256x20000 took 243 ms on
    # one thread against 112 ms whole)
    pairwise = name == "multilabel_hinge"
    tiled = name not in softmax_math.PLAIN and not pairwise
    fn = _whole(plain, fallback, reduction, binary_math.holds(name), per, tiled, pairwise)

    indices = name in probability_math.INDEX_PLAIN  # class indices, one per row

    def run(x: jax.Array, y: jax.Array, checked: bool) -> jax.Array | None:
        if not _on_cpu() or jnp.size(x) == 0:
            return None
        if jnp.shape(y) != (jnp.shape(x)[:-1] if indices else jnp.shape(x)):
            return None
        if per == "batch" and jnp.ndim(x) != 2:  # a single sample is a batch of one
            return None
        if pairwise and jnp.size(x) * jnp.shape(x)[-1] < _FEW_PAIRS:
            return None
        return fn(x, y)

    return run


def values_kernel(name: str, params: Mapping[str, Any]) -> Callable[..., jax.Array] | None:
    """``fn(x, y, mask) -> per-sample values`` (NaN policy included) for this loss and these
    settings, or None when the spec's formula computes it."""
    found = KERNELS.get(name)
    if found is None or not found[1](params):
        return None
    return found[0](params)


__all__ = ["KERNELS", "WHOLE", "fused_kernel", "values_kernel"]
