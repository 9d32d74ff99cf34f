"""The focal loss's value and gradient for hard labels from one exponential, written once over
a backend's ops for the compiled kernels (JAX's ``jit``; see jax_kernels.WHOLE).

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

from typing import Any


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


__all__ = ["focal_plain"]
