"""The conformance cases: deterministic inputs for every registered loss.

Each case is built from a named generator and a seed, so the fixtures can be regenerated
byte-for-byte in content. Which cases a loss gets follows from its spec: the kind of input
(logits or probabilities), the kind of target (multi-hot or class indices) and whether it
declares kinks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import mlloss
from mlloss.conformance import seed as seed_example
from mlloss.spec import LossSpec

N, C = 6, 5
DTYPES = ("float64", "float32", "float16", "bfloat16")

#: parameter settings beyond the defaults, per loss (per-class arrays have C entries); each
#: runs on the benign and the missing-label cases
PARAM_SETTINGS: dict[str, list[dict[str, Any]]] = {
    "sigmoid_bce": [
        {"pos_weight": [1.0, 2.0, 0.5, 3.0, 0.0]},
        {"class_weight": [1.0, 0.0, 2.0, 1.0, 0.5], "label_smoothing": 0.125},
        {"label_smoothing": 0.125},
    ],
    "bce": [
        {"eps": 1e-3, "label_smoothing": 0.25},
        {"eps": 0.0},
        {"label_smoothing": 0.125},
        # torch's BCELoss: no clip, each log clamped at -100
        {"eps": 0.0, "log_floor": -100.0},
        {"eps": 0.0, "log_floor": -100.0, "class_weight": [1.0, 0.0, 2.0, 1.0, 0.5]},
    ],
    "softmax_ce": [
        {"normalize_targets": True},
        {"label_smoothing": 0.125},
        {"label_smoothing": 0.125, "class_weight": [1.0, 2.0, 0.5, 1.0, 0.0]},
    ],
    "sparse_softmax_ce": [
        {"label_smoothing": 0.125},
        {"class_weight": [1.0, 2.0, 0.5, 1.0, 3.0], "ignore_index": -1},
    ],
    "probability_ce": [{"label_smoothing": 0.125}, {"eps": 1e-3}],
    "sparse_probability_ce": [{"ignore_index": -1}, {"eps": 1e-3}],
    "multilabel_soft_margin": [{"class_weight": [1.0, 0.0, 2.0, 1.0, 0.5]}],
    "poly1": [{"epsilon": 2.0}, {"epsilon": -0.5}],
    "focal": [
        {"gamma": 0.0},
        {"gamma": 1.5, "alpha": 0.25},
        {"gamma": 0.5},
        {"alpha": 0.25},
        {"alpha": 0.25, "label_smoothing": 0.125},
    ],
    "bce_focal": [
        {"gamma": 1.0},
        {"alpha": 0.25, "label_smoothing": 0.125},
        {"gamma": 0.0, "eps": 1e-3},
    ],
    "poly1_focal": [{"epsilon": 0.5, "gamma": 1.0, "alpha": 0.75}],
    "asl": [
        {"gamma_pos": 1.0, "gamma_neg": 2.0, "clip": 0.0},
        {"stop_grad_weight": True},
        {"gamma_neg": 0.5, "gamma_pos": 0.5, "clip": 0.25},
    ],
    "hill": [{"lamb": 1.0, "margin": 0.5, "gamma": 1.0}],
    "splc": [{"tau": 0.25, "margin": 0.5, "gamma": 0.0}],
    "zlpr": [],
    "lsep": [],
    "bp_mll": [],
    "multilabel_hinge": [{"margin": 0.5}],
    "two_way": [{"tp": 1.0, "tn": 2.0}],
    "abs_kl": [{"eps": 1e-3}],
    "partition": [{"count_loss": "poisson", "count_weight": 0.5}],
}


@dataclass(frozen=True)
class Case:
    """One input pair for one loss and parameter setting (before rounding to a dtype)."""

    id: str
    loss: str
    description: str
    generator: str
    seed: int
    x: np.ndarray
    y: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    dtypes: tuple[str, ...] = DTYPES
    heads: dict[str, np.ndarray] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "generator": self.generator,
            "seed": self.seed,
            "params": self.params,
            "shape": list(self.x.shape),
            "dtypes": list(self.dtypes),
            "heads": sorted(self.heads),
        }


Generator = Callable[[LossSpec, np.random.Generator], "tuple[np.ndarray, np.ndarray, str]"]


def _labels(spec: LossSpec, rng: np.random.Generator, n: int, c: int, soft: bool = False):
    """Targets of the spec's kind: multi-hot (soft when asked) or class indices."""
    if spec.target_kind == "class_index":
        return rng.integers(0, c, size=n).astype(np.int64)
    if soft:
        return np.round(rng.random((n, c)), 3)
    return (rng.random((n, c)) < 0.4).astype(np.float64)


def _predictions(spec: LossSpec, logits: np.ndarray) -> np.ndarray:
    """Logits as the spec takes them (probabilities through the sigmoid)."""
    if spec.input_kind == "probabilities":
        return _sigmoid(logits)
    return logits


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x) entry by entry at 40 digits, rounded once to float64: the same bits on
    every machine. (NumPy's exp chooses a SIMD loop by the CPU, and its last bits differed
    between an AVX2 host and the one the fixtures were made on.)"""
    import mpmath

    with mpmath.workdps(40):
        values = [float(1 / (1 + mpmath.exp(-mpmath.mpf(v)))) for v in x.ravel().tolist()]
    return np.array(values, dtype=np.float64).reshape(x.shape)


def _benign(spec, rng):
    x = rng.normal(scale=2.0, size=(N, C))
    return _predictions(spec, x), _labels(spec, rng, N, C), "random normal logits (scale 2)"


def _soft_labels(spec, rng):
    x = rng.normal(scale=2.0, size=(N, C))
    return _predictions(spec, x), _labels(spec, rng, N, C, soft=True), "soft labels in [0, 1]"


def _missing(spec, rng):
    x, y, _ = _benign(spec, rng)
    if spec.target_kind == "class_index":
        y[[0, 3]] = -100
        return x, y, "samples with the ignore_index (-100) target"
    y[rng.random(y.shape) < 0.2] = -1.0
    y[2] = -1.0
    return x, y, "missing labels (-1), and a row with every label missing"


def _rows_all_0_all_1(spec, rng):
    x, y, _ = _benign(spec, rng)
    y[0], y[1] = 0.0, 1.0
    return x, y, "a row of all 0 and a row of all 1"


def _extreme(scale: float, what: str) -> Generator:
    def generate(spec, rng):
        signs = rng.choice([-1.0, 1.0], size=(N, C))
        x = signs * scale * rng.uniform(0.5, 1.0, size=(N, C))
        x[0, :2] = scale, -scale
        return x, _labels(spec, rng, N, C, soft=spec.target_kind == "multi_hot"), what

    return generate


def _infinite(spec, rng):
    x, y, _ = _benign(spec, rng)
    x[0, 0], x[1, 1], x[2, 2], x[3, 0], x[3, 1] = np.inf, -np.inf, np.inf, np.inf, np.inf
    x[4, :] = -np.inf
    return x, y, "+-inf logits: single, tied at +inf, and a row all -inf"


def _probability_edges(spec, rng):
    x = rng.uniform(0.0, 1.0, size=(N, C))
    x[0, :] = [0.0, 1.0, 1e-30, 1.0 - 2.0**-30, 0.5]
    x[1, :] = [1.0, 0.0, 2.0**-20, 1.0 - 2.0**-20, 1e-8]
    return x, _labels(spec, rng, N, C, soft=True), "probabilities at and near 0 and 1"


def _one_class(spec, rng):
    x = rng.normal(scale=2.0, size=(N, 1))
    return _predictions(spec, x), _labels(spec, rng, N, 1), "a single class (C = 1)"


def _empty_batch(spec, rng):
    x = np.zeros((0, C))
    y = np.zeros(0, np.int64) if spec.target_kind == "class_index" else np.zeros((0, C))
    return _predictions(spec, x), y, "an empty batch (N = 0)"


def _tied(spec, rng):
    x = np.full((N, C), 0.75)
    x[1] = [2.0, 2.0, -1.0, -1.0, 0.0]
    return _predictions(spec, x), _labels(spec, rng, N, C), "tied logits"


def _nan(spec, rng):
    x, y, _ = _benign(spec, rng)
    x[0, 1] = x[3, 3] = np.nan
    return x, y, "NaN inputs"


def _kinks(spec, rng):
    """Inputs exactly at the clip bounds (eps = 0.25, exact in every dtype), and at 0 and 1."""
    x = rng.uniform(0.0, 1.0, size=(N, C))
    x[0, :] = [0.25, 0.75, 0.25, 0.75, 0.5]
    x[1, :] = [0.125, 0.875, 0.25, 0.75, 0.25]
    x[2, :2] = [0.0, 1.0]  # bce_focal's focusing factor is held to [0, 1]
    return x, _labels(spec, rng, N, C, soft=True), "inputs exactly at the clip bounds, 0 and 1"


def _asl_kinks(spec, rng):
    """Logits 0, where sigmoid(x) = 0.5 = clip exactly, in every dtype."""
    x = rng.normal(scale=2.0, size=(N, C))
    x[0, :], x[1, :3] = 0.0, 0.0
    return x, _labels(spec, rng, N, C, soft=True), "sigmoid(x) exactly at the clip (0.5)"


def _hinge_kinks(spec, rng):
    """Positive and negative logits exactly a margin (1) apart."""
    x = rng.normal(scale=2.0, size=(N, C))
    y = _labels(spec, rng, N, C)
    y[:2] = [[1.0, 0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0, 1.0]]
    x[:2] = [[1.0, 0.0, 2.0, 0.5, 1.0], [-1.0, 0.0, -3.0, -1.0, -2.0]]
    return x, y, "positive and negative logits exactly one margin apart"


#: for each loss that declares kinks: the parameters and inputs that sit exactly on them
KINK_CASES: dict[str, tuple[dict[str, Any], Generator]] = {
    "partition": ({"count_floor": 0.25}, _benign),
    "bce": ({"eps": 0.25}, _kinks),
    "bce_focal": ({"eps": 0.25}, _kinks),
    "sparse_probability_ce": ({"eps": 0.25}, _kinks),
    "abs_kl": ({"eps": 0.25}, _kinks),
    "asl": ({"clip": 0.5, "gamma_neg": 0.0}, _asl_kinks),
    "multilabel_hinge": ({}, _hinge_kinks),
}


def _worked_example(spec, rng):
    example = seed_example.load()
    logits = example.logits.astype(np.float64)
    labels = example.labels.astype(np.float64)
    if spec.target_kind == "class_index":
        labels = np.argmax(labels, axis=-1).astype(np.int64)  # the first positive label
    return _predictions(spec, logits), labels, "the question's worked example (5x5)"


#: cases a loss does not get, and why
EXCLUDED: dict[str, dict[str, str]] = {
    "bp_mll": {
        "extreme_1e4": "its value is e^(2e4), beyond every float dtype, and its golden gradient "
        "would need about 9,000 digits; extreme_100 already checks its overflow",
        "near_float16_max": "its value is e^(1.3e5), beyond every float dtype (as extreme_1e4)",
        "infinite": "a +inf negative makes the sample's value e^inf, and the golden gradient of "
        "its other logits (finite) would need unbounded digits to resolve under it",
    },
}


def cases_for(name: str) -> Iterator[Case]:
    """Every case of one loss: each generator at the defaults, and the benign and missing-label
    cases at every setting of :data:`PARAM_SETTINGS`."""
    spec = mlloss.spec(name)
    logits = spec.input_kind == "logits"
    multi_hot = spec.target_kind == "multi_hot"
    generators: list[tuple[str, Generator]] = [
        ("worked_example", _worked_example),
        ("benign", _benign),
        ("missing", _missing),
        ("one_class", _one_class),
        ("empty_batch", _empty_batch),
        ("tied", _tied),
        ("nan", _nan),
    ]
    if multi_hot:
        generators += [("soft_labels", _soft_labels), ("rows_all_0_all_1", _rows_all_0_all_1)]
    if logits:
        generators += [
            ("extreme_20", _extreme(20.0, "logits up to +-20")),
            ("extreme_100", _extreme(100.0, "logits up to +-100")),
            ("extreme_1e4", _extreme(1e4, "logits up to +-1e4")),
            ("near_float16_max", _extreme(6.5e4, "logits near float16's largest, +-6.5e4")),
            ("infinite", _infinite),
        ]
    else:
        generators += [("probability_edges", _probability_edges)]
    for index, (case_id, generate) in enumerate(generators):
        if case_id in EXCLUDED.get(name, {}):
            continue
        rng = np.random.default_rng(1000 + index)
        x, y, description = generate(spec, rng)
        yield Case(
            case_id, name, description, case_id, 1000 + index, x, y, heads=_heads(spec, y, rng)
        )
    if name in KINK_CASES:
        params, generate = KINK_CASES[name]
        rng = np.random.default_rng(2000)
        x, y, description = generate(spec, rng)
        heads = _heads(spec, y, rng, at=params.get("count_floor"))
        yield Case("kinks", name, description, "kinks", 2000, x, y, params, heads=heads)
    for number, params in enumerate(PARAM_SETTINGS.get(name, []), start=1):
        for case_id, generate in (("benign", _benign), ("missing", _missing)):
            seed = 3000 + 10 * number + (case_id == "missing")
            rng = np.random.default_rng(seed)
            x, y, description = generate(spec, rng)
            if "ignore_index" in params:
                y = np.where(y == -100, params["ignore_index"], y)
            yield Case(
                f"{case_id}@{number}",
                name,
                description,
                case_id,
                seed,
                x,
                y,
                params,
                heads=_heads(spec, y, rng),
            )


def _heads(spec: LossSpec, y: np.ndarray, rng: np.random.Generator, at: float | None = None):
    """A loss's extra inputs. ``count``: the number of labels plus noise, one below zero and
    one below the default floor; with ``at``, some exactly at that floor (a kink)."""
    if "count" not in spec.heads:
        return {}
    count = np.maximum(y, 0).sum(axis=-1) + rng.normal(scale=0.7, size=y.shape[:-1])
    if count.size > 2:
        count[0], count[1] = -0.5, 0.004
    if at is not None and count.size > 3:
        count[2] = count[3] = at
    return {"count": np.round(count, 3)}
