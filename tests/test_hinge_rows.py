"""backends/hinge_rows.py: multilabel_hinge's counts from one sort of packed keys per row, the
CPU path the torch, TensorFlow and JAX kernels share for float32, against the spec's formula
on NumPy (no framework needed)."""

from __future__ import annotations

import numpy as np
import pytest

import mlloss
from mlloss.backends import hinge_rows


def _formula(x, y, margin):
    """Each row's value and the gradient of their sum, by the spec's formula over every pair,
    in float64 (the packed keys' thresholds are x - m rounded in float32: inputs here are
    exact in both, or far from ties)."""
    loss = mlloss.get("multilabel_hinge", backend="numpy", reduction="none", margin=margin)
    wide = x.astype(np.float64), y.astype(np.float64)
    values = loss(*wide)
    _, grad = mlloss.get(
        "multilabel_hinge", backend="numpy", reduction="sum", margin=margin
    ).value_and_grad(*wide)
    return np.asarray(values), np.asarray(grad)


def _packed(x, y, margin, threads=1):
    grad = np.full(x.shape, np.nan, dtype=np.float32)
    values = hinge_rows.row_values(x, y, margin, grad, threads)
    return values, grad


def _check(x, y, margin, threads=1):
    values, grad = _packed(x, y, margin, threads)
    expected_values, expected_grad = _formula(x, y, margin)
    classes = x.shape[-1]
    # the counts are exact: the gradient times C is the formula's count of active pairs
    np.testing.assert_array_equal(np.rint(grad * classes), np.rint(expected_grad * classes))
    np.testing.assert_allclose(grad, expected_grad.astype(np.float32), rtol=0, atol=0)
    np.testing.assert_allclose(values, expected_values, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("margin", [1.0, 0.5, 0.0])
@pytest.mark.parametrize("threads", [1, 3])
def test_row_values_equal_the_formula_in_blocks_and_threads(margin, threads, monkeypatch):
    """Rows shared among threads, each share in blocks of 4 rows (the last shorter): the
    formula's values and gradient; rows without a positive, without a negative, and with
    every entry one label are among them."""
    monkeypatch.setattr(hinge_rows, "_BLOCK_ENTRIES", 4 * 37)
    monkeypatch.setattr(hinge_rows, "_ENTRIES_PER_THREAD", 4 * 37)
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(50, 37)) * 3).astype(np.float32)
    y = (rng.random((50, 37)) < 0.3).astype(np.float32)
    y[3], y[7], y[11, :2] = 0.0, 1.0, 1.0
    _check(x, y, margin, threads)


@pytest.mark.parametrize("margin", [1.0, 0.5, 0.0])
def test_row_values_at_ties_and_signed_zeros(margin):
    """Logits half a unit apart put many pairs exactly at the margin, where the hinge is
    flat (not active), and -0.0 sits beside +0.0 (one number: a tie)."""
    rng = np.random.default_rng(1)
    halves = rng.integers(-4, 5, size=(60, 30)) / 2.0
    x = (halves * np.where(rng.random((60, 30)) < 0.5, -1.0, 1.0)).astype(np.float32)
    assert np.any((x == 0) & np.signbit(x)) and np.any((x == 0) & ~np.signbit(x))
    y = (rng.random((60, 30)) < 0.4).astype(np.float32)
    _check(x, y, margin)


def test_row_values_of_a_strided_batch_and_soft_labels():
    """A transposed (non-contiguous) batch, and labels thresholded at 0.5 as the formula
    does (0.5 itself a positive)."""
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(23, 40)) * 2).astype(np.float32).T
    y = rng.choice(np.array([0.0, 0.2, 0.5, 0.7, 1.0], dtype=np.float32), size=x.shape)
    assert not x.flags.c_contiguous
    _check(x, y, 1.0)


def test_one_class_has_no_pairs():
    x = np.array([[0.3], [-2.0]], dtype=np.float32)
    values, grad = _packed(x, np.array([[1.0], [0.0]], dtype=np.float32), 1.0)
    assert values.tolist() == [0.0, 0.0] and grad.tolist() == [[0.0], [0.0]]


def test_too_many_classes_for_a_packed_key(monkeypatch):
    monkeypatch.setattr(hinge_rows, "MAX_CLASSES", 8)
    x = np.zeros((2, 9), dtype=np.float32)
    with pytest.raises(ValueError, match=r"multilabel_hinge.*at most 8 classes"):
        _packed(x, x, 1.0)


def test_a_strided_gradient_buffer_is_refused():
    """Each block scatters its counts through the gradient's flat view: a buffer that has no
    such view (here a transposed one) is refused, not written through a copy."""
    x = np.zeros((4, 6), dtype=np.float32)
    grad = np.empty((6, 4), dtype=np.float32).T
    with pytest.raises(ValueError, match=r"multilabel_hinge.*C-contiguous"):
        hinge_rows.row_values(x, x, 1.0, grad)


def test_batch_of_any_leading_shape():
    """What the compiled backends' callbacks return: each row's value shaped (..., 1) and the
    gradient of their sum, float32, for a batch with two leading axes (read-only input, as
    a callback may hand over)."""
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(3, 4, 9)) * 2).astype(np.float32)
    y = (rng.random((3, 4, 9)) < 0.4).astype(np.float32)
    x.flags.writeable = y.flags.writeable = False
    values, grad = hinge_rows.batch(x, y, margin=0.5)
    assert values.shape == (3, 4, 1) and grad.shape == x.shape
    assert values.dtype == grad.dtype == np.float32
    expected_values, expected_grad = _formula(x.reshape(12, 9), y.reshape(12, 9), 0.5)
    np.testing.assert_allclose(values.reshape(12), expected_values, rtol=1e-6)
    np.testing.assert_array_equal(grad.reshape(12, 9), expected_grad.astype(np.float32))
