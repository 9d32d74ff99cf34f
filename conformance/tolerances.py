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
    """A looser tolerance for one (loss, backend, dtype, device), with the reason it is needed."""

    loss: str
    backend: str
    dtype: str
    device: str
    tolerance: Tolerance
    reason: str


#: every exception to TABLE, each with its reason; empty means every backend meets the table
OVERRIDES: tuple[Override, ...] = ()


@dataclass(frozen=True)
class KnownDifference:
    """A comparison that a gradient path cannot meet, by construction, and why. It is run and
    reported (as a known difference, with its error), never counted as a pass or a failure."""

    losses: tuple[str, ...]
    path: str
    case: str
    quantity: str
    reason: str


KNOWN_DIFFERENCES: tuple[KnownDifference, ...] = (
    KnownDifference(
        losses=("softmax_ce", "sparse_softmax_ce"),
        path="autodiff",
        case="infinite",
        quantity="grad",
        reason=(
            "a row whose largest logit is +inf gets its limit from a where() that holds no "
            "derivative for the +inf entries, and no finite expression of x = inf has one; "
            "the fused backward (the default path) gives the limit gradient and is checked"
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
        if (o.loss, o.backend, o.dtype, o.device) == (loss, backend, dtype, device):
            return o.tolerance, o.reason
    return TABLE[dtype], ""
