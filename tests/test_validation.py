"""Bad input at the API boundary: the same clear error on every backend, naming the loss, the
argument, what was expected and what came; ``validate=False`` for compiled code."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FRAMEWORKS, backend_params, to_backend

import mlloss

X = np.zeros((3, 4))


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize(
    ("name", "targets", "match"),
    [
        (
            "sigmoid_bce",
            [[0, 1.5, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]],
            r"sigmoid_bce: targets expect labels in \[0, 1\], or -1 for a missing label; got "
            r"1.5 at index \(0, 1\) \(1 such entries\)",
        ),
        (
            "focal",
            [[0, -0.5, -1, 0], [0, -2.0, 0, 0], [1, 1, 1, 1]],
            r"focal: targets expect labels in \[0, 1\], or -1 .*; got -0.5 at index \(0, 1\) "
            r"\(2 such entries\)",
        ),
        (
            "sparse_softmax_ce",
            [0, 4, 1],
            r"sparse_softmax_ce: targets expect class indices in \[0, 4\) or ignore_index "
            r"\(-100\); got 4 at index \(1,\)",
        ),
        (
            "sparse_softmax_ce",
            [0, -1, 1],
            r"class indices in \[0, 4\) or ignore_index \(-100\); got -1 at index \(1,\)",
        ),
    ],
)
def test_targets_outside_the_domain(name, targets, match, backend):
    y = np.asarray(targets)
    y = y if y.dtype.kind == "i" else y.astype(np.float64)
    loss = mlloss.get(name, backend=backend)
    with pytest.raises(ValueError, match=match):
        loss(to_backend(backend, X), to_backend(backend, y))
    if mlloss.spec(name).grad is not None or backend != "numpy":
        with pytest.raises(ValueError, match=match):
            loss.value_and_grad(to_backend(backend, X), to_backend(backend, y))


@pytest.mark.parametrize("backend", backend_params())
def test_what_the_domain_accepts(backend):
    y = np.array([[0.0, 0.25, 1.0, -1.0], [np.nan, 0.0, 1.0, 0.5], [-1.0] * 4])
    value = mlloss.get("sigmoid_bce", backend=backend, reduction="none")(
        to_backend(backend, X), to_backend(backend, y)
    )
    assert value is not None  # NaN labels pass (NaN in, NaN out), -1 is missing
    ignored = mlloss.get("sparse_softmax_ce", backend=backend, ignore_index=-1)
    ignored(to_backend(backend, X), to_backend(backend, np.array([-1, 3, 0])))


@pytest.mark.parametrize("backend", backend_params())
def test_validate_false_skips_the_value_check(backend):
    y = to_backend(backend, np.array([[0.0, 1.5, 0.0, 0.0]] * 3))
    value = mlloss.get("sigmoid_bce", backend=backend, validate=False)(to_backend(backend, X), y)
    assert np.isfinite(float(np.asarray(mlloss.backends.load(backend).to_numpy(value))))


def test_validate_must_be_a_bool():
    with pytest.raises(TypeError, match=r"sigmoid_bce: validate expects True or False; got 1"):
        mlloss.get("sigmoid_bce", validate=1)


@pytest.mark.parametrize("backend", backend_params(FRAMEWORKS))
def test_the_check_is_skipped_inside_compiled_code(backend):
    """Traced values cannot be read: under jit / tf.function / torch.compile the loss runs
    without the check (and without a graph break), documented in mlloss.get."""
    loss = mlloss.get("sigmoid_bce", backend=backend)
    x = to_backend(backend, X)
    y = to_backend(backend, np.array([[0.0, 1.0, 0.0, 1.0]] * 3))
    if backend == "jax":
        import jax

        compiled = jax.jit(loss)
    elif backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(loss)
    else:
        import torch

        compiled = torch.compile(loss, fullgraph=True)
    expected = float(np.asarray(mlloss.backends.load(backend).to_numpy(loss(x, y))))
    got = float(np.asarray(mlloss.backends.load(backend).to_numpy(compiled(x, y))))
    assert got == pytest.approx(expected, rel=1e-12)


def test_targets_a_jitted_function_closes_over_are_checked():
    """A constant the jitted function closes over holds values at trace time: the check runs
    on it (it used to crash, reading a traced result) and a bad one raises as eagerly."""
    jax = pytest.importorskip("jax")
    loss = mlloss.get("sigmoid_bce", backend="jax")
    x = to_backend("jax", X)
    y = to_backend("jax", np.array([[0.0, 1.0, 0.0, 1.0]] * 3))
    got = jax.jit(lambda logits: loss(logits, y))(x)
    assert float(got) == pytest.approx(float(loss(x, y)), rel=1e-12)
    value, grad = jax.jit(jax.value_and_grad(lambda logits: loss(logits, y)))(x)
    assert float(value) == pytest.approx(float(got), rel=1e-12) and grad.shape == x.shape
    bad = to_backend("jax", np.array([[0.0, 1.5, 0.0, 0.0]] * 3))
    with pytest.raises(ValueError, match=r"sigmoid_bce: targets expect labels in \[0, 1\]"):
        jax.jit(lambda logits: loss(logits, bad))(x)


@pytest.mark.parametrize(
    ("name", "x_shape", "y", "match"),
    [
        (
            "sigmoid_bce",
            (3, 4),
            np.array([0, 1, 2]),
            r"sigmoid_bce: targets expect the shape of logits \(3, 4\); got \(3,\) \(integer "
            r"class indices: this loss takes multi-hot targets; one-hot them, or use "
            r"sparse_softmax_ce\)",
        ),
        (
            "sparse_softmax_ce",
            (3, 4),
            np.zeros((3, 4)),
            r"sparse_softmax_ce: targets expect class indices of shape \(3,\); got shape "
            r"\(3, 4\), the shape of multi-hot targets",
        ),
    ],
)
def test_the_wrong_kind_of_target(name, x_shape, y, match):
    with pytest.raises(ValueError, match=match):
        mlloss.get(name, backend="numpy")(np.zeros(x_shape), y)


@pytest.mark.parametrize("backend", backend_params())
def test_boolean_and_unsigned_targets(backend):
    """bool and uint8 multi-hot targets are in range by their dtype (uint cannot be negated)."""
    x = to_backend(backend, X)
    for dtype in ("bool", "uint8"):
        y = np.array([[1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 1, 1]]).astype(dtype)
        value = mlloss.get("sigmoid_bce", backend=backend)(x, to_backend(backend, y))
        assert np.isclose(
            float(np.asarray(mlloss.backends.load(backend).to_numpy(value))), np.log(2.0)
        )
    too_big = to_backend(backend, np.full((3, 4), 2, dtype="uint8"))
    with pytest.raises(ValueError, match=r"got 2 at index \(0, 0\) \(12 such entries\)"):
        mlloss.get("sigmoid_bce", backend=backend)(x, too_big)
