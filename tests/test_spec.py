"""Param checking and the LossSpec record."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FRAMEWORKS, backend_params, to_backend

import mlloss
from mlloss.spec import Param


def test_every_spec_is_complete():
    for name in mlloss.names():
        spec = mlloss.spec(name)
        assert spec.summary and spec.formula and spec.references, name
        assert spec.value is not None and spec.definition is not None, name
        for p in spec.params:
            assert p.doc, (name, p.name)
            assert p.check(name, p.default) == p.default or p.default is None


def test_float_param_bounds_open_and_closed():
    p = Param("eps", 1e-7, "float", "doc", low=0.0, high=0.5, high_open=True)
    assert p.check("l", 0.0) == 0.0
    assert p.allowed() == "a real number in [0.0, 0.5)"
    with pytest.raises(ValueError, match=r"l: parameter 'eps' expects .*; got 0.5 \(float\)"):
        p.check("l", 0.5)
    with pytest.raises(TypeError, match="got 'a' \\(str\\)"):
        p.check("l", "a")
    with pytest.raises(TypeError, match="got True"):
        p.check("l", True)


def test_choice_and_bool_params():
    c = Param("mode", "a", "choice", "doc", choices=("a", "b"))
    assert c.check("l", "b") == "b"
    with pytest.raises(ValueError, match="one of 'a', 'b'"):
        c.check("l", "c")
    b = Param("flag", False, "bool", "doc")
    assert b.check("l", np.bool_(True)) is True


def test_per_class_params_are_frozen_float64_arrays():
    p = Param("w", None, "per_class", "doc", optional=True)
    value = p.check("l", [1, 2, 3])
    assert value.dtype == np.float64 and not value.flags.writeable
    assert p.check("l", None) is None
    with pytest.raises(ValueError, match="non-negative finite"):
        p.check("l", [1.0, np.inf])


@pytest.mark.parametrize("backend", backend_params(FRAMEWORKS))
def test_per_class_params_accept_any_frameworks_tensor(backend):
    weight = to_backend(backend, np.array([1.0, 2.0]))
    loss = mlloss.get("sigmoid_bce", pos_weight=weight)
    np.testing.assert_array_equal(loss.params["pos_weight"], [1.0, 2.0])
