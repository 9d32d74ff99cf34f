"""Frameworks' own losses: their translation into mlloss, proved by running both.

Every native a spec lists runs live (its framework installed) beside ``mlloss.from_native``
on every backend, at its defaults and at settings that exercise each argument it maps:
values and gradients agree to float64 rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import backend_params, to_backend, to_numpy

import mlloss
from mlloss import natives
from mlloss.conformance import cases as conformance_cases
from mlloss.conformance import natives as live

C = 5
WEIGHT = np.array([1.0, 2.0, 0.5, 0.0, 3.0])
POS_WEIGHT = np.array([2.0, 1.0, 0.25, 4.0, 1.0])

#: for each native, the argument sets it is proved at (its defaults first)
SETTINGS: dict[str, list[dict]] = {
    "torch.nn.functional.binary_cross_entropy_with_logits": [
        {},
        {"pos_weight": POS_WEIGHT, "weight": WEIGHT, "reduction": "sum"},
        {"pos_weight": 3.0, "reduction": "none"},
    ],
    "tf.nn.sigmoid_cross_entropy_with_logits": [{}],
    "tf.nn.weighted_cross_entropy_with_logits": [{"pos_weight": POS_WEIGHT}, {"pos_weight": 2.5}],
    "keras.losses.BinaryCrossentropy": [
        {"from_logits": True},
        {"from_logits": True, "label_smoothing": 0.2, "reduction": "sum"},
        {"from_logits": True, "reduction": None},
        {},
        {"label_smoothing": 0.3, "reduction": "none"},
    ],
    "keras.losses.binary_crossentropy": [
        {"from_logits": True, "label_smoothing": 0.1},
        {},
    ],
    "optax.losses.sigmoid_binary_cross_entropy": [{}],
    "torch.nn.functional.binary_cross_entropy": [{}, {"weight": WEIGHT, "reduction": "sum"}],
    "torch.nn.functional.multilabel_soft_margin_loss": [{}, {"weight": WEIGHT}],
    "torch.nn.functional.cross_entropy": [
        {},
        {"weight": WEIGHT, "label_smoothing": 0.1},
        {"weight": WEIGHT, "ignore_index": 2, "reduction": "sum"},
    ],
    "tf.nn.softmax_cross_entropy_with_logits": [{}],
    "tf.nn.sparse_softmax_cross_entropy_with_logits": [{}],
    "keras.losses.CategoricalCrossentropy": [
        {"from_logits": True},
        {"from_logits": True, "label_smoothing": 0.1, "reduction": "sum"},
        {},
        {"label_smoothing": 0.1, "reduction": "none"},
    ],
    "keras.losses.categorical_crossentropy": [
        {"from_logits": True, "label_smoothing": 0.2},
        {"label_smoothing": 0.2},
    ],
    "keras.losses.SparseCategoricalCrossentropy": [
        {"from_logits": True},
        {"from_logits": True, "ignore_class": 1},
        {},
        {"ignore_class": 1, "reduction": "sum"},
    ],
    "keras.losses.sparse_categorical_crossentropy": [
        {"from_logits": True, "ignore_class": 1},
        {"ignore_class": 3},
    ],
    "optax.losses.softmax_cross_entropy": [{}, {"smooth_labels": 0.1}],
    "optax.losses.softmax_cross_entropy_with_integer_labels": [{}],
    "optax.losses.poly_loss_cross_entropy": [{}, {"epsilon": -0.5}],
    "optax.losses.sigmoid_focal_loss": [{}, {"alpha": 0.25, "gamma": 1.5}],
    "keras.losses.BinaryFocalCrossentropy": [
        {"from_logits": True},
        {
            "from_logits": True,
            "apply_class_balancing": True,
            "alpha": 0.3,
            "gamma": 1.0,
            "label_smoothing": 0.1,
        },
        {},
        {"apply_class_balancing": True, "label_smoothing": 0.1, "gamma": 3.0},
    ],
    "keras.losses.binary_focal_crossentropy": [
        {"from_logits": True, "gamma": 0.5},
        {"apply_class_balancing": True, "alpha": 0.6},
    ],
    "torch.nn.functional.multilabel_margin_loss": [{}, {"reduction": "sum"}],
    # torchvision does not import beside this torch build: see test_torchvision_formula
    "torchvision.ops.sigmoid_focal_loss": [{}],
}


#: where a native's backward is, by construction, not the derivative of its value (declared in
#: its note and in tests below): those entries' gradients are left out of the comparison
GRAD_DIFFERS = {
    # torch's BCELoss backward divides by max(p (1 - p), 1e-12): at p = 0 or 1 it is not the
    # derivative of the clamped log
    "torch.nn.functional.binary_cross_entropy": lambda x: x * (1.0 - x) < 1e-12,
}


#: natives whose backward is softmax(x) - y (TensorFlow's fused kernel): the gradient of their
#: value only for targets that are distributions (test_tensorflow_softmax_gradient below)
SOFTMAX_MINUS_LABELS = (
    "tf.nn.softmax_cross_entropy_with_logits",
    "keras.losses.CategoricalCrossentropy",
    "keras.losses.categorical_crossentropy",
)


def _cases():
    out = []
    for name, settings in SETTINGS.items():
        for spec, native in natives.lookup(name):
            for kwargs in settings:
                if all(kwargs.get(k, native.args.get(k)) == v for k, v in native.when.items()):
                    shown = ",".join(
                        f"{k}={v if np.isscalar(v) else '[..]'}" for k, v in kwargs.items()
                    )
                    out.append(
                        pytest.param(spec.name, native.name, kwargs, id=f"{native.name}[{shown}]")
                    )
    return out


CASES = _cases()


def _inputs(spec, native, kwargs, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=3.0, size=(6, C))
    if spec.input_kind == "probabilities":
        x = 1.0 / (1.0 + np.exp(-x))
        x[0, :2] = [0.0, 1.0]  # the clip's edges
        if spec.per == "sample":  # rows of a softmax, one renormalised at its edges
            x = x / x.sum(axis=-1, keepdims=True)
            x[1] = [0.0, 1.0, 0.0, 0.0, 0.0]
    if spec.target_kind == "class_index":
        y = rng.integers(0, C, size=6)
        ignore = kwargs.get("ignore_index", kwargs.get("ignore_class"))
        if ignore is not None:
            y[[1, 4]] = ignore
        return x, y
    y = (rng.random((6, C)) < 0.4).astype(np.float64)
    y[0, 0] = 1.0
    if native.targets == "padded_indices":
        return x, live.as_native_targets(native, spec, y)
    y[2, 1] = 0.3  # a soft label
    if native.name in SOFTMAX_MINUS_LABELS:  # its gradient holds for distributions only
        y[3] = 0.0
        y[3, 2] = 1.0
        y = y / y.sum(axis=-1, keepdims=True)
    return x, y


def test_every_native_has_a_proof_setting():
    listed = {n.name for _, n in natives.records()}
    assert listed == set(SETTINGS), "each native needs argument settings in SETTINGS"


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize(("loss", "name", "kwargs"), CASES)
def test_from_native_equals_the_native_run_live(loss, name, kwargs, backend):
    spec = mlloss.spec(loss)
    native = next(n for n in spec.natives if n.name == name)
    if not live.installed(native.framework):
        pytest.skip(f"{native.framework} is not installed (or does not import)")
    x, y = _inputs(spec, native, kwargs)
    y_dtype = "float64" if y.dtype.kind == "f" else None
    xb, yb = to_backend(backend, x, "float64"), to_backend(backend, y, y_dtype)
    ported = mlloss.from_native(name, backend=backend, **kwargs)
    try:
        expected_value, expected_grad = live.call(native, name, x, y, kwargs, "float64")
    except Exception as refusal:  # what the native refuses, mlloss refuses too
        with pytest.raises(ValueError, match=r"for multi-hot targets"):
            ported.value_and_grad(xb, yb)
        assert "ignore_index" in str(refusal)
        return
    value, grad = ported.value_and_grad(xb, yb)
    assert loss in [t.loss for t in ported.translations]
    value, grad = to_numpy(backend, value), to_numpy(backend, grad)
    assert value.shape == expected_value.shape
    np.testing.assert_allclose(value, expected_value, rtol=1e-12, atol=1e-14)
    differs = GRAD_DIFFERS.get(name, lambda x: np.zeros(x.shape, bool))(x)
    assert differs.sum() <= 2
    np.testing.assert_allclose(grad[~differs], expected_grad[~differs], rtol=1e-11, atol=1e-14)


def test_torch_bce_backward_at_the_edges_is_its_own():
    """torch's BCELoss backward at p = 0 and 1 is (p - y) / max(p (1 - p), 1e-12); mlloss's is
    the derivative of the clamped log (0 where the log is clamped, -y/p + (1-y)/(1-p) else)."""
    torch = pytest.importorskip("torch")
    p = torch.tensor([[0.0, 1.0, 0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    native = torch.nn.functional.binary_cross_entropy(p, y, reduction="sum")
    (native_grad,) = torch.autograd.grad(native, p)
    expected = (p - y) / torch.clamp(p * (1 - p), min=1e-12)
    torch.testing.assert_close(native_grad, expected.detach())
    value, grad = mlloss.from_native("torch.nn.BCELoss", reduction="sum").value_and_grad(p, y)
    torch.testing.assert_close(value, native.detach())  # the values agree: 100 + 0 + 0 + 100
    torch.testing.assert_close(grad, torch.tensor([[0.0, -1.0, 1.0, 0.0]], dtype=torch.float64))


def test_tensorflow_softmax_gradient_is_softmax_minus_labels():
    """For a multi-hot row TensorFlow's gradient is not that of its own value: declared in the
    native's conformance column; mlloss's is softmax(x) sum(y) - y."""
    tf = pytest.importorskip("tensorflow")
    x = tf.Variable([[1.0, 2.0, -1.0]], dtype=tf.float64)
    y = tf.constant([[1.0, 1.0, 0.0]], dtype=tf.float64)
    with tf.GradientTape() as tape:
        value = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=x)
    native_grad = tape.gradient(value, x).numpy()
    softmax = tf.nn.softmax(x).numpy()
    np.testing.assert_allclose(native_grad, softmax - y.numpy(), rtol=1e-12)
    loss = mlloss.from_native("tf.nn.softmax_cross_entropy_with_logits")
    ours_value, ours_grad = loss.value_and_grad(x, y)
    np.testing.assert_allclose(ours_value.numpy(), value.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours_grad.numpy(), 2.0 * softmax - y.numpy(), rtol=1e-12)


@pytest.mark.parametrize("backend", backend_params(["torch", "tensorflow", "jax"]))
def test_tensor_arguments_of_any_framework(backend):
    weight = to_backend(backend, POS_WEIGHT)
    loss = mlloss.from_native("torch.nn.BCEWithLogitsLoss", backend="numpy", pos_weight=weight)
    np.testing.assert_array_equal(loss.losses[0].params["pos_weight"], POS_WEIGHT)


def test_torchvision_formula():
    """torchvision's documented sigmoid_focal_loss, written here in torch from its docs, against
    from_native (torchvision itself does not import beside this torch build)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = torch.tensor(rng.normal(scale=3.0, size=(6, C)), requires_grad=True)
    y = torch.tensor((rng.random((6, C)) < 0.4).astype(np.float64))

    def documented(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
        p = torch.sigmoid(inputs)
        ce = torch.nn.functional.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
        p_t = p * targets + (1 - p) * (1 - targets)
        loss = ce * ((1 - p_t) ** gamma)
        if alpha >= 0:
            loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
        return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]

    for kwargs in (
        {},
        {"alpha": -1.0, "gamma": 1.0, "reduction": "mean"},
        {"alpha": 0.5, "reduction": "sum"},
    ):
        expected = documented(x, y, **kwargs)
        (expected_grad,) = torch.autograd.grad(expected.sum(), x)
        value, grad = mlloss.from_native(
            "torchvision.ops.sigmoid_focal_loss", **kwargs
        ).value_and_grad(x, y)
        torch.testing.assert_close(value, expected.detach(), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-11, atol=1e-14)


# names and translation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        (
            "tensorflow.nn.sigmoid_cross_entropy_with_logits",
            "tf.nn.sigmoid_cross_entropy_with_logits",
        ),
        ("optax.sigmoid_focal_loss", "optax.losses.sigmoid_focal_loss"),
        ("optax.losses.sigmoid_focal_loss", "optax.losses.sigmoid_focal_loss"),
        ("F.cross_entropy", "torch.nn.functional.cross_entropy"),
        ("nn.BCELoss", "torch.nn.BCELoss"),
        ("tf.keras.losses.BinaryCrossentropy", "keras.losses.BinaryCrossentropy"),
    ],
)
def test_names_as_users_write_them(written, canonical):
    assert natives.canonical(written) == canonical
    assert natives.lookup(written)


def test_class_and_function_forms_are_one_native():
    assert natives.lookup("torch.nn.BCEWithLogitsLoss") == natives.lookup(
        "torch.nn.functional.binary_cross_entropy_with_logits"
    )


@pytest.mark.parametrize(
    ("name", "kwargs", "error", "match"),
    [
        ("torch.nn.BCEWithLogits", {}, ValueError, r"did you mean 'torch.nn.BCEWithLogitsLoss'"),
        (
            "torch.nn.BCELoss",
            {"size_average": True},
            TypeError,
            r"unknown argument 'size_average'; the arguments mlloss maps: weight, reduction",
        ),
        (
            "torch.nn.BCELoss",
            {"reduction": "avg"},
            ValueError,
            r"'reduction' expects one of 'none', 'sum', 'mean'; got 'avg'",
        ),
        (
            "keras.losses.CategoricalCrossentropy",
            {"from_logits": "yes"},
            ValueError,
            r"from_logits='yes' has no mlloss loss; mapped: from_logits=False \(mlloss's "
            r"probability_ce\); from_logits=True \(mlloss's softmax_ce\)",
        ),
        (
            "keras.losses.BinaryCrossentropy",
            {"axis": 0},
            ValueError,
            r"'axis' is mapped at -1 only; got 0",
        ),
        (
            "keras.losses.BinaryCrossentropy",
            {"reduction": "average"},
            ValueError,
            r"'reduction' expects one of",
        ),
        (
            "tf.nn.weighted_cross_entropy_with_logits",
            {},
            TypeError,
            r"missing required argument 'pos_weight'",
        ),
        ("optax.sigmoid_binary_cross_entropy", {"smooth_labels": 0.1}, ValueError, r"toward 1/C"),
        (
            "torch.nn.BCEWithLogitsLoss",
            {"pos_weight": [-1.0]},
            ValueError,
            r"binary_cross_entropy_with_logits: sigmoid_bce: parameter 'pos_weight' expects",
        ),
        (
            "torch.nn.BCEWithLogitsLoss",
            {"weight": np.ones((2, 5))},
            TypeError,
            r"'class_weight' expects",
        ),
        (
            "keras.losses.BinaryFocalCrossentropy",
            {"gamma": -1.0},
            ValueError,
            r"'gamma' expects a real number in \[0.0, inf\)",
        ),
    ],
)
def test_refusals_name_the_native_and_the_argument(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        mlloss.from_native(name, **kwargs)


def test_keras_focal_from_logits_is_refused_off_the_tensorflow_backend(monkeypatch):
    monkeypatch.setattr(natives, "keras_backend", lambda: "jax")
    with pytest.raises(
        ValueError, match=r"under Keras's tensorflow backend only; Keras's backend here is 'jax'"
    ):
        mlloss.from_native("keras.losses.BinaryFocalCrossentropy", from_logits=True)
    # probabilities are the same on every Keras backend
    assert mlloss.from_native("keras.losses.BinaryFocalCrossentropy").spec.name == "bce_focal"


def test_keras_backend_read_without_importing_keras(monkeypatch, tmp_path):
    import sys

    monkeypatch.delitem(sys.modules, "keras", raising=False)
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert natives.keras_backend() == "torch"
    monkeypatch.delenv("KERAS_BACKEND")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "keras.json").write_text('{"backend": "jax"}')
    assert natives.keras_backend() == "jax"
    (tmp_path / "keras.json").unlink()
    assert natives.keras_backend() == "tensorflow"


def test_translations_say_what_is_computed():
    ((_, t),) = natives.translate(
        "keras.losses.BinaryFocalCrossentropy",
        from_logits=True,
        alpha=0.4,
        apply_class_balancing=True,
        label_smoothing=0.1,
        reduction="sum",
    )
    assert (t.loss, t.reduction, t.mean_over_classes) == ("focal", "sum", True)
    assert (t.params["alpha"], t.params["label_smoothing"], t.params["gamma"]) == (0.4, 0.1, 2.0)
    ((_, t),) = natives.translate("keras.losses.BinaryFocalCrossentropy", alpha=0.4)
    assert t.loss == "bce_focal" and t.params["alpha"] is None  # no balancing: alpha unused
    ((_, t),) = natives.translate("torchvision.ops.sigmoid_focal_loss")
    assert t.params["alpha"] == 0.25 and t.reduction == "none"
    ((_, t),) = natives.translate("torch.nn.BCELoss")
    assert (t.params["eps"], t.params["log_floor"]) == (0.0, -100.0)
    found = natives.translate("torch.nn.CrossEntropyLoss", weight=WEIGHT)
    assert [(t.loss, t.reduction) for _, t in found] == [
        ("softmax_ce", "mean"),
        ("sparse_softmax_ce", "weighted_mean"),
    ]


def test_cross_entropy_routes_by_the_targets_kind():
    loss = mlloss.from_native("torch.nn.CrossEntropyLoss", backend="numpy", weight=WEIGHT)
    x = np.random.default_rng(0).normal(size=(4, C))
    index = np.array([0, 1, 4, 2])
    dense = np.eye(C)[index]
    sparse_value = loss(x, index)
    expected = mlloss.get("sparse_softmax_ce", "numpy", "weighted_mean", class_weight=WEIGHT)(
        x, index
    )
    assert sparse_value == expected
    assert loss(x, dense) == mlloss.get("softmax_ce", "numpy", class_weight=WEIGHT)(x, dense)
    assert "sparse_softmax_ce" in repr(loss) and "softmax_ce" in repr(loss)


def test_padded_targets_must_be_integer():
    loss = mlloss.from_native("torch.nn.MultiLabelMarginLoss", backend="numpy")
    with pytest.raises(TypeError, match="integer class indices padded with -1"):
        loss(np.zeros((2, 3)), np.zeros((2, 3)))


@pytest.mark.parametrize(("loss", "native"), [(s.name, n.name) for s, n in natives.records()])
def test_native_arguments_for_spec_parameters_translate_back(loss, native):
    """native_kwargs is proved by translating back; here: every setting it maps really does,
    and each native's conformance column has a case (torchvision's column cannot run here)."""
    spec = mlloss.spec(loss)
    record = next(n for n in spec.natives if n.name == native)
    settings = [{}, *conformance_cases.PARAM_SETTINGS.get(loss, [])]
    found = 0
    for params in settings:
        kwargs = natives.native_kwargs(spec, record, params)
        if kwargs is None:
            continue
        found += 1
        translated = [
            t for n, t in natives.translate(native, **{**record.when, **kwargs}) if n is record
        ]
        assert len(translated) == 1
        wanted = spec.resolve_params(params)
        for key, value in wanted.items():
            assert natives._same(translated[0].params[key], value), (params, key)
    assert found, f"no conformance setting of {loss} is expressible by {native}"


def test_native_kwargs_refuses_what_the_native_cannot_express():
    spec = mlloss.spec("sigmoid_bce")
    torch_native = spec.natives[0]
    assert natives.native_kwargs(spec, torch_native, {"label_smoothing": 0.1}) is None
    keras_native = next(n for n in spec.natives if n.name == "keras.losses.BinaryCrossentropy")
    assert natives.native_kwargs(spec, keras_native, {"label_smoothing": 0.1}) == {
        "from_logits": True,
        "label_smoothing": 0.1,
    }
