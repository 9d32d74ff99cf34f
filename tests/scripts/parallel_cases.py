"""The data shared by the data-parallel scripts: for every loss, a small model's inputs,
targets with missing labels (or ignored samples), and how to turn the model's outputs into
the loss's inputs. Float64 throughout, so the comparisons can be tight."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import mlloss

N, FEATURES, CLASSES = 12, 5, 4
SHARDS = (5, 7)  # two replicas, uneven on purpose (torch, TensorFlow)


def losses() -> list[str]:
    return list(mlloss.names())


def shardable(make: Callable[[str], Any], results: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(name, make(name)) for every loss that ``make`` builds for data parallelism; a loss it
    refuses (ValueError: a batch-level term, two_way) is recorded in ``results`` instead."""
    for name in losses():
        try:
            built = make(name)
        except ValueError as error:
            results[name] = {"refused": str(error)}
            continue
        yield name, built


def data(name: str, seed: int = 0):
    """(inputs, targets, heads' targets...) as NumPy arrays."""
    spec = mlloss.spec(name)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, FEATURES))
    if spec.target_kind == "class_index":
        y = rng.integers(0, CLASSES, size=N)
        y[[1, 8]] = -100  # ignored samples, both in one replica's shard
    else:
        y = (rng.random((N, CLASSES)) < 0.4).astype(np.float64)
        y[0, 1] = y[6, :] = y[7, 2] = -1.0  # missing labels, unevenly over the shards
        y[2] = 0.0
    return x, y


def params(name: str, seed: int = 1):
    """The model's weights: one (FEATURES, CLASSES) matrix, plus one column per head."""
    rng = np.random.default_rng(seed)
    heads = len(mlloss.spec(name).heads)
    return rng.normal(size=(FEATURES, CLASSES)) * 0.5, rng.normal(size=(FEATURES, heads)) * 0.5


def activation(name: str):
    """How the model's scores become the loss's first input: logits as they are, or
    probabilities (sigmoid per class, softmax per sample)."""
    spec = mlloss.spec(name)
    if spec.input_kind != "probabilities":
        return "identity"
    return "sigmoid" if spec.per == "element" else "softmax"


def errors(value, grads, expected, expected_grads) -> dict[str, float]:
    """The data-parallel step against one process, as relative errors: the value's, and the
    largest over the parameters' gradients (zero-size parameters skipped). Takes any
    framework's CPU arrays (NumPy converts them)."""
    value, expected = float(np.asarray(value)), float(np.asarray(expected))
    pairs = [(np.asarray(g), np.asarray(e)) for g, e in zip(grads, expected_grads, strict=True)]
    return {
        "value": abs(value - expected) / max(abs(expected), 1e-300),
        "grad": max(
            float(np.max(np.abs(g - e))) / max(float(np.max(np.abs(e))), 1e-300)
            for g, e in pairs
            if e.size
        ),
    }
