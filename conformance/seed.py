"""The question's worked example (``shared/seed/fixture.json``, shipped as package data):
TensorFlow's printed per-element ``sigmoid_cross_entropy_with_logits`` for a 5x5 batch, which
``sigmoid_bce`` must reproduce on every backend.

The printed numbers are data from the thread, not values anyone here computed; they carry 8
significant digits, so they are matched within :data:`TOLERANCE` (5e-7 absolute).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import numpy as np

import mlloss
from mlloss import backends

TOLERANCE = 5e-7


@dataclass(frozen=True)
class WorkedExample:
    logits: np.ndarray  # float32 (5, 5)
    labels: np.ndarray  # float32 (5, 5)
    printed_loss: np.ndarray  # float64 (5, 5), as printed in the thread
    source: str


@dataclass(frozen=True)
class SeedResult:
    """One backend's run of the worked example. ``status``: pass, fail or not installed."""

    backend: str
    status: str
    max_abs_error: float | None = None  # per element, against the printed table
    where: tuple[int, int] | None = None
    batch_loss: float | None = None  # reduction="sum" / N
    batch_loss_error: float | None = None  # against mean over rows of the printed row sums
    version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load() -> WorkedExample:
    text = (
        resources.files("mlloss.conformance")
        .joinpath("fixtures/seed_worked_example.json")
        .read_text(encoding="utf-8")
    )
    raw = json.loads(text)
    return WorkedExample(
        logits=np.asarray(raw["logits"], dtype=np.float32),
        labels=np.asarray(raw["labels"], dtype=np.float32),
        printed_loss=np.asarray(raw["per_element_loss"], dtype=np.float64),
        source=raw["source"],
    )


def run(backend: str, example: WorkedExample | None = None) -> SeedResult:
    """Run ``sigmoid_bce`` on the worked example with one backend and check it."""
    name = backends.canonical(backend)
    if not backends.installed(name):
        return SeedResult(name, "not installed")
    example = example or load()
    ops = backends.load(name)
    x = ops.asarray(example.logits)
    y = ops.asarray(example.labels)
    per_element = np.asarray(
        ops.to_numpy(mlloss.get("sigmoid_bce", backend=name, reduction="none")(x, y)),
        dtype=np.float64,
    )
    error = np.abs(per_element - example.printed_loss)
    where = np.unravel_index(int(np.argmax(error)), error.shape)
    batch = float(ops.to_numpy(mlloss.get("sigmoid_bce", backend=name, reduction="sum")(x, y)))
    batch /= example.logits.shape[0]
    # the answer's reduce_mean(reduce_sum(cross_entropy, axis=1)), from the printed table
    expected_batch = float(np.mean(np.sum(example.printed_loss, axis=1)))
    batch_error = abs(batch - expected_batch)
    # the printed row sums carry five rounding errors each: the batch bound scales with C
    ok = float(error.max()) <= TOLERANCE and batch_error <= TOLERANCE * example.logits.shape[1]
    return SeedResult(
        backend=name,
        status="pass" if ok else "fail",
        max_abs_error=float(error.max()),
        where=(int(where[0]), int(where[1])),
        batch_loss=batch,
        batch_loss_error=batch_error,
        version=framework_version(name),
    )


def framework_version(backend: str) -> str | None:
    module = backends.FRAMEWORK_MODULE.get(backend)
    if module is None or not backends.installed(backend):
        return None  # a third-party backend: its framework is its own business
    return getattr(__import__(module), "__version__", None)
