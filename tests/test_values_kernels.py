"""The backends' fused value kernels (backends/jax_kernels.py, backends/tensorflow_kernels.py):
each gives the values and gradients of the path it replaces (the spec's formula with its
closed-form backward), on ordinary inputs and on every edge the spec defines: missing labels
and ignored samples, NaN rows, infinite logits, rows with nothing observed, labels out of
range."""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np
import pytest
from cases import FOCAL_FAMILY_SETTINGS

import mlloss
from mlloss import backends

# (backend, loss, settings) for every kernel
SETTINGS = [
    ("jax", "sparse_softmax_ce", {}),
    ("jax", "sparse_softmax_ce", {"label_smoothing": 0.2}),
    ("jax", "sparse_softmax_ce", {"ignore_index": 2}),
    ("jax", "softmax_ce", {}),
    ("jax", "softmax_ce", {"label_smoothing": 0.2}),
    ("jax", "softmax_ce", {"normalize_targets": True}),
    ("jax", "softmax_ce", {"normalize_targets": True, "label_smoothing": 0.3}),
    ("jax", "poly1", {}),
    ("jax", "poly1", {"epsilon": -0.5}),
    ("tensorflow", "sparse_softmax_ce", {}),
    ("tensorflow", "sparse_softmax_ce", {"ignore_index": 2}),
    ("tensorflow", "sparse_softmax_ce", {"label_smoothing": 0.2}),
    ("tensorflow", "softmax_ce", {}),
    ("tensorflow", "softmax_ce", {"label_smoothing": 0.2}),
    ("tensorflow", "softmax_ce", {"normalize_targets": True}),
    ("tensorflow", "sigmoid_bce", {}),
    ("tensorflow", "sigmoid_bce", {"label_smoothing": 0.1}),
    ("tensorflow", "multilabel_soft_margin", {}),
    ("tensorflow", "focal", {}),
    ("tensorflow", "focal", {"alpha": 0.25}),
    ("tensorflow", "focal", {"gamma": 0.0}),
    ("tensorflow", "focal", {"gamma": 1.5, "alpha": 0.7}),
    ("tensorflow", "focal", {"gamma": 3.0, "alpha": 1.0}),
    ("tensorflow", "asl", {}),
    ("tensorflow", "asl", {"clip": 0.1, "gamma_neg": 2.0}),
    ("tensorflow", "asl", {"clip": 0.2, "gamma_neg": 1.0}),
    ("tensorflow", "asl", {"gamma_neg": 2.5}),
    ("tensorflow", "poly1", {}),
    ("tensorflow", "poly1", {"epsilon": -0.5}),
    ("tensorflow", "bce", {}),
    ("tensorflow", "bce", {"label_smoothing": 0.1, "eps": 1e-3}),
]
# the focal family's other plain forms (backends/binary_math.py): a whole-loss kernel only,
# for a mean or a sum, on TensorFlow and JAX alike
WHOLE_ONLY = [
    *FOCAL_FAMILY_SETTINGS,
    # the ranking losses (backends/ranking_math.py): one value per sample
    ("zlpr", {}),
    ("lsep", {}),
    ("bp_mll", {}),
    ("two_way", {}),
    ("two_way", {"tp": 0.5, "tn": 2.0}),
    # the probability losses (backends/probability_math.py): soft targets too
    ("probability_ce", {}),
    ("probability_ce", {"label_smoothing": 0.2, "eps": 0.01}),
    ("abs_kl", {}),
    ("abs_kl", {"eps": 0.05}),
    # multilabel_hinge (ranking_math.multilabel_hinge_plain): sorted rows, no C x C pairs
    ("multilabel_hinge", {}),
    ("multilabel_hinge", {"margin": 0.5}),
    ("multilabel_hinge", {"margin": 0.0}),
]
SHAPE = (12, 7)


@pytest.fixture(autouse=True)
def _hinge_kernel_at_any_size(monkeypatch):
    """JAX's multilabel_hinge kernel runs at these tests' small shapes too (it takes batches
    of at least ``_FEW_PAIRS`` (sample, class, class) triples; that gate has a test of its
    own)."""
    if importlib.util.find_spec("jax") is not None:
        from mlloss.backends import jax_kernels

        monkeypatch.setattr(jax_kernels, "_FEW_PAIRS", 0)


RTOL = {np.float64: 1e-13, np.float32: 2e-6}


def _ops(backend):
    pytest.importorskip(backend)
    return backends.load(backend)


def _inputs(name, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=SHAPE) * 3).astype(dtype)
    if mlloss.spec(name).input_kind == "probabilities":  # some at 0 and 1, clipped
        x = np.clip(x / 6 + 0.5, 0, 1).astype(dtype)
    if mlloss.spec(name).target_kind == "class_index":
        return x, rng.integers(0, SHAPE[-1], size=SHAPE[:-1])
    return x, (rng.random(SHAPE) < 0.3).astype(dtype)


def _edges(name, dtype):
    """Logits and targets with every edge case, one per row."""
    x, y = _inputs(name, dtype, seed=1)
    x[0, 1] = np.nan  # a NaN row
    x[1, 2] = np.inf  # +inf, one entry
    x[2, [0, 3]] = np.inf  # +inf, two entries
    x[3, :] = -np.inf  # every logit -inf
    x[4, 5] = -np.inf  # -inf, one entry
    if mlloss.spec(name).target_kind == "class_index":
        y[1], y[2], y[4] = 2, 1, 5  # the label on the +inf, beside two +inf, on the -inf
        y[5] = -100  # ignored
        x[5, 0] = np.nan  # a NaN in an ignored sample counts for nothing
    else:
        y[1, :], y[1, 2] = 0, 1
        y[2, :], y[2, 1] = 0, 1
        y[4, :], y[4, 5] = 0, 1
        y[5, :3] = -1  # missing labels, one logit behind them NaN
        x[5, 0] = np.nan
        y[6, :] = -1  # nothing observed
        y[7, :] = 0  # no positive
    return x, y


def _closed_form(backend, name, params, reduction):
    """The path the kernel replaces: the spec's formula with its closed-form gradient (which,
    unlike autodiff of the formula, gives rows with an infinite logit their limit gradient)."""
    spec = mlloss.spec(name)
    loss = mlloss.Loss(spec, backend, reduction, spec.resolve_params(params), validate=False)
    ops = _ops(backend)
    loss._fused_fns[ops.name] = (loss._spec_fused_fn(ops), False)
    loss._kernels[ops.name] = None  # no whole-loss kernel either
    assert loss._kernel(ops) is None
    return loss


def _both(backend, name, params, x, y, reduction="none"):
    ops = _ops(backend)
    kernel = mlloss.get(name, backend=backend, reduction=reduction, validate=False, **params)
    assert kernel._fused_fn(ops)[1], "the kernel is used"
    closed_form = _closed_form(backend, name, params, reduction)
    x, y = ops.asarray(x), ops.asarray(y)
    return kernel.value_and_grad(x, y), closed_form.value_and_grad(x, y)


def _close(a, b, rtol):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_every_kernel_is_covered(backend):
    _ops(backend)
    module = importlib.import_module(f"mlloss.backends.{backend}_kernels")
    assert {name for b, name, _ in SETTINGS if b == backend} == set(module.KERNELS)


@pytest.mark.parametrize("backend, name, params", SETTINGS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_kernel_equals_formula(backend, name, params, dtype, reduction):
    x, y = _inputs(name, dtype)
    (value, grad), (value_f, grad_f) = _both(backend, name, params, x, y, reduction)
    ops = _ops(backend)
    assert ops.dtype_name(value) == ops.dtype_name(grad) == np.dtype(dtype).name
    _close(value, value_f, RTOL[dtype])
    _close(grad, grad_f, RTOL[dtype])
    # and autodiff of the formula itself, away from the edges
    formula = mlloss.get(name, backend=backend, reduction=reduction, fused=False, **params)
    value_a, grad_a = formula.value_and_grad(ops.asarray(x), ops.asarray(y))
    _close(value, value_a, RTOL[dtype])
    _close(grad, grad_a, RTOL[dtype])


@pytest.mark.parametrize("backend, name, params", SETTINGS)
def test_edge_cases_equal_the_formula(backend, name, params):
    """NaN where the formula has NaN, the same limits where it has infinities."""
    x, y = _edges(name, np.float64)
    (value, grad), (value_f, grad_f) = _both(backend, name, params, x, y)
    _close(value, value_f, 1e-13)
    _close(grad, grad_f, 1e-13)


@pytest.mark.parametrize("backend, name, params", SETTINGS)
@pytest.mark.parametrize("edge", ["nan", "inf", "-inf"])
def test_one_non_finite_logit_alone_equals_the_formula(backend, name, params, edge):
    """One NaN or infinite logit in an otherwise ordinary batch (no missing label, which
    would send the whole batch to the formula): its sample's values and gradients are the
    formula's (for a per-sample loss, NaN across the sample's whole gradient)."""
    x, y = _inputs(name, np.float64)
    x[2, 3] = float(edge)
    (value, grad), (value_f, grad_f) = _both(backend, name, params, x, y)
    _close(value, value_f, 1e-13)
    _close(grad, grad_f, 1e-13)


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_labels_out_of_range_take_the_formula(backend):
    """Unvalidated class indices outside [0, C): what the formula makes of them (the
    TensorFlow op would raise)."""
    x, y = _inputs("sparse_softmax_ce", np.float64)
    y[3], y[4] = SHAPE[-1], -7
    (value, grad), (value_f, grad_f) = _both(backend, "sparse_softmax_ce", {}, x, y)
    _close(value, value_f, 1e-13)
    _close(grad, grad_f, 1e-13)


def test_tensorflow_kernel_inside_tf_function():
    tf = pytest.importorskip("tensorflow")
    loss = mlloss.get("sparse_softmax_ce", backend="tensorflow", validate=False)
    closed_form = _closed_form("tensorflow", "sparse_softmax_ce", {}, "mean")
    for x, y in (_inputs("sparse_softmax_ce", np.float32), _edges("sparse_softmax_ce", np.float32)):
        logits = tf.Variable(x)
        labels = tf.constant(y)

        @tf.function
        def step(fn, logits=logits, labels=labels):
            with tf.GradientTape() as tape:
                value = fn(logits, labels)
            return value, tape.gradient(value, logits)

        for got, expected in zip(step(loss), step(closed_form), strict=True):
            _close(got, expected, 2e-6)


@pytest.mark.parametrize(
    "backend, name, params", [s for s in SETTINGS if s[0] == "tensorflow"], ids=str
)
def test_tensorflow_kernels_take_ordinary_batches(backend, name, params, monkeypatch):
    """On ordinary inputs the fast side of the kernel's tf.cond is the one taken (so the
    comparisons above compare the kernel, not its fallback), and on the edge cases it is not
    (for the losses whose fast side has no limits at infinite logits). For the XLA kernels,
    which choose inside the computation, the plain form and the general form likewise."""
    from mlloss.backends import tensorflow_kernels

    taken = []
    guarded = tensorflow_kernels._guarded

    def recording(x, fast, formula):
        def watched(logits):
            values, ok, grad = fast(logits)
            taken.append(bool(ok))
            return values, ok, grad

        return guarded(x, watched, formula)

    monkeypatch.setattr(tensorflow_kernels, "_guarded", recording)
    x, y = _inputs(name, np.float64)
    if name in tensorflow_kernels.WHOLE:  # one XLA computation, its forms chosen inside
        step = tensorflow_kernels.WHOLE[name](mlloss.get(name, **params).params, "mean")
        assert bool(step(x, y)[2]), "the plain form"
        if "ignore_index" in params:  # a batch with an ignored sample takes the general form
            ignored = y.copy()
            ignored[0] = params["ignore_index"]
            assert not bool(step(x, ignored)[2])
        # each infinity and each missing label alone sends the batch to the general form
        # (a NaN row is NaN in either form; which one XLA's maximum sends it to is its own)
        for row in range(1, len(x)):
            edge_x, edge_y = _edges(name, np.float64)
            one_x, one_y = x.copy(), y.copy()
            one_x[row], one_y[row] = edge_x[row], edge_y[row]
            # (a class-index batch has no row with nothing observed; an ignored label is one)
            ordinary = row >= (6 if name == "sparse_softmax_ce" else 7)
            ordinary = ordinary and not np.all(edge_y[row] == params.get("ignore_index"))
            assert bool(step(one_x, one_y)[2]) == ordinary, row
        return
    _both(backend, name, params, x, y)
    assert taken and all(taken)
    if name in ("focal", "bce", "asl"):
        taken.clear()
        _both(backend, name, params, *_edges(name, np.float64))
        assert taken and not any(taken)


@pytest.mark.parametrize(
    "backend, name",
    [
        ("jax", "softmax_ce"),
        ("tensorflow", "softmax_ce"),
        ("tensorflow", "sigmoid_bce"),
        ("tensorflow", "focal"),
        ("tensorflow", "bce"),
        ("tensorflow", "asl"),
    ],
)
def test_soft_targets(backend, name):
    rng = np.random.default_rng(3)
    x = rng.normal(size=SHAPE) * 3
    y = rng.random(SHAPE)
    (value, grad), (value_f, grad_f) = _both(backend, name, {}, x, y)
    _close(value, value_f, 1e-13)
    _close(grad, grad_f, 1e-13)


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
@pytest.mark.parametrize("margin", [5.0, 10.0, 15.0])
def test_confident_samples_lose_no_more_than_the_formula(backend, margin):
    """Samples predicted with a margin have small losses; in float32 the kernel's values are
    as close to the exact ones as the formula's (its terms are all non-negative: nothing
    cancels)."""
    ops = _ops(backend)
    rng = np.random.default_rng(4)
    x = rng.normal(size=SHAPE).astype(np.float32)
    labels = rng.integers(0, SHAPE[-1], size=SHAPE[0])
    x[np.arange(SHAPE[0]), labels] += margin
    kwargs = {"backend": backend, "reduction": "none"}
    kernel = mlloss.get("sparse_softmax_ce", **kwargs)
    formula = mlloss.get("sparse_softmax_ce", fused=False, **kwargs)
    y = ops.asarray(labels)
    exact = np.asarray(kernel(ops.asarray(x.astype(np.float64)), y))
    error = np.abs(np.asarray(kernel(ops.asarray(x), y)) - exact)
    error_f = np.abs(np.asarray(formula(ops.asarray(x), y)) - exact)
    assert np.all(error <= error_f + 4 * np.finfo(np.float32).eps * exact)


@pytest.mark.parametrize("name", ["asl", "focal", "bce", "sigmoid_bce"])
def test_tensorflow_confident_entries_keep_their_digits(name):
    """Entries predicted confidently and rightly have small values; in float32 the kernel's
    largest relative error among them is no larger than the formula's (within 4 eps)."""
    ops = _ops("tensorflow")
    rng = np.random.default_rng(5)
    y = (rng.random(SHAPE) < 0.5).astype(np.float32)
    x = np.where(y > 0, 9.0, -9.0) + rng.random(SHAPE)
    if mlloss.spec(name).input_kind == "probabilities":
        x = 1.0 / (1.0 + np.exp(-x))
    kwargs = {"backend": "tensorflow", "reduction": "none", "validate": False}
    exact = np.asarray(mlloss.get(name, **kwargs)(ops.asarray(x), ops.asarray(y.astype(float))))
    x32 = ops.asarray(x.astype(np.float32))

    def relative(values):  # an exact 0 (asl's negatives below its clip) must come out 0
        values = np.asarray(values, dtype=np.float64)
        scaled = np.abs(values - exact) / np.where(exact > 0, exact, 1.0)
        return np.where((exact > 0) | (values == exact), scaled, np.inf).max()

    error = relative(mlloss.get(name, **kwargs)(x32, ops.asarray(y)))
    error_f = relative(mlloss.get(name, fused=False, **kwargs)(x32, ops.asarray(y)))
    assert error <= error_f + 4 * np.finfo(np.float32).eps


def test_jax_kernel_under_jit_and_vmap():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x, y = (jnp.asarray(a) for a in _inputs("sparse_softmax_ce", np.float32))
    loss = mlloss.get("sparse_softmax_ce", backend="jax")
    direct = loss(x, y)
    jitted, _ = jax.jit(jax.value_and_grad(loss))(x, y)
    _close(jitted, direct, 1e-6)
    per_sample = jax.vmap(loss)(x[:, None], y[:, None])
    _close(per_sample.mean(), direct, 1e-6)


@pytest.mark.parametrize(
    "backend, name, params",
    [
        ("jax", "softmax_ce", {"class_weight": [1.0] * SHAPE[-1]}),
        ("tensorflow", "sparse_softmax_ce", {"class_weight": [1.0] * SHAPE[-1]}),
        ("tensorflow", "sigmoid_bce", {"pos_weight": 2.0}),
        ("tensorflow", "focal", {"label_smoothing": 0.1}),
        ("tensorflow", "bce", {"log_floor": -100.0}),
        ("tensorflow", "bce", {"eps": 0.0}),
        ("tensorflow", "multilabel_soft_margin", {"class_weight": [1.0] * SHAPE[-1]}),
        ("tensorflow", "asl", {"gamma_pos": 1.0}),
        ("tensorflow", "asl", {"clip": 0.0}),
    ],
)
def test_settings_without_a_kernel(backend, name, params):
    loss = mlloss.get(name, backend=backend, **params)
    assert not loss._fused_fn(_ops(backend))[1]


# TensorFlow's XLA kernels: the whole loss, reduction included, as one computation ---------


def _whole_losses():
    """(loss, settings, reduction) of every TensorFlow XLA kernel: the softmax cross-entropies
    and poly1 for every reduction, focal and asl (a plain form for hard labels and finite
    logits, the spec's path inside the same computation otherwise) for a mean or a sum."""
    reductions = {"softmax_ce": ("mean", "sum", "none"), "focal": ("mean", "sum")}
    reductions |= {"sparse_softmax_ce": reductions["softmax_ce"], "poly1": reductions["softmax_ce"]}
    reductions["asl"] = reductions["focal"]
    return [
        (name, params, reduction)
        for b, name, params in SETTINGS
        if b == "tensorflow" and name in reductions
        for reduction in reductions[name]
    ] + [(name, params, reduction) for name, params in WHOLE_ONLY for reduction in ("mean", "sum")]


@pytest.mark.parametrize("name, params, reduction", _whole_losses(), ids=str)
@pytest.mark.parametrize("edges", [False, True])
@pytest.mark.parametrize("in_function", [False, True])
def test_tensorflow_whole_loss_kernel_equals_formula(name, params, reduction, edges, in_function):
    """The reduced value and its gradient (for a cotangent other than 1, so that the backward's
    product is checked too), the kernel against the closed form, on ordinary and edge batches,
    eagerly and inside a tf.function."""
    tf = pytest.importorskip("tensorflow")
    ops = _ops("tensorflow")
    loss = mlloss.get(name, backend="tensorflow", reduction=reduction, validate=False, **params)
    assert loss._kernel(ops) is not None, "the whole-loss kernel is used"
    closed_form = _closed_form("tensorflow", name, params, reduction)
    x, y = _edges(name, np.float64) if edges else _inputs(name, np.float64)
    x, y = tf.constant(x), tf.constant(y)
    cotangent = tf.constant(
        np.linspace(0.5, 2.0, len(x)) if reduction == "none" else 3.0, tf.float64
    )

    def step(fn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = fn(x, y)
        return value, tape.gradient(value, x, output_gradients=cotangent)

    run = tf.function(step, autograph=False) if in_function else step
    for got, expected in zip(run(loss), step(closed_form), strict=True):
        _close(got, expected, 1e-13)


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
@pytest.mark.parametrize(
    "name", ["focal", "asl", "poly1_focal", "splc", "hill", "zlpr", "lsep", "softmax_ce"]
)
@pytest.mark.parametrize("logit", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("label", [0.0, 1.0])
def test_whole_loss_kernel_one_non_finite_logit_alone(backend, name, logit, label):
    """One non-finite logit in an ordinary batch sends it to the spec's path (a batch with
    edges of every kind fails the plain form's check by its missing labels alone), or for
    softmax_ce takes the spec's limits in the plain form itself."""
    ops = _ops(backend)
    x, y = _inputs(name, np.float64)
    x[2, 3], y[2, 3] = logit, label
    loss = mlloss.get(name, backend=backend, reduction="sum", validate=False)
    assert loss._kernel(ops) is not None
    closed_form = _closed_form(backend, name, {}, "sum")
    x, y = ops.asarray(x), ops.asarray(y)
    for got, expected in zip(
        loss.value_and_grad(x, y), closed_form.value_and_grad(x, y), strict=True
    ):
        _close(got, expected, 1e-13)


def _with_plain_doubled(forms, name, backend, monkeypatch):
    """A summing Loss of its own (``get`` shares one, its kernel built already) whose plain
    form, in the table ``forms``, is made wrong on purpose: twice the value and gradient."""
    form = forms[name]

    def doubled(ops, params):
        plain = form(ops, params)
        return lambda a, b: tuple(2.0 * v for v in plain(a, b))

    monkeypatch.setitem(forms, name, doubled)
    spec = mlloss.spec(name)
    return mlloss.Loss(spec, backend, "sum", spec.resolve_params({}), validate=False)


@pytest.mark.parametrize(
    "name",
    [
        "focal",
        "asl",
        "poly1_focal",
        "splc",
        "hill",
        "bce_focal",
        "zlpr",
        "lsep",
        "bp_mll",
        "probability_ce",
        "abs_kl",
    ],
)
def test_tensorflow_focal_and_asl_take_the_plain_form_on_ordinary_batches(name, monkeypatch):
    """The plain form computes an ordinary batch: made wrong on purpose, it shows in the
    value; the spec's path computes a batch with a missing label."""
    tf = pytest.importorskip("tensorflow")
    from mlloss.backends import binary_math

    x, y = _inputs(name, np.float64)
    loss = _with_plain_doubled(binary_math.PLAIN, name, "tensorflow", monkeypatch)
    spec_sum = _closed_form("tensorflow", name, {}, "sum")
    np.testing.assert_allclose(loss(tf.constant(x), tf.constant(y)), 2 * spec_sum(x, y))
    y[0, 0] = -1.0
    np.testing.assert_allclose(loss(tf.constant(x), tf.constant(y)), spec_sum(x, y))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", ["softmax_ce", "focal"])
def test_tensorflow_whole_loss_kernel_half_precision(dtype, name):
    """float16 and bfloat16 computed in float32: the value and gradient are the float32
    kernel's rounded once to the input's dtype, as the formula's path rounds them."""
    tf = pytest.importorskip("tensorflow")
    x, y = _inputs(name, np.float32)
    loss = mlloss.get(name, backend="tensorflow", validate=False)
    narrow = tf.cast(tf.constant(x), dtype)
    value, grad = loss.value_and_grad(narrow, tf.cast(tf.constant(y), dtype))
    value_f, grad_f = loss.value_and_grad(tf.cast(narrow, tf.float32), tf.constant(y))
    assert value.dtype.name == grad.dtype.name == dtype
    assert value.numpy() == tf.cast(value_f, dtype).numpy()
    np.testing.assert_array_equal(grad.numpy(), tf.cast(grad_f, dtype).numpy())


@pytest.mark.parametrize("name", ["softmax_ce", "focal", "asl"])
def test_tensorflow_whole_loss_kernel_for_any_batch_size(name):
    """Inside a tf.function traced once for any batch size (as Keras traces a train step),
    the kernel compiles for each size it meets, an empty batch and missing labels included,
    and gives the NumPy backend's values and gradients."""
    tf = pytest.importorskip("tensorflow")
    loss = mlloss.get(name, backend="tensorflow")
    reference = mlloss.get(name, backend="numpy")
    spec = tf.TensorSpec([None, SHAPE[-1]], tf.float64)

    @tf.function(input_signature=[spec, spec])
    def step(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = loss(x, y)
        return value, tape.gradient(value, x)

    rng = np.random.default_rng(3)
    for rows in (6, 5, 0, 3, 9, 1):
        x = rng.normal(size=(rows, SHAPE[-1]))
        y = (rng.random((rows, SHAPE[-1])) < 0.3).astype(np.float64)
        if rows == 3:
            y[0, :2] = -1  # missing labels: the general form
        for got, expected in zip(step(x, y), reference.value_and_grad(x, y), strict=True):
            _close(got, expected, 1e-12)


def test_tensorflow_whole_loss_kernel_does_not_warn_about_retracing(caplog):
    """One compiled function per input signature: a loss called eagerly on many shapes does
    not trip TensorFlow's warning about frequent retracing."""
    tf = pytest.importorskip("tensorflow")
    loss = mlloss.get("softmax_ce", backend="tensorflow", validate=False)
    with caplog.at_level("WARNING"):
        for rows in range(1, 9):
            loss(tf.zeros([rows, 3]), tf.ones([rows, 3]))
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


@pytest.mark.parametrize("dtype", ["uint8", "int16", "int32", "int64"])
def test_tensorflow_sparse_kernel_takes_any_integer_labels(dtype):
    """Class indices of any integer dtype (TensorFlow's gather takes only int16-int64)."""
    tf = pytest.importorskip("tensorflow")
    x, y = _inputs("sparse_softmax_ce", np.float64)
    loss = mlloss.get("sparse_softmax_ce", backend="tensorflow")
    reference = mlloss.get("sparse_softmax_ce", backend="numpy")
    got = loss.value_and_grad(tf.constant(x), tf.constant(y.astype(dtype)))
    for a, b in zip(got, reference.value_and_grad(x, y), strict=True):
        _close(a, b, 1e-12)


# JAX's whole-loss kernels: a plain form for hard labels and finite logits, tiled on the CPU --

JAX_WHOLE = [
    ("focal", {}),
    ("focal", {"alpha": 0.25}),
    ("focal", {"gamma": 0.0}),
    ("focal", {"gamma": 1.0}),
    ("focal", {"gamma": 1.5, "alpha": 0.7}),
    ("focal", {"gamma": 3.0, "alpha": 1.0}),
    ("focal", {"gamma": 0.0, "alpha": 0.1}),
    ("asl", {}),
    ("asl", {"clip": 0.1, "gamma_neg": 2.0}),
    ("asl", {"clip": 0.2, "gamma_neg": 1.0}),
    ("asl", {"gamma_neg": 2.5}),
    ("asl", {"clip": 0.5, "gamma_neg": 3.0}),
    *WHOLE_ONLY,
    # softmax_ce (backends/softmax_math.py): whole, where every target is observed
    ("softmax_ce", {}),
    ("softmax_ce", {"normalize_targets": True, "label_smoothing": 0.1}),
    # class indices (backends/probability_math.py INDEX_PLAIN): every index a class
    ("sparse_probability_ce", {}),
    ("sparse_probability_ce", {"eps": 0.05}),
    # the BCE on logits (binary_math.BCE_PLAIN): JAX only, soft targets too
    ("sigmoid_bce", {}),
    ("sigmoid_bce", {"label_smoothing": 0.1}),
    ("multilabel_soft_margin", {}),
]


def _jax_step(loss, x, y, cotangent=3.0):
    """The value and the gradient for a cotangent other than 1 (the backward's product is
    checked too), under jit."""
    jax = pytest.importorskip("jax")
    value, pullback = jax.vjp(lambda v: loss(v, y), x)
    return value, pullback(cotangent * jax.numpy.ones_like(value))[0]


def test_every_jax_whole_loss_kernel_is_covered():
    _ops("jax")
    from mlloss.backends import jax_kernels

    assert {name for name, _ in JAX_WHOLE} == set(jax_kernels.WHOLE)


@pytest.mark.parametrize("name, params", JAX_WHOLE, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("edges", [False, True])
@pytest.mark.parametrize("block_rows", [None, 5])
def test_jax_whole_loss_kernel_equals_formula(
    name, params, reduction, edges, block_rows, monkeypatch
):
    """The kernel against the closed form: its plain form on ordinary batches, the spec's path
    on batches with edges; whole, and tiled in blocks of 5 rows of 12 (the last block starts
    at row 7 and counts rows 10 and 11 only; the spec's path in blocks of 5 rows too, rows
    10 and 11 a call of their own, as are two_way's three passes)."""
    jax = pytest.importorskip("jax")
    from mlloss.backends import jax_kernels

    if block_rows is not None:
        monkeypatch.setattr(jax_kernels, "_BLOCK_ENTRIES", block_rows * SHAPE[-1])
        monkeypatch.setattr(jax_kernels, "_PAIR_BLOCK", block_rows * SHAPE[-1] ** 2)
        monkeypatch.setattr(jax_kernels, "_WHOLE_BYTES", 0)  # two_way in blocks too
    ops = _ops("jax")
    loss = mlloss.get(name, backend="jax", reduction=reduction, validate=False, **params)
    assert loss._kernel(ops) is not None, "the whole-loss kernel is used"
    closed_form = _closed_form("jax", name, params, reduction)
    x, y = _edges(name, np.float64) if edges else _inputs(name, np.float64)
    x, y = jax.numpy.asarray(x), jax.numpy.asarray(y)
    for got, expected in zip(
        jax.jit(lambda a, b: _jax_step(loss, a, b))(x, y), _jax_step(closed_form, x, y), strict=True
    ):
        _close(got, expected, 1e-13)
    _close(jax.jit(loss)(x, y), closed_form(x, y), 1e-13)  # the value alone


@pytest.mark.parametrize(
    "name",
    ["focal", "zlpr", "probability_ce", "softmax_ce", "sparse_probability_ce", "multilabel_hinge"],
)
def test_jax_whole_loss_kernel_takes_the_plain_form_on_ordinary_batches(name, monkeypatch):
    """The plain form computes an ordinary batch (made wrong on purpose, it shows in the value
    and the gradient); the spec's path computes a batch with a missing label."""
    jax = pytest.importorskip("jax")
    from mlloss.backends import jax_kernels

    loss = _with_plain_doubled(jax_kernels.WHOLE, name, "jax", monkeypatch)
    closed_form = _closed_form("jax", name, {}, "sum")
    x, y = _inputs(name, np.float64)
    x, y = jax.numpy.asarray(x), jax.numpy.asarray(y)
    for got, expected in zip(_jax_step(loss, x, y), _jax_step(closed_form, x, y), strict=True):
        _close(got, 2 * expected, 1e-13)
    y = y.at[0].set(-100) if y.ndim == 1 else y.at[0, 0].set(-1.0)  # an ignored sample
    for got, expected in zip(_jax_step(loss, x, y), _jax_step(closed_form, x, y), strict=True):
        _close(got, expected, 1e-13)


@pytest.mark.parametrize("name", ["sigmoid_bce", "multilabel_soft_margin"])
def test_jax_bce_kernel_takes_soft_targets_in_its_plain_form(name, monkeypatch):
    """Soft targets (any in [0, 1]) are the BCE plain form's too: against the closed form in
    float64 and float32, and made wrong on purpose it shows. A missing label, an infinite
    logit or a NaN send the batch to the spec's path."""
    jax = pytest.importorskip("jax")
    from mlloss.backends import jax_kernels

    x, _ = _inputs(name, np.float64)
    y = np.random.default_rng(2).random(SHAPE)
    y[0, :3] = [0.0, 1.0, 0.5]
    closed_form = _closed_form("jax", name, {}, "sum")
    loss = mlloss.get(name, backend="jax", reduction="sum")
    for dtype in (np.float64, np.float32):
        a, b = jax.numpy.asarray(x.astype(dtype)), jax.numpy.asarray(y.astype(dtype))
        for got, expected in zip(_jax_step(loss, a, b), _jax_step(closed_form, a, b), strict=True):
            _close(got, expected, RTOL[dtype])
    loss = _with_plain_doubled(jax_kernels.WHOLE, name, "jax", monkeypatch)
    a, b = jax.numpy.asarray(x), jax.numpy.asarray(y)
    for got, expected in zip(_jax_step(loss, a, b), _jax_step(closed_form, a, b), strict=True):
        _close(got, 2 * expected, 1e-13)
    edges = [(a, b.at[1, 1].set(-1.0)), (a.at[1, 1].set(np.inf), b), (a.at[1, 1].set(np.nan), b)]
    for pair in edges:
        for got, expected in zip(
            _jax_step(loss, *pair), _jax_step(closed_form, *pair), strict=True
        ):
            _close(got, expected, 1e-13)


@pytest.mark.parametrize(
    "name, params",
    [
        ("sigmoid_bce", {"pos_weight": [2.0] * SHAPE[-1]}),
        ("sigmoid_bce", {"class_weight": [0.5] * SHAPE[-1]}),
        ("multilabel_soft_margin", {"class_weight": [0.5] * SHAPE[-1]}),
    ],
    ids=str,
)
def test_jax_bce_kernel_leaves_per_class_factors_to_the_spec(name, params):
    pytest.importorskip("jax")
    assert mlloss.get(name, backend="jax", **params)._kernel(_ops("jax")) is None


def test_jax_multilabel_hinge_kernel_only_for_many_pairs(monkeypatch):
    """Below ``_FEW_PAIRS`` (sample, class, class) triples the formula computes the batch; at
    or above it the sorted rows do (made wrong on purpose, it shows)."""
    jax = pytest.importorskip("jax")
    from mlloss.backends import jax_kernels

    x, y = (jax.numpy.asarray(a) for a in _inputs("multilabel_hinge", np.float64))
    closed_form = _closed_form("jax", "multilabel_hinge", {}, "sum")
    loss = _with_plain_doubled(jax_kernels.WHOLE, "multilabel_hinge", "jax", monkeypatch)
    for gate, factor in [(x.size * 7 + 1, 1.0), (x.size * 7, 2.0)]:
        monkeypatch.setattr(jax_kernels, "_FEW_PAIRS", gate)
        _close(loss(x, y), factor * closed_form(x, y), 1e-13)


def test_jax_multilabel_hinge_kernel_passes_the_conformance_suite():
    """The conformance fixtures are smaller than ``_FEW_PAIRS``: here the sorted rows compute
    every one of them (the fixture above lowers the gate; the runner works in this process)."""
    pytest.importorskip("jax")
    from mlloss.conformance import runner

    dtypes = ["float64", "float32"]  # half precision computes in float32
    report = runner.run(["multilabel_hinge"], ["jax"], dtypes, ["cpu"], with_seed=False)
    assert [(c.dtype, c.status) for c in report.cells] == [(d, "pass") for d in dtypes]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("block_rows", [1, 5, 12])
def test_jax_multilabel_hinge_spec_path_in_row_blocks(reduction, block_rows, monkeypatch):
    """A batch the sorted rows do not take (missing labels, a soft one; finite logits, so no
    NaN hides a block's share) runs the formula on blocks of rows: the same value and
    gradient as the formula over the whole batch, a mean over the samples that count (one
    has no label at all)."""
    jax = pytest.importorskip("jax")
    from mlloss.backends import jax_kernels

    monkeypatch.setattr(jax_kernels, "_PAIR_BLOCK", block_rows * SHAPE[-1] ** 2)
    x, y = _inputs("multilabel_hinge", np.float64)
    y[0, :3], y[3, :], y[11, 2], y[6, 4] = -1.0, -1.0, -1.0, 0.7
    loss = mlloss.get("multilabel_hinge", backend="jax", reduction=reduction, validate=False)
    closed_form = _closed_form("jax", "multilabel_hinge", {}, reduction)
    x, y = jax.numpy.asarray(x), jax.numpy.asarray(y)
    for got, expected in zip(
        jax.jit(lambda a, b: _jax_step(loss, a, b))(x, y), _jax_step(closed_form, x, y), strict=True
    ):
        _close(got, expected, 1e-13)
    _close(jax.jit(loss)(x, y), closed_form(x, y), 1e-13)


def test_tensorflow_multilabel_hinge_takes_the_sorted_rows_on_ordinary_batches(monkeypatch):
    """TensorFlow's sorted rows (outside XLA) compute an ordinary batch (made wrong on purpose,
    it shows); the spec's path a batch with a missing label."""
    tf = pytest.importorskip("tensorflow")
    from mlloss.backends import tensorflow_kernels

    loss = _with_plain_doubled(
        tensorflow_kernels.OUTSIDE_XLA, "multilabel_hinge", "tensorflow", monkeypatch
    )
    closed_form = _closed_form("tensorflow", "multilabel_hinge", {}, "sum")
    x, y = _inputs("multilabel_hinge", np.float64)
    for factor, labels in [
        (2.0, y),
        (1.0, np.where(np.arange(y.size).reshape(y.shape) == 5, -1.0, y)),
    ]:
        x_t, y_t = tf.constant(x), tf.constant(labels)
        for got, expected in zip(
            loss.value_and_grad(x_t, y_t), closed_form.value_and_grad(x_t, y_t), strict=True
        ):
            _close(got, factor * np.asarray(expected), 1e-13)


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("far", [False, True])
def test_two_way_shared_shift_where_it_loses_nothing(backend, dtype, far, monkeypatch):
    """two_way's kernel shifts each set once for the whole batch (ranking_math.two_way_shared,
    made wrong on purpose here: it shows) on an ordinary batch. A badly ranked row far below
    the rest (its negatives' e^(z - m) all below the smallest normal number, its positives
    further below still: its loss and its negatives' gradients far from 0) would lose its
    sums to underflow with the shared shift: the kernel takes each slice's own shift there,
    and equals the closed form."""
    ops = _ops(backend)
    from mlloss.backends import ranking_math

    shared = ranking_math.two_way_shared

    def doubled(*args):
        value, grad, holds = shared(*args)
        return 2.0 * value, 2.0 * grad, holds

    monkeypatch.setattr(ranking_math, "two_way_shared", doubled)
    spec = mlloss.spec("two_way")
    loss = mlloss.Loss(spec, backend, "sum", spec.resolve_params({}), validate=False)
    closed_form = _closed_form(backend, "two_way", {}, "sum")
    x, y = _inputs("two_way", dtype)
    if far:
        distance = 900.0 if dtype == np.float64 else 100.0
        y[5], y[5, :2] = 0.0, 1.0
        x[5] = np.where(y[5] > 0, -distance - 50.0, -distance) + x[5] / 10
    x, y = ops.asarray(x), ops.asarray(y)
    factor = 1.0 if far else 2.0
    got, expected = loss.value_and_grad(x, y), closed_form.value_and_grad(x, y)
    for a, b in zip(got, expected, strict=True):
        assert np.all(np.isfinite(np.asarray(a)))
        _close(a, factor * np.asarray(b), RTOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("far", [False, True])
@pytest.mark.parametrize("block_rows", [1, 5, 12])
def test_jax_two_way_shared_shift_in_blocks_of_rows(dtype, far, block_rows, monkeypatch):
    """A batch larger than ``_WHOLE_BYTES`` (0 here) takes the shared shift in blocks of
    rows (made wrong on purpose here: it shows), 12 rows in blocks of 1, 5 (rows 10 and 11 a
    call of their own) or 12, and equals the closed form; where the shared shift would lose
    digits (the far row), the kernel takes each slice's own shift."""
    jax = pytest.importorskip("jax")
    from mlloss.backends import jax_kernels

    blocks = jax_kernels._two_way_in_blocks

    def doubled(*args):
        value, holds, gradient = blocks(*args)
        return 2.0 * value, holds, lambda: 2.0 * gradient()

    monkeypatch.setattr(jax_kernels, "_two_way_in_blocks", doubled)
    monkeypatch.setattr(jax_kernels, "_WHOLE_BYTES", 0)
    monkeypatch.setattr(jax_kernels, "_BLOCK_ENTRIES", block_rows * SHAPE[-1])
    spec = mlloss.spec("two_way")
    loss = mlloss.Loss(spec, "jax", "sum", spec.resolve_params({}), validate=False)
    closed_form = _closed_form("jax", "two_way", {}, "sum")
    x, y = _inputs("two_way", dtype)
    if far:
        distance = 900.0 if dtype == np.float64 else 100.0
        y[5], y[5, :2] = 0.0, 1.0
        x[5] = np.where(y[5] > 0, -distance - 50.0, -distance) + x[5] / 10
    x, y = jax.numpy.asarray(x), jax.numpy.asarray(y)
    factor = 1.0 if far or block_rows == 12 else 2.0  # 12 rows: one block, whole
    got = jax.jit(lambda a, b: _jax_step(loss, a, b))(x, y)
    for a, b in zip(got, _jax_step(closed_form, x, y), strict=True):
        assert np.all(np.isfinite(np.asarray(a)))
        _close(a, factor * np.asarray(b), RTOL[dtype])


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
@pytest.mark.parametrize("margin", [1.0, 0.5, 0.0])
def test_multilabel_hinge_sorted_rows_at_ties_and_kinks(backend, margin):
    """Sorted rows meet the formula where pairs sit exactly at the hinge's corner
    (x_j - x_i = m: flat, 0 on both sides), where logits repeat (+0 and -0 among them), and
    in rows without a positive or without a negative."""
    x = np.array(
        [
            [1.0, 0.0, 0.0, -0.0, 2.0, 1.0, 0.5],
            [margin, 0.0, margin, 0.0, -margin, 0.0, 3.0],
            [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
            [2.0, -1.0, 0.0, 1.0, 4.0, -3.0, 0.25],
            [2.0, -1.0, 0.0, 1.0, 4.0, -3.0, 0.25],
        ]
    )
    y = np.array(
        [
            [1, 0, 1, 0, 0, 1, 0],
            [1, 0, 0, 1, 0, 1, 1],
            [1, 0, 1, 0, 0, 1, 0],
            [0, 0, 0, 0, 0, 0, 0],  # no positive
            [1, 1, 1, 1, 1, 1, 1],  # no negative
        ],
        dtype=np.float64,
    )
    ops = _ops(backend)
    loss = mlloss.get("multilabel_hinge", backend=backend, reduction="sum", margin=margin)
    closed_form = _closed_form(backend, "multilabel_hinge", {"margin": margin}, "sum")
    x, y = ops.asarray(x), ops.asarray(y)
    for got, expected in zip(
        loss.value_and_grad(x, y), closed_form.value_and_grad(x, y), strict=True
    ):
        _close(got, expected, 1e-15)


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_multilabel_hinge_sorted_rows_keep_their_digits_at_large_logits(backend):
    """Logits near 1e4 in float32: the value is a sum of non-negative gaps and differences,
    exact to float32's rounding of the sum (sums of the logits themselves, as sum x_i - n t_j,
    lost 2e-4 of this value)."""
    ops = _ops(backend)
    rng = np.random.default_rng(3)
    x = (1e4 + rng.normal(size=(6, 50))).astype(np.float32)
    y = (rng.random((6, 50)) < 0.3).astype(np.float32)
    loss = mlloss.get("multilabel_hinge", backend=backend, reduction="sum")
    expected = mlloss.get("multilabel_hinge", backend="numpy", reduction="sum")
    got = loss.value_and_grad(ops.asarray(x), ops.asarray(y))
    want = expected.value_and_grad(x.astype(np.float64), y.astype(np.float64))
    _close(got[0], want[0], 2e-6)
    _close(got[1], want[1], 1e-7)


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_multilabel_hinge_float32_rows_take_the_packed_keys(backend, monkeypatch):
    """float32 batches go to numpy's sort of packed keys (backends/hinge_rows.py), eagerly
    and compiled (under jit and vmap; inside a tf.function); float64 ones to the framework's
    sorted rows. At ties with the margin and beside both signed zeros the gradient is the
    formula's, exactly: each entry a count over C."""
    ops = _ops(backend)
    from mlloss.backends import hinge_rows

    calls = []
    original = hinge_rows.row_values

    def spied(*args):
        calls.append(args[0].shape)
        return original(*args)

    monkeypatch.setattr(hinge_rows, "row_values", spied)
    rng = np.random.default_rng(4)
    halves = rng.integers(-4, 5, size=(2, 30, 20)) / 2.0
    x = halves * np.where(rng.random(halves.shape) < 0.5, -1.0, 1.0)
    y = (rng.random(halves.shape) < 0.4).astype(np.float64)
    loss = mlloss.get("multilabel_hinge", backend=backend, reduction="sum")
    expected = mlloss.get("multilabel_hinge", backend="numpy", reduction="sum")
    want = [expected.value_and_grad(x[k], y[k]) for k in range(2)]
    x32, y32 = ops.asarray(x.astype(np.float32)), ops.asarray(y.astype(np.float32))
    runs = [lambda a, b: loss.value_and_grad(a, b)]
    if backend == "jax":
        jax = pytest.importorskip("jax")
        step = jax.jit(jax.vmap(jax.value_and_grad(lambda a, b: loss(a, b))))
        runs.append(lambda a, b: tuple(v[0] for v in step(a[None], b[None])))
    else:
        tf = pytest.importorskip("tensorflow")
        runs.append(tf.function(lambda a, b: loss.value_and_grad(a, b), autograph=False))
    for run in runs:
        for k in range(2):
            calls.clear()
            value, grad = run(x32[k], y32[k])
            assert calls == [(30, 20)]
            _close(value, want[k][0], 1e-6)
            np.testing.assert_array_equal(np.asarray(grad), want[k][1].astype(np.float32))
    calls.clear()
    loss.value_and_grad(ops.asarray(x[0]), ops.asarray(y[0]))
    assert calls == []


@pytest.mark.parametrize("xla_first", [False, True])
def test_tensorflow_multilabel_hinge_inside_a_callers_xla(xla_first, monkeypatch):
    """Inside a caller's ``tf.function(jit_compile=True)`` XLA has no kernel for numpy's
    sort: float32 rows take TensorFlow's sorted rows there, and numpy's outside, whichever
    the loss met first (each is traced apart), both equal to the formula."""
    tf = pytest.importorskip("tensorflow")
    from mlloss.backends import hinge_rows

    calls = []
    original = hinge_rows.row_values
    monkeypatch.setattr(hinge_rows, "row_values", lambda *a: calls.append(1) or original(*a))
    x, y = _inputs("multilabel_hinge", np.float32)
    loss = mlloss.Loss(
        mlloss.spec("multilabel_hinge"), "tensorflow", "sum", {"margin": 1.0}, validate=False
    )
    want = mlloss.get("multilabel_hinge", backend="numpy", reduction="sum").value_and_grad(
        x.astype(np.float64), y.astype(np.float64)
    )

    def step(a, b):
        with tf.GradientTape() as tape:
            tape.watch(a)
            value = loss(a, b)
        return value, tape.gradient(value, a)

    compiled = tf.function(step, jit_compile=True, autograph=False)
    for inside in (True, False) if xla_first else (False, True):
        calls.clear()
        value, grad = (compiled if inside else step)(tf.constant(x), tf.constant(y))
        assert calls == ([] if inside else [1])
        _close(value, want[0], 2e-6)
        _close(grad, want[1], 1e-7)


def test_jax_whole_loss_kernel_takes_the_plain_form_only_where_it_holds():
    jax = pytest.importorskip("jax")
    from mlloss.backends.binary_math import hard_labels

    ops = _ops("jax")

    def _plain_batch(a, b):
        return hard_labels(ops, a, b)

    x, y = _inputs("focal", np.float64)
    assert bool(_plain_batch(jax.numpy.asarray(x), jax.numpy.asarray(y)))
    for row, column, logit, label in [
        (0, 1, np.nan, None),
        (1, 2, np.inf, None),
        (4, 5, -np.inf, None),
        (5, 0, None, -1.0),  # a missing label
        (6, 3, None, 0.5),  # a soft label
        (7, 3, None, np.nan),
        (8, 3, None, 2.0),  # out of range, unvalidated
    ]:
        xe, ye = x.copy(), y.copy()
        if logit is not None:
            xe[row, column] = logit
        if label is not None:
            ye[row, column] = label
        assert not bool(_plain_batch(jax.numpy.asarray(xe), jax.numpy.asarray(ye))), (row, column)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_jax_whole_loss_kernel_half_precision(dtype):
    """Half precision computes in float32: the value and the gradient are the float32
    kernel's, rounded once."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x, y = _inputs("focal", np.float32)
    loss = mlloss.get("focal", backend="jax", validate=False)
    half = jnp.asarray(x).astype(dtype)
    single = half.astype(jnp.float32)
    got = _jax_step(loss, half, jnp.asarray(y).astype(dtype), cotangent=1.0)
    expected = _jax_step(loss, single, jnp.asarray(y), cotangent=1.0)
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == jnp.dtype(dtype)
        np.testing.assert_array_equal(
            np.asarray(a, np.float32), np.asarray(b.astype(dtype), np.float32)
        )


def test_jax_whole_loss_kernel_under_vmap():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x, y = (jnp.asarray(a) for a in _inputs("focal", np.float64))
    y = y.at[0, 0].set(-1.0)  # one sample with a missing label: its instance takes the formula
    loss = mlloss.get("focal", backend="jax", reduction="sum", validate=False)
    per_sample = jax.vmap(loss)(x[:, None], y[:, None])
    closed_form = _closed_form("jax", "focal", {}, "sum")
    expected = [closed_form(a[None], b[None]) for a, b in zip(x, y, strict=True)]
    _close(per_sample, jnp.stack(expected), 1e-13)


@pytest.mark.parametrize(
    "name, params, reduction",
    [
        ("focal", {"label_smoothing": 0.1}, "mean"),
        ("focal", {}, "none"),
        ("asl", {"gamma_pos": 1.0}, "mean"),
        ("asl", {"clip": 0.0}, "mean"),
        ("asl", {"gamma_neg": 0.5}, "mean"),
        ("asl", {"stop_grad_weight": True}, "sum"),
        ("focal", {"mean_over_classes": True}, "mean"),
        ("sparse_probability_ce", {"ignore_index": 0}, "mean"),  # may be a class
        ("sparse_probability_ce", {"eps": 0.0}, "mean"),
    ],
)
def test_jax_settings_without_a_whole_loss_kernel(name, params, reduction):
    ops = _ops("jax")
    loss = mlloss.get(name, backend="jax", reduction=reduction, **params)
    assert loss._kernel(ops) is None


def test_jax_whole_loss_kernels_run_on_the_cpu_only(monkeypatch):
    """A GPU fuses the spec's formula itself, and a lax.cond there waits for its predicate on
    the host: off the CPU the kernel steps aside."""
    jax = pytest.importorskip("jax")
    from mlloss.backends import jax_kernels

    ops = _ops("jax")
    x, y = (jax.numpy.asarray(a) for a in _inputs("focal", np.float64))
    loss = mlloss.get("focal", backend="jax", validate=False)
    assert loss._kernel(ops)(x, y, False) is not None
    monkeypatch.setattr(jax_kernels, "_on_cpu", lambda: False)
    assert loss._kernel(ops)(x, y, False) is None
