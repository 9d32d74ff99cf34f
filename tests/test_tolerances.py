"""The pinned tolerance table, its overrides and the declared known differences."""

from __future__ import annotations

import mlloss
from mlloss import backends
from mlloss.conformance import runner, tolerances


def test_table_covers_every_dtype_and_is_not_loose():
    assert set(tolerances.TABLE) == set(runner.DTYPES) == set(tolerances.EPS)
    for dtype, t in tolerances.TABLE.items():
        # a tolerance of more than a few dozen eps would hide a wrong formula in float64
        assert 0 < t.rel <= 16 and 0 < t.abs <= 32, dtype
    assert tolerances.GRAD_FACTOR <= 4


def test_every_override_names_a_real_cell_and_gives_a_reason():
    for o in tolerances.OVERRIDES:
        assert o.loss in mlloss.names() and o.backend in (None, *backends.names())
        assert o.dtype in runner.DTYPES and o.device in (None, *runner.DEVICES)
        assert len(o.reason) > 30


def test_every_known_difference_names_real_losses_and_gives_a_reason():
    for d in tolerances.KNOWN_DIFFERENCES:
        assert set(d.losses) <= set(mlloss.names())
        assert d.path in ("fused", "autodiff", "closed_form")
        assert d.quantity in ("value", "grad") or d.quantity.startswith("grad_")
        assert len(d.reason) > 30
    assert tolerances.known_difference("softmax_ce", "autodiff", "infinite", "grad")
    assert not tolerances.known_difference("softmax_ce", "fused", "infinite", "grad")
