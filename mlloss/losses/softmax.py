"""Softmax cross-entropy, with distribution (soft, one-hot or normalised multi-hot) targets and
with integer class targets. One value per sample; classes whose label is missing are left out
of the softmax itself (a masked logsumexp), so they add nothing to the loss or the gradient.
"""

from __future__ import annotations

from mlloss.spec import LossSpec, Native, Param

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
            "torch",
            "torch.nn.functional.cross_entropy",
            "F.cross_entropy(x, y, weight=class_weight, label_smoothing=label_smoothing, "
            "reduction=reduction)",
            "probability targets; torch's mean divides by N",
        ),
        Native(
            "tensorflow",
            "tf.nn.softmax_cross_entropy_with_logits",
            "tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=x)",
            "unreduced; no smoothing or weights",
        ),
        Native(
            "jax",
            "optax.softmax_cross_entropy",
            "optax.softmax_cross_entropy(x, y)",
            "unreduced; no smoothing or weights",
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
            "torch",
            "torch.nn.functional.cross_entropy",
            "F.cross_entropy(x, y, weight=class_weight, ignore_index=ignore_index, "
            "label_smoothing=label_smoothing, reduction='none')",
            "torch's weighted mean divides by the sum of the targets' weights, not by the count",
        ),
        Native(
            "tensorflow",
            "tf.nn.sparse_softmax_cross_entropy_with_logits",
            "tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x)",
            "unreduced; no ignore_index, smoothing or weights",
        ),
        Native(
            "jax",
            "optax.softmax_cross_entropy_with_integer_labels",
            "optax.softmax_cross_entropy_with_integer_labels(x, y)",
            "unreduced",
        ),
    ),
    references=("torch.nn.CrossEntropyLoss documentation (label smoothing with weights)",),
)


# poly1 ----------------------------------------------------------------------------------------


def _poly1_parts(ops, x, t):
    log_p = ops.log_softmax(x, axis=-1, where=t.mask)
    p_t = ops.sum(ops.where(t.mask, ops.xmul(t.y, ops.exp(log_p)), 0.0), axis=-1)
    return log_p, p_t


def poly1_value(ops, x, t, p):
    _, p_t = _poly1_parts(ops, x, t)
    ce = _cross_entropy(ops, x, t.y, t.mask)
    counted = ops.any(t.mask, axis=-1)
    return ops.where(counted, ce + p["epsilon"] * (1.0 - p_t), 0.0)


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
    p_t = ops.sum(ops.where(t.mask, t.y * softmax, 0.0), axis=-1)
    return _naive_cross_entropy(ops, x, t.y, t.mask) + p["epsilon"] * (1.0 - p_t)


POLY1 = LossSpec(
    name="poly1",
    aliases=("poly1_cross_entropy",),
    summary="Poly-1 cross-entropy: softmax CE plus epsilon (1 - p_t).",
    formula=(
        r"\ell_i = -\sum_c y_{ic} \log s_{ic} + \epsilon\left(1 - \sum_c y_{ic} s_{ic}\right),"
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
            "jax",
            "optax.poly_loss_cross_entropy",
            "optax.poly_loss_cross_entropy(x, y, epsilon=epsilon)",
            "unreduced",
        ),
    ),
    references=(
        "Leng et al., PolyLoss: A Polynomial Expansion Perspective of Classification Loss "
        "Functions, ICLR 2022, eq. 3",
    ),
    notes="A row with no positive has cross-entropy 0 and p_t = 0: its loss is epsilon.",
)
