"""Reading the golden fixtures: every case described, arrays complete, pickle never, and clear
errors for a missing, corrupt or newer fixture."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mlloss
from mlloss.conformance import fixtures


@pytest.mark.parametrize("name", mlloss.names())
def test_fixture_describes_every_case_and_holds_every_array(name):
    fixture = fixtures.load(name)
    assert fixture.description["format"] == fixtures.FORMAT
    assert fixture.description["digits"] >= 50
    for case in fixture.cases():
        assert {"id", "description", "generator", "seed", "params", "dtypes"} <= set(case)
        for dtype in case["dtypes"]:
            for field in fixtures.OUTPUTS:
                assert fixture.get(case["id"], dtype, f"{field}_hi").dtype == np.float64
            x = fixture.get(case["id"], dtype, "x")
            np.testing.assert_array_equal(x, fixtures.round_to(x, dtype))  # inputs are rounded


def _copy_fixtures(tmp_path, monkeypatch):
    target = tmp_path / "fixtures"
    shutil.copytree(fixtures.FIXTURES, target)
    monkeypatch.setattr(fixtures, "_fixture_root", lambda: target)
    return target


def test_corrupt_or_newer_fixtures_are_clear_errors(tmp_path, monkeypatch):
    target = _copy_fixtures(tmp_path, monkeypatch)
    (target / "bce.npz").write_bytes(b"not a zip file")
    with pytest.raises(fixtures.FixtureError, match=r"fixture bce.npz cannot be read"):
        fixtures.load("bce")
    description = json.loads((target / "softmax_ce.json").read_text())
    description["format"] = fixtures.FORMAT + 1
    (target / "softmax_ce.json").write_text(json.dumps(description))
    with pytest.raises(fixtures.FixtureError, match=r"format 2, newer than this mlloss reads"):
        fixtures.load("softmax_ce")
    (target / "sigmoid_bce.json").write_text("{")
    with pytest.raises(fixtures.FixtureError, match="not valid JSON"):
        fixtures.load("sigmoid_bce")
    with pytest.raises(fixtures.FixtureError, match="no golden fixture for loss 'nothing'"):
        fixtures.load("nothing")


def test_pickled_arrays_are_refused(tmp_path, monkeypatch):
    target = _copy_fixtures(tmp_path, monkeypatch)
    np.savez(target / "bce.npz", evil=np.array([object()], dtype=object))
    with pytest.raises(fixtures.FixtureError, match="cannot be read"):
        fixtures.load("bce")


def test_conform_runs_without_mpmath():
    """The stored fixtures ship with the package: only regenerating them needs mpmath."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["mpmath"] = None  # any import of mpmath now fails
        from mlloss.conformance import runner
        report = runner.run(["bce"], ["numpy"], ["float64"], ["cpu"])
        assert not report.failed and report.cells[0].status == "pass", report.cells
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr
