"""The conformance runner: every loss x backend x dtype x device x gradient path x reduction,
values and gradients, against the golden fixtures.

A *cell* is one (loss, backend, dtype, device); it passes when every comparison in it passes.
Its record keeps every comparison (case, path, reduction, value or gradient) with the worst
element's error, so a failure says exactly where it is.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

import mlloss
from mlloss import backends
from mlloss.conformance import fixtures
from mlloss.conformance import natives as native_columns
from mlloss.conformance import seed as seed_example
from mlloss.conformance.tolerances import (
    EPS,
    GRAD_FACTOR,
    TABLE,
    Tolerance,
    known_difference,
    tolerance_for,
)

DTYPES = ("float64", "float32", "float16", "bfloat16")
DEVICES = ("cpu", "cuda")
REDUCTIONS = ("none", "sum", "mean")
GPU_CAPABLE = ("torch", "tensorflow", "jax")
ENTRY_POINT_GROUP = "mlloss.backends"


@dataclass
class Comparison:
    """One value or gradient of one case, path and reduction, against its golden."""

    case: str
    path: str  # fused, autodiff or closed_form
    reduction: str
    quantity: str  # value or grad
    passed: bool
    ratio: float  # worst |error| / tolerance (inf for a non-finite mismatch)
    abs_error: float
    ulps: float | None  # |error| / (eps |golden|) at the worst element (None when golden = 0)
    index: list[int] | None
    got: float | None
    expected: float | None
    note: str = ""
    known: str = ""  # the reason, when this comparison is a declared known difference


@dataclass
class Cell:
    loss: str
    backend: str
    dtype: str
    device: str
    status: str  # pass, fail, skipped, not installed, unsupported, no fixture
    reason: str = ""
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def worst(self) -> Comparison | None:
        counted = [c for c in self.comparisons if not c.known]
        return max(counted, key=lambda c: c.ratio, default=None)

    @property
    def failures(self) -> list[Comparison]:
        return [c for c in self.comparisons if not c.passed and not c.known]

    @property
    def known(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.known]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        worst = self.worst
        out["worst"] = asdict(worst) if worst else None
        return out


@dataclass
class Report:
    cells: list[Cell]
    seed: list[seed_example.SeedResult]
    versions: dict[str, str | None]
    elapsed_s: float

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.cells) or any(
            s.status == "fail" for s in self.seed
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "mlloss": mlloss.__version__,
            "versions": self.versions,
            "elapsed_s": round(self.elapsed_s, 2),
            "tolerances": {
                "rule": "|r - g| <= eps * factor * (rel * |g| + abs * max|g|) + factor * tiny",
                "table": {d: asdict(t) for d, t in TABLE.items()},
                "grad_factor": GRAD_FACTOR,
            },
            "passed": not self.failed,
            "cells": [c.as_dict() for c in self.cells],
            "seed_worked_example": [s.as_dict() for s in self.seed],
        }


def versions(names: Iterable[str] = backends.BACKENDS) -> dict[str, str | None]:
    """The version of every framework (None: not installed) and of the reference's tools."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for module in [backends.FRAMEWORK_MODULE.get(n, n) for n in names] + ["mpmath", "ml_dtypes"]:
        if importlib.util.find_spec(module) is None:
            out[module] = None
        else:
            out[module] = getattr(__import__(module), "__version__", "unknown")
    return out


def run(
    losses: Sequence[str] | None = None,
    backend_names: Sequence[str] | None = None,
    dtypes: Sequence[str] | None = None,
    devices: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
    with_seed: bool = True,
    workers: int = 1,
    natives: Sequence[str] = (),
) -> Report:
    """Run the suite. ``None`` means all (every registered loss, every backend, dtype and
    device). ``progress`` is called once per cell with a label. ``workers > 1`` runs the
    built-in backends in that many processes, one (backend, dtype) per fresh process.
    ``natives``: the frameworks whose own losses run as columns of their own
    (:mod:`mlloss.conformance.natives`: torch, torchvision, tensorflow, keras, optax).

    JAX runs with ``jax_enable_x64`` switched on (a process-wide JAX setting) so that its
    float64 is float64.
    """
    start = time.perf_counter()
    losses = list(losses or mlloss.names())
    names = [
        backends.canonical(b)
        for b in (backends.names() if backend_names is None else backend_names)
    ]
    order = [b for b in backends.names() if b in names]  # torch before TensorFlow
    dtypes = list(dtypes or DTYPES)
    devices = list(devices or DEVICES)
    _check_choices("dtype", dtypes, DTYPES)
    _check_choices("device", devices, DEVICES)
    _check_choices("native framework", natives, tuple(native_columns.FRAMEWORKS))
    columns = [native_columns.column(f) for f in natives]
    by_backend: dict[str, list[Cell]] = {}
    in_process = [*order, *columns]
    if workers > 1:
        parallel = [b for b in order if b in backends.BACKENDS and backends.installed(b)]
        parallel += [native_columns.column(f) for f in natives if _importable(f)]
        in_process = [b for b in in_process if b not in parallel]
        by_backend.update(_run_in_processes(parallel, losses, dtypes, devices, progress, workers))
    for backend in in_process:
        by_backend[backend] = _run_column(backend, losses, dtypes, devices, progress)
    cells = [cell for backend in (*order, *columns) for cell in by_backend[backend]]
    seed_results = [seed_example.run(b) for b in order] if with_seed else []
    found = versions(order)
    found.update({native_columns.column(f): native_columns.version(f) for f in natives})
    return Report(cells, seed_results, found, time.perf_counter() - start)


def _importable(framework: str) -> bool:
    return importlib.util.find_spec(native_columns.FRAMEWORKS[framework]) is not None


def _run_column(column, losses, dtypes, devices, progress) -> list[Cell]:
    """One column of the matrix: a backend, or a framework's own losses (``native:...``)."""
    if column.startswith(native_columns.COLUMN):
        framework = column[len(native_columns.COLUMN) :]
        return native_columns.run_framework(framework, losses, dtypes, devices, progress)
    return run_backend(column, losses, dtypes, devices, progress)


def run_backend(
    backend: str,
    losses: Sequence[str],
    dtypes: Sequence[str],
    devices: Sequence[str],
    progress: Callable[[str], None] | None = None,
) -> list[Cell]:
    """Every cell of one backend, in this process."""
    stored = {name: fixtures.load(name) for name in losses if fixtures.available(name)}
    if backend == "jax" and backends.installed("jax"):
        import jax

        jax.config.update("jax_enable_x64", True)
    cells = []
    cache: dict[tuple[Any, ...], Any] = {}
    for device in devices:
        for dtype in dtypes:
            for loss in losses:
                if progress:
                    progress(f"{loss} {backend} {dtype} {device}")
                if loss not in stored:
                    cells.append(
                        Cell(
                            loss,
                            backend,
                            dtype,
                            device,
                            "no fixture",
                            f"run `mlloss golden --loss {loss}` to make one",
                        )
                    )
                    continue
                cells.append(_run_cell(stored[loss], loss, backend, dtype, device, cache))
    return cells


def _run_in_processes(names, losses, dtypes, devices, progress, workers) -> dict[str, list[Cell]]:
    """One task per (backend, dtype), each in a fresh process: the work balances across the
    workers (JAX's eager dispatch is most of it), and TensorFlow and torch never share a
    process. Progress comes back through a queue."""
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    # slowest first, for a balanced finish; a native column is one task (its dtypes are few)
    cost = ("jax", "native:keras", "tensorflow", "torch", "native:tensorflow", "native:optax")
    tasks = sorted(
        (
            (b, tuple(dtypes)) if b.startswith(native_columns.COLUMN) else (b, (d,))
            for b in names
            for d in (dtypes[:1] if b.startswith(native_columns.COLUMN) else dtypes)
        ),
        key=lambda t: cost.index(t[0]) if t[0] in cost else len(cost),
    )
    pool = ProcessPoolExecutor(workers, mp_context=context, max_tasks_per_child=1)
    with context.Manager() as manager, pool:
        queue = manager.Queue()
        futures = {
            (b, d): pool.submit(_worker, b, list(losses), list(d), list(devices), queue)
            for b, d in tasks
        }

        def relay() -> None:
            while (label := queue.get()) is not None:
                if progress:
                    progress(label)

        reader = threading.Thread(target=relay, daemon=True)
        reader.start()
        try:
            done = {task: f.result() for task, f in futures.items()}
        finally:
            queue.put(None)
            reader.join()
    # the order run_backend gives: device, then dtype, then loss
    return {
        b: [
            c
            for device in devices
            for d in dtypes
            for (name, ds), cells in done.items()
            if name == b
            for c in cells
            if c.device == device and c.dtype == d
        ]
        for b in names
    }


#: a worker process's environment: one thread per framework (the workers already fill the
#: cores; frameworks that each start a thread per core only contend), and XLA's LLVM backend at
#: optimisation level 0. Eager JAX compiles every primitive for every new shape, which is most
#: of the suite's time; the level changes how long LLVM spends on that machine code, not the
#: IEEE arithmetic it performs (XLA's own HLO passes, fusion included, run as usual)
_WORKER_ENVIRONMENT = {
    "OMP_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1 "
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
}


def _worker(backend, losses, dtypes, devices, queue) -> list[Cell]:
    import os

    for name, value in _WORKER_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if backend in ("torch", "native:torch", "native:torchvision"):
        import torch

        torch.set_num_threads(1)
    return _run_column(backend, losses, dtypes, devices, progress=queue.put)


def cell_count(losses, backend_names, dtypes, devices) -> int:
    return (
        len(losses or mlloss.names())
        * len(backends.names() if backend_names is None else backend_names)
        * len(dtypes or DTYPES)
        * len(devices or DEVICES)
    )


def check_backend(ops: Any, name: str | None = None, **options: Any) -> Report:
    """Run the whole suite against a third-party backend: ``ops`` implements
    :class:`mlloss.ops.Ops`. It is registered under ``name`` (default ``ops.name``) and run on
    every loss, dtype and device it reports. Returns the :class:`Report`; ``report.failed``
    says whether anything failed. Options are those of :func:`run`."""
    name = backends.register(ops, name)
    return run(backend_names=[name], **options)


def load_entry_point_backends() -> list[str]:
    """Register the third-party backends that installed packages declare in the
    ``mlloss.backends`` entry-point group (each names an Ops instance or a function returning
    one). Returns their names."""
    from importlib.metadata import entry_points

    names = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        target = point.load()
        ops = target() if callable(target) and not hasattr(target, "softplus") else target
        name = point.name
        if name not in backends.names():
            backends.register(ops, name)
        names.append(name)
    return names


def _check_choices(what: str, given: Sequence[str], valid: Sequence[str]) -> None:
    unknown = [g for g in given if g not in valid]
    if unknown:
        raise ValueError(f"unknown {what} {unknown[0]!r}; valid: {', '.join(valid)}")


def _run_cell(
    fixture: fixtures.Fixture,
    loss: str,
    backend: str,
    dtype: str,
    device: str,
    cache: dict[tuple[Any, ...], Any] | None = None,
) -> Cell:
    cell = Cell(loss, backend, dtype, device, "pass")
    cache = {} if cache is None else cache
    if not backends.installed(backend):
        cell.status, cell.reason = (
            "not installed",
            f"{backends.FRAMEWORK_MODULE.get(backend, backend)} is not installed",
        )
        return cell
    ops = backends.load(backend)
    if device not in ops.devices():
        cell.status = "skipped"
        cell.reason = (
            f"no {device.upper()} device visible to {backend}"
            if backend in GPU_CAPABLE
            else f"{backend} runs on the CPU only"
        )
        return cell
    if dtype == "bfloat16" and backend == "numpy" and importlib.util.find_spec("ml_dtypes") is None:
        cell.status, cell.reason = "unsupported", "NumPy's bfloat16 needs ml_dtypes"
        return cell
    tolerance, reason = tolerance_for(loss, backend, dtype, device)
    cell.reason = reason
    spec = mlloss.spec(loss)
    if not ops.autodiff:
        paths = ["closed_form"] if spec.grad is not None else []
    else:
        paths = (["fused"] if spec.grad is not None else []) + ["autodiff"]
    for case in fixture.cases():
        if dtype not in case["dtypes"]:
            continue
        x = ops.to_device(ops.asarray(fixture.get(case["id"], dtype, "x"), dtype=dtype), device)
        y_stored = fixture.get(case["id"], dtype, "y")
        y_dtype = dtype if y_stored.dtype.kind == "f" else None
        y = ops.to_device(ops.asarray(y_stored, dtype=y_dtype), device)
        heads = {
            name: ops.to_device(
                ops.asarray(fixture.get(case["id"], dtype, name), dtype=dtype), device
            )
            for name in spec.heads
        }
        for path in paths:
            for reduction in REDUCTIONS:
                cell.comparisons.extend(
                    _run_case(
                        ops, fixture, case, path, reduction, x, y, heads, dtype, tolerance, cache
                    )
                )
    for comparison in cell.comparisons:
        comparison.known = known_difference(
            loss, comparison.path, comparison.case, comparison.quantity
        )
    if cell.failures:
        cell.status = "fail"
    return cell


def _run_case(ops, fixture, case, path, reduction, x, y, heads, dtype, tolerance, cache):
    params = case["params"]
    fused = path != "autodiff"
    try:
        loss = _loss(cache, fixture.description["loss"], ops.name, reduction, fused, params)
        with np.errstate(all="ignore"):
            value, grads = loss.value_and_grad(x, y, **heads)
        grads = grads if heads else (grads,)
        value, grads = _host(ops, value), [_host(ops, g) for g in grads]
    except Exception as error:  # a crash is a failure of the cell, reported, not raised
        text = "".join(traceback.format_exception_only(type(error), error)).strip()
        return [_failure(case["id"], path, reduction, "value", f"raised {text}")]
    golden_value = "none" if reduction == "none" else reduction
    suffix = "_mean" if reduction == "mean" else "_sum"
    checks = [("value", value, golden_value, 1.0)]
    for name, grad in zip(("grad", *(f"grad_{h}" for h in heads)), grads, strict=True):
        checks.append((name, grad, name + suffix, float(GRAD_FACTOR)))
    out = []
    for quantity, got, key, factor in checks:
        hi = fixture.get(case["id"], dtype, f"{key}_hi")
        lo = fixture.get(case["id"], dtype, f"{key}_lo")
        out.append(
            compare(case["id"], path, reduction, quantity, got, hi, lo, dtype, tolerance, factor)
        )
    return out


def _loss(cache, name, backend, reduction, fused, params) -> Any:
    """One Loss per (loss, backend, reduction, path, parameters) in a run, reused across cases
    and dtypes: a fresh one would rebuild its fused function, which JAX then traces afresh."""
    key = (name, backend, reduction, fused, json.dumps(params, sort_keys=True))
    if key not in cache:
        cache[key] = mlloss.get(name, backend=backend, reduction=reduction, fused=fused, **params)
    return cache[key]


def _host(ops, tensor) -> np.ndarray:
    array = np.asarray(ops.to_numpy(tensor))
    return array.astype(np.float64)


def _failure(case, path, reduction, quantity, note, index=None, got=None, expected=None):
    """A comparison that failed outright (a crash, a shape, non-finite values moved)."""
    return Comparison(
        case,
        path,
        reduction,
        quantity,
        False,
        float("inf"),
        float("inf"),
        None,
        None if index is None else list(map(int, index)),
        None if got is None else float(got),
        None if expected is None else float(expected),
        note,
    )


def compare(
    case, path, reduction, quantity, got, hi, lo, dtype, tolerance: Tolerance, factor
) -> Comparison:
    """``got`` (float64 copy of a result in ``dtype``) against the golden ``hi + lo``."""
    got = np.asarray(got, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    if got.shape != hi.shape:
        note = f"shape {got.shape}, expected {hi.shape}"
        return _failure(case, path, reduction, quantity, note)
    expected = fixtures.round_to(hi, dtype)  # beyond the dtype's range: its infinity
    finite = np.isfinite(expected)
    same_nonfinite = np.isnan(got) & np.isnan(expected) | (got == expected) & ~finite
    bad_nonfinite = ~finite & ~same_nonfinite | finite & ~np.isfinite(got)
    if bad_nonfinite.any():
        index = np.unravel_index(int(np.argmax(bad_nonfinite)), hi.shape) if hi.ndim else ()
        note = "non-finite values in different positions"
        return _failure(case, path, reduction, quantity, note, index, got[index], hi[index])
    if not finite.any():
        return Comparison(case, path, reduction, quantity, True, 0.0, 0.0, None, None, None, None)
    eps = EPS[dtype]
    scale = float(np.max(np.abs(hi[finite])))
    tiny = (
        float(np.finfo(np.float32 if dtype in ("float16", "bfloat16") else dtype).tiny)
        if dtype != "bfloat16"
        else float(np.finfo(np.float32).tiny)
    )
    with np.errstate(invalid="ignore"):
        error = np.where(finite, np.abs((got - hi) - lo), 0.0)
    allowed = eps * factor * (tolerance.rel * np.abs(hi) + tolerance.abs * scale) + factor * tiny
    ratio = np.where(finite, error / allowed, 0.0)
    flat = int(np.argmax(ratio))
    index = np.unravel_index(flat, hi.shape) if hi.ndim else ()
    worst = float(ratio[index])
    g = float(hi[index])
    err = float(error[index])
    return Comparison(
        case,
        path,
        reduction,
        quantity,
        passed=worst <= 1.0,
        ratio=worst,
        abs_error=err,
        ulps=err / (eps * abs(g)) if g != 0 else None,
        index=list(map(int, index)),
        got=float(got[index]),
        expected=g,
    )


def progress_printer(total: int) -> tuple[Callable[[str], None], Callable[[], None]]:
    """A progress bar on stderr (rich when installed and stderr is a terminal), else nothing."""
    if not sys.stderr.isatty():
        return (lambda label: None), (lambda: None)
    try:
        from rich.progress import Progress
    except ImportError:
        state = {"n": 0}

        def advance(label: str) -> None:
            state["n"] += 1
            print(f"\r[{state['n']}/{total}] {label:<50}", end="", file=sys.stderr, flush=True)

        return advance, lambda: print(file=sys.stderr)
    bar = Progress(transient=True, console=None)
    task = bar.add_task("conformance", total=total)
    bar.start()

    def advance(label: str) -> None:
        bar.update(task, advance=1, description=label)

    return advance, bar.stop
