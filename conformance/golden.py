"""Golden values and gradients, and the fixtures that store them.

For every case and target dtype the inputs are first rounded to that dtype; the golden value
is the spec's own ``value`` evaluated on the rounded inputs at 60 significant digits (through
:mod:`mlloss.conformance.mp`), and the golden gradient comes from numerical differentiation
of that value at the same precision, independent of any closed-form gradient:

- central differences at 160 digits with a step of 1e-30 relative to the input (truncation
  ~1e-60), a result below the differences' own rounding noise being 0;
- where the one-sided derivatives differ (a kink), the spec's declared ``kink_side`` picks
  the right-hand or left-hand derivative (or their mean), and a kink the spec does not
  declare is an error;
- what a spec declares constant for differentiation (``stop_gradient``) is held at its value
  at the point while the differences are taken;
- at an infinite input the gradient is the limit of the gradient: it is taken at +-1e15
  (with an absolute step of 1e-30), where every exponential term has reached its limit;
- where the golden value is NaN, so is the gradient of everything it depends on.

The gradient stored is that of ``reduction="sum"`` (and of ``"none"``, whose gradient is that
of its sum), and that of ``"mean"``. Each number is stored as a pair of float64 (hi + lo), so
errors are measured against more than float64's precision.

``mlloss golden`` regenerates the fixtures (see :mod:`mlloss.conformance.fixtures`);
``mlloss golden --check`` proves the stored ones equal a fresh regeneration. This module needs
mpmath; reading fixtures does not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mpmath
import numpy as np

import mlloss
from mlloss.conformance import cases as case_lib
from mlloss.conformance import mp
from mlloss.conformance.fixtures import FIXTURES, FORMAT, load, round_to

#: numerical differentiation runs at more digits than the values, so that its rounding noise
#: (~10^-GRAD_DIGITS |f| / h) sits far below anything float64 can tell from 0
GRAD_DIGITS = 160
STEP = mpmath.mpf(10) ** -30
# far enough that e^-R is 0 at any precision, near enough that a step of 1e-30 on it still
# leaves over 100 correct digits at 160
INFINITY_STAND_IN = mpmath.mpf(10) ** 15


def split(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """mpf values as (hi, lo) float64 pairs: hi the nearest float64, lo the remainder."""
    flat = np.asarray(values, dtype=object).reshape(-1)
    hi = np.array([float(v) for v in flat], dtype=np.float64)
    lo = np.array(
        [
            float(v - mpmath.mpf(h)) if mpmath.isfinite(v) else 0.0
            for v, h in zip(flat, hi, strict=True)
        ],
        dtype=np.float64,
    )
    shape = np.shape(values)
    return hi.reshape(shape), lo.reshape(shape)


@dataclass
class Golden:
    """The golden record of one case in one dtype: rounded inputs and golden outputs."""

    case: case_lib.Case
    dtype: str
    arrays: dict[str, np.ndarray]  # x, y, then <field>_hi / <field>_lo


def compute(case: case_lib.Case, dtype: str) -> Golden:
    x = round_to(case.x, dtype)
    y = round_to(case.y, dtype)
    heads = {name: round_to(case.heads[name], dtype) for name in case.heads}
    loss = mlloss.get(case.loss, backend="numpy", reduction="none", **case.params)
    names = loss.spec.heads
    # exact arithmetic, with constants held as the compute dtype holds them
    ops = mp.ops if dtype == "float64" else mp.ops_float32
    with mp.precision():
        inputs = [ops.to_mp(x), *(ops.to_mp(heads[n]) for n in names)]
        none = loss._forward(ops, inputs[0], y, tuple(inputs[1:]), fused=False)
        prepared = loss._prepare(ops, inputs[0], y, tuple(inputs[1:]))[3]
        count = mpmath.mpf(int(np.sum(prepared.counted)))
        total = _nan_sum(none)
        scale = 1 / max(count, mpmath.mpf(1))
        outputs = {
            "none": none,
            "sum": np.asarray(total, dtype=object),
            "mean": np.asarray(total * scale, dtype=object),
        }
        for which, field in enumerate(("grad", *(f"grad_{n}" for n in names))):
            with mp.precision(GRAD_DIGITS):
                grad = _gradient(loss, ops, inputs, y, which)
            _nan_where_value_is_nan(loss.spec.per, none, grad, which)
            outputs[f"{field}_sum"] = grad
            outputs[f"{field}_mean"] = grad * scale
    arrays = {"x": x, "y": y, **heads}
    for name, values in outputs.items():
        arrays[f"{name}_hi"], arrays[f"{name}_lo"] = split(values)
    return Golden(case, dtype, arrays)


def _nan_where_value_is_nan(per: str, values: np.ndarray, grad: np.ndarray, which: int) -> None:
    """The gradient of a NaN value is NaN: for every input that the NaN entry depends on (the
    element, its sample, or the whole batch), whatever the limits at infinity said."""
    nan = np.array([mpmath.isnan(v) for v in np.asarray(values).reshape(-1)], dtype=bool)
    nan = nan.reshape(np.shape(values))
    if per == "sample" and which == 0:
        nan = np.broadcast_to(nan[..., None], grad.shape)
    elif per == "batch":
        nan = np.broadcast_to(nan, grad.shape)
    grad[nan] = mpmath.mpf("nan")


def _nan_sum(values: np.ndarray) -> Any:
    total = mpmath.mpf(0)
    for v in np.asarray(values, dtype=object).reshape(-1):
        total += v
    return total


def _gradient(
    loss: mlloss.Loss, ops: mp.MpmathOps, inputs: list[np.ndarray], y: np.ndarray, which: int
) -> np.ndarray:
    """d(sum of the unreduced values)/d inputs[which] (0: the logits, then the heads) by
    differences, entry by entry."""
    spec = loss.spec
    # every input's infinities at their stand-ins: the gradient is the limit of the gradient,
    # also for an input whose own value is finite
    inputs = [_stand_in(v) for v in inputs]
    x = inputs[which]
    base = x
    magnitude = np.array(
        [max(mpmath.mpf(1), abs(v)) if mpmath.isfinite(v) else mpmath.mpf(1) for v in x.flat],
        dtype=object,
    ).reshape(x.shape)
    step = magnitude * STEP

    def unreduced(v: np.ndarray) -> np.ndarray:
        moved = [*inputs[:which], v, *inputs[which + 1 :]]
        return np.asarray(
            loss._forward(ops, moved[0], y, tuple(moved[1:]), fused=False), dtype=object
        )

    with ops.recording() as tape:
        center = unreduced(base)
    grad = np.empty(x.shape, dtype=object)
    if x.size == 0:
        return grad
    # entries whose unreduced values are independent can move together
    if spec.per == "element" or (spec.per == "sample" and which > 0):
        groups = [np.ones(x.shape, dtype=bool)]
    elif spec.per == "sample":
        groups = []
        for j in range(x.shape[-1]):
            group = np.zeros(x.shape, dtype=bool)
            group[..., j] = True
            groups.append(group)
    else:
        groups = []
        for index in np.ndindex(x.shape):
            group = np.zeros(x.shape, dtype=bool)
            group[index] = True
            groups.append(group)
    side = None
    for group in groups:
        h = np.where(group, step, mpmath.mpf(0))
        # what the spec holds constant (stop_gradient) stays at its value at the point itself
        with ops.replaying(tape):
            plus = unreduced(base + h)
        with ops.replaying(tape):
            minus = unreduced(base - h)
        for index in zip(*np.nonzero(group), strict=True):
            at = index if which > 0 and spec.per == "sample" else _output_index(spec.per, index)
            hi = step[index]
            right = (plus[at] - center[at]) / hi
            left = (center[at] - minus[at]) / hi
            central = (plus[at] - minus[at]) / (2 * hi)
            # the differences carry ~10^-GRAD_DIGITS |f| / h of rounding noise; below a
            # thousand times that, two derivatives are the same number, and one is 0
            scale = abs(center[at]) if mpmath.isfinite(center[at]) else mpmath.mpf(1)
            noise = mpmath.mpf(10) ** (3 - GRAD_DIGITS) * max(mpmath.mpf(1), scale) / hi
            if _one_sided_differ(left, right, noise):
                if spec.kink_side is None:
                    raise ValueError(
                        f"{spec.name}: a kink at input {which}, {index} ({base[index]}) that "
                        f"the spec does not declare (left {left}, right {right})"
                    )
                if side is None:
                    moved = [*inputs[:which], base, *inputs[which + 1 :]]
                    _, xc, _, t, p = loss._prepare(ops, moved[0], y, tuple(moved[1:]))
                    sides = spec.kink_side(ops, xc, t, p)
                    side = np.asarray(sides[which] if spec.heads else sides, dtype=object)
                choice = side[index]
                central = right if choice > 0 else left if choice < 0 else central
            grad[index] = central if not abs(central) < noise else mpmath.mpf(0)
    return grad


def _stand_in(values: np.ndarray) -> np.ndarray:
    out = values.copy()
    for index in np.ndindex(out.shape):
        if mpmath.isinf(out[index]):
            out[index] = INFINITY_STAND_IN * mpmath.sign(out[index])
    return out


def _output_index(per: str, index: tuple[int, ...]) -> tuple[int, ...]:
    if per == "element":
        return index
    if per == "sample":
        return index[:-1]
    return ()


def _one_sided_differ(left: Any, right: Any, noise: Any) -> bool:
    if mpmath.isnan(left) or mpmath.isnan(right):
        return False
    return abs(left - right) > mpmath.mpf(10) ** -12 * (abs(left) + abs(right)) + noise


# fixtures, regenerated -------------------------------------------------------------------------


def generate(name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The description and arrays of one loss's fixture, computed afresh."""
    description: dict[str, Any] = {
        "format": FORMAT,
        "loss": name,
        "generator": "mlloss.conformance.golden",
        "digits": mp.DIGITS,
        "gradient": "central differences at 160 digits, step 1e-30 x max(1, |x|); declared "
        "side at kinks; limit (at +-1e15) at infinite inputs; NaN where the value is NaN",
        "arrays": "<case>.<dtype>.x / .y: inputs rounded to the dtype (held in float64); "
        "<field>_hi + <field>_lo: golden none, sum, mean, grad_sum, grad_mean",
        "cases": [],
    }
    arrays: dict[str, np.ndarray] = {}
    for case in case_lib.cases_for(name):
        description["cases"].append(case.describe())
        for dtype in case.dtypes:
            golden = compute(case, dtype)
            for key, value in golden.arrays.items():
                arrays[f"{case.id}.{dtype}.{key}"] = value
    return description, arrays


def write(name: str, directory: Path = FIXTURES) -> None:
    description, arrays = generate(name)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(directory / f"{name}.npz", **arrays)
    (directory / f"{name}.json").write_text(json.dumps(description, indent=1) + "\n")


def check(name: str) -> list[str]:
    """Differences between the stored fixture and a fresh regeneration (empty: identical)."""
    stored = load(name)
    description, arrays = generate(name)
    problems = []
    if stored.description != json.loads(json.dumps(description)):
        problems.append(f"{name}.json differs from the regenerated description")
    for key in sorted(set(arrays) | set(stored.arrays)):
        if key not in arrays or key not in stored.arrays:
            where = "stored" if key in stored.arrays else "regenerated"
            problems.append(f"{name}.npz: {key} only in the {where} fixture")
        elif not np.array_equal(arrays[key], stored.arrays[key], equal_nan=True):
            problems.append(f"{name}.npz: {key} differs")
    return problems
