"""Softmax cross-entropy, with distribution (soft, one-hot or normalised multi-hot) targets and
with integer class targets. One value per sample; classes whose label is missing are left out
of the softmax itself (a masked logsumexp), so they add nothing to the loss or the gradient.
"""

from __future__ import annotations

from mlloss.losses.binary import KERAS_EPS, clip_bounds, clip_kink_side
from mlloss.losses.natives import (
    LAST_AXIS,
    NO_WHERE,
    TORCH_REDUCTION,
    keras_ignore_class,
    keras_ignore_class_inverse,
    keras_pair,
    optax_smooth_labels,
)
from mlloss.spec import LossSpec, Native, Param

#: torch's cross_entropy, for probability and for class-index targets alike
_TORCH_CROSS_ENTROPY = {
    "weight": None,
    "ignore_index": -100,
    "label_smoothing": 0.0,
    **TORCH_REDUCTION,
}

_LABEL_SMOOTHING = Param(
    "label_smoothing",
    0.0,
    "float",
    "the target distribution moves toward uniform: q (1 - s) + s / C",
    low=0.0,
    high=1.0,
)
_CLASS_WEIGHT = Param(
    "class_weight",
    None,
    "per_class",
    "a weight per class on its term of the cross-entropy (torch's weight)",
    optional=True,
)


def _weighted(q, p):
    return q if p["class_weight"] is None else q * p["class_weight"]


def _cross_entropy(ops, x, qw, mask):
    """-sum_c qw_c log softmax(x)_c over the classes in ``mask`` (all when mask is None)."""
    terms = ops.xmul(qw, ops.log_softmax(x, axis=-1, where=mask))
    if mask is not None:
        terms = ops.where(mask, terms, 0.0)
    return -ops.sum(terms, axis=-1)


def _cross_entropy_grad(ops, x, qw, mask):
    """d/dx_j of the above: softmax_j sum_c qw_c - qw_j (masked classes have softmax 0)."""
    softmax = ops.exp(ops.log_softmax(x, axis=-1, where=mask))
    return softmax * ops.sum(qw, axis=-1, keepdims=True) - qw


def _naive_cross_entropy(ops, x, qw, mask):
    e = ops.exp(x) if mask is None else ops.where(mask, ops.exp(x), 0.0)
    softmax = e / ops.sum(e, axis=-1, keepdims=True)
    terms = qw * ops.log(softmax)
    if mask is not None:
        terms = ops.where(mask, terms, 0.0)
    return -ops.sum(terms, axis=-1)


# softmax_ce -----------------------------------------------------------------------------------


def _distribution(ops, t, p):
    """The target distribution over the observed classes, normalised and smoothed as asked."""
    q = t.y
    if p["normalize_targets"]:
        n = ops.sum(q, axis=-1, keepdims=True)
        q = q / ops.where(n > 0, n, 1.0)  # a row with no label stays all zero
    s = p["label_smoothing"]
    if s:
        observed = ops.count(t.mask, q, keepdims=True)
        q = q * (1.0 - s) + ops.where(t.mask, s / ops.maximum(observed, 1.0), 0.0)
    return _weighted(q, p)


def softmax_ce_value(ops, x, t, p):
    return _cross_entropy(ops, x, _distribution(ops, t, p), t.mask)


def softmax_ce_grad(ops, x, t, p):
    return _cross_entropy_grad(ops, x, _distribution(ops, t, p), t.mask)


def softmax_ce_definition(ops, x, t, p):
    return _naive_cross_entropy(ops, x, _distribution(ops, t, p), t.mask)


SOFTMAX_CE = LossSpec(
    name="softmax_ce",
    aliases=("softmax_cross_entropy", "categorical_crossentropy"),
    summary=(
        "Softmax cross-entropy against a target distribution; normalize_targets makes a "
        "multi-hot row a distribution first."
    ),
    formula=(
        r"\ell_i = -\sum_c w_c\, q_{ic} \log \operatorname{softmax}(x_i)_c,\quad"
        r" q = (1 - s)\,\frac{y}{\text{normalize}\ ?\ \sum_c y_{ic} : 1} + \frac{s}{C}"
    ),
    per="sample",
    input_kind="logits",
    target_kind="multi_hot",
    params=(
        _LABEL_SMOOTHING,
        Param(
            "normalize_targets",
            False,
            "bool",
            "divide each multi-hot row by its number of labels first (a row with none stays 0)",
        ),
        _CLASS_WEIGHT,
    ),
    value=softmax_ce_value,
    definition=softmax_ce_definition,
    grad=softmax_ce_grad,
    decode="top1",
    natives=(
        Native(
            "torch.nn.functional.cross_entropy",
            "torch",
            _TORCH_CROSS_ENTROPY,
            "reduction",
            forms=("torch.nn.CrossEntropyLoss",),
            rename={"weight": "class_weight", "label_smoothing": "label_smoothing"},
            require={"ignore_index": -100},
            note="probability targets (float); classes on axis 1 (mlloss: the last), so "
            "(N, C) inputs only; mean divides by N; torch refuses ignore_index with them",
        ),
        Native(
            "tf.nn.softmax_cross_entropy_with_logits",
            "tensorflow",
            {**LAST_AXIS, "name": None},
            "unreduced",
            require=LAST_AXIS,
            inert=("name",),
            targets_first=True,
        ),
        *keras_pair(
            "CategoricalCrossentropy",
            "categorical_crossentropy",
            {"from_logits": False, "label_smoothing": 0.0, **LAST_AXIS},
            reduce_elements=False,
            when={"from_logits": True},
            note="smoothing toward 1/C; from_logits=False is probability_ce",
            rename={"label_smoothing": "label_smoothing"},
            require=LAST_AXIS,
        ),
        Native(
            "optax.losses.softmax_cross_entropy",
            "optax",
            {**LAST_AXIS, **NO_WHERE, "smooth_labels": 0.0},
            "unreduced",
            require={**LAST_AXIS, **NO_WHERE},
            convert=optax_smooth_labels,
            invert=lambda params: {"smooth_labels": params["label_smoothing"]},
            note="smooth_labels=a stands for optax.smooth_labels(labels, a) on the targets",
        ),
    ),
    references=("Szegedy et al., Rethinking the Inception Architecture, CVPR 2016",),
    notes=(
        "Missing labels (-1) remove their class from the softmax for that sample. A row with "
        "every label missing contributes 0 and is left out of the mean. A row with no "
        "positive has an all-zero target: loss 0 (label smoothing then makes it uniform). "
        "Label smoothing is uniform over the observed classes."
    ),
)


# sparse_softmax_ce ----------------------------------------------------------------------------


def _sparse_distribution(ops, x, t, p):
    num_classes = ops.shape(x)[-1]
    q = ops.one_hot(t.y, num_classes, ops.dtype_name(x))
    s = p["label_smoothing"]
    if s:
        q = q * (1.0 - s) + s / num_classes
    return _weighted(q, p)


def sparse_softmax_ce_value(ops, x, t, p):
    loss = _cross_entropy(ops, x, _sparse_distribution(ops, x, t, p), None)
    return ops.where(t.mask, loss, 0.0)


def sparse_softmax_ce_grad(ops, x, t, p):
    grad = _cross_entropy_grad(ops, x, _sparse_distribution(ops, x, t, p), None)
    return ops.where(ops.expand_dims(t.mask, -1), grad, 0.0)


def sparse_softmax_ce_definition(ops, x, t, p):
    loss = _naive_cross_entropy(ops, x, _sparse_distribution(ops, x, t, p), None)
    return ops.where(t.mask, loss, 0.0)


SPARSE_SOFTMAX_CE = LossSpec(
    name="sparse_softmax_ce",
    aliases=("sparse_softmax_cross_entropy", "sparse_categorical_crossentropy"),
    summary="Softmax cross-entropy against integer class indices (one label per sample).",
    formula=(
        r"\ell_i = -\sum_c w_c\, q_{ic} \log \operatorname{softmax}(x_i)_c,\quad"
        r" q_i = (1 - s)\,\mathrm{onehot}(y_i) + \frac{s}{C}"
    ),
    per="sample",
    input_kind="logits",
    target_kind="class_index",
    params=(
        Param(
            "ignore_index",
            -100,
            "int",
            "samples whose target equals it add nothing and are left out of the mean",
        ),
        _LABEL_SMOOTHING,
        _CLASS_WEIGHT,
    ),
    value=sparse_softmax_ce_value,
    definition=sparse_softmax_ce_definition,
    grad=sparse_softmax_ce_grad,
    decode="top1",
    natives=(
        Native(
            "torch.nn.functional.cross_entropy",
            "torch",
            _TORCH_CROSS_ENTROPY,
            "index_reduction",
            forms=("torch.nn.CrossEntropyLoss",),
            rename={
                "weight": "class_weight",
                "label_smoothing": "label_smoothing",
                "ignore_index": "ignore_index",
            },
            note="class-index targets (integer); with weight, mean divides by the sum of the "
            "targets' weights (weighted_mean); a batch with every target ignored gives NaN in "
            "torch and 0 in mlloss",
        ),
        Native(
            "tf.nn.sparse_softmax_cross_entropy_with_logits",
            "tensorflow",
            {"name": None},
            "unreduced",
            inert=("name",),
            targets_first=True,
        ),
        *keras_pair(
            "SparseCategoricalCrossentropy",
            "sparse_categorical_crossentropy",
            {"from_logits": False, "ignore_class": None},
            reduce_elements=False,
            when={"from_logits": True},
            note="from_logits=False is sparse_probability_ce",
            convert=keras_ignore_class,
            invert=keras_ignore_class_inverse,
        ),
        Native(
            "optax.losses.softmax_cross_entropy_with_integer_labels",
            "optax",
            {**LAST_AXIS, **NO_WHERE},
            "unreduced",
            require={**LAST_AXIS, **NO_WHERE},
        ),
    ),
    references=("torch.nn.CrossEntropyLoss documentation (label smoothing with weights)",),
)


# probability_ce and sparse_probability_ce -----------------------------------------------------


def _inside(x, lo, hi):
    """The clip's declared subgradient: it passes on the closed interval (NaN stays inside)."""
    return ~((x < lo) | (x > hi))


def _renormalised(ops, x, t):
    """(u, S): each row divided by its sum over the observed classes (a row that sums to 0
    divides by 1), and that sum."""
    observed = ops.where(t.mask, x, 0.0)
    total = ops.sum(observed, axis=-1, keepdims=True)
    safe = ops.where(total > 0, total, 1.0)
    return observed / safe, safe


def _probability_targets(ops, t, p):
    s = p["label_smoothing"]
    if not s:
        return t.y
    observed = ops.count(t.mask, t.y, keepdims=True)
    return t.y * (1.0 - s) + ops.where(t.mask, s / ops.maximum(observed, 1.0), 0.0)


def probability_ce_value(ops, x, t, p):
    lo, hi = clip_bounds(ops, x, p)
    u, _ = _renormalised(ops, x, t)
    y = _probability_targets(ops, t, p)
    terms = ops.where(t.mask, ops.xlogy(y, ops.clip(u, lo, hi)), 0.0)
    # NaN in, NaN out: a NaN probability makes its row's sum, and so every u of the row, NaN,
    # which the clip and a zero target's 0 log(.) would otherwise hide
    row = ops.sum(ops.where(t.mask, x, 0.0), axis=-1)
    return ops.where(row == row, -ops.sum(terms, axis=-1), float("nan"))


def probability_ce_grad(ops, x, t, p):
    # l = -sum_c y_c log clip(u_c), u = x / S: d l / d x_j = (sum_c y_c m_c - y_j m_j / u_j) / S
    lo, hi = clip_bounds(ops, x, p)
    u, total = _renormalised(ops, x, t)
    y = ops.where(_inside(u, lo, hi) & t.mask, _probability_targets(ops, t, p), 0.0)
    grad = (ops.sum(y, axis=-1, keepdims=True) - ops.xdivy(y, u)) / total
    return ops.where(t.mask, grad, 0.0)


def probability_ce_definition(ops, x, t, p):
    lo, hi = clip_bounds(ops, x, p)
    e = ops.where(t.mask, x, 0.0)
    q = ops.clip(e / ops.sum(e, axis=-1, keepdims=True), lo, hi)
    y = _probability_targets(ops, t, p)
    row = ops.sum(e, axis=-1)
    loss = -ops.sum(ops.where(t.mask, y * ops.log(q), 0.0), axis=-1)
    return ops.where(row == row, loss, float("nan"))


PROBABILITY_CE = LossSpec(
    name="probability_ce",
    summary="Cross-entropy on probabilities: each row renormalised to sum 1, then clipped to "
    "[eps, 1 - eps] (Keras's categorical cross-entropy without logits).",
    formula=(
        r"\ell_i = -\sum_c y'_{ic} \log \operatorname{clip}\left(\frac{p_{ic}}{\sum_k p_{ik}},"
        r" \epsilon, 1 - \epsilon\right),\quad y' = (1 - s)\, y + \frac{s}{C}"
    ),
    per="sample",
    input_kind="probabilities",
    target_kind="multi_hot",
    params=(KERAS_EPS, _LABEL_SMOOTHING),
    value=probability_ce_value,
    definition=probability_ce_definition,
    grad=probability_ce_grad,
    decode="top1",
    subgradients={
        "clip": "the gradient passes on the closed interval [eps, 1 - eps] of the renormalised "
        "probability, and is 0 outside"
    },
    natives=keras_pair(
        "CategoricalCrossentropy",
        "categorical_crossentropy",
        {"from_logits": False, "label_smoothing": 0.0, **LAST_AXIS},
        reduce_elements=False,
        when={"from_logits": False},
        note="probabilities renormalised over the row, then clipped to [1e-7, 1 - 1e-7]; "
        "smoothing toward 1/C",
        rename={"label_smoothing": "label_smoothing"},
        fixed={"eps": 1e-7},
        require=LAST_AXIS,
    ),
    references=("keras.losses.CategoricalCrossentropy documentation",),
    notes="Missing labels leave their class out of the renormalisation. A row whose observed "
    "probabilities sum to 0 is divided by 1 (its clipped probabilities are eps).",
)


def _sparse_probability_parts(ops, x, t, p):
    """(q, total, picked): the clipped probabilities, their row sums, and the target's."""
    lo, hi = clip_bounds(ops, x, p)
    q = ops.clip(x, lo, hi)
    picked = ops.sum(ops.one_hot(t.y, ops.shape(x)[-1], ops.dtype_name(x)) * q, axis=-1)
    return q, ops.sum(q, axis=-1), picked


def sparse_probability_ce_value(ops, x, t, p):
    # -log(q_y / sum_c q_c): the clipped probabilities renormalised after the clip
    lo, hi = clip_bounds(ops, x, p)
    log_q = ops.log(ops.clip(x, lo, hi))
    one_hot = ops.one_hot(t.y, ops.shape(x)[-1], ops.dtype_name(x))
    loss = ops.logsumexp(log_q, axis=-1) - ops.sum(ops.xmul(one_hot, log_q), axis=-1)
    return ops.where(t.mask, loss, 0.0)


def sparse_probability_ce_grad(ops, x, t, p):
    lo, hi = clip_bounds(ops, x, p)
    q, total, _ = _sparse_probability_parts(ops, x, t, p)
    one_hot = ops.one_hot(t.y, ops.shape(x)[-1], ops.dtype_name(x))
    grad = 1.0 / ops.expand_dims(total, -1) - ops.xdivy(one_hot, q)
    grad = ops.where(_inside(x, lo, hi), grad, 0.0)
    return ops.where(ops.expand_dims(t.mask, -1), grad, 0.0)


def sparse_probability_ce_definition(ops, x, t, p):
    _, total, picked = _sparse_probability_parts(ops, x, t, p)
    return ops.where(t.mask, -ops.log(picked / total), 0.0)


SPARSE_PROBABILITY_CE = LossSpec(
    name="sparse_probability_ce",
    summary="Cross-entropy on probabilities against class indices: clipped to [eps, 1 - eps], "
    "then renormalised (Keras's sparse categorical cross-entropy without logits).",
    formula=(
        r"\ell_i = -\log \frac{q_{i y_i}}{\sum_c q_{ic}},\quad"
        r" q = \operatorname{clip}(p, \epsilon, 1 - \epsilon)"
    ),
    per="sample",
    input_kind="probabilities",
    target_kind="class_index",
    params=(
        KERAS_EPS,
        Param(
            "ignore_index",
            -100,
            "int",
            "samples whose target equals it add nothing and are left out of the mean",
        ),
    ),
    value=sparse_probability_ce_value,
    definition=sparse_probability_ce_definition,
    grad=sparse_probability_ce_grad,
    decode="top1",
    subgradients={
        "clip": "the gradient passes on the closed interval [eps, 1 - eps] and is 0 outside"
    },
    kink_side=clip_kink_side,
    natives=keras_pair(
        "SparseCategoricalCrossentropy",
        "sparse_categorical_crossentropy",
        {"from_logits": False, "ignore_class": None},
        reduce_elements=False,
        when={"from_logits": False},
        note="probabilities clipped to [1e-7, 1 - 1e-7], then renormalised (the reverse of "
        "CategoricalCrossentropy's order)",
        fixed={"eps": 1e-7},
        convert=keras_ignore_class,
        invert=keras_ignore_class_inverse,
    ),
    references=("keras.losses.SparseCategoricalCrossentropy documentation",),
    notes="Keras takes log(clip(p)) as logits of its sparse softmax cross-entropy: the "
    "clipped probabilities are renormalised after the clip.",
)


# poly1 ----------------------------------------------------------------------------------------


def _poly1_parts(ops, x, t):
    log_p = ops.log_softmax(x, axis=-1, where=t.mask)
    p_t = ops.sum(ops.where(t.mask, ops.xmul(t.y, ops.exp(log_p)), 0.0), axis=-1)
    return log_p, p_t


#: poly1's cross-entropy as softmax_ce's parameters: the targets as they are (no
#: normalisation, no smoothing, no class weights); the backends' poly1 kernels take it
POLY1_CROSS_ENTROPY = {"normalize_targets": False, "label_smoothing": 0.0, "class_weight": None}


def poly1_value(ops, x, t, p):
    _, p_t = _poly1_parts(ops, x, t)
    ce = _cross_entropy(ops, x, t.y, t.mask)
    counted = ops.any(t.mask, axis=-1)
    # epsilon sum_c y_c (1 - s_c): linear in the targets, as the cross-entropy is
    return ops.where(counted, ce + p["epsilon"] * (ops.sum(t.y, axis=-1) - p_t), 0.0)


def poly1_grad(ops, x, t, p):
    log_p, p_t = _poly1_parts(ops, x, t)
    softmax = ops.exp(log_p)
    # d p_t / d x_j = softmax_j (y_j - p_t)
    d_pt = softmax * (t.y - ops.expand_dims(p_t, -1))
    grad = _cross_entropy_grad(ops, x, t.y, t.mask) - p["epsilon"] * d_pt
    return ops.where(t.mask, grad, 0.0)


def poly1_definition(ops, x, t, p):
    e = ops.where(t.mask, ops.exp(x), 0.0)
    softmax = e / ops.sum(e, axis=-1, keepdims=True)
    one_minus = ops.sum(ops.where(t.mask, t.y * (1.0 - softmax), 0.0), axis=-1)
    return _naive_cross_entropy(ops, x, t.y, t.mask) + p["epsilon"] * one_minus


POLY1 = LossSpec(
    name="poly1",
    aliases=("poly1_cross_entropy",),
    summary="Poly-1 cross-entropy: softmax CE plus epsilon (1 - p_t).",
    formula=(
        r"\ell_i = -\sum_c y_{ic} \log s_{ic} + \epsilon \sum_c y_{ic} (1 - s_{ic}),"
        r"\quad s = \operatorname{softmax}(x_i)"
    ),
    per="sample",
    input_kind="logits",
    target_kind="multi_hot",
    params=(Param("epsilon", 1.0, "float", "the weight of the first polynomial term", low=-1.0),),
    value=poly1_value,
    definition=poly1_definition,
    grad=poly1_grad,
    decode="top1",
    natives=(
        Native(
            "optax.losses.poly_loss_cross_entropy",
            "optax",
            {"epsilon": 2.0, **LAST_AXIS, **NO_WHERE},
            "unreduced",
            rename={"epsilon": "epsilon"},
            require={**LAST_AXIS, **NO_WHERE},
            note="optax's default epsilon is 2.0 (mlloss: 1.0)",
        ),
    ),
    references=(
        "Leng et al., PolyLoss: A Polynomial Expansion Perspective of Classification Loss "
        "Functions, ICLR 2022, eq. 3",
    ),
    notes="The polynomial term is written sum_c y_c (1 - s_c), which is 1 - p_t for a target "
    "distribution (the paper's one-hot case) and, like the cross-entropy, linear in the targets "
    "otherwise (optax's form): a row with no positive has loss 0, and a row with k positives "
    "has k - p_t.",
)
