"""The golden fixtures: stored equals regenerated, safe loading, and golden gradients that
agree with the closed forms they are independent of."""

from __future__ import annotations

import json

import mpmath
import numpy as np
import pytest

import mlloss
from mlloss.conformance import cases, fixtures, golden, mp


@pytest.mark.parametrize("name", mlloss.names())
def test_stored_fixtures_equal_a_fresh_regeneration(name):
    assert golden.check(name) == []


def test_check_notices_a_changed_fixture(tmp_path, monkeypatch):
    fixture = fixtures.load("sigmoid_bce")
    arrays = dict(fixture.arrays)
    key = "benign.float64.none_hi"
    arrays[key] = arrays[key] + 1e-12
    target = tmp_path / "fixtures"
    target.mkdir()
    np.savez_compressed(target / "sigmoid_bce.npz", **arrays)
    (target / "sigmoid_bce.json").write_text(json.dumps(fixture.description))
    monkeypatch.setattr(fixtures, "_fixture_root", lambda: target)
    assert golden.check("sigmoid_bce") == [f"sigmoid_bce.npz: {key} differs"]


@pytest.mark.parametrize("name", mlloss.names())
def test_golden_gradient_agrees_with_the_closed_form_at_high_precision(name):
    """Two independent routes: numerical differentiation of value (the golden) and the spec's
    closed-form grad, both at 60 digits, on the benign case in float64."""
    case = next(c for c in cases.cases_for(name) if c.id == "benign")
    record = golden.compute(case, "float64")
    loss = mlloss.get(name, backend="numpy", reduction="none", **case.params)
    names = loss.spec.heads
    ops = mp.ops
    with mp.precision():
        heads = tuple(ops.to_mp(record.arrays[n]) for n in names)
        x = ops.to_mp(record.arrays["x"])
        _, xc, hc, t, p = loss._prepare(ops, x, record.arrays["y"], heads)
        ones = ops.to_mp(np.ones(np.shape(loss.spec.value(ops, xc, t, p))))
        closed = loss._vjp(ops, ones, xc, hc, t, p)
        closed = closed if names else (closed,)
        for field, grad in zip(("grad", *(f"grad_{n}" for n in names)), closed, strict=True):
            numeric = record.arrays[f"{field}_sum_hi"] + record.arrays[f"{field}_sum_lo"]
            for a, b in zip(np.asarray(grad).flat, numeric.flat, strict=True):
                assert mpmath.almosteq(a, mpmath.mpf(b), rel_eps=1e-15, abs_eps=1e-30)


def test_golden_gradient_at_a_kink_follows_the_declared_side():
    """bce at exactly eps and 1 - eps: the derivative from inside the interval, not the
    central difference's average."""
    case = next(c for c in cases.cases_for("bce") if c.id == "kinks")
    record = golden.compute(case, "float64")
    x, y = record.arrays["x"], record.arrays["y"]
    grad = record.arrays["grad_sum_hi"]
    at_lo, at_hi = x == 0.25, x == 0.75
    inside = -(y / x) + (1 - y) / (1 - x)  # d/dq of the loss, q = x
    np.testing.assert_allclose(grad[at_lo], inside[at_lo], rtol=1e-14)
    np.testing.assert_allclose(grad[at_hi], inside[at_hi], rtol=1e-14)
    outside = (x < 0.25) | (x > 0.75)
    assert np.all(grad[outside] == 0.0)


def test_golden_at_infinite_logits_is_the_limit():
    case = next(c for c in cases.cases_for("sigmoid_bce") if c.id == "infinite")
    record = golden.compute(case, "float64")
    x, y = record.arrays["x"], record.arrays["y"]
    none, grad = record.arrays["none_hi"], record.arrays["grad_sum_hi"]
    pos_inf = np.isposinf(x)
    np.testing.assert_allclose(grad[pos_inf], 1.0 - y[pos_inf], rtol=1e-15)
    assert np.all(none[pos_inf & (y == 0)] == np.inf)
    assert np.all(none[pos_inf & (y == 1)] == 0.0)


def test_split_keeps_more_than_float64():
    with mp.precision():
        third = mpmath.mpf(1) / 3
        hi, lo = golden.split(np.array([third], dtype=object))
        assert hi[0] == 1 / 3 and lo[0] != 0
        assert abs(mpmath.mpf(hi[0]) + mpmath.mpf(lo[0]) - third) < mpmath.mpf(10) ** -30
