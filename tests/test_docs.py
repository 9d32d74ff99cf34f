"""docs/losses.md is generated from the specs and must not be stale."""

from __future__ import annotations

import json
from pathlib import Path

import mlloss
from mlloss.cli import main
from mlloss.conformance.tolerances import NATIVE_DIFFERENCES
from mlloss.docs import render_losses, render_porting

PAGE = Path(__file__).resolve().parents[1] / "docs" / "losses.md"


def test_docs_losses_md_is_up_to_date():
    assert PAGE.read_text(encoding="utf-8") == render_losses(), "run `mlloss docs`"


def test_every_loss_and_parameter_is_documented():
    text = render_losses()
    for name in mlloss.names():
        assert f"## {name}" in text
        for p in mlloss.spec(name).params:
            assert f"`{p.name}`" in text


def test_docs_check_command(tmp_path, capsys):
    stale = tmp_path / "losses.md"
    stale.write_text("old")
    paths = ["--out", str(stale), "--porting", str(tmp_path / "porting.md")]
    paths += ["--verified", str(VERIFIED)]
    assert main(["docs", "--check", *paths]) == 1
    assert main(["docs", *paths]) == 0
    assert main(["docs", "--check", *paths]) == 0
    assert "up to date" in capsys.readouterr().out


PORTING = PAGE.parent / "porting.md"
VERIFIED = PAGE.parent / "natives-verified.json"


def test_docs_porting_md_is_up_to_date():
    verified = json.loads(VERIFIED.read_text(encoding="utf-8"))
    assert PORTING.read_text(encoding="utf-8") == render_porting(verified), "run `mlloss docs`"


def test_porting_lists_every_native_and_its_differences():
    text = render_porting({})
    for name in mlloss.names():
        for native in mlloss.spec(name).natives:
            assert f"`{native.name}`" in text
    for difference in NATIVE_DIFFERENCES:
        assert difference.reason in text
    assert "Verified against: none yet" in text
