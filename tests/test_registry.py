"""The catalog registry: names, lookup by name or alias, refusal of taken names."""

from __future__ import annotations

from dataclasses import replace

import pytest

import mlloss


def test_names_are_sorted_and_hold_the_first_losses():
    names = mlloss.names()
    assert names == tuple(sorted(names))
    assert {"sigmoid_bce", "bce", "softmax_ce", "sparse_softmax_ce"} <= set(names)


def test_lookup_by_alias_gives_the_same_spec():
    assert mlloss.spec("binary_cross_entropy_with_logits") is mlloss.spec("sigmoid_bce")
    assert "binary_cross_entropy_with_logits" not in mlloss.names()


def test_register_refuses_a_taken_name_or_alias():
    spec = mlloss.spec("bce")
    with pytest.raises(ValueError, match="the name 'bce' is already taken"):
        mlloss.register(spec)
    with pytest.raises(ValueError, match=r"'binary_cross_entropy' is already taken \(by 'bce'\)"):
        mlloss.register(replace(spec, name="test_fresh_name"))


def test_register_adds_a_new_spec():
    spec = replace(mlloss.spec("bce"), name="test_registered_bce", aliases=("test_alias_bce",))
    mlloss.register(spec)
    try:
        assert "test_registered_bce" in mlloss.names()
        assert mlloss.spec("test_alias_bce") is spec
    finally:
        assert mlloss.unregister("test_registered_bce") is spec
    assert "test_registered_bce" not in mlloss.names()
    with pytest.raises(ValueError, match="unknown loss 'test_alias_bce'"):
        mlloss.spec("test_alias_bce")


def test_register_refuses_what_is_not_a_spec():
    with pytest.raises(TypeError, match="register expects a LossSpec"):
        mlloss.register("bce")


def test_unknown_name_suggests_close_names():
    with pytest.raises(ValueError, match="unknown loss 'softmax_cd'; did you mean 'softmax_ce'"):
        mlloss.spec("softmax_cd")
    with pytest.raises(ValueError, match="unknown loss 'zzz'; known losses: "):
        mlloss.spec("zzz")
