"""Fewer passes for most losses on TensorFlow, each used only where it computes the spec.

TensorFlow runs a ``tf.function`` graph op by op on the CPU (nothing fuses element-wise
chains unless XLA is asked for), so the spec's formula costs a pass over the logits per
operation, and its general pieces (masks, the NaN policy, limits at infinite logits) cost
passes of their own. Here:

- ``sigmoid_bce`` is written in eight element-wise ops forward and three backward (its
  closed-form gradient, where autodiff of TensorFlow's own loss takes about ten), exact for
  every label in [0, 1] (and ``multilabel_soft_margin``, its mean over each sample's
  classes);
- ``focal`` (for labels in {0, 1}), ``bce`` and ``asl`` compute their value and gradient
  together in the forward (focal from one softplus and two sigmoids of the signed logit),
  and the backward multiplies (per-entry values: ``reduction="none"``);
- reduced to a mean or a sum, ``focal``, ``asl`` and the other losses with a plain form
  (poly1_focal, splc, hill, bce_focal; zlpr, lsep, bp_mll, two_way; probability_ce,
  abs_kl) are XLA computations: the plain form that JAX's kernels use
  (backends/binary_math.py, ranking_math.py, probability_math.py) for the batches its own
  check admits (hard labels and finite logits, say), and the spec's own path for any other
  batch, the two chosen by a ``tf.cond`` outside them (:func:`_chosen`);
- ``softmax_ce``, ``sparse_softmax_ce`` and ``poly1`` are XLA computations too (a plain form
  and the general one, ``jit_compile``), the loss's reduction included (:func:`fused_kernel`),
  from the formula written once for the compiled backends (backends/softmax_math.py): XLA
  fuses the value and the gradient into three loops, where TensorFlow's own fused ops were
  followed by the masks, the target mass and the rescaled gradient as passes of their own
  (and were slower than XLA even alone: the sparse one was 1.0x the native before, 0.68x
  after). The first call for
  each shape and dtype compiles (about 0.2 s on the CPU); a TensorFlow without XLA for the
  device (tensorflow-metal) needs ``fused=False``.

Each other kernel checks cheaply whether the batch is in its domain (labels in range, logits
finite) and takes the spec's formula for the whole batch when it is not, by ``tf.cond``: only
one of the two runs, in the backward too (the formula's gradient is taken only for such a
batch); the XLA kernels choose between the plain and the general form inside the
computation. The conformance suite checks these kernels through ``mlloss.get``, and
tests/test_values_kernels.py compares them with the formula on ordinary and non-finite
inputs, eagerly and inside ``tf.function``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf

from mlloss.losses.binary import smooth_binary
from mlloss.losses.softmax import POLY1_CROSS_ENTROPY

Fast = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor, Callable[[tf.Tensor], tf.Tensor]]]


def _guarded(x: tf.Tensor, fast: Fast, formula: Callable[[tf.Tensor], tf.Tensor]) -> tf.Tensor:
    """``fast(x) -> (values, taken, grad)``: its values where ``taken`` (a boolean scalar),
    else ``formula(x)``'s; the gradient of the one taken. Both choices are one ``tf.cond``,
    so only one side runs, in the forward and in the backward alike (the formula's gradient
    is taken only for a batch that went its way)."""

    @tf.custom_gradient
    def values(logits):
        out, taken, grad = fast(logits)
        out = tf.cond(taken, lambda: out, lambda: formula(logits))

        def backward(g):
            def spec():
                with tf.GradientTape() as tape:
                    tape.watch(logits)
                    again = formula(logits)
                return tape.gradient(again, logits, output_gradients=g)

            return tf.cond(taken, lambda: grad(g), spec)

        return out, backward

    return values(x)


def _finite(x: tf.Tensor) -> tf.Tensor:
    """Whether every input is finite, from their sum: one reduction, no boolean tensor (a NaN
    or an infinity makes the sum non-finite; a sum that overflows sends a finite batch to the
    formula, which is only slower). The kernels test their inputs, not their values: a
    predicate that waits for the values made sigmoid_bce's step 2.6x slower (measured)."""
    return tf.math.is_finite(tf.reduce_sum(x))


def _sparse(params: Mapping[str, Any], fallback: Callable[..., tf.Tensor]):
    """sparse_softmax_ce per sample, from :func:`_sparse_step` (the same kernel that
    :func:`fused_kernel` runs for the reduced loss)."""
    if params.get("class_weight") is not None:
        return None
    step = _sparse_step(params, "none")
    ignore = params.get("ignore_index")

    def fn(x, y, mask):
        if not _two_dimensional(x) or y.shape.rank != 1 or not y.dtype.is_integer:
            return fallback(x, y, mask)
        if ignore is not None:  # the prepared labels with their ignored samples put back
            y = tf.where(mask, y, tf.cast(ignore, y.dtype))
        return _differentiable(step, "none", x, y)

    return fn


def _reduced(values: tf.Tensor, local: tf.Tensor, counted: tf.Tensor, reduction: str):
    """The per-sample ``values`` reduced as asked, and the gradient of that for a cotangent of
    1 (``local`` being each value's): done in each form of an XLA kernel, since after its
    tf.cond scaling the gradient would be a pass of its own."""
    if reduction == "none":
        return values, local
    value = tf.reduce_sum(values)
    if reduction in ("mean", "weighted_mean"):  # no class weights here: the plain mean
        count = tf.reduce_sum(tf.cast(counted, values.dtype))
        count = tf.where(count > 0, count, tf.ones_like(count))
        value, local = value / count, local * (1.0 / count)
    return value, local


def _compute_dtype(x: tf.Tensor) -> tf.Tensor:
    """float16 and bfloat16 in float32, as the spec's path computes them."""
    return tf.cast(x, tf.float32) if x.dtype in (tf.float16, tf.bfloat16) else x


def _no_infinity(m: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """From the row maxima ``m``: whether no logit is infinite (a NaN logit makes its row
    NaN in either form of a kernel, whichever XLA's maximum sends it to); row by row, as the
    reductions of the value are (a reduction to one number would be a pass of its own)."""
    return tf.reduce_all(m < float("inf")) & tf.reduce_all(
        tf.reduce_min(x, axis=-1) > -float("inf")
    )


def _sparse_step(params: Mapping[str, Any], reduction: str):
    """Like :func:`_dense_step`, for class indices: ``step(x, y) -> (value, gradient,
    plain)``. The plain form applies where every index is in [0, C) and none is ignored,
    and no logit is infinite; the general form (backends/softmax_math.py, as JAX's kernel)
    takes the limits, leaves ignored samples out and gives an index out of range its
    all-zero one-hot."""
    from mlloss.backends import softmax_math
    from mlloss.backends.tensorflow import ops

    s = float(params["label_smoothing"])
    ignore = params.get("ignore_index")

    def parts(x, y, valid, m, z, e, total):
        classes = x.shape[-1]
        valid = valid[:, None]
        picked = tf.gather(x, tf.clip_by_value(y, 0, classes - 1), batch_dims=1)[:, None]
        z_mean = tf.reduce_mean(z, axis=-1, keepdims=True) if s else None
        at_label = softmax_math.shifted(ops, picked, m)
        values = softmax_math.sparse_value(ops, tf.math.log(total), at_label, z_mean, valid, s)
        hit = y[:, None] == tf.range(classes, dtype=y.dtype)[None, :]
        return values[:, 0], softmax_math.sparse_grad(ops, e, total, hit, valid, s)

    def prepared(x, y):
        """(x in the compute dtype, y as gather takes it, kept, in range)"""
        if y.dtype not in (tf.int32, tf.int64):  # gather takes no other index (uint8 ...)
            y = tf.cast(y, tf.int64)
        kept = tf.ones_like(y, dtype=tf.bool) if ignore is None else tf.not_equal(y, ignore)
        return _compute_dtype(x), y, kept, (y >= 0) & (y < x.shape[-1])

    def plain_form(x, y):
        out_dtype, (x, y, kept, in_range) = x.dtype, prepared(x, y)
        m = tf.reduce_max(x, axis=-1, keepdims=True)
        z = x - m
        e = tf.exp(z)
        total = tf.reduce_sum(e, axis=-1, keepdims=True)
        values, local = parts(x, y, in_range, m, z, e, total)
        plain = tf.reduce_all(kept & in_range) & _no_infinity(m, x)
        value, grad = _reduced(values, local, kept, reduction)
        return tf.cast(value, out_dtype), tf.cast(grad, out_dtype), plain

    def general_form(x, y):
        out_dtype, (x, y, kept, in_range) = x.dtype, prepared(x, y)
        m, z, e, total = softmax_math.exp_shifted(ops, x)
        values, local = parts(x, y, in_range, m, z, e, total)
        values = tf.where(kept, values, tf.zeros_like(values))
        local = tf.where(kept[:, None], local, tf.zeros_like(local))
        value, grad = _reduced(values, local, kept, reduction)
        return tf.cast(value, out_dtype), tf.cast(grad, out_dtype)

    return _chosen(plain_form, general_form)


def _dense_step(params: Mapping[str, Any], epsilon: float, reduction: str):
    """``step(x, y) -> (value, gradient, plain)``, from XLA computations: the softmax
    cross-entropy's value (per sample for ``"none"``, else reduced) and its gradient with
    respect to ``x`` for a cotangent of 1 on it, in ``x``'s dtype (float16 and bfloat16
    computed in float32), and whether the plain form computed them. ``y`` is the raw
    multi-hot targets: a negative entry is a missing label.

    The plain form (backends/softmax_math.py) is computed first, and its row maxima and
    minima tell whether it applies: no label missing and no logit infinite. For any other
    batch the general form, which masks, takes the limits and applies the NaN policy, runs
    as well (:func:`_chosen`). TensorFlow without XLA runs one op at a time, a pass over the
    logits each; under XLA the value and the gradient come from three fused loops.
    """
    from mlloss.backends import softmax_math
    from mlloss.backends.tensorflow import ops
    from mlloss.losses.softmax import _distribution
    from mlloss.spec import Prepared

    def target(y, mask):
        return _distribution(ops, Prepared(y, mask, None), params)

    def plain_form(x, y):
        out_dtype, x = x.dtype, _compute_dtype(x)
        y = tf.cast(y, x.dtype)
        q = target(y, tf.ones_like(y, dtype=tf.bool))
        values, parts, m = softmax_math.dense(ops, x, q, None, epsilon)
        # the plain form applies where no label is missing (a NaN label makes its row's
        # minimum NaN: the general form, whose value is NaN alike) and no logit is infinite
        plain = tf.reduce_all(tf.reduce_min(y, axis=-1) >= 0) & _no_infinity(m, x)
        every = tf.ones_like(values, dtype=tf.bool)
        local = softmax_math.dense_grad(parts, q, epsilon)
        value, grad = _reduced(values, local, every, reduction)
        return tf.cast(value, out_dtype), tf.cast(grad, out_dtype), plain

    def general_form(x, y):
        out_dtype, x = x.dtype, _compute_dtype(x)
        y = tf.cast(y, x.dtype)
        mask = ~(y < 0)
        masked = target(tf.where(mask, y, tf.zeros_like(y)), mask)
        out, general, _ = softmax_math.dense(ops, x, masked, mask, epsilon)
        local = softmax_math.dense_grad(general, masked, epsilon)
        value, grad = _reduced(out, local, tf.reduce_any(mask, axis=-1), reduction)
        return tf.cast(value, out_dtype), tf.cast(grad, out_dtype)

    return _chosen(plain_form, general_form)


def _binary_step(
    plain_form: Callable[..., Any],
    fallback: Callable[..., tf.Tensor],
    reduction: str,
    holds: Callable[..., Any],
    per: str = "element",
    plain_xla: bool = True,
    first: Callable[..., Any] | None = None,
):
    """``step(x, y) -> (value, gradient, plain)`` for a loss with a plain form: the reduced
    value and its gradient for a cotangent of 1, in ``x``'s dtype (float16 and bfloat16
    computed in float32), and whether the plain form computed them. ``per``: what a mean
    divides by (entries, rows, or the one value of a batch).

    The plain form (backends/binary_math.py, ranking_math.py, probability_math.py: the value
    and the gradient from shared transcendentals) applies where ``holds(ops, x, y)``: for the
    focal family and the ranking losses every label 0 or 1 and every logit finite (every
    probability in [0, 1] for bce_focal), for probability_ce and abs_kl every target observed
    and every probability finite. It and its check are one XLA computation; any other batch
    takes ``fallback(x, y)``, the spec's own path (reduced), and its gradient, in a second
    one (:func:`_chosen`). ``plain_xla``: whether the plain form is compiled with XLA too.

    ``first``: a faster plain form with a bound of its own, ``first(x, y) -> (values,
    gradient, holds)`` (two_way's shift shared by the whole batch,
    ranking_math.two_way_shared), tried before the plain form in an XLA computation of its
    own: a ``tf.cond`` outside it runs the plain form's step for a batch it does not hold
    for.
    """
    from mlloss.backends.tensorflow import ops

    def part(form):
        return lambda x, y: plain_part(form, x, y)

    def plain_part(form, x, y):
        out_dtype, xc = x.dtype, _compute_dtype(x)
        yc = tf.cast(y, xc.dtype)
        plain = holds(ops, xc, yc)
        values, local, *bound = form(xc, yc)
        if bound:
            plain = plain & bound[0]
        total = tf.reduce_sum(values)
        if reduction != "sum":  # every entry observed: the mean over all of them, or over
            # the rows for a loss per sample (a size unknown when traced for any batch size;
            # 0 for an empty batch, whose mean is 0)
            if per == "batch":  # a batch's loss is one value
                size = tf.constant(1)
            else:
                size = tf.size(xc) if per == "element" else tf.size(xc) // tf.shape(xc)[-1]
            count = tf.cast(tf.maximum(size, 1), xc.dtype)
            total, local = total / count, local / count
        return tf.cast(total, out_dtype), tf.cast(local, out_dtype), plain

    def general_part(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = fallback(x, y)
        return tf.cast(value, x.dtype), tf.cast(tape.gradient(value, x), x.dtype)

    step = _chosen(part(plain_form), general_part, plain_xla)
    if first is None:
        return step
    first_step = _per_signature(part(first))

    def chosen(x: tf.Tensor, y: tf.Tensor) -> Any:
        value, grad, plain = first_step(x, y)
        return tf.cond(plain, lambda: (value, grad, plain), lambda: step(x, y))

    return chosen


def _chosen(
    plain_form: Callable[..., Any], general_form: Callable[..., Any], plain_xla: bool = True
):
    """``step(x, y) -> (value, gradient, plain)`` from ``plain_form(x, y) -> (value,
    gradient, plain)`` and ``general_form(x, y) -> (value, gradient)``, each its own XLA
    computation: the plain form and its check run on every batch, and a ``tf.cond`` outside
    both runs the general form for a batch the plain form does not hold for. Inside one
    computation the plain form would be computed before its ``tf.cond`` too (inside a
    branch, XLA writes its temporaries out for the branch to read back), and the branch that
    returns its result copied it: the 16 MB gradient at 4096x1000 float32, 10 of focal's 56
    ms. Outside XLA a branch hands its tensors on as they are. ``plain_xla``: whether the
    plain form is compiled with XLA (else a graph of TensorFlow's own kernels)."""
    plain_step = _per_signature(plain_form, plain_xla)
    general_step = _per_signature(general_form)

    def step(x: tf.Tensor, y: tf.Tensor) -> Any:
        value, grad, plain = plain_step(x, y)
        value, grad = tf.cond(plain, lambda: (value, grad), lambda: general_step(x, y))
        return value, grad, plain

    return step


def _per_signature(compute: Callable[..., Any], xla: bool = True) -> Callable[..., Any]:
    """``compute`` compiled with XLA, one ``tf.function`` per shape and dtype of its inputs
    (a shape with unknown sizes, as inside a ``tf.function`` traced for any batch size, is one
    signature: XLA compiles it for each size it meets). One tf.function retraced for each
    new shape would warn about retracing after five; one traced for shapes with unknown
    sizes (``reduce_retracing``) and then called eagerly aborted the process in TensorFlow
    2.21 (XLA reading the shape of a dynamic output). ``xla``: False for a graph of
    TensorFlow's own kernels, traced apart inside a caller's XLA compilation (where
    multilabel_hinge's numpy sort has no kernel: see _hinge)."""
    compiled: dict[tuple[Any, ...], Callable[..., Any]] = {}

    def step(x: tf.Tensor, y: tf.Tensor) -> Any:
        key = (tuple(x.shape), x.dtype, tuple(y.shape), y.dtype)
        if not xla:
            key = (*key, _inside_xla())
        fn = compiled.get(key)
        if fn is None:
            # a fresh object each: TensorFlow counts retracing per function (per code object,
            # which a partial has none of)
            fn = compiled.setdefault(
                key, tf.function(functools.partial(compute), jit_compile=xla, autograph=False)
            )
        return fn(x, y)

    return step


def _differentiable(step, reduction: str, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """``step``'s value, with its gradient times the cotangent as the backward (which keeps
    only that gradient, the size of the logits)."""

    @tf.custom_gradient
    def value(logits):
        out, grad, _ = step(logits, y)

        def backward(g):
            return (g[:, None] if reduction == "none" else g) * grad

        return out, backward

    return value(x)


def _two_dimensional(x: tf.Tensor) -> bool:
    """A (samples, classes) batch with a known, non-zero number of classes: what the XLA
    kernels take (any other shape goes to the spec's path)."""
    return x.shape.rank == 2 and bool(x.shape[-1]) and x.dtype.is_floating


def _dense(params: Mapping[str, Any], fallback: Callable[..., tf.Tensor], epsilon: float = 0.0):
    """softmax_ce (and poly1) per sample, from :func:`_dense_step` (the same kernel that
    :func:`fused_kernel` runs for the reduced loss)."""
    if params.get("class_weight") is not None:
        return None
    step = _dense_step(params, epsilon, "none")

    def fn(x, y, mask):
        if not _two_dimensional(x):
            return fallback(x, y, mask)
        # the prepared targets with their missing labels put back
        return _differentiable(step, "none", x, tf.where(mask, y, -tf.ones_like(y)))

    return fn


def _sigmoid_bce(
    params: Mapping[str, Any], fallback: Callable[..., tf.Tensor], per_sample: bool = False
):
    """softplus(z) + (r - y) x with r = round(y) and z = x (1 - 2r): the exact per-entry loss
    (for hard labels the second term is 0, and softplus(z) has no cancellation at confident
    logits), in eight element-wise ops, and g (sigmoid(x) - y) as its gradient in three.
    TensorFlow's own loss also composes eight ops, and its autodiff adds about ten more for
    the backward. Taken when every label is in [0, 1] (none missing) and every logit is
    finite (at an infinite logit a soft label meets inf - inf in the correction). With
    ``per_sample`` (multilabel_soft_margin), each sample's mean over its classes, every class
    observed."""
    if params.get("pos_weight") is not None or params.get("class_weight") is not None:
        return None
    smoothing = params.get("label_smoothing", 0.0)

    def fn(x, y, mask):
        # y is the prepared targets: a missing label's entry is 0 there and False in mask
        in_domain = tf.reduce_all(mask) & (tf.reduce_max(y) <= 1)
        target = smooth_binary(y, smoothing)

        def fast(logits):
            hard = tf.round(target)
            z = logits * (1.0 - 2.0 * hard)
            # 0 where r = y, even at an infinite logit (0 * inf would be NaN)
            correction = tf.math.multiply_no_nan(logits, hard - target)
            values = tf.math.softplus(z) + correction
            if per_sample:
                classes = tf.cast(tf.shape(logits)[-1], logits.dtype)
                values = tf.reduce_sum(values, axis=-1) / classes
            # an infinite logit with a soft label meets inf - inf here, and a NaN makes a
            # whole sample's gradient NaN in multilabel_soft_margin: the formula's batches
            taken = in_domain & _finite(logits)

            def grad(g):
                scale = g[..., None] / classes if per_sample else g
                return scale * (tf.math.sigmoid(logits) - target)

            return values, taken, grad

        return _guarded(x, fast, lambda logits: fallback(logits, y, mask))

    return fn


def _focal(params: Mapping[str, Any], fallback: Callable[..., tf.Tensor]):
    """For labels in {0, 1}, with z = x (1 - 2y) the logit signed so that 1 - p_t =
    sigmoid(z) and the BCE is softplus(z): alpha_t sigmoid(z)^gamma softplus(z), and its
    gradient (1 - 2y) alpha_t sigmoid(z)^gamma [gamma sigmoid(-z) softplus(z) + sigmoid(z)]
    computed with the value from the same three transcendentals (the formula's log-space
    form, for any label in [0, 1], takes about a dozen, and its backward as many again).
    Taken when no label is missing, every label is 0 or 1 and every logit is finite (a NaN or
    +-inf logit, whose limits the formula has, takes the formula)."""
    if params.get("label_smoothing", 0.0):
        return None
    gamma, alpha = float(params["gamma"]), params["alpha"]

    def fn(x, y, mask):
        binary = tf.reduce_all(mask) & tf.reduce_all(tf.equal(y, tf.round(y)))
        sign = 1.0 - 2.0 * y
        # alpha_t (1 - 2y) = (1 - alpha) - y for y in {0, 1}
        signed_alpha = sign if alpha is None else (1.0 - alpha) - y

        def fast(logits):
            z = logits * sign
            s = tf.math.sigmoid(z)  # 1 - p_t
            loss = tf.math.softplus(z)
            if gamma == 0.0:
                local = s
                weight = None
            else:
                weight = s * s if gamma == 2.0 else tf.math.pow(s, gamma)
                local = (gamma * tf.math.sigmoid(-z) * loss + s) * weight
            values = loss if weight is None else weight * loss
            if alpha is not None:  # alpha_t = (1 - alpha) + (2 alpha - 1) y
                values = values * ((1.0 - alpha) + (2.0 * alpha - 1.0) * y)
            local = local * signed_alpha
            return values, binary & _finite(logits), lambda g: g * local

        return _guarded(x, fast, lambda logits: fallback(logits, y, mask))

    return fn


def _bce(params: Mapping[str, Any], fallback: Callable[..., tf.Tensor]):
    """Binary cross-entropy on probabilities, q = clip(p, eps, 1 - eps): -(y log q +
    (1 - y) log(1 - q)) and, with it in the forward, its gradient (q - y) / (q (1 - q)) where
    the clip passes p (q == p) and 0 outside. Taken when no label is missing and every
    probability is finite (a NaN takes the formula, with its NaN policy); for eps > 0 (both
    logs finite), without a log floor or class weights."""
    if params.get("class_weight") is not None or params.get("log_floor") is not None:
        return None
    if not params["eps"] > 0.0:  # a probability of 0 or 1 would meet log(0)
        return None
    from mlloss.backends.tensorflow import ops
    from mlloss.losses.binary import clip_bounds

    smoothing = params.get("label_smoothing", 0.0)

    def fn(x, y, mask):
        observed = tf.reduce_all(mask)
        target = smooth_binary(y, smoothing)
        lo, hi = clip_bounds(ops, x, params)

        def fast(p):
            q = tf.clip_by_value(p, lo, hi)
            one_minus = 1.0 - q
            values = -(target * tf.math.log(q) + (1.0 - target) * tf.math.log(one_minus))
            local = tf.where(tf.equal(q, p), (q - target) / (q * one_minus), tf.zeros_like(q))
            return values, observed & _finite(p), lambda g: g * local

        return _guarded(x, fast, lambda p: fallback(p, y, mask))

    return fn


def _asl(params: Mapping[str, Any], fallback: Callable[..., tf.Tensor]):
    """ASL with gamma_pos = 0 (its default): positives -log p, negatives
    p_m^g (-log(1 - p_m)) with p_m = max(p - clip, 0), mixed per entry as y and 1 - y, and
    with them in the forward the gradient: p - 1 for positives, and for negatives
    p (1 - p) p_m^(g - 1) [p_m / (1 - p_m) + g (-log(1 - p_m))] (0 where p <= clip). Taken
    when no label is missing and every logit is finite; gamma_neg >= 1 (p_m^(g - 1) is finite
    at p_m = 0), clip > 0 and no stop_grad_weight, else the formula always."""
    gamma_neg, clip = float(params["gamma_neg"]), float(params["clip"])
    if params["gamma_pos"] != 0.0 or gamma_neg < 1.0 or clip <= 0.0 or params["stop_grad_weight"]:
        return None

    def power(base, exponent):
        if exponent == 0.0:  # p_m^0 where p_m > 0; 0 at p_m = 0 (the derivative's 0 there)
            return tf.sign(base)
        if exponent.is_integer() and exponent <= 3.0:
            out = base
            for _ in range(int(exponent) - 1):
                out = out * base
            return out
        return tf.math.pow(base, exponent)

    def fn(x, y, mask):
        observed = tf.reduce_all(mask)
        negatives = 1.0 - y

        def fast(logits):
            q = tf.math.sigmoid(logits)
            p_m = tf.math.maximum(q - clip, 0.0)
            one_minus = 1.0 - p_m
            log_one_minus = tf.math.log(one_minus)
            weight = power(p_m, gamma_neg - 1.0)  # p_m^(g - 1)
            negative = -(p_m * weight) * log_one_minus
            positive = -tf.math.log_sigmoid(logits)
            # (1 - y) a + y b, not a + y (b - a): exact at y = 0 and 1 (a confident positive's
            # small value would lose its digits to the negative term's)
            values = negatives * negative + y * positive
            inner = (p_m / one_minus - gamma_neg * log_one_minus) * weight * (q - q * q)
            local = negatives * inner + y * (q - 1.0)
            return values, observed & _finite(logits), lambda g: g * local

        return _guarded(x, fast, lambda logits: fallback(logits, y, mask))

    return fn


KERNELS = {
    "sparse_softmax_ce": _sparse,
    "softmax_ce": _dense,
    "sigmoid_bce": _sigmoid_bce,
    "multilabel_soft_margin": lambda params, fallback: _sigmoid_bce(params, fallback, True),
    "focal": _focal,
    "bce": _bce,
    "asl": _asl,
    "poly1": lambda params, fallback: _dense(
        POLY1_CROSS_ENTROPY, fallback, float(params["epsilon"])
    ),
}

# the losses whose whole computation, reduction included, is one XLA kernel
WHOLE = {
    "sparse_softmax_ce": _sparse_step,
    "softmax_ce": lambda params, reduction: _dense_step(params, 0.0, reduction),
    "poly1": lambda params, reduction: _dense_step(
        POLY1_CROSS_ENTROPY, float(params["epsilon"]), reduction
    ),
}


def _binary_whole(
    name: str,
    params: Mapping[str, Any],
    reduction: str,
    fallback: Callable[..., tf.Tensor] | None,
    per: str = "element",
):
    """focal's or asl's whole-loss step, or None: for the settings their plain form covers,
    reduced to a mean or a sum, with the spec's path to fall back on."""
    from mlloss.backends import binary_math, ranking_math
    from mlloss.backends.tensorflow import ops

    form = OUTSIDE_XLA.get(name, binary_math.PLAIN.get(name))
    if form is None or fallback is None or reduction not in ("mean", "sum"):
        return None
    plain = form(ops, params)
    if plain is None:
        return None
    holds = binary_math.holds(name)
    xla = name not in OUTSIDE_XLA
    first = None
    if name == "two_way":  # one shift for the whole batch where it loses nothing
        tp, tn = float(params["tp"]), float(params["tn"])

        def first(x, y):
            return ranking_math.two_way_shared(ops, x, y, tp, tn)

    return _binary_step(plain, fallback, reduction, holds, per, plain_xla=xla, first=first)


class _Rows:
    """The row operations of ranking_math.multilabel_hinge_plain on TensorFlow, run outside
    XLA: XLA lowers ``tf.searchsorted`` to a comparison of every query with every entry (16.9
    GB at 4096x1000 float32, 13 s), where TensorFlow's own kernel searches (0.41 s with its
    sort). Rows sort as integers with the floats' order (ranking_math)."""

    @staticmethod
    def sort(a: tf.Tensor) -> tf.Tensor:
        ints, bits = (tf.int64, 63) if a.dtype == tf.float64 else (tf.int32, 31)

        def flip(b):
            low = tf.bitwise.bitwise_and(tf.bitwise.right_shift(b, bits), ints.max)
            return tf.bitwise.bitwise_xor(b, low)

        return tf.bitcast(flip(tf.sort(flip(tf.bitcast(a, ints)), axis=-1)), a.dtype)

    @staticmethod
    def search(ordered: tf.Tensor, queries: tf.Tensor, right: bool) -> tf.Tensor:
        return tf.searchsorted(ordered, queries, side="right" if right else "left")

    @staticmethod
    def take(a: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
        index = tf.clip_by_value(index, 0, tf.shape(a)[-1] - 1)
        return tf.gather(a, index, axis=-1, batch_dims=1)

    @staticmethod
    def suffix_sum(a: tf.Tensor) -> tf.Tensor:
        return tf.cumsum(a, axis=-1, reverse=True)


def _hinge(ops: Any, params: Mapping[str, Any]) -> Callable[..., Any]:
    """float32 rows (half precision computed in them) by numpy's sort of packed keys
    (backends/hinge_rows.py, a ``tf.numpy_function``) where TensorFlow sees no GPU (the rows
    are on the CPU then), else and for float64 by TensorFlow's sorted rows (:class:`_Rows`):
    4096x1000 float32 on the CPU, 60 ms against 325 ms through TensorFlow's sort and
    searches."""
    from mlloss.backends import hinge_rows, ranking_math

    margin = float(params["margin"])
    sorted_rows = ranking_math.multilabel_hinge_plain(ops, _Rows, margin)
    host = functools.partial(hinge_rows.batch, margin=margin)

    def plain(x: tf.Tensor, y: tf.Tensor) -> Any:
        classes = x.shape[-1]
        packs = x.dtype == tf.float32 and classes is not None and classes <= hinge_rows.MAX_CLASSES
        if not packs or _sees_gpu() or _inside_xla():
            return sorted_rows(x, y)
        values, grad = tf.numpy_function(host, [x, y], [tf.float32, tf.float32], stateful=False)
        values.set_shape((*x.shape[:-1], 1))
        grad.set_shape(x.shape)
        return values, grad

    return plain


@functools.cache
def _sees_gpu() -> bool:
    """Whether TensorFlow places work on a GPU (it keeps to the CPU where it sees none)."""
    return bool(tf.config.list_logical_devices("GPU"))


def _inside_xla() -> bool:
    """Whether the graph being traced is compiled by XLA (a caller's ``tf.function(
    jit_compile=True)`` around the loss), which has no kernel for a ``numpy_function``.
    TensorFlow tells it only through an internal module: where that is gone, True (the
    sorted rows run anywhere)."""
    try:
        from tensorflow.python.framework import ops as framework_ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - a TensorFlow that moved its internals
        return True
    graph = framework_ops.get_default_graph()
    return bool(control_flow_util.GraphOrParentsInXlaContext(graph))


#: the plain forms that run outside XLA (a graph of TensorFlow's own kernels), the spec's
#: path for other batches still under XLA: multilabel_hinge's sorted rows (see _Rows)
OUTSIDE_XLA = {"multilabel_hinge": _hinge}


def fused_kernel(
    name: str,
    params: Mapping[str, Any],
    reduction: str,
    per: str,
    mean_over_classes: bool,
    fallback: Callable[..., tf.Tensor] | None = None,
) -> Callable[..., tf.Tensor | None] | None:
    """The loss as XLA computations, ``fn(x, y, checked) -> value | None`` (None: take the
    spec's path), eagerly and inside ``tf.function`` alike; or None when no kernel computes
    this loss with these settings. focal and asl take ``fallback(x, y)`` (the spec's path,
    reduced) inside the computation for a batch their plain form does not hold for."""
    if mean_over_classes or params.get("class_weight") is not None:
        return None
    build = WHOLE.get(name)
    step = (
        build(params, reduction)
        if build is not None
        else _binary_whole(name, params, reduction, fallback, per)
    )
    if step is None:
        return None
    indices = name == "sparse_softmax_ce"

    def run(x: tf.Tensor, y: tf.Tensor, checked: bool) -> tf.Tensor | None:
        if not _two_dimensional(x) or (indices and not y.dtype.is_integer):
            return None
        if not indices and y.shape != x.shape:
            return None
        return _differentiable(step, reduction, x, y)

    return run


def values_kernel(
    name: str, params: Mapping[str, Any], fallback: Callable[..., tf.Tensor]
) -> Callable[..., tf.Tensor] | None:
    """``fn(x, y, mask) -> per-sample values`` (NaN policy and masks included), taking
    ``fallback(x, y, mask)`` (the spec's formula) where the fast path does not apply; or None
    when the formula computes these settings."""
    build = KERNELS.get(name)
    return None if build is None else build(params, fallback)


__all__ = ["KERNELS", "OUTSIDE_XLA", "WHOLE", "fused_kernel", "values_kernel"]
