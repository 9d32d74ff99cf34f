"""Inputs and parameter settings shared by the tests: every registered loss at several
parameter settings, on random logits with soft and missing labels."""

from __future__ import annotations

import numpy as np

import mlloss

N, C = 6, 5

#: the reductions every loss has; "weighted_mean" and mean_over_classes are tested in
#: test_reductions.py
CORE_REDUCTIONS = ("none", "sum", "mean")

PARAM_SETS: dict[str, list[dict]] = {
    "sigmoid_bce": [
        {},
        {"pos_weight": [1.0, 2.0, 0.5, 3.0, 0.0]},
        {"class_weight": [1.0, 0.0, 2.0, 1.0, 0.5], "label_smoothing": 0.1},
        {"pos_weight": [2.0, 1.0, 1.0, 4.0, 1.0], "class_weight": [1, 2, 3, 4, 5]},
    ],
    "bce": [
        {},
        {"eps": 1e-3, "label_smoothing": 0.2},
        {"eps": 0.0},
        {"eps": 0.0, "log_floor": -100.0, "class_weight": [1.0, 0.0, 2.0, 1.0, 0.5]},
        {"log_floor": -3.0, "class_weight": 2.0},
    ],
    "bce_focal": [
        {},
        {"gamma": 1.0, "alpha": 0.25, "label_smoothing": 0.1},
        {"gamma": 0.0, "eps": 1e-3},
    ],
    "softmax_ce": [
        {},
        {"normalize_targets": True},
        {"label_smoothing": 0.1, "class_weight": [1.0, 2.0, 0.5, 1.0, 0.0]},
        {"normalize_targets": True, "label_smoothing": 0.3},
    ],
    "sparse_softmax_ce": [
        {},
        {"label_smoothing": 0.1},
        {"class_weight": [1.0, 2.0, 0.5, 1.0, 3.0], "ignore_index": -1},
        {"class_weight": [1.0, 2.0, 0.5, 1.0, 3.0], "label_smoothing": 0.2},
    ],
    "probability_ce": [{}, {"label_smoothing": 0.2}, {"eps": 1e-3}],
    "sparse_probability_ce": [{}, {"ignore_index": -1, "eps": 1e-3}],
    "multilabel_soft_margin": [{}, {"class_weight": [1.0, 0.0, 2.0, 1.0, 0.5]}],
    "poly1": [{}, {"epsilon": 2.0}, {"epsilon": -0.5}],
    "focal": [
        {},
        {"gamma": 0.0},
        {"gamma": 1.5, "alpha": 0.25},
        {"gamma": 0.5},
        {"gamma": 2.0, "alpha": 0.75, "label_smoothing": 0.2},
    ],
    "poly1_focal": [{}, {"epsilon": 0.5, "gamma": 1.0, "alpha": 0.75}],
    "asl": [
        {},
        {"gamma_pos": 1.0, "gamma_neg": 2.0, "clip": 0.0},
        {"stop_grad_weight": True},
        {"gamma_neg": 0.0, "clip": 0.1},
        {"gamma_neg": 0.5, "gamma_pos": 0.5, "clip": 0.2},
    ],
    "hill": [{}, {"lamb": 1.0, "margin": 0.5, "gamma": 1.0}],
    "splc": [{}, {"tau": 0.3, "margin": 0.5, "gamma": 0.0}],
    "zlpr": [{}],
    "lsep": [{}],
    "bp_mll": [{}],
    "multilabel_hinge": [{}, {"margin": 0.5}],
    "two_way": [{}, {"tp": 1.0, "tn": 2.0}],
    "abs_kl": [{}, {"eps": 1e-3}],
    # extra inputs (a count head): tested in test_losses_divergence.py and by the conformance
    # suite, not by the generic (logits, targets) tests
    "partition": [{}, {"count_loss": "poisson", "count_weight": 0.5}],
}

#: settings whose gradient is not the derivative of the value: what they hold constant for
#: differentiation (stop_gradient) moves with the input
NOT_A_DERIVATIVE = [("asl", {"stop_grad_weight": True})]


def settings():
    """(loss name, params) for every registered loss and setting; a loss with no setting
    listed here fails the test that checks coverage."""
    return [
        (name, params)
        for name in mlloss.names()
        if not mlloss.spec(name).heads
        for params in PARAM_SETS.get(name, [])
    ]


def setting_id(value) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "defaults"
    return str(value)


def inputs(
    name: str,
    params: dict,
    seed: int = 0,
    missing: bool = True,
    n: int = N,
    c: int = C,
    empty_rows: bool = True,
):
    """(predictions, targets) as float64 / int64 NumPy arrays for the loss ``name``; with
    ``missing`` one label is missing, and with ``empty_rows`` too a whole row."""
    spec = mlloss.spec(name)
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=3.0, size=(n, c))
    if spec.input_kind == "probabilities":
        x = 1.0 / (1.0 + np.exp(-x))
    if spec.target_kind == "class_index":
        y = rng.integers(0, c, size=n)
        if missing and n > 1:
            y[1] = params.get("ignore_index", -100)
        return x, y
    y = (rng.random((n, c)) < 0.4).astype(np.float64)
    y[rng.random((n, c)) < 0.2] = 0.3  # soft labels
    if missing and n > 2:
        y[0, 1] = -1.0  # one missing label
        if empty_rows:
            y[2, :] = -1.0  # a row with every label missing
    return x, y


#: settings of the focal family's other losses that both the torch kernels and the plain forms
#: of TensorFlow and JAX take (tests/test_torch_kernels.py, tests/test_values_kernels.py)
FOCAL_FAMILY_SETTINGS = [
    ("poly1_focal", {}),
    ("poly1_focal", {"alpha": 0.25, "gamma": 1.5, "epsilon": -0.5}),
    ("poly1_focal", {"gamma": 0.0, "alpha": 1.0}),
    ("splc", {}),
    ("splc", {"gamma": 0.0, "tau": 0.3, "margin": 0.5}),
    ("hill", {}),
    ("hill", {"gamma": 0.0, "lamb": 1.0, "margin": 0.5}),
    ("hill", {"gamma": 4.0}),
    ("bce_focal", {}),
    ("bce_focal", {"gamma": 0.0, "alpha": 0.3}),
    ("bce_focal", {"gamma": 1.0, "alpha": 1.0}),
    ("bce_focal", {"gamma": 3.0, "alpha": 0.25, "eps": 1e-3}),
]
