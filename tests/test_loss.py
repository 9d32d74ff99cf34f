"""mlloss.get and the Loss pipeline: values against the textbook definitions, gradients against
finite differences, every backend and gradient path against each other, reductions, missing
labels, dtypes, devices and errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from cases import CORE_REDUCTIONS, NOT_A_DERIVATIVE, PARAM_SETS, inputs, setting_id, settings
from conftest import FRAMEWORKS, backend_params, devices, to_backend, to_numpy

import mlloss
from mlloss import backends
from mlloss.spec import Prepared

SETTINGS = settings()
IDS = [f"{n}[{setting_id(p)}]" for n, p in SETTINGS]


def test_every_registered_loss_has_test_settings():
    assert set(PARAM_SETS) == set(mlloss.names())


def _definition(name, params, x, y):
    """The spec's textbook formula, evaluated with NumPy in float64."""
    loss = mlloss.get(name, backend="numpy", reduction="none", **params)
    ops = backends.load("numpy")
    _, xc, _, t, p = loss._prepare(ops, x, y)
    with np.errstate(invalid="ignore", divide="ignore"):  # naive forms on all-missing rows
        return loss.spec.definition(ops, xc, t, p)


@pytest.mark.parametrize(("name", "params"), SETTINGS, ids=IDS)
def test_value_equals_textbook_definition(name, params):
    x, y = inputs(name, params, empty_rows=False)  # textbook forms divide by a row's count
    value = mlloss.get(name, backend="numpy", reduction="none", **params)(x, y)
    expected = _definition(name, params, x, y)
    np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-13)


DERIVATIVE_SETTINGS = [(n, p) for n, p in SETTINGS if (n, p) not in NOT_A_DERIVATIVE]


@pytest.mark.parametrize("reduction", CORE_REDUCTIONS)
@pytest.mark.parametrize(
    ("name", "params"),
    DERIVATIVE_SETTINGS,
    ids=[f"{n}[{setting_id(p)}]" for n, p in DERIVATIVE_SETTINGS],
)
def test_numpy_gradient_matches_finite_differences(name, params, reduction):
    x, y = inputs(name, params, seed=1)
    loss = mlloss.get(name, backend="numpy", reduction=reduction, **params)
    _, grad = loss.value_and_grad(x, y)

    def total(v):
        return float(np.sum(loss(v, y)))

    # steps relative to the input: probabilities near 0 or 1 need steps far below 1e-6
    if mlloss.spec(name).input_kind == "probabilities":
        steps = 1e-4 * np.minimum(x, 1.0 - x)
    else:
        steps = 1e-6 * np.maximum(np.abs(x), 1.0)
    numeric = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += steps[index]
        down[index] -= steps[index]
        numeric[index] = (total(up) - total(down)) / (up[index] - down[index])
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "autodiff"])
@pytest.mark.parametrize("backend", backend_params(FRAMEWORKS))
@pytest.mark.parametrize("reduction", CORE_REDUCTIONS)
@pytest.mark.parametrize(("name", "params"), SETTINGS, ids=IDS)
def test_backends_agree_with_numpy_in_float64(name, params, reduction, backend, fused):
    x, y = inputs(name, params, seed=2)
    ref_value, ref_grad = mlloss.get(
        name, backend="numpy", reduction=reduction, **params
    ).value_and_grad(x, y)
    loss = mlloss.get(name, backend=backend, reduction=reduction, fused=fused, **params)
    value, grad = loss.value_and_grad(to_backend(backend, x), to_backend(backend, y))
    assert type(value) is type(to_backend(backend, x)) or backend == "tensorflow"
    assert backends.framework_of(value) == backend
    np.testing.assert_allclose(to_numpy(backend, value), ref_value, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(to_numpy(backend, grad), ref_grad, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("backend", backend_params(FRAMEWORKS))
@pytest.mark.parametrize(("name", "params"), SETTINGS, ids=IDS)
def test_fused_backward_matches_the_frameworks_autodiff(name, params, backend):
    """The closed-form gradient (autograd.Function / custom_vjp / custom_gradient) against the
    framework differentiating the spec's value itself, through a non-trivial upstream."""
    x, y = inputs(name, params, seed=3)
    weights = np.linspace(0.5, 2.0, num=x.size).reshape(x.shape)
    per = mlloss.spec(name).per
    if per != "element":
        weights = weights[:, 0] if per == "sample" else np.asarray(1.5)
    ops = backends.load(backend)
    xt, yt, wt = (to_backend(backend, a) for a in (x, y, weights))
    grads = []
    for fused in (True, False):
        loss = mlloss.get(name, backend=backend, reduction="none", fused=fused, **params)
        assert loss.fused is fused
        _, grad = ops.value_and_grad(lambda v, loss=loss: loss(v, yt) * wt, xt)
        grads.append(to_numpy(backend, grad))
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize(("name", "params"), SETTINGS, ids=IDS)
def test_reductions_and_missing_labels(name, params, backend):
    x, y = inputs(name, params, seed=4)
    args = to_backend(backend, x), to_backend(backend, y)
    spec = mlloss.spec(name)
    none = to_numpy(backend, mlloss.get(name, backend, "none", **params)(*args))
    total = to_numpy(backend, mlloss.get(name, backend, "sum", **params)(*args))
    mean = to_numpy(backend, mlloss.get(name, backend, "mean", **params)(*args))
    if spec.target_kind == "class_index":
        counted = y != mlloss.get(name, **params).params["ignore_index"]
        assert none.shape == y.shape
    else:
        observed = y >= 0
        counted = {
            "element": observed,
            "sample": observed.any(axis=-1),
            "batch": np.asarray(observed.any()),
        }[spec.per]
        assert none.shape == counted.shape
    assert np.all(none[~counted] == 0.0)
    assert total == pytest.approx(none.sum(), rel=1e-12)
    assert mean == pytest.approx(none.sum() / counted.sum(), rel=1e-12)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize(("name", "params"), SETTINGS, ids=IDS)
def test_missing_labels_add_nothing_to_the_gradient(name, params, backend):
    x, y = inputs(name, params, seed=5)
    loss = mlloss.get(name, backend=backend, reduction="sum", **params)
    _, grad = loss.value_and_grad(to_backend(backend, x), to_backend(backend, y))
    grad = to_numpy(backend, grad)
    if mlloss.spec(name).target_kind == "class_index":
        ignored = y == loss.params["ignore_index"]
        assert ignored.any()
        assert np.all(grad[ignored] == 0.0)
    else:
        assert np.all(grad[y < 0] == 0.0)
        # and whatever a missing entry's logit is, the loss is the same
        moved = x.copy()
        moved[y < 0] += 7.0
        same = loss(to_backend(backend, moved), to_backend(backend, y))
        assert to_numpy(backend, same) == pytest.approx(
            to_numpy(backend, loss(to_backend(backend, x), to_backend(backend, y))), rel=1e-12
        )


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("name", sorted({n for n, _ in SETTINGS}))
def test_mean_over_nothing_observed_is_zero_with_zero_gradient(name, backend):
    params = PARAM_SETS[name][0]
    x, y = inputs(name, params)
    if mlloss.spec(name).target_kind == "class_index":
        y = np.full_like(y, -100)
    else:
        y = -np.ones_like(y)
    loss = mlloss.get(name, backend=backend, **params)
    value, grad = loss.value_and_grad(to_backend(backend, x), to_backend(backend, y))
    assert to_numpy(backend, value) == 0.0
    assert np.all(to_numpy(backend, grad) == 0.0)


HALF = {"float16": np.finfo(np.float16).eps, "bfloat16": 2.0**-7, "float32": 2.0**-23}


def _dtype_params(names):
    out = []
    for backend in backend_params():
        for dtype in names:
            out.append(pytest.param(backend.values[0], dtype, marks=backend.marks))
    return out


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize(("backend", "dtype"), _dtype_params(HALF))
@pytest.mark.parametrize(("name", "params"), SETTINGS, ids=IDS)
def test_lower_precision_keeps_dtype_and_device_and_is_accurate(
    name, params, backend, dtype, device
):
    """float32, float16 and bfloat16 in give the same dtype out, on the same device; half
    precision is computed in float32 and rounded once, so it stays within a few ulps of the
    float64 value of the same (rounded) inputs."""
    if device != "cpu" and backend == "numpy":
        pytest.skip("NumPy has no devices")
    x, y = inputs(name, params, seed=6)
    xt = to_backend(backend, x, dtype=dtype, device=device)
    x_rounded = to_numpy(backend, xt)
    loss = mlloss.get(name, backend=backend, reduction="none", **params)
    value = loss(xt, to_backend(backend, y, device=device))
    ops = backends.load(backend)
    assert ops.dtype_name(value) == dtype
    if backend == "torch":
        assert value.device == xt.device
    expected = mlloss.get(name, backend="numpy", reduction="none", **params)(x_rounded, y)
    eps = HALF[dtype]
    np.testing.assert_allclose(
        to_numpy(backend, value), expected, rtol=4 * eps, atol=4 * eps * np.abs(expected).max()
    )


@pytest.mark.parametrize("backend", backend_params())
def test_backend_none_is_inferred_from_the_tensors(backend):
    x, y = inputs("sigmoid_bce", {})
    loss = mlloss.get("sigmoid_bce")
    value = loss(to_backend(backend, x), to_backend(backend, y))
    assert backends.framework_of(value) == backend


def test_python_lists_go_to_numpy():
    value = mlloss.get("sigmoid_bce", reduction="none")([[0.0, 2.0]], [[1, 0]])
    assert isinstance(value, np.ndarray)
    np.testing.assert_allclose(value, [[np.log(2.0), np.log1p(np.exp(2.0))]], rtol=1e-15)


@pytest.mark.parametrize("backend", backend_params(FRAMEWORKS))
def test_explicit_backend_converts_numpy_targets(backend):
    x, y = inputs("sigmoid_bce", {})
    value = mlloss.get("sigmoid_bce", backend=backend)(to_backend(backend, x), y)
    assert backends.framework_of(value) == backend


@pytest.mark.parametrize("backend", backend_params(FRAMEWORKS))
def test_mixing_frameworks_is_a_type_error_naming_both(backend):
    x, y = inputs("sigmoid_bce", {})
    with pytest.raises(TypeError, match=rf"{backend}.*numpy|numpy.*{backend}"):
        mlloss.get("sigmoid_bce")(to_backend(backend, x), y)
    other = "torch" if backend != "torch" else "jax"
    with pytest.raises(TypeError, match=f"sigmoid_bce: targets is a {other} tensor"):
        mlloss.get("sigmoid_bce", backend=backend)(to_backend(backend, x), to_backend(other, y))


def test_decode_rules():
    x = np.array([[2.0, -1.0, 0.1], [0.0, -3.0, 5.0]])
    np.testing.assert_array_equal(mlloss.get("sigmoid_bce").decode(x), [[1, 0, 1], [0, 0, 1]])
    np.testing.assert_array_equal(
        mlloss.get("sigmoid_bce").decode(x, threshold=0.8), [[1, 0, 0], [0, 0, 1]]
    )
    np.testing.assert_array_equal(
        mlloss.get("bce").decode(np.array([[0.7, 0.2]]), threshold=0.5), [[1, 0]]
    )
    np.testing.assert_array_equal(mlloss.get("softmax_ce").decode(x), [[1, 0, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="threshold expects a number in"):
        mlloss.get("sigmoid_bce").decode(x, threshold=1.5)


# errors ----------------------------------------------------------------------------------------


def test_unknown_loss_suggests_close_names():
    with pytest.raises(ValueError, match="did you mean 'sigmoid_bce'"):
        mlloss.get("sigmoid_bc")


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown backend 'mxnet'.*numpy, torch, tensorflow, jax"):
        mlloss.get("sigmoid_bce", backend="mxnet")


def test_unknown_reduction_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"sigmoid_bce: unknown reduction 'avg'.*none, sum, mean"):
        mlloss.get("sigmoid_bce", reduction="avg")


def test_unknown_parameter_lists_the_valid_ones():
    with pytest.raises(TypeError, match=r"sigmoid_bce: unknown parameter 'gamma'.*class_weight"):
        mlloss.get("sigmoid_bce", gamma=2.0)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("sigmoid_bce", {"label_smoothing": 1.5}, r"'label_smoothing' expects a real number in"),
        ("sigmoid_bce", {"pos_weight": [1.0, -1.0]}, r"'pos_weight' expects a non-negative"),
        ("sigmoid_bce", {"pos_weight": [[1.0]]}, r"'pos_weight' expects a non-negative"),
        ("bce", {"eps": 0.5}, r"'eps' expects a real number in \[0.0, 0.5\)"),
        ("bce", {"eps": float("nan")}, r"'eps' expects"),
        ("softmax_ce", {"normalize_targets": 1}, r"'normalize_targets' expects True or False"),
        ("sparse_softmax_ce", {"ignore_index": 1.5}, r"'ignore_index' expects an integer"),
    ],
)
def test_parameter_out_of_range_names_loss_argument_and_value(name, params, match):
    with pytest.raises((ValueError, TypeError), match=f"{name}: parameter {match}"):
        mlloss.get(name, **params)


def test_per_class_parameter_of_the_wrong_length():
    loss = mlloss.get("sigmoid_bce", pos_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"'pos_weight' expects 5 entries .*; got 2"):
        loss(np.zeros((3, 5)), np.zeros((3, 5)))


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(
        ValueError, match=r"sigmoid_bce: targets expect the shape .*\(3, 5\).*\(3, 4\)"
    ):
        mlloss.get("sigmoid_bce")(np.zeros((3, 5)), np.zeros((3, 4)))
    with pytest.raises(
        ValueError,
        match=r"sparse_softmax_ce: targets expect class indices of shape \(3,\); got shape "
        r"\(3, 5\)",
    ):
        mlloss.get("sparse_softmax_ce")(np.zeros((3, 5)), np.zeros((3, 5), dtype=int))
    with pytest.raises(ValueError, match=r"targets \(class indices\) expect shape \(3,\)"):
        mlloss.get("sparse_softmax_ce")(np.zeros((3, 5)), np.zeros((4,), dtype=int))


def test_integer_logits_are_a_type_error():
    with pytest.raises(TypeError, match="sigmoid_bce: logits must be a floating-point tensor"):
        mlloss.get("sigmoid_bce")(np.zeros((2, 2), dtype=np.int64), np.zeros((2, 2)))


def test_float_class_targets_are_a_type_error():
    with pytest.raises(TypeError, match="sparse_softmax_ce: targets expect integer class indices"):
        mlloss.get("sparse_softmax_ce")(np.zeros((2, 3)), np.zeros(2))


def test_numpy_gradient_without_closed_form_is_a_clear_error():
    base = mlloss.spec("sigmoid_bce")
    from dataclasses import replace

    spec = replace(base, name="test_no_grad_bce", aliases=(), grad=None)
    mlloss.register(spec)
    try:
        loss = mlloss.get("test_no_grad_bce", backend="numpy")
        assert float(loss(np.zeros((1, 2)), np.ones((1, 2)))) == pytest.approx(np.log(2.0))
        with pytest.raises(NotImplementedError, match="test_no_grad_bce: no closed-form gradient"):
            loss.value_and_grad(np.zeros((1, 2)), np.ones((1, 2)))
    finally:
        mlloss.unregister("test_no_grad_bce")


def test_loss_repr_shows_what_was_asked():
    text = repr(mlloss.get("sigmoid_bce", backend="numpy", label_smoothing=0.1))
    assert (
        text == "mlloss.get('sigmoid_bce', backend='numpy', reduction='mean', label_smoothing=0.1)"
    )


def test_prepared_targets_record_is_public():
    assert Prepared(1, 2, 3).counted == 3


def _gradient_paths():
    """(backend, fused) for every gradient path: NumPy has only its closed form."""
    return [
        pytest.param(b.values[0], fused, marks=b.marks, id=f"{b.values[0]}-{path}")
        for b in backend_params()
        for fused, path in ((True, "fused"), (False, "autodiff"))
        if fused or b.values[0] != "numpy"
    ]


LOGIT_SETTINGS = [(n, p) for n, p in SETTINGS if mlloss.spec(n).input_kind == "logits"]


@pytest.mark.parametrize(("backend", "fused"), _gradient_paths())
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize(
    ("name", "params"), LOGIT_SETTINGS, ids=[f"{n}[{setting_id(p)}]" for n, p in LOGIT_SETTINGS]
)
def test_a_non_finite_logit_at_a_missing_label_changes_nothing(name, params, bad, backend, fused):
    x, y = inputs(name, params, seed=7)
    spec = mlloss.spec(name)
    moved = x.copy()
    if spec.target_kind == "class_index":
        moved[y == mlloss.get(name, **params).params["ignore_index"]] = bad
    else:
        moved[y < 0] = bad
    loss = mlloss.get(name, backend=backend, reduction="mean", fused=fused, **params)
    clean = loss.value_and_grad(to_backend(backend, x), to_backend(backend, y))
    dirty = loss.value_and_grad(to_backend(backend, moved), to_backend(backend, y))
    for a, b in zip(clean, dirty, strict=True):
        np.testing.assert_array_equal(to_numpy(backend, a), to_numpy(backend, b))


@pytest.mark.parametrize("backend", backend_params())
def test_softmax_with_infinite_logits_gives_the_limit(backend):
    x = np.array([[np.inf, 0.0, 1.0], [np.inf, np.inf, 0.0], [-np.inf, 0.0, 0.0]])
    y = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.5, 0.5]])
    loss = mlloss.get("softmax_ce", backend=backend, reduction="none")
    value, grad = loss.value_and_grad(to_backend(backend, x), to_backend(backend, y))
    np.testing.assert_allclose(to_numpy(backend, value), [0.0, np.log(2.0), np.log(2.0)])
    np.testing.assert_allclose(
        to_numpy(backend, grad), [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], atol=1e-15
    )


@pytest.mark.parametrize("backend", backend_params())
def test_decode_by_rank_on_every_backend(backend):
    x = np.array([[0.1, 3.0, -1.0, 3.0], [2.0, -2.0, 0.5, 1.0]])
    xt = to_backend(backend, x)
    top2 = [[0, 1, 0, 1], [1, 0, 0, 1]]
    np.testing.assert_array_equal(to_numpy(backend, mlloss.get("lsep").decode(xt, k=2)), top2)
    np.testing.assert_array_equal(to_numpy(backend, mlloss.get("focal").decode(xt, k=2)), top2)
    # ties go to the lower index; one k per row
    per_row = to_backend(backend, np.array([[1], [3]]))
    np.testing.assert_array_equal(
        to_numpy(backend, mlloss.get("softmax_ce").decode(xt, k=per_row)),
        [[0, 1, 0, 0], [1, 0, 1, 1]],
    )
    np.testing.assert_array_equal(
        to_numpy(backend, mlloss.get("softmax_ce").decode(xt)), [[0, 1, 0, 0], [1, 0, 0, 0]]
    )
    np.testing.assert_array_equal(
        to_numpy(backend, mlloss.get("zlpr").decode(xt)), (x > 0).astype(int)
    )
    np.testing.assert_array_equal(
        to_numpy(backend, mlloss.get("bp_mll").decode(xt, threshold=0.7)), (x > 0.7).astype(int)
    )


def test_decode_errors_name_the_loss_and_the_choice():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="lsep: a ranking loss decodes by rank: pass k="):
        mlloss.get("lsep").decode(x)
    with pytest.raises(ValueError, match="focal: decode takes threshold or k, not both"):
        mlloss.get("focal").decode(x, threshold=0.5, k=1)
    with pytest.raises(ValueError, match=r"k expects an integer in \[0, 3\]"):
        mlloss.get("focal").decode(x, k=4)


SAMPLE_SETTINGS = [(n, p) for n, p in SETTINGS if mlloss.spec(n).per != "element"]


@pytest.mark.parametrize(
    ("name", "params"),
    SAMPLE_SETTINGS,
    ids=[f"{n}[{setting_id(p)}]" for n, p in SAMPLE_SETTINGS],
)
def test_rows_with_no_positive_or_no_negative_follow_the_definition(name, params):
    """Rows of all 0 and of all 1: the stable value still equals the textbook formula."""
    x, y = inputs(name, params, seed=8, empty_rows=False)
    if mlloss.spec(name).target_kind == "multi_hot":
        y[1], y[3] = 0.0, 1.0
    value = mlloss.get(name, backend="numpy", reduction="none", **params)(x, y)
    np.testing.assert_allclose(value, _definition(name, params, x, y), rtol=1e-12, atol=1e-13)


def test_get_resolves_equal_arguments_once():
    a = mlloss.get("focal", backend="numpy", gamma=2.0)
    assert mlloss.get("focal", backend="numpy", gamma=2.0) is a
    assert mlloss.get("focal", backend="numpy", gamma=2) is not a  # an int is its own key
    assert mlloss.get("focal", backend="numpy", gamma=1.0) is not a
    assert mlloss.get("focal", backend="numpy", reduction="sum", gamma=2.0) is not a
    # arrays are not cached, and an error is an error every time
    w = [1.0, 2.0]
    weighted = mlloss.get("sigmoid_bce", class_weight=w)
    assert mlloss.get("sigmoid_bce", class_weight=w) is not weighted
    for _ in range(2):
        with pytest.raises(TypeError, match="gamma"):
            mlloss.get("focal", backend="numpy", gamma=True)


def test_a_loss_registered_anew_is_resolved_anew():
    spec = mlloss.unregister("zlpr")
    try:
        mlloss.register(spec)
        first = mlloss.get("zlpr")
        mlloss.unregister("zlpr")
        mlloss.register(dataclasses.replace(spec, summary="changed"))
        assert mlloss.get("zlpr") is not first
        assert mlloss.get("zlpr").spec.summary == "changed"
    finally:
        mlloss.unregister("zlpr")
        mlloss.register(spec)


def test_a_loss_cannot_be_changed():
    loss = mlloss.get("sigmoid_bce")
    with pytest.raises(AttributeError, match="cannot be changed"):
        loss.reduction = "sum"
