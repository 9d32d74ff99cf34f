"""Property-based tests (hypothesis; derandomized under CI): random shapes, logits, soft and
missing labels and parameters, on every installed backend, against the 60-digit golden
reference and the invariants every loss keeps."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import backend_params, to_backend, to_numpy

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import mlloss  # noqa: E402
from mlloss.conformance import cases as case_lib  # noqa: E402
from mlloss.conformance import golden  # noqa: E402
from mlloss.conformance.runner import compare  # noqa: E402
from mlloss.conformance.tolerances import GRAD_FACTOR, tolerance_for  # noqa: E402

# derandomized unless asked (MLLOSS_HYPOTHESIS=random explores new examples on each run): CI
# and everyone else runs the same examples, so a failure reproduces
settings.register_profile(
    "fixed", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("random", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("MLLOSS_HYPOTHESIS", "fixed"))

NAMES = [n for n in mlloss.names() if not mlloss.spec(n).heads]
#: parameter values drawn per parameter name (each within every loss's allowed range)
PARAMS = {
    "label_smoothing": st.sampled_from([0.0, 0.1, 0.5]),
    "gamma": st.sampled_from([0.0, 1.0, 2.0, 3.5]),
    "alpha": st.sampled_from([None, 0.25, 0.9]),
    "epsilon": st.sampled_from([-0.5, 0.0, 1.0, 2.0]),
    "margin": st.sampled_from([0.0, 0.5, 1.0]),
}
#: losses that are non-negative for every input at the parameters drawn above
NON_NEGATIVE = {
    "sigmoid_bce",
    "bce",
    "bce_focal",
    "focal",
    "multilabel_soft_margin",
    "softmax_ce",
    "sparse_softmax_ce",
    "probability_ce",
    "sparse_probability_ce",
    "asl",
    "zlpr",
    "lsep",
    "bp_mll",
    "multilabel_hinge",
    "abs_kl",
}


@st.composite
def problems(draw, names=NAMES, max_classes=5, max_rows=4):
    """(loss, params, x, y): a random problem in the loss's domain, with soft and missing
    labels (or ignored indices) where the loss takes them."""
    name = draw(st.sampled_from(names))
    spec = mlloss.spec(name)
    rows = draw(st.integers(1, max_rows))
    classes = draw(st.integers(1, max_classes))
    params = {}
    for p in spec.params:
        if p.name in PARAMS and draw(st.booleans()):
            value = draw(PARAMS[p.name])
            try:
                p.check(name, value)
            except (TypeError, ValueError):
                continue
            params[p.name] = value
    logits = st.floats(-30.0, 30.0, allow_nan=False, width=64)
    x = np.array(draw(st.lists(logits, min_size=rows * classes, max_size=rows * classes)))
    x = x.reshape(rows, classes)
    if spec.input_kind == "probabilities":
        x = 1.0 / (1.0 + np.exp(-x / 4.0))
    if spec.target_kind == "class_index":
        choice = st.integers(-1 if classes > 1 else 0, classes - 1)
        y = np.array(draw(st.lists(choice, min_size=rows, max_size=rows)), dtype=np.int64)
        params["ignore_index"] = -1
    else:
        label = st.sampled_from([0.0, 1.0, 1.0, 0.0, 0.3, -1.0])
        y = np.array(draw(st.lists(label, min_size=rows * classes, max_size=rows * classes)))
        y = y.reshape(rows, classes)
    return name, params, x, y


@settings(max_examples=60)
@given(problems(max_classes=4, max_rows=3))
def test_every_backend_agrees_with_the_golden_reference(problem):
    name, params, x, y = problem
    case = case_lib.Case("random", name, "hypothesis", "hypothesis", 0, x, y, params)
    gold = golden.compute(case, "float64").arrays
    tolerance, _ = tolerance_for(name, "any", "float64", "cpu")
    for backend in mlloss.backends.names():
        if not mlloss.backends.installed(backend):
            continue
        loss = mlloss.get(name, backend=backend, reduction="sum", **params)
        with np.errstate(all="ignore"):
            value, grad = loss.value_and_grad(to_backend(backend, x), to_backend(backend, y))
        for quantity, got, key, factor in (
            ("value", value, "sum", 1.0),
            ("grad", grad, "grad_sum", GRAD_FACTOR),
        ):
            result = compare(
                "random",
                backend,
                "sum",
                quantity,
                to_numpy(backend, got),
                gold[f"{key}_hi"],
                gold[f"{key}_lo"],
                "float64",
                tolerance,
                factor,
            )
            assert result.passed, (name, params, backend, quantity, result)


@pytest.mark.parametrize("backend", backend_params())
@settings(max_examples=40)
@given(problem=problems())
def test_invariants(backend, problem):
    name, params, x, y = problem
    spec = mlloss.spec(name)
    get = lambda reduction: mlloss.get(name, backend=backend, reduction=reduction, **params)  # noqa: E731
    xb, yb = to_backend(backend, x), to_backend(backend, y)
    with np.errstate(all="ignore"):
        unreduced = to_numpy(backend, get("none")(xb, yb))
    # non-negative losses stay >= 0
    if name in NON_NEGATIVE:
        assert np.all(unreduced >= 0), unreduced
    # permuting the classes permutes element-wise results and keeps the others
    if spec.per != "batch" and spec.target_kind == "multi_hot":
        perm = np.random.default_rng(x.size).permutation(x.shape[-1])
        with np.errstate(all="ignore"):
            permuted = to_numpy(
                backend,
                get("none")(to_backend(backend, x[:, perm]), to_backend(backend, y[:, perm])),
            )
        expected = unreduced[:, perm] if spec.per == "element" else unreduced
        np.testing.assert_allclose(permuted, expected, rtol=1e-12, atol=1e-12)
    # for reduction="sum", splitting the batch adds up
    if spec.per != "batch" and x.shape[0] > 1:
        k = x.shape[0] // 2
        with np.errstate(all="ignore"):
            whole = float(to_numpy(backend, get("sum")(xb, yb)))
            parts = sum(
                float(to_numpy(backend, get("sum")(to_backend(backend, a), to_backend(backend, b))))
                for a, b in ((x[:k], y[:k]), (x[k:], y[k:]))
            )
        assert whole == pytest.approx(parts, rel=1e-12, abs=1e-12)
