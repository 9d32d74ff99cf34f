"""Frameworks' own losses, run live: the native columns of the conformance matrix, and the
checks behind ``mlloss port``.

A native column (``native:torch``, ``native:keras``, ...) holds one cell per loss and dtype:
every native of that framework listed by the loss's spec, on every fixture case whose
parameters the native can express (:func:`mlloss.natives.native_kwargs`) and whose targets it
understands, compared with the golden reference as the native reduces it: its unreduced
values and their gradient, and its default reduction's value. Natives run on the CPU in
float64 and float32 (half precision natives compute in half, a different contract).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

import mlloss
from mlloss import natives as native_lib
from mlloss.conformance import fixtures
from mlloss.conformance.tolerances import GRAD_FACTOR, known_native_difference, tolerance_for
from mlloss.spec import LossSpec, Native

#: the frameworks that have natives, and the module each needs
FRAMEWORKS = {
    "torch": "torch",
    "torchvision": "torchvision",
    "tensorflow": "tensorflow",
    "keras": "keras",
    "optax": "optax",
}
DTYPES = ("float64", "float32")
COLUMN = "native:"


def column(framework: str) -> str:
    return COLUMN + framework


def installed(framework: str) -> bool:
    """Whether the framework imports here (torchvision's wheel may not match torch's)."""
    module = FRAMEWORKS[framework]
    if importlib.util.find_spec(module) is None:
        return False
    try:
        importlib.import_module(module)
    except Exception:  # a wheel built against another torch fails at import, not at find_spec
        return False
    return True


def version(framework: str) -> str | None:
    if not installed(framework):
        return None
    return str(getattr(importlib.import_module(FRAMEWORKS[framework]), "__version__", "unknown"))


# calling a native ----------------------------------------------------------------------------


def resolve(name: str) -> Any:
    """The native's function or class, imported (``tf.`` is ``tensorflow.``)."""
    full = name.replace("tf.", "tensorflow.", 1) if name.startswith("tf.") else name
    module, _, attribute = full.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def call(
    native: Native,
    written: str,
    x: np.ndarray,
    y: np.ndarray,
    kwargs: Mapping[str, Any],
    dtype: str,
    grad: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run the native (in the form ``written``: its function or its class) on NumPy inputs in
    its framework and ``dtype``, called in its own argument order; returns its output and the
    gradient of the output's sum with respect to the predictions, as float64 NumPy arrays."""
    target = resolve(native_lib.canonical(written))
    runner = _RUNNERS[native.framework]
    with warnings.catch_warnings():  # Keras warns about one class; the case is deliberate
        warnings.simplefilter("ignore")
        return runner(native, target, x, y, dict(kwargs), dtype, grad)


def _torch(native, target, x, y, kwargs, dtype, grad):
    import torch

    kind = getattr(torch, dtype)
    xt = torch.tensor(x, dtype=kind, requires_grad=grad)
    yt = torch.tensor(y) if y.dtype.kind in "iu" else torch.tensor(y, dtype=kind)
    kwargs = {k: _torch_arg(torch, k, v, kind) for k, v in kwargs.items()}
    out = target(**kwargs)(xt, yt) if isinstance(target, type) else target(xt, yt, **kwargs)
    g = None
    if grad:
        (g,) = torch.autograd.grad(out.sum(), xt)
        g = g.detach().numpy().astype(np.float64)
    return out.detach().numpy().astype(np.float64), g


def _torch_arg(torch, key, value, kind):
    """Weights as tensors (torch takes no plain number for them)."""
    if isinstance(value, np.ndarray) or (key in _TORCH_TENSORS and isinstance(value, float)):
        return torch.tensor(value, dtype=kind)
    return value


_TORCH_TENSORS = ("weight", "pos_weight")


def _tensorflow(native, target, x, y, kwargs, dtype, grad):
    import tensorflow as tf

    xt = tf.Variable(tf.constant(x, dtype=dtype))
    yt = tf.constant(y) if y.dtype.kind in "iu" else tf.constant(y, dtype=dtype)
    kwargs = {k: tf.constant(v, dtype=dtype) if _array(v) else v for k, v in kwargs.items()}
    with tf.GradientTape() as tape:
        if native.framework == "keras":
            if isinstance(target, type):
                out = target(dtype=dtype, **kwargs)(yt, xt)
            else:
                out = target(yt, xt, **kwargs)
        else:
            out = target(labels=yt, logits=xt, **kwargs)
        total = tf.reduce_sum(out)
    g = tape.gradient(total, xt) if grad else None
    g = None if g is None else np.asarray(g.numpy(), dtype=np.float64)
    return np.asarray(out.numpy(), dtype=np.float64), g


def _optax(native, target, x, y, kwargs, dtype, grad):
    import jax
    import jax.numpy as jnp
    import optax

    jax.config.update("jax_enable_x64", True)
    xj = jnp.asarray(x, dtype=dtype)
    yj = jnp.asarray(y) if y.dtype.kind in "iu" else jnp.asarray(y, dtype=dtype)
    smooth = kwargs.pop("smooth_labels", 0.0)
    if smooth:
        yj = optax.smooth_labels(yj, smooth)

    key = (id(target), repr(sorted((k, _plain(v)) for k, v in kwargs.items())))
    if key not in _JITTED:

        def total(v, labels):
            out = target(v, labels, **kwargs)
            return jnp.sum(out), out

        # compiled once per native, arguments, shape and dtype, and reused across cases (eager
        # JAX would compile every primitive for every new shape instead)
        _JITTED[key] = (jax.jit(jax.value_and_grad(total, has_aux=True)), jax.jit(total))
    with_grad, value_only = _JITTED[key]
    if grad:
        (_, out), g = with_grad(xj, yj)
        return np.asarray(out, dtype=np.float64), np.asarray(g, dtype=np.float64)
    return np.asarray(value_only(xj, yj)[1], dtype=np.float64), None


_JITTED: dict[tuple[int, str], tuple[Callable[..., Any], Callable[..., Any]]] = {}


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


def _array(value: Any) -> bool:
    return isinstance(value, np.ndarray)


_RUNNERS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray | None]]] = {
    "torch": _torch,
    "torchvision": _torch,
    "tensorflow": _tensorflow,
    "keras": _tensorflow,
    "optax": _optax,
}


def unreduced(native: Native, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The native's arguments with its reduction switched off (where it has one)."""
    if native.reduce in ("reduction", "index_reduction", "keras"):
        return {**kwargs, "reduction": "none"}
    return dict(kwargs)


def as_native_targets(native: Native, spec: LossSpec, y: np.ndarray) -> np.ndarray | None:
    """The fixture's targets as the native takes them, or None when it cannot take them (a
    missing multi-hot label: no native has one)."""
    if spec.target_kind == "class_index":
        return y
    if np.any(y < 0):
        return None
    if native.targets == "padded_indices":
        if np.any((y != 0) & (y != 1)):
            return None
        out = np.full(y.shape, -1, dtype=np.int64)
        for row in np.ndindex(y.shape[:-1]):
            hot = np.flatnonzero(y[row])
            out[row][: hot.size] = hot
        return out
    return y


# the native columns ----------------------------------------------------------------------------


def run_framework(
    framework: str,
    losses: Sequence[str],
    dtypes: Sequence[str],
    devices: Sequence[str],
    progress: Callable[[str], None] | None = None,
) -> list[Any]:
    """Every native cell of one framework: (loss, ``native:<framework>``, dtype, device)."""
    from mlloss.conformance.runner import Cell

    name = column(framework)
    ready = installed(framework)
    cells = []
    # natives run on the CPU in float64 and float32 only: no cell at all elsewhere
    for device in [d for d in devices if d == "cpu"]:
        for dtype in [d for d in dtypes if d in DTYPES]:
            for loss in losses:
                spec = mlloss.spec(loss)
                mine = [n for n in spec.natives if n.framework == framework]
                if not mine:
                    continue
                if progress:
                    progress(f"{loss} {name} {dtype} {device}")
                cell = Cell(loss, name, dtype, device, "pass")
                if not ready:
                    cell.status = "not installed"
                    cell.reason = f"{FRAMEWORKS[framework]} is not installed (or does not import)"
                elif not fixtures.available(loss):
                    cell.status, cell.reason = "no fixture", f"run `mlloss golden --loss {loss}`"
                else:
                    _fill(cell, spec, mine, fixtures.load(loss), dtype)
                cells.append(cell)
    return cells


def _fill(cell: Any, spec: LossSpec, mine: list[Native], fixture: Any, dtype: str) -> None:
    tolerance, reason = tolerance_for(spec.name, cell.backend, dtype, cell.device)
    cell.reason = reason
    for native in mine:
        for case in fixture.cases():
            if dtype not in case["dtypes"]:
                continue
            kwargs = native_lib.native_kwargs(spec, native, case["params"])
            if kwargs is None:
                continue
            y = as_native_targets(native, spec, fixture.get(case["id"], dtype, "y"))
            if y is None or not _targets_understood(native, spec, y):
                continue
            x = fixture.get(case["id"], dtype, "x")
            cell.comparisons.extend(
                _compare_case(native, spec, fixture, case, x, y, kwargs, dtype, tolerance)
            )
    for comparison in cell.comparisons:
        comparison.known = known_native_difference(
            spec.name, comparison.path, comparison.case, comparison.quantity, comparison.reduction
        )
    if cell.failures:
        cell.status = "fail"
    elif not cell.comparisons:
        cell.status, cell.reason = "skipped", "no fixture case has parameters the native expresses"


def _targets_understood(native: Native, spec: LossSpec, y: np.ndarray) -> bool:
    """Class indices outside [0, C) are understood only by natives that ignore one index."""
    if spec.target_kind != "class_index" or y.size == 0:
        return True
    ignore = {"torch": "ignore_index", "keras": "ignore_class"}.get(native.framework)
    return bool(np.all(y >= 0)) or ignore is not None


def _compare_case(native, spec, fixture, case, x, y, kwargs, dtype, tolerance) -> list[Any]:
    from mlloss.conformance.runner import _failure, compare

    path, case_id = native.name, case["id"]
    try:
        with np.errstate(all="ignore"):
            value, grad = call(native, native.name, x, y, unreduced(native, kwargs), dtype)
            reduced, _ = call(native, native.name, x, y, kwargs, dtype, grad=False)
    except Exception as error:
        text = "".join(traceback.format_exception_only(type(error), error)).strip()
        return [_failure(case_id, path, "none", "value", f"raised {text}")]
    expected = _expected(native, spec, fixture, case, dtype, kwargs, y)
    out = [
        compare(case_id, path, "none", "value", value, *expected["none"], dtype, tolerance, 1.0),
        compare(
            case_id, path, "none", "grad", grad, *expected["grad"], dtype, tolerance, GRAD_FACTOR
        ),
    ]
    default = _default_reduction(native)
    if default is not None:
        out.append(
            compare(
                case_id,
                path,
                default,
                "value",
                reduced,
                *expected["reduced"],
                dtype,
                tolerance,
                1.0,
            )
        )
    return out


def _default_reduction(native: Native) -> str | None:
    """The mlloss name of the reduction the native applies by default (None: unreduced)."""
    if native.reduce in ("unreduced", "per_sample"):
        return None
    default = native.args["reduction"]
    return "none" if default in (None, "none") else "sum" if default == "sum" else "mean"


def _expected(native, spec, fixture, case, dtype, kwargs, y) -> dict[str, tuple[Any, Any]]:
    """The golden values as the native reduces them: (hi, lo) float64 pairs."""

    def get(key: str) -> tuple[np.ndarray, np.ndarray]:
        return tuple(fixture.get(case["id"], dtype, f"{key}_{part}") for part in ("hi", "lo"))

    none_hi, none_lo = get("none")
    grad_hi, grad_lo = get("grad_sum")
    sum_hi, sum_lo = get("sum")
    mean_hi, mean_lo = get("mean")
    class_mean = native.reduce in ("keras", "per_sample") and spec.per == "element"
    if class_mean:  # one value per sample: the mean over its classes (no label is missing)
        classes = none_hi.shape[-1]
        rows = none_hi.reshape(-1, classes)
        lows = none_lo.reshape(-1, classes)
        none_hi = np.array(
            [math.fsum([*r, *lo]) / classes for r, lo in zip(rows, lows, strict=True)]
        ).reshape(none_hi.shape[:-1])
        none_lo = np.zeros_like(none_hi)
        grad_hi, grad_lo = grad_hi / classes, grad_lo / classes
    reduced = (mean_hi, mean_lo)
    if _default_reduction(native) == "sum":
        reduced = (sum_hi / classes, sum_lo / classes) if class_mean else (sum_hi, sum_lo)
    weight = kwargs.get("weight")
    if native.reduce == "index_reduction" and weight is not None:
        ignore = kwargs.get("ignore_index", -100)
        counted = y != ignore
        denominator = math.fsum(np.asarray(weight, dtype=np.float64)[y[counted]])
        total = math.fsum([*np.ravel(none_hi), *np.ravel(none_lo)])
        reduced = (np.asarray(total / denominator if denominator else total), np.asarray(0.0))
    return {"none": (none_hi, none_lo), "grad": (grad_hi, grad_lo), "reduced": reduced}


def cell_count(losses, frameworks, dtypes, devices) -> int:
    """How many native cells :func:`run_framework` makes (for a progress bar)."""
    from mlloss.conformance.runner import DEVICES
    from mlloss.conformance.runner import DTYPES as ALL_DTYPES

    per_loss = sum(
        1
        for loss in losses
        for f in frameworks
        if any(r.framework == f for r in mlloss.spec(loss).natives)
    )
    kept_dtypes = [d for d in dtypes or ALL_DTYPES if d in DTYPES]
    return per_loss * len(kept_dtypes) * int("cpu" in (devices or DEVICES))


def versions() -> dict[str, str | None]:
    return {column(f): version(f) for f in FRAMEWORKS}


__all__ = [
    "DTYPES",
    "FRAMEWORKS",
    "as_native_targets",
    "call",
    "column",
    "installed",
    "resolve",
    "run_framework",
    "unreduced",
    "version",
]
