"""The one pinned tolerance table, and the only place an exception to it may be written.

A result ``r`` matches a golden value ``g`` (held to more than float64's precision) when

    |r - g| <= eps * factor * (REL * |g| + ABS * G)

with ``eps`` the dtype's machine epsilon, ``G`` the largest finite ``|g|`` of the array being
compared (so sums and near-cancelling gradients are judged on the array's scale), and
``factor`` 1 for values and :data:`GRAD_FACTOR` for gradients. Non-finite values must sit in
exactly the same positions (NaN where NaN, +inf where +inf); a golden value beyond the dtype's
range is expected as the infinity the dtype rounds it to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: machine epsilon of each dtype (bfloat16: 8 significand bits)
EPS = {
    "float64": float(np.finfo(np.float64).eps),
    "float32": float(np.finfo(np.float32).eps),
    "float16": float(np.finfo(np.float16).eps),
    "bfloat16": 2.0**-7,
}


@dataclass(frozen=True)
class Tolerance:
    rel: float  # in units of eps, times |g|
    abs: float  # in units of eps, times the array's largest |g|


#: float64 / float32: a loss is a chain of a dozen rounded operations (relative error up to
#: ~16 eps), and a reduction adds up to one eps per term on the array's scale (fixtures hold
#: at most 30 terms: 32). float16 / bfloat16 are computed in float32 and rounded once: the
#: result and the rounded golden are each within half an ulp of the exact value, so one ulp
#: (1 eps relative) apart; 2 leaves room for a float32 result that sits on a rounding tie.
TABLE = {
    "float64": Tolerance(rel=16, abs=32),
    "float32": Tolerance(rel=16, abs=32),
    "float16": Tolerance(rel=2, abs=2),
    "bfloat16": Tolerance(rel=2, abs=2),
}

#: gradients are differences of nearly equal terms (sigmoid(x) - y, softmax - q): their error
#: is bounded on the scale of the terms, not of the difference; and the backward adds its own
#: chain of operations
GRAD_FACTOR = 4


@dataclass(frozen=True)
class Override:
    """A looser tolerance for one (loss, backend, dtype, device), with the reason it is needed.
    ``backend``/``device`` None: every one (for a reason that is the loss's own, not a
    backend's, such as its conditioning)."""

    loss: str
    backend: str | None
    dtype: str
    device: str | None
    tolerance: Tolerance
    reason: str


_EXPONENT_REASON = (
    "bp_mll is exp(LSE_pos(-x) + LSE_neg(x)): exp turns an absolute error d in its argument "
    "into a relative error d, and the argument reaches 200 at logits of +-100 (computed with "
    "an error of ~eps per unit of it), so the relative error grows to ~200 eps; 256 is the "
    "first power of two above that condition number"
)

#: every exception to TABLE, each with its reason
OVERRIDES: tuple[Override, ...] = tuple(
    Override("bp_mll", None, dtype, None, Tolerance(rel=256, abs=32), _EXPONENT_REASON)
    for dtype in ("float64", "float32")
)


@dataclass(frozen=True)
class KnownDifference:
    """A comparison that a gradient path cannot meet, by construction, and why. It is run and
    reported (as a known difference, with its error), never counted as a pass or a failure.
    Only the non-default autodiff path has any: the fused backward meets every case."""

    losses: tuple[str, ...]
    path: str
    case: str
    quantity: str
    reason: str


KNOWN_DIFFERENCES: tuple[KnownDifference, ...] = (
    KnownDifference(
        losses=(
            "softmax_ce",
            "sparse_softmax_ce",
            "poly1",
            "focal",
            "poly1_focal",
            "hill",
            "splc",
            "zlpr",
            "lsep",
            "multilabel_hinge",
            "two_way",
            "partition",
        ),
        path="autodiff",
        case="infinite",
        quantity="grad",
        reason=(
            "at +-inf logits the spec's gradient is the limit of the gradient: the fused "
            "backward (the default path, checked) computes it in closed form, while a framework "
            "differentiating the formula meets inf - inf or 0 * inf inside where() branches, or "
            "a where() that holds the limit as a constant, and returns NaN or 0"
        ),
    ),
    KnownDifference(
        losses=(
            "abs_kl",
            "asl",
            "multilabel_hinge",
            "multilabel_soft_margin",
            "probability_ce",
            "two_way",
            "zlpr",
        ),
        path="autodiff",
        case="nan",
        quantity="grad",
        reason=(
            "NaN in gives NaN out: the fused backward (checked) returns NaN for every logit "
            "that a NaN value depends on; a framework differentiating the formula returns "
            "finite gradients where the NaN sits in an unselected where() branch or in another "
            "term of a sum, and NaN where 0 multiplies it"
        ),
    ),
    KnownDifference(
        losses=("partition",),
        path="autodiff",
        case="nan",
        quantity="grad_count",
        reason=(
            "NaN in gives NaN out: a NaN logit makes the sample's value NaN, and the fused "
            "backward (checked) returns NaN for its count too; a framework differentiating the "
            "formula follows only the count term's own path, which holds no NaN"
        ),
    ),
    KnownDifference(
        losses=("bp_mll",),
        path="autodiff",
        case="extreme_100",
        quantity="grad",
        reason=(
            "exp overflows to inf in the forward pass at logits of +-100, and the framework's "
            "backward multiplies that inf by another term's 0 derivative (NaN); the fused "
            "backward (checked) computes each entry's own exponent and stays finite"
        ),
    ),
)


def known_difference(loss: str, path: str, case: str, quantity: str) -> str:
    """The reason a comparison is a declared difference, or '' when it is not one."""
    for d in KNOWN_DIFFERENCES:
        if loss in d.losses and (d.path, d.case, d.quantity) == (path, case, quantity):
            return d.reason
    return ""


def tolerance_for(loss: str, backend: str, dtype: str, device: str) -> tuple[Tolerance, str]:
    """The tolerance that applies, and the override's reason ('' for the table's own)."""
    for o in OVERRIDES:
        if (
            (o.loss, o.dtype) == (loss, dtype)
            and o.backend in (None, backend)
            and o.device in (None, device)
        ):
            return o.tolerance, o.reason
    return TABLE[dtype], ""


@dataclass(frozen=True)
class NativeDifference:
    """Where frameworks' own losses differ from the specs they map to, by their construction,
    and why: run and reported in their native columns, never counted as a pass or a failure.
    ``cases`` empty means every case; ``quantity``/``reduction`` None mean any; ``losses``
    empty means every loss the natives map to (a Keras class maps to two, by from_logits)."""

    natives: tuple[str, ...]
    cases: tuple[str, ...]
    quantity: str | None
    reduction: str | None
    reason: str
    losses: tuple[str, ...] = ()


_TORCH = "torch.nn.functional."
_KERAS = "keras.losses."
_INFINITE_NATIVES = (
    f"{_TORCH}binary_cross_entropy_with_logits",
    f"{_TORCH}cross_entropy",
    f"{_TORCH}multilabel_soft_margin_loss",
    f"{_TORCH}multilabel_margin_loss",
    "tf.nn.sigmoid_cross_entropy_with_logits",
    "tf.nn.softmax_cross_entropy_with_logits",
    "tf.nn.sparse_softmax_cross_entropy_with_logits",
    *(
        _KERAS + n
        for n in (
            "BinaryCrossentropy",
            "binary_crossentropy",
            "BinaryFocalCrossentropy",
            "binary_focal_crossentropy",
            "CategoricalCrossentropy",
            "categorical_crossentropy",
            "SparseCategoricalCrossentropy",
            "sparse_categorical_crossentropy",
        )
    ),
    "optax.losses.sigmoid_binary_cross_entropy",
    "optax.losses.sigmoid_focal_loss",
    "optax.losses.softmax_cross_entropy",
    "optax.losses.softmax_cross_entropy_with_integer_labels",
    "optax.losses.poly_loss_cross_entropy",
)

#: every declared difference of a native column, each with its reason
NATIVE_DIFFERENCES: tuple[NativeDifference, ...] = (
    NativeDifference(
        _INFINITE_NATIVES,
        ("infinite",),
        None,
        None,
        "at +-inf logits the native's own arithmetic meets inf - inf or 0 * inf and returns "
        "NaN (or, comparing NaN, 0); mlloss returns the limit where one exists and NaN where "
        "none does",
    ),
    NativeDifference(
        (
            f"{_TORCH}binary_cross_entropy_with_logits",
            f"{_TORCH}cross_entropy",
            f"{_TORCH}multilabel_soft_margin_loss",
            f"{_TORCH}multilabel_margin_loss",
            *(_KERAS + n for n in ("BinaryCrossentropy", "BinaryFocalCrossentropy")),
            *(_KERAS + n for n in ("CategoricalCrossentropy", "SparseCategoricalCrossentropy")),
        ),
        ("empty_batch",),
        "value",
        "mean",
        "an empty batch: torch's mean is 0 / 0 (NaN, or an unspecified number for "
        "multilabel_margin_loss in float32), and Keras returns the empty per-sample array "
        "unreduced; mlloss's mean of nothing is 0",
    ),
    NativeDifference(
        (
            "tf.nn.softmax_cross_entropy_with_logits",
            *(_KERAS + n for n in ("CategoricalCrossentropy", "categorical_crossentropy")),
        ),
        (),
        "grad",
        None,
        "TensorFlow's fused kernel returns softmax(x) - y as the gradient, which is the "
        "derivative of its value only where each row of y sums to 1; for multi-hot, soft or "
        "empty rows it is not (mlloss's gradient is softmax(x) sum(y) - y)",
        losses=("softmax_ce",),
    ),
    NativeDifference(
        (f"{_TORCH}multilabel_margin_loss",),
        ("nan",),
        None,
        None,
        "a NaN logit: torch's hinge compares it (false) and drops the pair, returning a "
        "finite value; mlloss returns NaN for the sample (NaN in, NaN out)",
    ),
    NativeDifference(
        (f"{_TORCH}multilabel_soft_margin_loss",),
        ("nan",),
        "grad",
        None,
        "a NaN logit: torch's backward gives the sample's other logits their finite "
        "gradients; mlloss gives NaN to every logit of a sample whose value is NaN",
    ),
    NativeDifference(
        (
            _KERAS + "BinaryCrossentropy",
            _KERAS + "binary_crossentropy",
            _KERAS + "SparseCategoricalCrossentropy",
            _KERAS + "sparse_categorical_crossentropy",
        ),
        ("nan",),
        "grad",
        None,
        "a NaN probability: tf.clip_by_value passes no gradient to it (its comparisons with "
        "the bounds are false), so Keras's gradient there is 0; mlloss's is NaN",
    ),
)


def known_native_difference(
    loss: str, native: str, case: str, quantity: str, reduction: str
) -> str:
    """The reason a native's comparison is a declared difference, or ''."""
    for d in NATIVE_DIFFERENCES:
        if (
            native in d.natives
            and loss in (d.losses or (loss,))
            and case in (d.cases or (case,))
            and d.quantity in (None, quantity)
            and d.reduction in (None, reduction)
        ):
            return d.reason
    return ""
