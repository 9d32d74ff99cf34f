"""docs/losses.md is generated from the specs and must not be stale."""

from __future__ import annotations

from pathlib import Path

import mlloss
from mlloss.cli import main
from mlloss.docs import render_losses

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
    assert main(["docs", "--check", "--out", str(stale)]) == 1
    assert main(["docs", "--out", str(stale)]) == 0
    assert main(["docs", "--check", "--out", str(stale)]) == 0
    assert "up to date" in capsys.readouterr().out
