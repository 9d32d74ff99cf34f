"""Binary (per-class, independent) losses: ``sigmoid_bce`` on logits, ``bce`` on probabilities.

Notation: x logits (..., C), y targets in [0, 1] (a negative entry is missing), s label
smoothing, w per-class weights, p_w positive weights.
"""

from __future__ import annotations

from mlloss.losses.natives import (
    LAST_AXIS,
    REQUIRED,
    TORCH_REDUCTION,
    keras_pair,
    optax_smooth_labels_binary,
)
from mlloss.spec import LossSpec, Native, Param

LABEL_SMOOTHING_BINARY = Param(
    "label_smoothing",
    0.0,
    "float",
    "binary targets move toward 0.5: y (1 - s) + s / 2",
    low=0.0,
    high=1.0,
)
#: the clip of probabilities every Keras-style loss on probabilities has
KERAS_EPS = Param(
    "eps",
    1e-7,
    "float",
    "probabilities are clipped to [eps, 1 - eps] (Keras's epsilon is 1e-7)",
    low=0.0,
    high=0.5,
    high_open=True,
)
_CLASS_WEIGHT = Param(
    "class_weight", None, "per_class", "a weight per class, multiplying its loss", optional=True
)


def smooth_binary(y, s):
    """Binary label smoothing toward 0.5 (Keras's convention): ``y (1 - s) + s / 2``."""
    return y if s == 0.0 else y * (1.0 - s) + 0.5 * s


# sigmoid_bce ----------------------------------------------------------------------------------


def _sigmoid_bce_coefficients(ops, t, p):
    """(c1, c0, w): the loss is w [c1 softplus(-x) + c0 softplus(x)]."""
    y = smooth_binary(t.y, p["label_smoothing"])
    c1 = y if p["pos_weight"] is None else y * p["pos_weight"]
    return c1, 1.0 - y, p["class_weight"]


def sigmoid_bce_value(ops, x, t, p):
    c1, c0, w = _sigmoid_bce_coefficients(ops, t, p)
    # xmul: a zero coefficient contributes 0 even where softplus is infinite (x = -inf for c1,
    # x = +inf for c0), so the limits at +-inf are exact instead of 0 * inf = NaN
    loss = ops.xmul(c1, ops.softplus(-x)) + ops.xmul(c0, ops.softplus(x))
    if w is not None:
        loss = ops.xmul(w, loss)
    return ops.where(t.mask, loss, 0.0)


def sigmoid_bce_grad(ops, x, t, p):
    c1, c0, w = _sigmoid_bce_coefficients(ops, t, p)
    grad = c0 * ops.sigmoid(x) - c1 * ops.sigmoid(-x)
    if w is not None:
        grad = grad * w
    return ops.where(t.mask, grad, 0.0)


def sigmoid_bce_definition(ops, x, t, p):
    c1, c0, w = _sigmoid_bce_coefficients(ops, t, p)
    q = ops.sigmoid(x)
    loss = -(c1 * ops.log(q) + c0 * ops.log(1.0 - q))
    if w is not None:
        loss = loss * w
    return ops.where(t.mask, loss, 0.0)


SIGMOID_BCE = LossSpec(
    name="sigmoid_bce",
    aliases=("sigmoid_cross_entropy", "binary_cross_entropy_with_logits"),
    summary="Sigmoid binary cross-entropy on logits, each class independent (multi-label).",
    formula=(
        r"\ell_{ic} = w_c\left[p_c\, y'_{ic} \operatorname{softplus}(-x_{ic})"
        r" + (1 - y'_{ic}) \operatorname{softplus}(x_{ic})\right],\quad"
        r" y' = y(1 - s) + s/2"
    ),
    per="element",
    input_kind="logits",
    target_kind="multi_hot",
    params=(
        Param(
            "pos_weight",
            None,
            "per_class",
            "a weight per class on the positive term (broadcast over the last axis, as torch's)",
            optional=True,
        ),
        _CLASS_WEIGHT,
        LABEL_SMOOTHING_BINARY,
    ),
    value=sigmoid_bce_value,
    definition=sigmoid_bce_definition,
    grad=sigmoid_bce_grad,
    decode="logit_threshold",
    natives=(
        Native(
            "torch.nn.functional.binary_cross_entropy_with_logits",
            "torch",
            {"weight": None, "pos_weight": None, **TORCH_REDUCTION},
            "reduction",
            forms=("torch.nn.BCEWithLogitsLoss",),
            rename={"weight": "class_weight", "pos_weight": "pos_weight"},
            note="weight and pos_weight per class (1-D) or one number",
        ),
        Native(
            "tf.nn.sigmoid_cross_entropy_with_logits",
            "tensorflow",
            {"name": None},
            "unreduced",
            inert=("name",),
            targets_first=True,
        ),
        Native(
            "tf.nn.weighted_cross_entropy_with_logits",
            "tensorflow",
            {"pos_weight": REQUIRED, "name": None},
            "unreduced",
            rename={"pos_weight": "pos_weight"},
            inert=("name",),
            targets_first=True,
        ),
        *keras_pair(
            "BinaryCrossentropy",
            "binary_crossentropy",
            {"from_logits": False, "label_smoothing": 0.0, **LAST_AXIS},
            reduce_elements=True,
            when={"from_logits": True},
            note="Keras averages over the last axis before its reduction",
            rename={"label_smoothing": "label_smoothing"},
            require=LAST_AXIS,
        ),
        Native(
            "optax.losses.sigmoid_binary_cross_entropy",
            "optax",
            {"smooth_labels": 0.0},
            "unreduced",
            convert=optax_smooth_labels_binary,
            invert=lambda params: {},
            note="smooth_labels (optax.smooth_labels on the targets first) moves them toward "
            "1/C, not 0.5: refused",
        ),
    ),
    references=(
        "torch.nn.BCEWithLogitsLoss documentation (pos_weight semantics)",
        "Szegedy et al., Rethinking the Inception Architecture, CVPR 2016 (label smoothing)",
    ),
)


# bce ------------------------------------------------------------------------------------------


def clip_bounds(ops, x, p):
    """The clip bounds as the compute dtype holds them (float32 cannot hold 1 - 1e-7)."""
    eps = p["eps"]
    return ops.scalar(eps, x), ops.scalar(1.0 - eps, x)


def _bce_parts(ops, x, t, p):
    lo, hi = clip_bounds(ops, x, p)
    return ops.clip(x, lo, hi), smooth_binary(t.y, p["label_smoothing"])


def _clamped(ops, q, floor):
    """Where log q is held at the floor (never at NaN: NaN in, NaN out)."""
    return ops.log(q) <= floor


def _log_floored(ops, q, floor):
    """log q, clamped below at ``floor`` (None: no clamp), as torch's BCELoss clamps at -100;
    the clamped entries take the log of 1, so no infinity reaches a gradient path."""
    if floor is None:
        return ops.log(q)
    clamped = _clamped(ops, q, floor)
    return ops.where(clamped, floor, ops.log(ops.where(clamped, 1.0, q)))


def _class_weighted(ops, loss, t, p):
    w = p["class_weight"]
    return ops.where(t.mask, loss if w is None else ops.xmul(w, loss), 0.0)


def bce_value(ops, x, t, p):
    q, y = _bce_parts(ops, x, t, p)
    floor = p["log_floor"]
    if floor is None:
        loss = -(ops.xlogy(y, q) + ops.xlogy(1.0 - y, 1.0 - q))
    else:
        # xmul: a zero label takes nothing from its (floored) log
        loss = -(
            ops.xmul(y, _log_floored(ops, q, floor))
            + ops.xmul(1.0 - y, _log_floored(ops, 1.0 - q, floor))
        )
    return _class_weighted(ops, loss, t, p)


def bce_grad(ops, x, t, p):
    q, y = _bce_parts(ops, x, t, p)
    lo, hi = clip_bounds(ops, x, p)
    # the clip's declared subgradient: the closed interval (NaN stays inside: NaN out)
    inside = ~((x < lo) | (x > hi))
    d_pos, d_neg = ops.xdivy(y, q), ops.xdivy(1.0 - y, 1.0 - q)
    floor = p["log_floor"]
    if floor is not None:  # a clamped log is flat
        d_pos = ops.where(_clamped(ops, q, floor), 0.0, d_pos)
        d_neg = ops.where(_clamped(ops, 1.0 - q, floor), 0.0, d_neg)
    grad = ops.where(inside, d_neg - d_pos, 0.0)
    return _class_weighted(ops, grad, t, p)


def clip_kink_side(ops, x, t, p):
    """At the bounds of a clip to [eps, 1 - eps] the gradient is the one from inside."""
    lo, hi = clip_bounds(ops, x, p)
    side = ops.where(x <= lo, 1.0, ops.zeros_like(x))
    return ops.where(x >= hi, -1.0, side)


def bce_kink_side(ops, x, t, p):
    """The clip's sides; where a log sits exactly at the floor, the clamped (flat) side."""
    side = clip_kink_side(ops, x, t, p)
    lo, hi = clip_bounds(ops, x, p)
    floor = p["log_floor"]
    if floor is not None:
        q = ops.clip(x, lo, hi)
        side = ops.where(ops.log(q) == floor, -1.0, side)
        side = ops.where(ops.log(1.0 - q) == floor, 1.0, side)
    return side


def bce_definition(ops, x, t, p):
    q, y = _bce_parts(ops, x, t, p)
    floor = p["log_floor"]

    def log(v):
        return ops.log(v) if floor is None else ops.maximum(ops.log(v), floor)

    return _class_weighted(ops, -(y * log(q) + (1.0 - y) * log(1.0 - q)), t, p)


BCE = LossSpec(
    name="bce",
    aliases=("binary_cross_entropy", "binary_crossentropy"),
    summary="Binary cross-entropy on probabilities, clipped to [eps, 1 - eps] as Keras does.",
    formula=(
        r"\ell_{ic} = -w_c\left[y'_{ic} L(q_{ic}) + (1 - y'_{ic}) L(1 - q_{ic})\right],\ "
        r"q = \operatorname{clip}(p, \epsilon, 1 - \epsilon),\ y' = y(1 - s) + s/2,\ "
        r"L(v) = \max(\log v, f)"
    ),
    per="element",
    input_kind="probabilities",
    target_kind="multi_hot",
    params=(
        KERAS_EPS,
        LABEL_SMOOTHING_BINARY,
        Param(
            "log_floor",
            None,
            "float",
            "each log is clamped below at this value (torch's BCELoss: -100); None: no clamp",
            high=0.0,
            optional=True,
        ),
        _CLASS_WEIGHT,
    ),
    value=bce_value,
    definition=bce_definition,
    grad=bce_grad,
    decode="probability_threshold",
    subgradients={
        "clip": "the gradient passes on the closed interval [eps, 1 - eps] and is 0 outside",
        "log_floor": "a log at or below the floor is flat: its gradient is 0",
    },
    kink_side=bce_kink_side,
    natives=(
        Native(
            "torch.nn.functional.binary_cross_entropy",
            "torch",
            {"weight": None, **TORCH_REDUCTION},
            "reduction",
            forms=("torch.nn.BCELoss",),
            rename={"weight": "class_weight"},
            fixed={"eps": 0.0, "log_floor": -100.0},
            note="no clip; each log clamped at -100 (log_floor); its backward is "
            "(p - y) / max(p (1 - p), 1e-12), not the derivative of the clamped log",
        ),
        *keras_pair(
            "BinaryCrossentropy",
            "binary_crossentropy",
            {"from_logits": False, "label_smoothing": 0.0, **LAST_AXIS},
            reduce_elements=True,
            when={"from_logits": False},
            note="probabilities clipped to [1e-7, 1 - 1e-7] (keras.config.epsilon()); Keras "
            "averages over the last axis before its reduction",
            rename={"label_smoothing": "label_smoothing"},
            fixed={"eps": 1e-7},
            require=LAST_AXIS,
        ),
    ),
    references=("keras.losses.binary_crossentropy documentation (clipping at epsilon)",),
)


# multilabel_soft_margin -----------------------------------------------------------------------


def _observed_classes(ops, t):
    """The number of observed classes of each sample, at least 1, shaped (..., 1)."""
    return ops.maximum(ops.count(t.mask, t.y, keepdims=True), 1.0)


def _soft_margin_params(p):
    return {"pos_weight": None, "class_weight": p["class_weight"], "label_smoothing": 0.0}


def multilabel_soft_margin_value(ops, x, t, p):
    per_class = sigmoid_bce_value(ops, x, t, _soft_margin_params(p))
    return ops.sum(per_class, axis=-1) / _observed_classes(ops, t)[..., 0]


def multilabel_soft_margin_grad(ops, x, t, p):
    return sigmoid_bce_grad(ops, x, t, _soft_margin_params(p)) / _observed_classes(ops, t)


def multilabel_soft_margin_definition(ops, x, t, p):
    per_class = sigmoid_bce_definition(ops, x, t, _soft_margin_params(p))
    return ops.sum(per_class, axis=-1) / ops.count(t.mask, t.y)


MULTILABEL_SOFT_MARGIN = LossSpec(
    name="multilabel_soft_margin",
    summary="Per-sample mean over classes of the weighted sigmoid BCE (torch's soft margin).",
    formula=(
        r"\ell_i = -\frac{1}{C}\sum_c w_c\left[y_{ic}\log\sigma(x_{ic})"
        r" + (1 - y_{ic})\log\sigma(-x_{ic})\right]"
    ),
    per="sample",
    input_kind="logits",
    target_kind="multi_hot",
    params=(_CLASS_WEIGHT,),
    value=multilabel_soft_margin_value,
    definition=multilabel_soft_margin_definition,
    grad=multilabel_soft_margin_grad,
    decode="logit_threshold",
    natives=(
        Native(
            "torch.nn.functional.multilabel_soft_margin_loss",
            "torch",
            {"weight": None, **TORCH_REDUCTION},
            "reduction",
            forms=("torch.nn.MultiLabelSoftMarginLoss",),
            rename={"weight": "class_weight"},
        ),
    ),
    references=("torch.nn.MultiLabelSoftMarginLoss documentation",),
    notes="With missing labels C is the number of observed classes of the sample. Rows "
    "with no positive (or no negative) need no special case.",
)
