"""The conformance cases: every loss gets every kind of case the issue names, deterministically."""

from __future__ import annotations

import numpy as np
import pytest

import mlloss
from mlloss.conformance import cases

LOGIT_CASES = {"extreme_20", "extreme_100", "extreme_1e4", "near_float16_max", "infinite"}
COMMON = {"worked_example", "benign", "missing", "one_class", "empty_batch", "tied", "nan"}


@pytest.mark.parametrize("name", mlloss.names())
def test_every_loss_gets_the_required_cases(name):
    spec = mlloss.spec(name)
    excluded = cases.EXCLUDED.get(name, {})
    assert all(len(reason) > 40 for reason in excluded.values())
    ids = {c.id for c in cases.cases_for(name)} | set(excluded)
    assert ids >= COMMON
    if spec.input_kind == "logits":
        assert ids >= LOGIT_CASES
    else:
        assert "probability_edges" in ids
    if spec.target_kind == "multi_hot":
        assert {"soft_labels", "rows_all_0_all_1"} <= ids
    if spec.kink_side is not None:
        assert "kinks" in ids, "a spec that declares kinks needs a case on them"
    for number in range(1, len(cases.PARAM_SETTINGS.get(name, [])) + 1):
        assert {f"benign@{number}", f"missing@{number}"} <= ids


def test_every_catalog_loss_has_parameter_settings():
    assert set(cases.PARAM_SETTINGS) == set(mlloss.names())


@pytest.mark.parametrize("name", mlloss.names())
def test_cases_are_deterministic(name):
    first, second = list(cases.cases_for(name)), list(cases.cases_for(name))
    for a, b in zip(first, second, strict=True):
        assert a.describe() == b.describe()
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)


def test_case_shapes_and_contents():
    by_id = {c.id: c for c in cases.cases_for("sigmoid_bce")}
    assert by_id["empty_batch"].x.shape == (0, cases.C)
    assert by_id["one_class"].x.shape[-1] == 1
    assert np.isnan(by_id["nan"].x).any()
    assert np.isposinf(by_id["infinite"].x).any() and np.isneginf(by_id["infinite"].x).any()
    assert (by_id["missing"].y == -1).any()
    assert np.abs(by_id["near_float16_max"].x).max() == 6.5e4
    kinks = {c.id: c for c in cases.cases_for("bce")}["kinks"]
    assert kinks.params == {"eps": 0.25} and (kinks.x == 0.25).any() and (kinks.x == 0.75).any()
