"""Ranking losses: they compare the logits of a sample's positive labels with those of its
negatives (``zlpr``, ``lsep``, ``bp_mll``, ``multilabel_hinge``), or of a class's positive
samples with its negatives too (``two_way``).

Positives and negatives: an observed label >= 0.5 is a positive, below 0.5 a negative (hard
labels are exactly that; soft labels are thresholded). Pairwise sums are computed in O(C) as
products of log-sum-exps wherever the formula factorises.
"""

from __future__ import annotations

from mlloss.spec import LossSpec, Native, Param


def _sets(t):
    positive = t.mask & (t.y >= 0.5)
    return positive, t.mask & ~positive


def _soft_exp(ops, log_softmax, log_scale):
    """exp(log_scale + log_softmax): a probability times a factor, with the factor's limits."""
    return ops.exp(log_softmax + log_scale)


# zlpr -----------------------------------------------------------------------------------------


def _zlpr_parts(ops, x, t):
    y = t.y
    neg_side = t.mask & (y < 1.0)
    pos_side = t.mask & (y > 0.0)
    a = ops.where(neg_side, x + ops.log(ops.where(neg_side, 1.0 - y, 1.0)), float("-inf"))
    b = ops.where(pos_side, -x + ops.log(ops.where(pos_side, y, 1.0)), float("-inf"))
    return a, b


def zlpr_value(ops, x, t, p):
    a, b = _zlpr_parts(ops, x, t)
    return ops.softplus(ops.logsumexp(a, axis=-1)) + ops.softplus(ops.logsumexp(b, axis=-1))


def zlpr_grad(ops, x, t, p):
    a, b = _zlpr_parts(ops, x, t)
    s_a = ops.logsumexp(a, axis=-1, keepdims=True)
    s_b = ops.logsumexp(b, axis=-1, keepdims=True)
    # d softplus(LSE(a)) / d a_j = sigmoid(S) softmax(a)_j = exp(log_softmax(a)_j - softplus(-S))
    d_a = _soft_exp(ops, ops.log_softmax(a, axis=-1), -ops.softplus(-s_a))
    d_b = _soft_exp(ops, ops.log_softmax(b, axis=-1), -ops.softplus(-s_b))
    return ops.where(t.mask, d_a - d_b, 0.0)


def zlpr_definition(ops, x, t, p):
    y = t.y
    first = ops.sum(ops.where(t.mask, (1.0 - y) * ops.exp(x), 0.0), axis=-1)
    second = ops.sum(ops.where(t.mask, y * ops.exp(-x), 0.0), axis=-1)
    return ops.log(1.0 + first) + ops.log(1.0 + second)


ZLPR = LossSpec(
    name="zlpr",
    aliases=("multilabel_categorical_crossentropy",),
    summary="Zero-bounded log-sum-exp & pairwise rank loss: softmax CE generalised to "
    "multi-label, with threshold 0.",
    formula=(
        r"\ell_i = \log\left(1 + \sum_j (1 - y_j) e^{x_j}\right)"
        r" + \log\left(1 + \sum_i y_i e^{-x_i}\right)"
    ),
    per="sample",
    input_kind="logits",
    target_kind="multi_hot",
    params=(),
    value=zlpr_value,
    definition=zlpr_definition,
    grad=zlpr_grad,
    decode="zero_threshold",
    references=(
        "Su, Multi-label classification as an extension of softmax and cross-entropy (2020); "
        "Su et al., ZLPR, arXiv 2208.02955, eq. 7 (soft labels: eq. 10)",
    ),
    notes="Soft labels weight each term by y and 1 - y. Rows with no positive (or no "
    "negative) have the corresponding term log 1 = 0.",
)


# lsep and bp_mll: the pairwise sum over (negative v, positive u) of e^{x_v - x_u} factorises
# into LSE_neg(x) + LSE_pos(-x)


def _pair_logsums(ops, x, t):
    positive, negative = _sets(t)
    a = ops.logsumexp(x, axis=-1, where=negative, keepdims=True)
    b = ops.logsumexp(-x, axis=-1, where=positive, keepdims=True)
    both = ops.any(positive, axis=-1, keepdims=True) & ops.any(negative, axis=-1, keepdims=True)
    return positive, negative, a, b, both


def lsep_value(ops, x, t, p):
    _, _, a, b, both = _pair_logsums(ops, x, t)
    s = ops.where(both, a + b, float("-inf"))
    return ops.sum(ops.softplus(s), axis=-1)


def lsep_grad(ops, x, t, p):
    positive, negative, a, b, both = _pair_logsums(ops, x, t)
    s = ops.where(both, a + b, float("-inf"))
    log_sig = -ops.softplus(-s)
    d_neg = _soft_exp(ops, ops.log_softmax(x, axis=-1, where=negative), log_sig)
    d_pos = _soft_exp(ops, ops.log_softmax(-x, axis=-1, where=positive), log_sig)
    grad = ops.where(negative, d_neg, 0.0) - ops.where(positive, d_pos, 0.0)
    return ops.where(both, grad, 0.0)


def _pairwise_exp(ops, x, t):
    positive, negative = _sets(t)
    diff = ops.expand_dims(x, -1) - ops.expand_dims(x, -2)  # [v, u] = x_v - x_u
    pairs = ops.expand_dims(negative, -1) & ops.expand_dims(positive, -2)
    return ops.sum(ops.sum(ops.where(pairs, ops.exp(diff), 0.0), axis=-1), axis=-1)


def lsep_definition(ops, x, t, p):
    return ops.log(1.0 + _pairwise_exp(ops, x, t))


LSEP = LossSpec(
    name="lsep",
    summary="Log-sum-exp pairwise ranking loss: every positive above every negative, smoothly.",
    formula=r"\ell_i = \log\left(1 + \sum_{v: y_v = 0}\sum_{u: y_u = 1} e^{x_v - x_u}\right)",
    per="sample",
    input_kind="logits",
    target_kind="multi_hot",
    params=(),
    value=lsep_value,
    definition=lsep_definition,
    grad=lsep_grad,
    decode="top_k",
    references=(
        "Li et al., Improving Pairwise Ranking for Multi-label Image Classification, "
        "CVPR 2017, eq. 4",
    ),
    notes="Computed in O(C) as softplus(LSE_neg(x) + LSE_pos(-x)). A row without a positive "
    "or without a negative has no pairs: loss 0.",
)


def _bp_mll_log(ops, x, t):
    positive, negative, a, b, both = _pair_logsums(ops, x, t)
    log_norm = ops.log(ops.maximum(ops.count(positive, x, keepdims=True), 1.0)) + ops.log(
        ops.maximum(ops.count(negative, x, keepdims=True), 1.0)
    )
    return positive, negative, a, b, both, log_norm


def bp_mll_value(ops, x, t, p):
    _, _, a, b, both, log_norm = _bp_mll_log(ops, x, t)
    return ops.sum(ops.where(both, ops.exp(a + b - log_norm), 0.0), axis=-1)


def bp_mll_grad(ops, x, t, p):
    positive, negative, a, b, both, log_norm = _bp_mll_log(ops, x, t)
    # d/dx_v (negative v) = e^{x_v} sum_u e^{-x_u} / norm; d/dx_u (positive u) = -e^{-x_u} ...
    d_neg = ops.exp(ops.where(negative, x, 0.0) + b - log_norm)
    d_pos = ops.exp(ops.where(positive, -x, 0.0) + a - log_norm)
    grad = ops.where(negative, d_neg, 0.0) - ops.where(positive, d_pos, 0.0)
    return ops.where(both, grad, 0.0)


def bp_mll_definition(ops, x, t, p):
    positive, negative = _sets(t)
    total = _pairwise_exp(ops, x, t)
    norm = ops.count(positive, x) * ops.count(negative, x)
    return ops.where(norm > 0, total / ops.where(norm > 0, norm, 1.0), 0.0)


BP_MLL = LossSpec(
    name="bp_mll",
    aliases=("bpmll",),
    summary="BP-MLL: the mean over (positive, negative) pairs of e^{-(x_pos - x_neg)}.",
    formula=(r"\ell_i = \frac{1}{|Y||\bar Y|}\sum_{k \in Y}\sum_{l \in \bar Y} e^{-(x_k - x_l)}"),
    per="sample",
    input_kind="logits",
    target_kind="multi_hot",
    params=(),
    value=bp_mll_value,
    definition=bp_mll_definition,
    grad=bp_mll_grad,
    decode="top_k",
    references=(
        "Zhang & Zhou, Multilabel Neural Networks with Applications to Functional Genomics "
        "and Text Categorization, IEEE TKDE 18(10), 2006, eq. 3",
    ),
    notes="Computed in log space as exp(LSE_pos(-x) + LSE_neg(x)) / (n_pos n_neg); 0 for a "
    "row without a positive or without a negative.",
)


# multilabel_hinge -----------------------------------------------------------------------------


def _hinge_parts(ops, x, t, p):
    positive, negative = _sets(t)
    # [j, i] = margin - (x_j - x_i), for positive j and negative i
    d = p["margin"] - (ops.expand_dims(x, -1) - ops.expand_dims(x, -2))
    pairs = ops.expand_dims(positive, -1) & ops.expand_dims(negative, -2)
    # active: d > 0, and NaN stays active (NaN in, NaN out); at d = 0 the hinge is flat
    active = pairs & ~(d <= 0)
    observed = ops.maximum(ops.count(t.mask, x, keepdims=True), 1.0)
    return d, active, observed


def multilabel_hinge_value(ops, x, t, p):
    d, active, observed = _hinge_parts(ops, x, t, p)
    total = ops.sum(ops.sum(ops.where(active, d, 0.0), axis=-1), axis=-1)
    return total / ops.sum(observed, axis=-1)


def multilabel_hinge_grad(ops, x, t, p):
    d, active, observed = _hinge_parts(ops, x, t, p)
    ones = ops.where(active, ops.where(d == d, ops.zeros_like(d) + 1.0, float("nan")), 0.0)
    # positive j loses one per active pair, negative i gains one
    grad = ops.sum(ones, axis=-2) - ops.sum(ones, axis=-1)
    return ops.where(t.mask, grad / observed, 0.0)


def multilabel_hinge_definition(ops, x, t, p):
    d, _, observed = _hinge_parts(ops, x, t, p)
    positive, negative = _sets(t)
    pairs = ops.expand_dims(positive, -1) & ops.expand_dims(negative, -2)
    hinge = ops.where(pairs, ops.maximum(d, 0.0), 0.0)
    return ops.sum(ops.sum(hinge, axis=-1), axis=-1) / ops.sum(observed, axis=-1)


def multilabel_hinge_kink_side(ops, x, t, p):
    """At margin - (x_j - x_i) = 0 the hinge is flat: the right-hand derivative for a
    positive's logit, the left-hand one for a negative's."""
    positive, _ = _sets(t)
    return ops.where(positive, 1.0, -1.0 + ops.zeros_like(x))


MULTILABEL_HINGE = LossSpec(
    name="multilabel_hinge",
    aliases=("multilabel_margin",),
    summary="Pairwise hinge: each positive above each negative by a margin (torch's "
    "MultiLabelMarginLoss on multi-hot targets).",
    formula=(
        r"\ell_i = \frac{1}{C}\sum_{j: y_j = 1}\sum_{i: y_i = 0}"
        r" \max\left(0, m - (x_j - x_i)\right)"
    ),
    per="sample",
    input_kind="logits",
    target_kind="multi_hot",
    params=(
        Param("margin", 1.0, "float", "m: the margin between positives and negatives", low=0.0),
    ),
    value=multilabel_hinge_value,
    definition=multilabel_hinge_definition,
    grad=multilabel_hinge_grad,
    decode="top_k",
    subgradients={"max(0, m - (x_j - x_i))": "0 at the corner (the hinge is flat there)"},
    kink_side=multilabel_hinge_kink_side,
    natives=(
        Native(
            "torch.nn.functional.multilabel_margin_loss",
            "torch",
            {"reduction": "mean"},
            "reduction",
            forms=("torch.nn.MultiLabelMarginLoss",),
            fixed={"margin": 1.0},
            targets="padded_indices",
            note="targets are class indices padded with -1 (converted to multi-hot); the "
            "margin is 1",
        ),
    ),
    references=("torch.nn.MultiLabelMarginLoss documentation",),
    notes="Pairwise: memory O(N C^2). C is the number of observed classes of the sample. A "
    "row without a positive or without a negative has no pairs: loss 0.",
)


# two_way --------------------------------------------------------------------------------------


def _two_way_axis(ops, x, positive, negative, tp, tn, axis):
    """g over one axis: softplus(tn LSE_neg(a / tn) + tp LSE_pos(-a / tp)), its sigmoid factor,
    and which slices have a positive (and so count)."""
    a = tn * ops.logsumexp(x / tn, axis=axis, where=negative, keepdims=True)
    b = tp * ops.logsumexp(-x / tp, axis=axis, where=positive, keepdims=True)
    has_pos = ops.any(positive, axis=axis, keepdims=True)
    both = has_pos & ops.any(negative, axis=axis, keepdims=True)
    s = ops.where(both, a + b, float("-inf"))
    return s, has_pos


def _as_batch(ops, x, t):
    """(x, positive, negative) with a batch axis: a single sample (under vmap, say) is a
    batch of one."""
    positive, negative = _sets(t)
    if len(ops.shape(x)) == 1:
        return ops.expand_dims(x, 0), ops.expand_dims(positive, 0), ops.expand_dims(negative, 0)
    return x, positive, negative


def two_way_value(ops, x, t, p):
    x, positive, negative = _as_batch(ops, x, t)
    total = 0.0
    for axis in (0, 1):  # classes (over samples), then samples (over classes)
        s, has_pos = _two_way_axis(ops, x, positive, negative, p["tp"], p["tn"], axis)
        g = ops.where(has_pos, ops.softplus(s), 0.0)
        total = total + ops.sum(g) / ops.maximum(ops.count(has_pos, x, axis=None), 1.0)
    return total


def two_way_grad(ops, x, t, p):
    single = len(ops.shape(x)) == 1
    x, positive, negative = _as_batch(ops, x, t)
    tp, tn = p["tp"], p["tn"]
    grad, undefined = 0.0, False
    for axis in (0, 1):
        s, has_pos = _two_way_axis(ops, x, positive, negative, tp, tn, axis)
        undefined = undefined | ops.any(has_pos & (s != s))
        # dg/da_k = sigmoid(s) [softmax_neg(a / tn)_k - softmax_pos(-a / tp)_k]
        log_sig = -ops.softplus(-s)
        d_neg = ops.exp(ops.log_softmax(x / tn, axis=axis, where=negative) + log_sig)
        d_pos = ops.exp(ops.log_softmax(-x / tp, axis=axis, where=positive) + log_sig)
        d = ops.where(negative, d_neg, 0.0) - ops.where(positive, d_pos, 0.0)
        d = ops.where(has_pos, d, 0.0)
        grad = grad + d / ops.maximum(ops.count(has_pos, x, axis=None), 1.0)
    # the batch's value is NaN when one counted term is (inf - inf): so is every gradient
    grad = ops.where(undefined, float("nan"), grad)
    return ops.sum(grad, axis=0) if single else grad


def two_way_definition(ops, x, t, p):
    x, positive, negative = _as_batch(ops, x, t)
    tp, tn = p["tp"], p["tn"]
    total = 0.0
    for axis in (0, 1):
        neg_sum = ops.sum(ops.where(negative, ops.exp(x / tn), 0.0), axis=axis)
        pos_sum = ops.sum(ops.where(positive, ops.exp(-x / tp), 0.0), axis=axis)
        g = ops.log(1.0 + neg_sum**tn * pos_sum**tp)
        has_pos = ops.any(positive, axis=axis)
        total = total + ops.sum(ops.where(has_pos, g, 0.0)) / ops.count(has_pos, x, axis=None)
    return total


TWO_WAY = LossSpec(
    name="two_way",
    aliases=("two_way_multilabel",),
    summary="Two-way multi-label loss: a smooth ranking over classes and over samples; one "
    "value per batch.",
    formula=(
        r"L = \frac{1}{|\mathcal C|}\sum_{c \in \mathcal C} g(x_{:,c})"
        r" + \frac{1}{|\mathcal N|}\sum_{i \in \mathcal N} g(x_{i,:}),\quad"
        r" g(a) = \operatorname{softplus}\left(t_n \operatorname{LSE}_{y=0}(a/t_n)"
        r" + t_p \operatorname{LSE}_{y=1}(-a/t_p)\right)"
    ),
    per="batch",
    input_kind="logits",
    target_kind="multi_hot",
    params=(
        Param(
            "tp", 4.0, "float", "temperature of the positives' log-sum-exp", low=0.0, low_open=True
        ),
        Param(
            "tn", 1.0, "float", "temperature of the negatives' log-sum-exp", low=0.0, low_open=True
        ),
    ),
    value=two_way_value,
    definition=two_way_definition,
    grad=two_way_grad,
    decode="top_k",
    references=("Kobayashi, Two-way Multi-Label Loss, CVPR 2023, eqs. 8-10",),
    notes="A batch-level loss: 'none' returns the one scalar. The class-wise means run over "
    "classes with a positive in the batch, the sample-wise ones over samples with a positive.",
)
