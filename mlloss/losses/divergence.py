"""Divergences between a target and a predicted pseudo-distribution: ``abs_kl``, the
question's "modified KL divergence" on unnormalised per-class probabilities."""

from __future__ import annotations

from mlloss.spec import LossSpec, Native, Param


def _clipped(ops, x, t, p):
    """P = max(y, eps), Q = max(q, eps), and where Q passes the gradient (q >= eps: the
    declared subgradient at q = eps is the one of q itself)."""
    eps = ops.scalar(p["eps"], x)
    target = ops.where(t.y < eps, eps, t.y)
    passes = ~(x < eps)
    return target, ops.where(passes, x, eps + ops.zeros_like(x)), passes


def abs_kl_value(ops, x, t, p):
    target, q, _ = _clipped(ops, x, t, p)
    # (P - Q) and log(P / Q) always share their sign, so the product is |.| already
    terms = (target - q) * (ops.log(target) - ops.log(q))
    return ops.sum(ops.where(t.mask, terms, 0.0), axis=-1)


def abs_kl_grad(ops, x, t, p):
    target, q, passes = _clipped(ops, x, t, p)
    # d/dQ (P - Q)(log P - log Q) = log(Q / P) + 1 - P / Q
    d_q = ops.log(q) - ops.log(target) + 1.0 - target / q
    return ops.where(t.mask & passes, d_q, 0.0)


def abs_kl_definition(ops, x, t, p):
    eps = ops.scalar(p["eps"], x)
    target = ops.maximum(t.y, eps)
    q = ops.maximum(x, eps)
    terms = ops.abs((target - q) * ops.log(target / q))
    return ops.sum(ops.where(t.mask, terms, 0.0), axis=-1)


def abs_kl_kink_side(ops, x, t, p):
    """At q = eps the gradient is that of q itself: the right-hand derivative."""
    return ops.where(x == ops.scalar(p["eps"], x), 1.0, ops.zeros_like(x))


ABS_KL = LossSpec(
    name="abs_kl",
    aliases=("modified_kl",),
    summary="The question's modified KL: sum over classes of |(P - Q) log(P / Q)| on clipped "
    "probabilities.",
    formula=(
        r"\ell_i = \sum_c \left|(P_c - Q_c)\log\frac{P_c}{Q_c}\right|,\quad"
        r" P = \max(y, \epsilon),\ Q = \max(q, \epsilon)"
    ),
    per="sample",
    input_kind="probabilities",
    target_kind="multi_hot",
    params=(
        Param(
            "eps",
            1e-7,
            "float",
            "both sides are clipped below at eps (Keras's epsilon)",
            low=0.0,
            low_open=True,
            high=1.0,
        ),
    ),
    value=abs_kl_value,
    definition=abs_kl_definition,
    grad=abs_kl_grad,
    decode="probability_threshold",
    subgradients={"max(q, eps)": "at q = eps the gradient is that of q (1)"},
    kink_side=abs_kl_kink_side,
    natives=(
        Native(
            "keras",
            "(the answer's own code)",
            "K.sum(K.abs((K.clip(y, K.epsilon(), None) - K.clip(q, K.epsilon(), None)) * "
            "K.log(K.clip(y, K.epsilon(), None) / K.clip(q, K.epsilon(), None))), axis=-1)",
            "Keras's clip passes no gradient at the bound",
        ),
    ),
    references=(
        "shared/seed: the question's answer 4, 'modified KL divergence' on pseudo-distributions",
    ),
    notes="Symmetric in P and Q. Targets and predictions are per-class probabilities, not "
    "normalised over classes.",
)
