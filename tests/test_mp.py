"""The 60-digit reference Ops, and the proof that each spec's stable value equals its textbook
definition at 50 digits."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

import mlloss
from mlloss.conformance import cases, mp


def test_primitives_at_60_digits():
    ops = mp.ops
    with mp.precision():
        x = ops.to_mp(np.array([-800.0, -1.0, 0.0, 1e-10, 30.0]))
        softplus = ops.softplus(x)
        for got, v in zip(softplus, [-800.0, -1.0, 0.0, 1e-10, 30.0], strict=True):
            assert mpmath.almosteq(got, mpmath.log1p(mpmath.exp(mpmath.mpf(v))), rel_eps=1e-58)
        assert mpmath.almosteq(ops.sigmoid(x)[2], mpmath.mpf(0.5))
        total = ops.logsumexp(ops.to_mp(np.array([[1.0, 2.0]])), axis=-1)
        expected = mpmath.log(mpmath.e + mpmath.e**2)
        assert mpmath.almosteq(total[0], expected, rel_eps=1e-58)


def test_max_propagates_nan_and_max_of_nothing_is_minus_inf():
    ops = mp.ops
    with mp.precision():
        out = ops.max(ops.to_mp(np.array([[1.0, np.nan], [2.0, 3.0]])), axis=-1)
        assert mpmath.isnan(out[0]) and out[1] == 3
        empty = ops.max(ops.to_mp(np.zeros((2, 0))), axis=-1)
        assert list(empty) == [mpmath.mpf("-inf")] * 2


def test_constants_are_held_as_the_emulated_dtype():
    assert mp.ops.scalar(1.0 - 1e-7, None) == 1.0 - 1e-7
    assert mp.ops_float32.scalar(1.0 - 1e-7, None) == float(np.float32(1.0 - 1e-7))


@pytest.mark.parametrize("name", mlloss.names())
def test_value_equals_definition_at_50_digits(name):
    """On benign inputs (every label observed, no row empty), at every parameter setting."""
    settings = [{}, *cases.PARAM_SETTINGS.get(name, [])]
    ops = mp.ops
    for number, params in enumerate(settings):
        rng = np.random.default_rng(number)
        spec = mlloss.spec(name)
        x, y, _ = cases._benign(spec, rng)
        if spec.target_kind == "multi_hot":
            y[:, 0] = 1.0  # no row without a positive: the textbook forms divide by the count
        loss = mlloss.get(name, backend="numpy", reduction="none", **params)
        heads = tuple(ops.to_mp(v) for v in cases._heads(spec, y, rng).values())
        with mp.precision():
            _, xc, _, t, p = loss._prepare(ops, ops.to_mp(x), y, heads)
            value = np.asarray(spec.value(ops, xc, t, p), dtype=object)
            definition = np.asarray(spec.definition(ops, xc, t, p), dtype=object)
            for a, b in zip(value.flat, definition.flat, strict=True):
                assert mpmath.almosteq(a, b, rel_eps=mpmath.mpf(10) ** -50, abs_eps=1e-55), (
                    name,
                    params,
                )
