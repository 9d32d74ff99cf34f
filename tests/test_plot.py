"""mlloss plot: curves computed by mlloss, drawn with matplotlib."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import mlloss
from mlloss.cli import main
from mlloss.plot import curves


@pytest.mark.parametrize("name", mlloss.names())
def test_curves_are_finite_and_the_gradient_is_the_slope(name):
    data = curves(name)
    for label in ("positive", "negative"):
        loss, grad = data[f"{label}_loss"], data[f"{label}_grad"]
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
        # the plotted gradient is the slope of the plotted loss (away from kinks)
        slope = np.gradient(loss, data["x"])
        inner = slice(5, -5)
        close = np.isclose(slope[inner], grad[inner], rtol=2e-2, atol=2e-2)
        assert close.mean() > 0.95, (name, label)


def test_focal_puts_less_weight_on_easy_positives_than_bce():
    focal, bce = curves("focal"), curves("sigmoid_bce")
    easy = focal["x"] > 2.0
    assert np.all(focal["positive_loss"][easy] < bce["positive_loss"][easy])


@pytest.mark.skipif(not importlib.util.find_spec("matplotlib"), reason="matplotlib not installed")
def test_plot_command_writes_a_png(tmp_path):
    out = tmp_path / "asl.png"
    assert main(["plot", "asl", "--out", str(out), "--param", "gamma_neg=2"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_refuses_a_bad_param(capsys):
    assert main(["plot", "focal", "--param", "gamma"]) == 2
    assert "--param expects KEY=VALUE" in capsys.readouterr().err
