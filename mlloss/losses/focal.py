"""Focusing losses: element-wise sigmoid losses that reweight easy and hard entries.

``focal``, ``poly1_focal``, ``asl``, ``hill`` and ``splc``. Notation: x logits, y targets in
[0, 1] (negative: missing), p = sigmoid(x), p_t = p y + (1 - p)(1 - y). Every power of a
probability is computed in log space, exp(gamma * log q) with log q from log_sigmoid, so
(1 - p_t)^gamma neither underflows early nor turns 0 * inf into NaN.
"""

from __future__ import annotations

from mlloss.losses.binary import (
    KERAS_EPS,
    LABEL_SMOOTHING_BINARY,
    clip_bounds,
    clip_kink_side,
    smooth_binary,
)
from mlloss.losses.natives import (
    LAST_AXIS,
    keras_alpha,
    keras_alpha_inverse,
    keras_pair,
    torchvision_alpha,
    torchvision_alpha_inverse,
)
from mlloss.spec import LossSpec, Native, Param

_GAMMA = Param("gamma", 2.0, "float", "the focusing exponent on (1 - p_t)", low=0.0)
_ALPHA = Param(
    "alpha",
    None,
    "float",
    "the weight of positives, 1 - alpha that of negatives (None: no class balancing)",
    low=0.0,
    high=1.0,
    optional=True,
)

#: Keras's BinaryFocalCrossentropy and binary_focal_crossentropy
_KERAS_FOCAL = {
    "apply_class_balancing": False,
    "alpha": 0.25,
    "gamma": 2.0,
    "from_logits": False,
    "label_smoothing": 0.0,
    **LAST_AXIS,
}


def _pow(ops, log_base, exponent):
    """base ** exponent from log(base), for a constant exponent >= 0: 0 ** 0 = 1 (not
    exp(0 * -inf) = NaN), and 0 ** e = 0 for e > 0."""
    if exponent == 0:
        return ops.zeros_like(log_base) + 1.0
    return ops.exp(exponent * log_base)


def _bce(ops, x, y):
    """softplus(x) - x y, as y softplus(-x) + (1 - y) softplus(x) (exact at +-inf)."""
    return ops.xmul(y, ops.softplus(-x)) + ops.xmul(1.0 - y, ops.softplus(x))


def _log_one_minus_pt(ops, x, y):
    """log(1 - p_t) = log(y sigmoid(-x) + (1 - y) sigmoid(x)), stable for every x."""
    return ops.logaddexp(ops.log(y) + ops.log_sigmoid(-x), ops.log(1.0 - y) + ops.log_sigmoid(x))


def _d_log_one_minus_pt(ops, x, y):
    """d/dx log(1 - p_t) = (1 - 2y) sigmoid(x) sigmoid(-x) / (1 - p_t), written as
    (1 - 2y) / (y / sigmoid(x) + (1 - y) / sigmoid(-x)) so that it has its limits at +-inf."""
    ratio = 1.0 / (ops.xdivy(y, ops.sigmoid(x)) + ops.xdivy(1.0 - y, ops.sigmoid(-x)))
    return (1.0 - 2.0 * y) * ratio


def _alpha_t(y, alpha):
    return 1.0 if alpha is None else alpha * y + (1.0 - alpha) * (1.0 - y)


# focal ----------------------------------------------------------------------------------------


def _smoothed(t, p):
    """The targets, moved toward 0.5 when the loss has label smoothing (Keras's focal has)."""
    return smooth_binary(t.y, p.get("label_smoothing", 0.0))


def _focal_parts(ops, x, t, p):
    y, gamma = _smoothed(t, p), p["gamma"]
    weight = _pow(ops, _log_one_minus_pt(ops, x, y), gamma)
    return y, gamma, weight, _bce(ops, x, y)


def focal_value(ops, x, t, p):
    y, _, weight, bce = _focal_parts(ops, x, t, p)
    return ops.where(t.mask, _alpha_t(y, p["alpha"]) * ops.xmul(weight, bce), 0.0)


def _focal_grad_unweighted(ops, x, y, gamma, weight, bce):
    d_bce = (1.0 - y) * ops.sigmoid(x) - y * ops.sigmoid(-x)
    d_log_w = _d_log_one_minus_pt(ops, x, y)
    # d_log_w vanishes where bce is infinite (x = +-inf): the product's limit is 0
    return weight * d_bce + gamma * ops.xmul(d_log_w, ops.xmul(weight, bce))


def focal_grad(ops, x, t, p):
    y, gamma, weight, bce = _focal_parts(ops, x, t, p)
    grad = _focal_grad_unweighted(ops, x, y, gamma, weight, bce)
    return ops.where(t.mask, _alpha_t(y, p["alpha"]) * grad, 0.0)


def _textbook_focal(ops, prob, q, t, p):
    """alpha_t (1 - p_t)^gamma BCE as the paper writes it: p_t from the probability ``prob``,
    the cross-entropy from ``q`` (the same probability, or its clipped copy)."""
    y = _smoothed(t, p)
    p_t = prob * y + (1.0 - prob) * (1.0 - y)
    bce = -(y * ops.log(q) + (1.0 - y) * ops.log(1.0 - q))
    loss = _alpha_t(y, p["alpha"]) * (1.0 - p_t) ** p["gamma"] * bce
    return ops.where(t.mask, loss, 0.0)


def focal_definition(ops, x, t, p):
    q = ops.sigmoid(x)
    return _textbook_focal(ops, q, q, t, p)


FOCAL = LossSpec(
    name="focal",
    aliases=("sigmoid_focal", "focal_loss"),
    summary="Focal loss: sigmoid BCE down-weighted on easy entries by (1 - p_t)^gamma.",
    formula=(
        r"\ell = \alpha_t (1 - p_t)^\gamma \,\mathrm{BCE}(x, y),\quad"
        r" p_t = p y' + (1-p)(1-y'),\ \alpha_t = \alpha y' + (1-\alpha)(1-y'),\ "
        r"y' = y(1 - s) + s/2"
    ),
    per="element",
    input_kind="logits",
    target_kind="multi_hot",
    params=(_GAMMA, _ALPHA, LABEL_SMOOTHING_BINARY),
    value=focal_value,
    definition=focal_definition,
    grad=focal_grad,
    decode="logit_threshold",
    natives=(
        Native(
            "torchvision.ops.sigmoid_focal_loss",
            "torchvision",
            {"alpha": 0.25, "gamma": 2.0, "reduction": "none"},
            "reduction",
            rename={"gamma": "gamma"},
            convert=torchvision_alpha,
            invert=torchvision_alpha_inverse,
            note="alpha defaults to 0.25 (mlloss: None), and a negative alpha means none; "
            "reduction defaults to 'none'",
        ),
        Native(
            "optax.losses.sigmoid_focal_loss",
            "optax",
            {"alpha": None, "gamma": 2.0},
            "unreduced",
            rename={"alpha": "alpha", "gamma": "gamma"},
        ),
        *keras_pair(
            "BinaryFocalCrossentropy",
            "binary_focal_crossentropy",
            _KERAS_FOCAL,
            reduce_elements=True,
            when={"from_logits": True},
            note="alpha applies only with apply_class_balancing=True; smoothing toward 0.5; "
            "the BCE comes from the logits on Keras's TensorFlow backend only (its JAX and "
            "torch backends clip sigmoid(x) at 1e-7, and are refused)",
            rename={"gamma": "gamma", "label_smoothing": "label_smoothing"},
            convert=keras_alpha,
            invert=keras_alpha_inverse,
            require=LAST_AXIS,
            keras_backends=("tensorflow",),
        ),
    ),
    references=("Lin et al., Focal Loss for Dense Object Detection, ICCV 2017, eq. 5",),
    notes="alpha=None applies no class balancing (alpha_t = 1).",
)


# bce_focal ------------------------------------------------------------------------------------


def _bce_focal_parts(ops, x, t, p):
    """(y, log(1 - p_t), clipped BCE): the focusing factor takes the probability as given
    (only held to [0, 1]), the cross-entropy the probability clipped to [eps, 1 - eps]."""
    y = _smoothed(t, p)
    prob = ops.clip(x, 0.0, 1.0)
    log_w = ops.log(y * (1.0 - prob) + (1.0 - y) * prob)
    lo, hi = clip_bounds(ops, x, p)
    q = ops.clip(x, lo, hi)
    return y, log_w, -(ops.xlogy(y, q) + ops.xlogy(1.0 - y, 1.0 - q))


def bce_focal_value(ops, x, t, p):
    y, log_w, bce = _bce_focal_parts(ops, x, t, p)
    weight = _pow(ops, log_w, p["gamma"])
    return ops.where(t.mask, _alpha_t(y, p["alpha"]) * weight * bce, 0.0)


def bce_focal_grad(ops, x, t, p):
    y, log_w, bce = _bce_focal_parts(ops, x, t, p)
    gamma = p["gamma"]
    lo, hi = clip_bounds(ops, x, p)
    q = ops.clip(x, lo, hi)
    # each clip passes its gradient on its closed interval (NaN stays inside: NaN out)
    in_unit = ~((x < 0.0) | (x > 1.0))
    in_clip = ~((x < lo) | (x > hi))
    d_bce = ops.where(in_clip, ops.xdivy(1.0 - y, 1.0 - q) - ops.xdivy(y, q), 0.0)
    # d/dp (1 - p_t)^gamma = gamma (1 - p_t)^(gamma - 1) (1 - 2y)
    if gamma == 0:
        d_weight = ops.zeros_like(x)
    else:
        d_weight = gamma * _pow(ops, log_w, gamma - 1.0) * (1.0 - 2.0 * y)
    d_weight = ops.where(in_unit, d_weight, 0.0)
    grad = d_weight * bce + _pow(ops, log_w, gamma) * d_bce
    return ops.where(t.mask, _alpha_t(y, p["alpha"]) * grad, 0.0)


def bce_focal_definition(ops, x, t, p):
    return _textbook_focal(ops, ops.clip(x, 0.0, 1.0), ops.clip(x, *clip_bounds(ops, x, p)), t, p)


BCE_FOCAL = LossSpec(
    name="bce_focal",
    aliases=("binary_focal_crossentropy",),
    summary="Focal loss on probabilities: the BCE clipped to [eps, 1 - eps] as Keras clips it.",
    formula=(
        r"\ell = \alpha_t (1 - p_t)^\gamma \,\mathrm{BCE}_\epsilon(p, y'),\quad"
        r" p_t = p y' + (1-p)(1-y'),\ \alpha_t = \alpha y' + (1-\alpha)(1-y'),\ "
        r"y' = y(1 - s) + s/2"
    ),
    per="element",
    input_kind="probabilities",
    target_kind="multi_hot",
    params=(
        _GAMMA,
        _ALPHA,
        LABEL_SMOOTHING_BINARY,
        KERAS_EPS,
    ),
    value=bce_focal_value,
    definition=bce_focal_definition,
    grad=bce_focal_grad,
    decode="probability_threshold",
    subgradients={
        "clip": "each clip passes the gradient on its closed interval, [0, 1] for the focusing "
        "factor and [eps, 1 - eps] for the cross-entropy, and 0 outside"
    },
    kink_side=clip_kink_side,
    natives=keras_pair(
        "BinaryFocalCrossentropy",
        "binary_focal_crossentropy",
        _KERAS_FOCAL,
        reduce_elements=True,
        when={"from_logits": False},
        note="alpha applies only with apply_class_balancing=True; probabilities clipped to "
        "[1e-7, 1 - 1e-7] in the BCE only",
        rename={"gamma": "gamma", "label_smoothing": "label_smoothing"},
        fixed={"eps": 1e-7},
        convert=keras_alpha,
        invert=keras_alpha_inverse,
        require=LAST_AXIS,
    ),
    references=(
        "Lin et al., Focal Loss for Dense Object Detection, ICCV 2017, eq. 5",
        "keras.losses.BinaryFocalCrossentropy documentation",
    ),
    notes="The focusing factor uses the probability as given; only the cross-entropy is "
    "clipped, as Keras computes it. With gamma < 1 the gradient at a probability of exactly 0 "
    "or 1 on its own label is infinite.",
)


# poly1_focal ----------------------------------------------------------------------------------


def poly1_focal_value(ops, x, t, p):
    y, gamma, weight, bce = _focal_parts(ops, x, t, p)
    poly = p["epsilon"] * _pow(ops, _log_one_minus_pt(ops, x, y), gamma + 1.0)
    return ops.where(t.mask, _alpha_t(y, p["alpha"]) * ops.xmul(weight, bce) + poly, 0.0)


def poly1_focal_grad(ops, x, t, p):
    y, gamma, weight, bce = _focal_parts(ops, x, t, p)
    focal = _alpha_t(y, p["alpha"]) * _focal_grad_unweighted(ops, x, y, gamma, weight, bce)
    log_w = _log_one_minus_pt(ops, x, y)
    poly = p["epsilon"] * (gamma + 1.0) * _pow(ops, log_w, gamma + 1.0)
    return ops.where(t.mask, focal + poly * _d_log_one_minus_pt(ops, x, y), 0.0)


def poly1_focal_definition(ops, x, t, p):
    y, q = t.y, ops.sigmoid(x)
    p_t = q * y + (1.0 - q) * (1.0 - y)
    poly = p["epsilon"] * (1.0 - p_t) ** (p["gamma"] + 1.0)
    return focal_definition(ops, x, t, p) + ops.where(t.mask, poly, 0.0)


POLY1_FOCAL = LossSpec(
    name="poly1_focal",
    summary="Poly-1 focal loss: focal plus epsilon (1 - p_t)^(gamma + 1).",
    formula=r"\ell = \mathrm{focal}(x, y) + \epsilon (1 - p_t)^{\gamma + 1}",
    per="element",
    input_kind="logits",
    target_kind="multi_hot",
    params=(
        Param("epsilon", 1.0, "float", "the weight of the first polynomial term", low=-1.0),
        _GAMMA,
        _ALPHA,
    ),
    value=poly1_focal_value,
    definition=poly1_focal_definition,
    grad=poly1_focal_grad,
    decode="logit_threshold",
    references=(
        "Leng et al., PolyLoss: A Polynomial Expansion Perspective of Classification Loss "
        "Functions, ICLR 2022, eq. 4",
    ),
)


# asl ------------------------------------------------------------------------------------------


def _shifted_probability(ops, x, clip):
    """p_m = max(p - clip, 0), as (p_m, inside = p > clip). Written with where so that the
    gradient at p = clip is 0 on every backend (the declared subgradient; the frameworks'
    maximums split a tie differently)."""
    shifted = ops.sigmoid(x) - ops.scalar(clip, x)
    inside = shifted > 0
    return ops.where(inside, shifted, ops.zeros_like(shifted)), inside


def _asl_negative(ops, x, clip):
    """(log p_m, -log(1 - p_m)); with clip = 0 both from log_sigmoid, exact for large x."""
    if clip == 0.0:
        return ops.log_sigmoid(x), ops.softplus(x)
    p_m, _ = _shifted_probability(ops, x, clip)
    return ops.log(p_m), -ops.log1p(-p_m)


def asl_value(ops, x, t, p):
    y = t.y
    log_pm, neg_log_1m_pm = _asl_negative(ops, x, p["clip"])
    w_pos = _pow(ops, ops.log_sigmoid(-x), p["gamma_pos"])
    w_neg = _pow(ops, log_pm, p["gamma_neg"])
    if p["stop_grad_weight"]:
        w_pos, w_neg = ops.stop_gradient(w_pos), ops.stop_gradient(w_neg)
    loss = ops.xmul(y * w_pos, ops.softplus(-x)) + ops.xmul((1.0 - y) * w_neg, neg_log_1m_pm)
    return ops.where(t.mask, loss, 0.0)


def asl_grad(ops, x, t, p):
    y, gp, gn, clip = t.y, p["gamma_pos"], p["gamma_neg"], p["clip"]
    q, q_neg = ops.sigmoid(x), ops.sigmoid(-x)
    log_pm, neg_log_1m_pm = _asl_negative(ops, x, clip)
    w_pos = _pow(ops, ops.log_sigmoid(-x), gp)
    w_neg = _pow(ops, log_pm, gn)
    # positive term w_pos (-log p): d(-log p)/dx = -(1 - p), d w_pos/dx = -gp w_pos p
    d_pos = -w_pos * q_neg
    if clip == 0.0:
        # negative term w_neg (-log(1 - p)): d(-log(1 - p))/dx = p, d w_neg/dx = gn w_neg (1-p)
        d_neg = w_neg * q
        d_weight_neg = gn * ops.xmul(w_neg * q_neg, neg_log_1m_pm)
    else:
        p_m, inside = _shifted_probability(ops, x, clip)
        d_pm = ops.where(inside, q * q_neg, ops.zeros_like(q))  # 0 at and below the clip
        d_neg = w_neg / (1.0 - p_m) * d_pm
        # d w_neg/dx = gn p_m^(gn - 1) dp_m/dx = gn w_neg dp_m/dx / p_m (0 where p_m = 0)
        d_weight_neg = gn * ops.xmul(w_neg * ops.xdivy(d_pm, p_m), neg_log_1m_pm)
    if not p["stop_grad_weight"]:
        d_pos = d_pos - ops.xmul(gp * w_pos * q, ops.softplus(-x))
        d_neg = d_neg + d_weight_neg
    grad = ops.xmul(y, d_pos) + ops.xmul(1.0 - y, d_neg)
    return ops.where(t.mask, grad, 0.0)


def asl_definition(ops, x, t, p):
    y, q = t.y, ops.sigmoid(x)
    p_m = ops.maximum(q - ops.scalar(p["clip"], x), 0.0)
    loss = -(
        y * (1.0 - q) ** p["gamma_pos"] * ops.log(q)
        + (1.0 - y) * p_m ** p["gamma_neg"] * ops.log(1.0 - p_m)
    )
    return ops.where(t.mask, loss, 0.0)


def asl_kink_side(ops, x, t, p):
    """At p = clip the gradient is the left one: p_m = max(p - clip, 0) passes none at 0."""
    at_clip = ops.sigmoid(x) == ops.scalar(p["clip"], x)
    return ops.where(at_clip, -1.0, ops.zeros_like(x))


ASL = LossSpec(
    name="asl",
    aliases=("asymmetric_loss",),
    summary="Asymmetric loss: separate focusing for positives and negatives, shifted negatives.",
    formula=(
        r"\ell = -\left[y (1-p)^{\gamma_+} \log p + (1-y)\, p_m^{\gamma_-} \log(1 - p_m)\right],"
        r"\quad p_m = \max(p - m, 0)"
    ),
    per="element",
    input_kind="logits",
    target_kind="multi_hot",
    params=(
        Param("gamma_pos", 0.0, "float", "focusing exponent on positives", low=0.0),
        Param("gamma_neg", 4.0, "float", "focusing exponent on negatives", low=0.0),
        Param(
            "clip",
            0.05,
            "float",
            "probability margin m shifting negatives",
            low=0.0,
            high=1.0,
            high_open=True,
        ),
        Param(
            "stop_grad_weight",
            False,
            "bool",
            "treat the two focusing weights as constants for differentiation",
        ),
    ),
    value=asl_value,
    definition=asl_definition,
    grad=asl_grad,
    decode="logit_threshold",
    subgradients={"max(p - clip, 0)": "0 at p = clip (the left-hand derivative)"},
    kink_side=asl_kink_side,
    references=("Ridnik et al., Asymmetric Loss For Multi-Label Classification, ICCV 2021",),
    notes="With stop_grad_weight the weights are constants for differentiation (the paper's "
    "reference code computes them under torch.no_grad).",
)


# hill -----------------------------------------------------------------------------------------


def _focused(ops, z, gamma):
    """(1 - sigmoid(z))^gamma (-log sigmoid(z)) = sigmoid(-z)^gamma softplus(-z), and its
    derivative in z: -sigmoid(-z)^gamma [gamma sigmoid(z) softplus(-z) + sigmoid(-z)]."""
    w = _pow(ops, ops.log_sigmoid(-z), gamma)
    value = ops.xmul(w, ops.softplus(-z))
    grad = -(gamma * ops.xmul(w * ops.sigmoid(z), ops.softplus(-z)) + w * ops.sigmoid(-z))
    return value, grad


def _hill_negative(ops, x, lamb):
    """(lambda - p) p^2, and its derivative in x: (2 lambda p - 3 p^2) p (1 - p)."""
    q = ops.sigmoid(x)
    return (lamb - q) * q * q, (2.0 * lamb * q - 3.0 * q * q) * q * ops.sigmoid(-x)


def hill_value(ops, x, t, p):
    pos, _ = _focused(ops, x - p["margin"], p["gamma"])
    neg, _ = _hill_negative(ops, x, p["lamb"])
    return ops.where(t.mask, ops.xmul(t.y, pos) + (1.0 - t.y) * neg, 0.0)


def hill_grad(ops, x, t, p):
    _, d_pos = _focused(ops, x - p["margin"], p["gamma"])
    _, d_neg = _hill_negative(ops, x, p["lamb"])
    return ops.where(t.mask, ops.xmul(t.y, d_pos) + (1.0 - t.y) * d_neg, 0.0)


def hill_definition(ops, x, t, p):
    y = t.y
    q_m = ops.sigmoid(x - p["margin"])
    q = ops.sigmoid(x)
    loss = y * (-((1.0 - q_m) ** p["gamma"]) * ops.log(q_m)) + (1.0 - y) * ((p["lamb"] - q) * q**2)
    return ops.where(t.mask, loss, 0.0)


HILL = LossSpec(
    name="hill",
    summary="Hill loss: a margin focal term on positives, a hill-shaped bounded term on negatives.",
    formula=(
        r"\ell = y\left[-(1 - \sigma(x - m))^\gamma \log \sigma(x - m)\right]"
        r" + (1 - y)\left[(\lambda - p)\, p^2\right]"
    ),
    per="element",
    input_kind="logits",
    target_kind="multi_hot",
    params=(
        Param("lamb", 1.5, "float", "lambda: the hill's height parameter", low=0.0),
        Param("margin", 1.0, "float", "m: the margin on positive logits", low=0.0),
        Param("gamma", 2.0, "float", "focusing exponent on positives", low=0.0),
    ),
    value=hill_value,
    definition=hill_definition,
    grad=hill_grad,
    decode="logit_threshold",
    references=(
        "Zhang et al., Simple and Robust Loss Design for Multi-Label Learning with Missing "
        "Labels, arXiv 2112.07368 (2021), eq. 7",
    ),
)


# splc -----------------------------------------------------------------------------------------


def _splc_parts(ops, x, t, p):
    y = t.y
    z = x - p["margin"] * y
    confident = ops.sigmoid(z) > ops.scalar(p["tau"], x)
    # t: the pseudo-label, a constant for differentiation
    target = ops.stop_gradient(
        ops.where((y == 1.0) | ((y == 0.0) & confident), 1.0, ops.zeros_like(x))
    )
    return z, target, p["gamma"]


def splc_value(ops, x, t, p):
    z, target, gamma = _splc_parts(ops, x, t, p)
    pos, _ = _focused(ops, z, gamma)
    neg, _ = _focused(ops, -z, gamma)  # q^gamma (-log(1 - q)): the mirror image
    return ops.where(t.mask, ops.xmul(target, pos) + ops.xmul(1.0 - target, neg), 0.0)


def splc_grad(ops, x, t, p):
    z, target, gamma = _splc_parts(ops, x, t, p)
    _, d_pos = _focused(ops, z, gamma)
    _, d_mirror = _focused(ops, -z, gamma)
    d_neg = -d_mirror
    return ops.where(t.mask, ops.xmul(target, d_pos) + ops.xmul(1.0 - target, d_neg), 0.0)


def splc_definition(ops, x, t, p):
    y = t.y
    q = ops.sigmoid(x - p["margin"] * y)
    target = ops.where((y == 1.0) | ((y == 0.0) & (q > p["tau"])), 1.0, ops.zeros_like(x))
    loss = -(
        target * (1.0 - q) ** p["gamma"] * ops.log(q)
        + (1.0 - target) * q ** p["gamma"] * ops.log(1.0 - q)
    )
    return ops.where(t.mask, loss, 0.0)


SPLC = LossSpec(
    name="splc",
    summary="Self-paced loss correction: confident negatives become positives (missing labels).",
    formula=(
        r"\ell = -\left[t (1-q)^\gamma \log q + (1-t)\, q^\gamma \log(1-q)\right],\quad"
        r" q = \sigma(x - m y),\ t = [y = 1 \lor (y = 0 \land q > \tau)]"
    ),
    per="element",
    input_kind="logits",
    target_kind="multi_hot",
    params=(
        Param(
            "tau",
            0.6,
            "float",
            "confidence above which a negative is taken as positive",
            low=0.0,
            high=1.0,
        ),
        Param("margin", 1.0, "float", "m: the margin on positive logits", low=0.0),
        Param("gamma", 2.0, "float", "focusing exponent", low=0.0),
    ),
    value=splc_value,
    definition=splc_definition,
    grad=splc_grad,
    decode="logit_threshold",
    references=(
        "Zhang et al., Simple and Robust Loss Design for Multi-Label Learning with Missing "
        "Labels, arXiv 2112.07368 (2021), eq. 9",
    ),
    notes="The pseudo-label t is a constant for differentiation. A soft label strictly "
    "between 0 and 1 gets t = 0.",
)
