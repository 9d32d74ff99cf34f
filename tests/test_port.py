"""``mlloss port``: reading a native call, choosing the target, and the live check."""

from __future__ import annotations

import importlib.util

import pytest

from mlloss import port
from mlloss.cli import main

HAVE = {m: importlib.util.find_spec(m) is not None for m in ("torch", "tensorflow", "jax")}
needs = {m: pytest.mark.skipif(not ok, reason=f"{m} is not installed") for m, ok in HAVE.items()}


@pytest.mark.parametrize(
    ("expression", "name", "kwargs"),
    [
        ("torch.nn.BCELoss()", "torch.nn.BCELoss", {}),
        ("torch.nn.BCELoss", "torch.nn.BCELoss", {}),
        (
            "F.binary_cross_entropy_with_logits(x, y, pos_weight=[1.0, 2.0], reduction='sum')",
            "F.binary_cross_entropy_with_logits",
            {"pos_weight": [1.0, 2.0], "reduction": "sum"},
        ),
        (
            "tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=x)",
            "tf.nn.sigmoid_cross_entropy_with_logits",
            {},
        ),
        (
            "optax.softmax_cross_entropy(logits, optax.smooth_labels(labels, 0.1))",
            "optax.softmax_cross_entropy",
            {"smooth_labels": 0.1},
        ),
        (
            "keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=None)",
            "keras.losses.SparseCategoricalCrossentropy",
            {"from_logits": True, "ignore_class": None},
        ),
    ],
)
def test_parse(expression, name, kwargs):
    assert port.parse(expression) == (name, kwargs)


@pytest.mark.parametrize(
    ("expression", "match"),
    [
        ("torch.nn.BCELoss(", r"cannot read"),
        ("torch.nn.BCELoss(0.5)", r"positional argument '0.5': pass the loss's arguments by"),
        ("torch.nn.BCELoss(weight=w * 2)", r"argument weight=w \* 2: expected a literal"),
        ("1 + 2", r"expected a loss name or call"),
    ],
)
def test_parse_errors(expression, match):
    with pytest.raises(ValueError, match=match):
        port.parse(expression)


@needs["torch"]
@needs["tensorflow"]
def test_exact_native_target_is_chosen_and_checked():
    result = port.port(
        "torch.nn.BCEWithLogitsLoss(pos_weight=[1.0, 2.0, 3.0], reduction='none')", "tensorflow"
    )
    assert "tf.nn.weighted_cross_entropy_with_logits(labels=targets, logits=predictions, " in (
        result.code
    )
    assert result.agreed and "checked: torch.nn.functional.binary_cross_entropy_with_logits" in (
        result.checked
    )


@needs["torch"]
@needs["tensorflow"]
def test_mlloss_is_the_target_where_no_native_is_exact():
    result = port.port("keras.losses.BinaryFocalCrossentropy(gamma=2.0, from_logits=True)", "torch")
    assert "mlloss.get('focal', backend='torch', mean_over_classes=True)" in result.code
    assert (
        "torchvision.ops.sigmoid_focal_loss(predictions, targets, alpha=-1.0, reduction='mean')"
        in (result.code)
    )
    assert result.agreed and "agree" in result.checked


@needs["torch"]
def test_reduction_argument_is_chosen_to_match():
    result = port.port("torch.nn.CrossEntropyLoss(label_smoothing=0.2, reduction='sum')", "torch")
    assert "reduction='sum'" in result.code and result.agreed


def test_to_is_checked():
    with pytest.raises(ValueError, match=r"--to expects one of numpy, torch"):
        port.port("torch.nn.BCELoss()", "mxnet")


@needs["torch"]
def test_cli_port(capsys):
    assert main(["port", "torch.nn.MultiLabelMarginLoss()", "--to", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "mlloss.get('multilabel_hinge', backend='numpy')" in out
    assert "# checked: torch.nn.functional.multilabel_margin_loss" in out and "agree" in out


def test_cli_port_without_check(capsys):
    assert (
        main(
            ["port", "optax.poly_loss_cross_entropy(logits, labels)", "--to", "numpy", "--no-check"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "mlloss.get('poly1', backend='numpy', reduction='none', epsilon=2.0)" in out
    assert "# not checked" in out


def test_cli_port_refusal(capsys):
    expression = "optax.sigmoid_binary_cross_entropy(logits, labels, smooth_labels=0.1)"
    assert main(["port", expression, "--to", "torch"]) == 2
    assert "moves binary targets toward 1/C" in capsys.readouterr().err
