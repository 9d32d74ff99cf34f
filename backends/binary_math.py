"""focal's and asl's value and gradient for hard labels from one exponential, written once over
a backend's ops for the compiled whole-loss kernels (JAX's ``jit``, jax_kernels.WHOLE;
TensorFlow's XLA, tensorflow_kernels.fused_kernel).

For a label ``y`` in {0, 1} and a finite logit ``x``, with ``z = x (1 - 2y)`` (the logit signed
so that the entry's BCE is ``softplus(z)`` and its ``1 - p_t`` is ``sigmoid(z)``),
``e = exp(-|z|)`` in (0, 1]:

- ``softplus(z) = max(z, 0) + log1p(e)``, ``sigmoid(z) = 1 / (1 + e)`` for ``z >= 0`` and
  ``e / (1 + e)`` below, ``sigmoid(-z)`` the other one: no cancellation anywhere, and
  ``log sigmoid(z) = min(z, 0) - log1p(e)`` for a power ``sigmoid(z)^gamma`` in log space;
- value ``alpha_t sigmoid(z)^gamma softplus(z)``;
- gradient ``(1 - 2y) alpha_t sigmoid(z)^gamma [gamma sigmoid(-z) softplus(z) + sigmoid(z)]``
  (d/dz of ``s^gamma softplus(z)`` is ``gamma s^(gamma - 1) s (1 - s) softplus(z) + s^gamma s``).

One exponential, one ``log1p`` and one reciprocal per entry, where the spec's general formula
(soft labels, missing labels and the limits at infinite logits included) takes about fifteen
transcendentals. The caller checks the batch (every label 0 or 1, every logit finite) and
takes the spec's path for any batch that is not. sigmoid_bce's form (``bce_plain``) holds
for soft targets too: ``y softplus(-x) + (1 - y) softplus(x)`` from the same exponential.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mlloss.backends import probability_math, ranking_math, softmax_math
from mlloss.losses.binary import clip_bounds, smooth_binary

Plain = Callable[[Any, Any], tuple[Any, Any]]


def _sigmoids(ops: Any, z: Any) -> tuple[Any, Any, Any, Any]:
    """At z, from one exponential e = exp(-|z|): ``(softplus(z), sigmoid(z), sigmoid(-z),
    log1p(e))``, none by a cancellation."""
    e = ops.exp(-ops.abs(z))
    log1p_e = ops.log1p(e)
    reciprocal = 1.0 / (1.0 + e)
    positive = z >= 0.0
    s = ops.where(positive, reciprocal, e * reciprocal)
    r = ops.where(positive, e * reciprocal, reciprocal)
    return ops.maximum(z, 0.0) + log1p_e, s, r, log1p_e


def _focusing(
    ops: Any, z: Any, gamma: float, parts: tuple[Any, Any, Any, Any] | None = None
) -> tuple[Any, Any, Any, Any]:
    """At a signed logit z, the focal family's core s^gamma softplus(z), s = sigmoid(z), from
    one exponential (``parts``: :func:`_sigmoids` at z, when the caller has them): ``(value,
    derivative in z, s^(gamma + 1), sigmoid(-z))``, the derivative s^gamma [gamma sigmoid(-z)
    softplus(z) + s] (d/dz of s^gamma softplus(z) is gamma s^(gamma - 1) s (1 - s) softplus(z)
    + s^gamma s); s^gamma is 1 for gamma = 0."""
    softplus, s, r, log1p_e = _sigmoids(ops, z) if parts is None else parts
    if gamma == 0.0:
        return softplus, s, s, r
    if gamma == 1.0:
        weight = s
    elif gamma == 2.0:
        weight = s * s
    else:  # exp(gamma log s): no early underflow of a power of a small s
        weight = ops.exp(gamma * (ops.minimum(z, 0.0) - log1p_e))
    return weight * softplus, weight * (gamma * r * softplus + s), weight * s, r


def _alpha_t(y: Any, alpha: float | None) -> Any:
    """alpha y + (1 - alpha)(1 - y) for labels in {0, 1}; None without class balancing."""
    return None if alpha is None else (1.0 - alpha) + (2.0 * alpha - 1.0) * y


def focal_plain(ops: Any, x: Any, y: Any, gamma: float, alpha: float | None) -> tuple[Any, Any]:
    """``(values, gradient)`` of focal per entry, for labels in {0, 1} and finite logits."""
    sign = 1.0 - 2.0 * y
    values, local, _, _ = _focusing(ops, x * sign, gamma)
    alpha_t = _alpha_t(y, alpha)
    if alpha_t is not None:
        values, local = alpha_t * values, alpha_t * local
    return values, sign * local


def poly1_focal_plain(
    ops: Any, x: Any, y: Any, epsilon: float, gamma: float, alpha: float | None
) -> tuple[Any, Any]:
    """poly1_focal per entry, for labels in {0, 1} and finite logits: focal plus
    epsilon s^(gamma + 1), whose derivative in z is epsilon (gamma + 1) s^(gamma + 1)
    sigmoid(-z) = epsilon (gamma + 1) s^gamma s (1 - s)."""
    sign = 1.0 - 2.0 * y
    values, local, power, r = _focusing(ops, x * sign, gamma)  # power: s^(gamma + 1)
    alpha_t = _alpha_t(y, alpha)
    if alpha_t is not None:
        values, local = alpha_t * values, alpha_t * local
    return values + epsilon * power, sign * (local + epsilon * (gamma + 1.0) * power * r)


def splc_plain(
    ops: Any, x: Any, y: Any, tau: float, margin: float, gamma: float
) -> tuple[Any, Any]:
    """splc per entry, for labels in {0, 1} and finite logits: with z = x - m y and the
    pseudo-label t (1 where y = 1 or sigmoid(z) > tau), focal's core at w = z (1 - 2t), its
    derivative (1 - 2t) times the core's (t is a constant)."""
    z = x - margin * y
    target = ops.where((y > 0.5) | (ops.sigmoid(z) > tau), 1.0, ops.zeros_like(x))
    sign = 1.0 - 2.0 * target
    values, local, _, _ = _focusing(ops, z * sign, gamma)
    return values, sign * local


def hill_plain(
    ops: Any, x: Any, y: Any, lamb: float, margin: float, gamma: float
) -> tuple[Any, Any]:
    """hill per entry, for labels in {0, 1} and finite logits: positives focal's core at
    v = m - x (its derivative in x the core's negated), negatives (lambda - q) q^2,
    q = sigmoid(x), whose derivative is q^2 sigmoid(-x) (2 lambda - 3 q). Each entry needs
    the sigmoids of one argument only, v or x: one exponential at w = v (a positive) or x (a
    negative) gives both (on XLA's CPU a block of 2^19 entries took 0.87 ms against 1.10 ms
    with one at each)."""
    is_positive = y > 0.5
    w = ops.where(is_positive, margin - x, x)
    parts = _sigmoids(ops, w)
    positive, d_positive, _, _ = _focusing(ops, w, gamma, parts)
    _, q, q_complement, _ = parts  # at a negative, sigmoid(x) and sigmoid(-x)
    square = q * q
    negative = (lamb - q) * square
    d_negative = square * q_complement * (2.0 * lamb - 3.0 * q)
    return ops.where(is_positive, positive, negative), ops.where(
        is_positive, -d_positive, d_negative
    )


def asl_plain(ops: Any, x: Any, y: Any, gamma_neg: float, clip: float) -> tuple[Any, Any]:
    """``(values, gradient)`` of asl per entry (gamma_pos = 0, clip > 0, gamma_neg >= 1), for
    labels in {0, 1} and finite logits. With ``e = exp(-|x|)``, ``p = sigmoid(x)`` and
    ``1 - p`` from it (no cancellation) and ``p_m = max(p - clip, 0)``:

    - a positive: ``softplus(-x) = max(-x, 0) + log1p(e)``, gradient ``-(1 - p)``;
    - a negative: ``p_m^g (-log1p(-p_m))``, gradient
      ``p (1 - p) p_m^(g - 1) [p_m / (1 - p_m) + g (-log1p(-p_m))]`` where ``p > clip`` and 0
      at and below it (the spec's side of the kink).
    """
    e = ops.exp(-ops.abs(x))
    reciprocal = 1.0 / (1.0 + e)
    positive_x = x >= 0.0
    p = ops.where(positive_x, reciprocal, e * reciprocal)
    one_minus_p = ops.where(positive_x, e * reciprocal, reciprocal)
    shifted = p - clip
    inside = shifted > 0.0
    p_m = ops.where(inside, shifted, 0.0)
    is_positive = y > 0.5
    # one log1p an entry: log1p(e) for a positive's -log p, log1p(-p_m) for a negative's
    # log(1 - p_m) (a block of 2^19 entries on XLA's CPU: 1.16 ms against 1.66 ms with both)
    logs = ops.log1p(ops.where(is_positive, e, -p_m))
    softplus_neg = ops.maximum(-x, 0.0) + logs  # -log p
    minus_log = -logs  # -log(1 - p_m) >= 0
    if gamma_neg == 1.0:
        # p_m^0, and 0 outside (its gradient's factor)
        power = ops.cast(inside, ops.dtype_name(x))
    elif gamma_neg == 2.0:
        power = p_m
    elif gamma_neg == 4.0:
        power = p_m * p_m * p_m
    else:  # p_m^(g - 1) = exp((g - 1) log p_m): 0 at p_m = 0 for g > 1
        power = ops.exp((gamma_neg - 1.0) * ops.log(p_m))
    negative = power * p_m * minus_log
    d_negative = p * one_minus_p * power * (p_m / (1.0 - p_m) + gamma_neg * minus_log)
    values = ops.where(is_positive, softplus_neg, negative)
    local = ops.where(is_positive, -one_minus_p, d_negative)
    return values, local


def _focal(ops: Any, params: Mapping[str, Any]) -> Plain | None:
    """None where label smoothing makes every label soft (the spec's path computes those)."""
    if params.get("label_smoothing", 0.0):
        return None
    gamma, alpha = float(params["gamma"]), params["alpha"]
    alpha = None if alpha is None else float(alpha)
    return lambda x, y: focal_plain(ops, x, y, gamma, alpha)


def _asl(ops: Any, params: Mapping[str, Any]) -> Plain | None:
    """For the settings the plain form covers: gamma_pos = 0, clip > 0, gamma_neg >= 1 (so
    that p_m^(gamma_neg - 1) stays finite), the weights differentiated."""
    if (
        params["gamma_pos"] != 0.0
        or params["clip"] <= 0.0
        or params["gamma_neg"] < 1.0
        or params["stop_grad_weight"]
    ):
        return None
    gamma_neg, clip = float(params["gamma_neg"]), float(params["clip"])
    return lambda x, y: asl_plain(ops, x, y, gamma_neg, clip)


def bce_focal_plain(ops: Any, x: Any, y: Any, params: Mapping[str, Any]) -> tuple[Any, Any]:
    """bce_focal per entry, for labels in {0, 1} and probabilities in [0, 1]: alpha_t w^g
    (-log q_t) with w = 1 - p_t (x or 1 - x) and q_t the clipped probability of the label,
    its derivative alpha_t (1 - 2y) [g w^(g - 1) (-log q_t) + w^g / q_t [q == x]] (the clip
    passes no gradient outside its closed interval)."""
    gamma, alpha = float(params["gamma"]), params["alpha"]
    q = ops.clip(x, *clip_bounds(ops, x, params))
    is_positive = y > 0.5
    sign = 1.0 - 2.0 * y
    q_t = ops.where(is_positive, q, 1.0 - q)
    bce = -ops.log(q_t)
    d_bce = ops.where(q == x, sign / q_t, ops.zeros_like(x))
    if gamma == 0.0:
        values, local = bce, d_bce
    else:
        w = ops.where(is_positive, 1.0 - x, x)
        if gamma == 1.0:
            lower = ops.zeros_like(x) + 1.0
        elif gamma == 2.0:
            lower = w
        else:  # w^(g - 1) = exp((g - 1) log w): 0 at w = 0 for g > 1
            lower = ops.exp((gamma - 1.0) * ops.log(w))
        values = lower * w * bce
        local = lower * (gamma * sign * bce + w * d_bce)
    alpha_t = _alpha_t(y, None if alpha is None else float(alpha))
    if alpha_t is not None:
        values, local = alpha_t * values, alpha_t * local
    return values, local


def _bce_focal(ops: Any, params: Mapping[str, Any]) -> Plain | None:
    """None with label smoothing (every label soft) or a gamma in (0, 1), whose derivative
    at w = 0 is infinite."""
    if params["label_smoothing"] or 0.0 < params["gamma"] < 1.0:
        return None
    return lambda x, y: bce_focal_plain(ops, x, y, params)


def _poly1_focal(ops: Any, params: Mapping[str, Any]) -> Plain:
    epsilon, gamma, alpha = float(params["epsilon"]), float(params["gamma"]), params["alpha"]
    alpha = None if alpha is None else float(alpha)
    return lambda x, y: poly1_focal_plain(ops, x, y, epsilon, gamma, alpha)


def _splc(ops: Any, params: Mapping[str, Any]) -> Plain:
    tau, margin, gamma = float(params["tau"]), float(params["margin"]), float(params["gamma"])
    return lambda x, y: splc_plain(ops, x, y, tau, margin, gamma)


def _hill(ops: Any, params: Mapping[str, Any]) -> Plain:
    lamb, margin, gamma = float(params["lamb"]), float(params["margin"]), float(params["gamma"])
    return lambda x, y: hill_plain(ops, x, y, lamb, margin, gamma)


def bce_plain(ops: Any, x: Any, y: Any) -> tuple[Any, Any]:
    """``(values, gradient)`` of sigmoid_bce per entry for any observed target y and finite
    logit x: y softplus(-x) + (1 - y) softplus(x) with softplus(+-x) = max(+-x, 0) + log1p(e),
    e = exp(-|x|), a sum of non-negative terms for y in [0, 1]; its derivative the spec's
    (1 - y) sigmoid(x) - y sigmoid(-x), one term of it exactly 0 for a label in {0, 1}, so
    that nothing cancels there (sigmoid(x) - y would at y = 1 and a large x)."""
    _, s, r, log1p_e = _sigmoids(ops, x)
    values = log1p_e + y * ops.maximum(-x, 0.0) + (1.0 - y) * ops.maximum(x, 0.0)
    return values, (1.0 - y) * s - y * r


def _sigmoid_bce(ops: Any, params: Mapping[str, Any]) -> Plain | None:
    """Label smoothing (toward 0.5) applied to the targets; None with per-class factors (the
    spec's path computes those)."""
    if any(params[k] is not None for k in ("pos_weight", "class_weight")):
        return None
    smoothing = float(params["label_smoothing"])
    return lambda x, y: bce_plain(ops, x, smooth_binary(y, smoothing))


def _multilabel_soft_margin(ops: Any, params: Mapping[str, Any]) -> Plain | None:
    """Each sample's mean of the BCE over its classes, all observed where the plain form
    holds: the entries' values and gradient over C (their sum is the samples' sum; the
    kernel sums every value it is given)."""
    if params["class_weight"] is not None:
        return None

    def plain(x: Any, y: Any) -> tuple[Any, Any]:
        values, local = bce_plain(ops, x, y)
        classes = x.shape[-1]
        return values / classes, local / classes

    return plain


#: sigmoid_bce and multilabel_soft_margin: ``BCE_PLAIN[name](ops, params) -> plain(x, y)``
#: as in ``PLAIN``, for any observed targets (soft ones too) and finite logits
#: (``probability_math.observed``). JAX's whole-loss kernels only: TensorFlow has kernels of
#: its own for both (tensorflow_kernels.KERNELS; 0.53x ``tf.nn``'s sigmoid_bce)
BCE_PLAIN: dict[str, Callable[[Any, Mapping[str, Any]], Plain | None]] = {
    "sigmoid_bce": _sigmoid_bce,
    "multilabel_soft_margin": _multilabel_soft_margin,
}

#: the losses with a plain form: ``PLAIN[name](ops, params) -> plain(x, y) -> (values,
#: gradient)`` for labels in {0, 1} and finite logits, or None for settings it does not cover
PLAIN: dict[str, Callable[[Any, Mapping[str, Any]], Plain | None]] = {
    "focal": _focal,
    "asl": _asl,
    "poly1_focal": _poly1_focal,
    "splc": _splc,
    "hill": _hill,
    "bce_focal": _bce_focal,
    # one value per row (shaped (..., 1)): backends/ranking_math.py, probability_math.py
    **ranking_math.PLAIN,
    **probability_math.PLAIN,
}


def hard_labels(ops: Any, x: Any, y: Any) -> Any:
    """Whether every label is 0 or 1 and every logit finite, as a 0-d boolean. |y (1 - y)| is
    0 exactly at 0 and 1 (not at -1, a missing label, nor at NaN), and 0 x is NaN for an
    infinite or NaN logit: the sum of the two over the batch is 0 exactly then (no term is
    negative, so nothing cancels). One reduction, which XLA fuses with its inputs (a reduction
    of booleans it would write out whole first). A sum, not a maximum: TensorFlow's XLA on the
    CPU computes a maximum that may drop a NaN (its fast min/max), and then took the plain form
    for a batch with an infinite logit (the conformance suite's ``infinite`` case)."""
    return ops.sum(ops.abs(y * (1.0 - y)) + 0.0 * x) == 0.0


def hard_labels_on_probabilities(ops: Any, x: Any, y: Any) -> Any:
    """Whether every label is 0 or 1 and every probability in [0, 1] (so finite), as
    :func:`hard_labels` tells it: one sum of non-negative terms, 0 exactly then."""
    outside = ops.maximum(-x, 0.0) + ops.maximum(x - 1.0, 0.0)
    return ops.sum(ops.abs(y * (1.0 - y)) + outside + 0.0 * x) == 0.0


def holds(name: str) -> Callable[[Any, Any, Any], Any]:
    """``check(ops, x, y)``: whether the plain form of ``name`` holds for a batch."""
    if name in probability_math.PLAIN or name in BCE_PLAIN:  # any target, none missing
        return probability_math.observed
    if name in softmax_math.PLAIN:  # none missing; the plain form keeps infinite logits' limits
        return softmax_math.observed
    if name in probability_math.INDEX_PLAIN:  # class indices: every one a class
        return probability_math.indices_in_range
    return hard_labels_on_probabilities if name == "bce_focal" else hard_labels


__all__ = [
    "BCE_PLAIN",
    "PLAIN",
    "asl_plain",
    "bce_focal_plain",
    "bce_plain",
    "focal_plain",
    "hard_labels",
    "hard_labels_on_probabilities",
    "hill_plain",
    "holds",
    "poly1_focal_plain",
    "splc_plain",
]
