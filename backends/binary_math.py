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
takes the spec's path for any batch that is not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Plain = Callable[[Any, Any], tuple[Any, Any]]


def focal_plain(ops: Any, x: Any, y: Any, gamma: float, alpha: float | None) -> tuple[Any, Any]:
    """``(values, gradient)`` of focal per entry, for labels in {0, 1} and finite logits."""
    sign = 1.0 - 2.0 * y
    z = x * sign
    e = ops.exp(-ops.abs(z))
    log1p_e = ops.log1p(e)
    softplus = ops.maximum(z, 0.0) + log1p_e
    reciprocal = 1.0 / (1.0 + e)
    positive = z >= 0.0
    s = ops.where(positive, reciprocal, e * reciprocal)  # sigmoid(z) = 1 - p_t
    if gamma == 0.0:
        values, local = softplus, sign * s
    else:
        r = ops.where(positive, e * reciprocal, reciprocal)  # sigmoid(-z) = p_t
        if gamma == 1.0:
            weight = s
        elif gamma == 2.0:
            weight = s * s
        else:  # exp(gamma log s): no early underflow of a power of a small s
            weight = ops.exp(gamma * (ops.minimum(z, 0.0) - log1p_e))
        values = weight * softplus
        local = sign * weight * (gamma * r * softplus + s)
    if alpha is not None:  # alpha_t = (1 - alpha) + (2 alpha - 1) y
        alpha_t = (1.0 - alpha) + (2.0 * alpha - 1.0) * y
        values, local = alpha_t * values, alpha_t * local
    return values, local


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
    softplus_neg = ops.maximum(-x, 0.0) + ops.log1p(e)  # -log p
    shifted = p - clip
    inside = shifted > 0.0
    p_m = ops.where(inside, shifted, 0.0)
    minus_log = -ops.log1p(-p_m)  # -log(1 - p_m) >= 0
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
    values = ops.where(y > 0.5, softplus_neg, negative)
    local = ops.where(y > 0.5, -one_minus_p, d_negative)
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


#: the losses with a plain form: ``PLAIN[name](ops, params) -> plain(x, y) -> (values,
#: gradient)`` for labels in {0, 1} and finite logits, or None for settings it does not cover
PLAIN: dict[str, Callable[[Any, Mapping[str, Any]], Plain | None]] = {
    "focal": _focal,
    "asl": _asl,
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


__all__ = ["PLAIN", "asl_plain", "focal_plain", "hard_labels"]
