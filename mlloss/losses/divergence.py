"""Divergences between a target and a predicted pseudo-distribution: ``abs_kl``, the
question's "modified KL divergence" on unnormalised per-class probabilities."""

from __future__ import annotations

from mlloss.spec import LossSpec, Param


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
    references=(
        "shared/seed: the question's answer 4, 'modified KL divergence' on pseudo-distributions",
    ),
    notes="Symmetric in P and Q. Targets and predictions are per-class probabilities, not "
    "normalised over classes. No framework ships it; the answer writes it in Keras as "
    "K.sum(K.abs((K.clip(y, K.epsilon(), None) - K.clip(q, K.epsilon(), None)) * "
    "K.log(K.clip(y, K.epsilon(), None) / K.clip(q, K.epsilon(), None))), axis=-1), whose "
    "clip passes no gradient at the bound.",
)


# partition ------------------------------------------------------------------------------------


def _partition_parts(ops, x, t, p):
    y = ops.where(t.mask, t.y, 0.0)
    n = ops.sum(y, axis=-1)
    target = y / ops.expand_dims(ops.where(n > 0, n, 1.0), -1)  # a row with no label stays 0
    floor = ops.scalar(p["count_floor"], x)
    count = p["count"]
    passes = ~(count < floor)  # the clip's declared subgradient: closed at the floor
    z = ops.where(passes, count, floor + ops.zeros_like(count))
    return target, n, z, passes


def partition_value(ops, x, t, p):
    target, n, z, _ = _partition_parts(ops, x, t, p)
    log_p = ops.log_softmax(x, axis=-1, where=t.mask)
    kl = ops.sum(ops.where(t.mask, ops.xlogy(target, target) - ops.xmul(target, log_p), 0.0), -1)
    count_term = (z - n) * (z - n) if p["count_loss"] == "mse" else z - n * ops.log(z)
    return ops.where(ops.any(t.mask, axis=-1), kl + p["count_weight"] * count_term, 0.0)


def partition_grad(ops, x, t, p):
    target, n, z, passes = _partition_parts(ops, x, t, p)
    log_p = ops.log_softmax(x, axis=-1, where=t.mask)
    softmax = ops.exp(log_p)
    d_x = ops.where(t.mask, softmax * ops.sum(target, axis=-1, keepdims=True) - target, 0.0)
    d_z = 2.0 * (z - n) if p["count_loss"] == "mse" else 1.0 - n / z
    d_count = ops.where(passes & ops.any(t.mask, axis=-1), p["count_weight"] * d_z, 0.0)
    # a sample whose KL is NaN (inf - inf at infinite logits) has a NaN value: NaN gradients
    kl_terms = ops.where(t.mask, ops.xlogy(target, target) - ops.xmul(target, log_p), 0.0)
    undefined = ops.any(kl_terms != kl_terms, axis=-1)
    return d_x, ops.where(undefined, float("nan"), d_count)


def partition_definition(ops, x, t, p):
    y = ops.where(t.mask, t.y, 0.0)
    n = ops.sum(y, axis=-1)
    target = y / ops.expand_dims(n, -1)
    e = ops.where(t.mask, ops.exp(x), 0.0)
    softmax = e / ops.sum(e, axis=-1, keepdims=True)
    kl = ops.sum(ops.where(t.mask & (target > 0), target * ops.log(target / softmax), 0.0), -1)
    z = ops.maximum(p["count"], ops.scalar(p["count_floor"], x))
    if p["count_loss"] == "mse":
        return kl + p["count_weight"] * (z - n) ** 2
    return kl + p["count_weight"] * (z - n * ops.log(z))


def partition_kink_side(ops, x, t, p):
    """At count = floor the gradient is that of count itself (the right-hand side)."""
    at_floor = p["count"] == ops.scalar(p["count_floor"], x)
    return ops.zeros_like(x), ops.where(at_floor, 1.0, ops.zeros_like(p["count"]))


PARTITION = LossSpec(
    name="partition",
    summary="The question's factorisation: a softmax head for which labels, a count head for "
    "how many; KL on the first, MSE or Poisson on the second.",
    formula=(
        r"\ell_i = \mathrm{KL}\!\left(\frac{y_i}{n_i} \,\Big\|\, \operatorname{softmax}(x_i)"
        r"\right) + w\,\begin{cases}(Z_i - n_i)^2 & \text{mse}\\ Z_i - n_i \log Z_i &"
        r" \text{poisson}\end{cases},\quad Z = \max(\mathrm{count}, f),\ n = \sum_c y_c"
    ),
    per="sample",
    input_kind="logits",
    target_kind="multi_hot",
    params=(
        Param("count_loss", "mse", "choice", "the count head's loss", choices=("mse", "poisson")),
        Param("count_weight", 1.0, "float", "w: the weight of the count term", low=0.0),
        Param(
            "count_floor",
            0.01,
            "float",
            "f: the count head is clipped below at f (the answer's max(0.01, out))",
            low=0.0,
            low_open=True,
        ),
    ),
    value=partition_value,
    definition=partition_definition,
    grad=partition_grad,
    decode="top_count",
    subgradients={"max(count, floor)": "at count = floor the gradient is that of count (1)"},
    kink_side=partition_kink_side,
    heads=("count",),
    references=(
        "shared/seed: the question's answer 3, the partition-function factorisation "
        "y = Z P(y) with a softmax distribution and a clipped linear (or Poisson) count",
    ),
    notes="Call it as loss(logits, targets, count=count_head); value_and_grad returns "
    "(value, (d/d logits, d/d count)). KL is 0 for a row with no label (n = 0).",
)
