"""The fused eager torch kernels (backends/torch_kernels.py): each equals the spec's formula
(``fused=False``) wherever it is used, it is used where it should be, it steps aside where its
domain ends, and its backward keeps only the logits and the targets."""

from __future__ import annotations

import dataclasses

import pytest
from cases import FOCAL_FAMILY_SETTINGS

torch = pytest.importorskip("torch")

import mlloss  # noqa: E402
from mlloss import backends  # noqa: E402
from mlloss.backends.torch_kernels import KERNELS  # noqa: E402

OPS = backends.load("torch")

# every kernel with the parameter settings it takes
SETTINGS = [
    ("sigmoid_bce", {}),
    ("sigmoid_bce", {"label_smoothing": 0.1}),
    ("sigmoid_bce", {"mean_over_classes": True}),
    ("multilabel_soft_margin", {}),
    ("softmax_ce", {}),
    ("softmax_ce", {"label_smoothing": 0.2}),
    ("softmax_ce", {"normalize_targets": True}),
    ("softmax_ce", {"normalize_targets": True, "label_smoothing": 0.2}),
    ("sparse_softmax_ce", {}),
    ("sparse_softmax_ce", {"label_smoothing": 0.2}),
    ("poly1", {}),
    ("poly1", {"epsilon": -0.5}),
    ("bce", {}),
    ("bce", {"label_smoothing": 0.1, "eps": 1e-3}),
    ("bce", {"eps": 0.0, "log_floor": -100.0}),  # torch's BCELoss
    ("focal", {}),
    ("focal", {"alpha": 0.25}),
    ("focal", {"gamma": 0.0}),
    ("focal", {"gamma": 1.5, "alpha": 0.7}),
    ("focal", {"gamma": 4.0, "alpha": 1.0}),
    ("focal", {"gamma": 0.0, "alpha": 0.1}),
    ("asl", {}),
    ("asl", {"clip": 0.1, "gamma_neg": 2.0}),
    ("asl", {"clip": 0.2, "gamma_neg": 1.0}),
    ("asl", {"gamma_neg": 3.0}),
    *FOCAL_FAMILY_SETTINGS,
    ("splc", {"tau": 1.0, "gamma": 4.0}),
    ("zlpr", {}),
    ("lsep", {}),
    ("bp_mll", {}),
    ("abs_kl", {}),
    ("abs_kl", {"eps": 0.05}),
    ("probability_ce", {}),
    ("probability_ce", {"label_smoothing": 0.2, "eps": 0.01}),
    ("sparse_probability_ce", {}),
    ("sparse_probability_ce", {"eps": 0.05}),
    ("two_way", {}),
    ("two_way", {"tp": 0.5, "tn": 2.0}),
    ("multilabel_hinge", {}),
    ("multilabel_hinge", {"margin": 0.3}),
]
# relative tolerance of kernel against formula, both computed in the same dtype
RTOL = {torch.float64: 1e-13, torch.float32: 2e-6, torch.bfloat16: 1e-2}


def _inputs(name, dtype, soft=False, shape=(33, 17), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 3).to(dtype)
    if mlloss.spec(name).input_kind == "probabilities":  # inside (0, 1): no log at a floor
        x = (x / 6 + 0.5).clamp(0.02, 0.98).to(dtype)
    if mlloss.spec(name).target_kind == "class_index":
        return x, torch.randint(0, shape[-1], shape[:-1], generator=g)
    if soft:
        y = torch.rand(shape, generator=g, dtype=torch.float64)
    else:
        y = (torch.rand(shape, generator=g) < 0.3).double()
    return x, y.to(dtype)


def _both(name, params, reduction, x, y):
    """(value, grad) through the kernel path and through the spec's formula."""
    kwargs = dict(params)
    fast = mlloss.get(name, backend="torch", reduction=reduction, **kwargs)
    formula = mlloss.get(name, backend="torch", reduction=reduction, fused=False, **kwargs)
    return fast, fast.value_and_grad(x, y), formula.value_and_grad(x, y)


def _close(a, b, rtol):
    a, b = a.double(), b.double()
    scale = b.abs().max().clamp_min(1e-300)
    assert float((a - b).abs().max() / scale) <= rtol, (a, b)


def _kernel_used(loss, x, y):
    kernel = loss._kernel(OPS)
    return kernel is not None and kernel(x, y, False) is not None


def test_every_kernel_is_covered():
    assert {name for name, _ in SETTINGS} == set(KERNELS)


@pytest.mark.parametrize("name, params", SETTINGS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_kernel_equals_formula(name, params, dtype, reduction):
    x, y = _inputs(name, dtype)
    loss, (value, grad), (value_f, grad_f) = _both(name, params, reduction, x, y)
    assert _kernel_used(loss, x, y)
    assert value.dtype == grad.dtype == dtype
    _close(value, value_f, RTOL[dtype])
    _close(grad, grad_f, RTOL[dtype])


@pytest.mark.parametrize(
    "name", ["sigmoid_bce", "multilabel_soft_margin", "softmax_ce", "poly1", "asl", "hill"]
)
def test_soft_labels(name):
    x, y = _inputs(name, torch.float64, soft=True)
    loss, (value, grad), (value_f, grad_f) = _both(name, {}, "mean", x, y)
    assert _kernel_used(loss, x, y)
    _close(value, value_f, 1e-13)
    _close(grad, grad_f, 1e-13)


@pytest.mark.parametrize("name", ["sigmoid_bce", "focal"])
def test_confident_correct_entries_keep_their_digits(name):
    """Entries far on the right side have losses of e^-|x|: the kernel's value is exact to
    float32's precision there (no softplus(x) - x y cancellation)."""
    y = (torch.rand(64, 32, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    x = torch.where(y > 0, 12.0, -12.0) + torch.rand(64, 32)
    value, _ = mlloss.get(name, backend="torch").value_and_grad(x, y)
    exact, _ = mlloss.get(name, backend="torch").value_and_grad(x.double(), y.double())
    assert abs(float(value) / float(exact) - 1) < 1e-5


def _fallback_cases():
    x, y = _inputs("sigmoid_bce", torch.float64)
    missing = y.clone()
    missing[0, 0] = -1
    nan_x, inf_x = x.clone(), x.clone()
    nan_x[1, 2] = float("nan")
    inf_x[2, 3] = float("inf")
    xi, yi = _inputs("sparse_softmax_ce", torch.float64)
    yi_ignored = yi.clone()
    yi_ignored[0] = -100
    # the labelled class 95 below the row's largest logit: its softmax is subnormal in float32
    far = xi.float()
    far[0, yi[0]] = far[0].max() - 95.0
    return [
        ("sigmoid_bce", {}, x, missing, "a missing label"),
        ("sigmoid_bce", {}, nan_x, y, "a NaN logit"),
        ("sigmoid_bce", {}, inf_x, y, "an infinite logit"),
        ("focal", {}, x, _inputs("focal", torch.float64, soft=True)[1], "soft labels"),
        ("poly1_focal", {}, x, _inputs("focal", torch.float64, soft=True)[1], "soft labels"),
        ("splc", {}, x, _inputs("splc", torch.float64, soft=True)[1], "soft labels"),
        (
            "bce_focal",
            {},
            x.clamp(0, 1),
            _inputs("focal", torch.float64, soft=True)[1],
            "soft labels",
        ),
        ("bce_focal", {"eps": 0.0}, x.clamp(0, 1), y, "a probability of 0 without a clip"),
        ("zlpr", {}, x, _inputs("zlpr", torch.float64, soft=True)[1], "soft labels"),
        ("lsep", {}, x, _inputs("lsep", torch.float64, soft=True)[1], "soft labels"),
        ("bp_mll", {}, -inf_x, y, "an infinite logit"),
        ("probability_ce", {}, nan_x.clamp(0, 1), y, "a NaN probability"),
        ("probability_ce", {}, inf_x.clamp(min=0), y, "an infinite probability"),
        ("sparse_probability_ce", {}, nan_x.clamp(0, 1), yi, "a NaN probability"),
        ("abs_kl", {}, nan_x.clamp(0, 1), y, "a NaN probability"),
        ("multilabel_hinge", {}, nan_x, y, "a NaN logit"),
        ("multilabel_hinge", {}, -inf_x, y, "an infinite logit"),
        ("asl", {}, (x * 40).float(), y.float(), "a logit below the log-sigmoid range"),
        ("softmax_ce", {}, inf_x, y, "an infinite logit"),
        ("sparse_softmax_ce", {}, xi, yi_ignored, "an ignored sample"),
        ("sparse_softmax_ce", {"ignore_index": 3}, xi, yi, "an ignore index among the classes"),
        ("sparse_softmax_ce", {}, far, yi, "a probability below float32's normal range"),
        ("sigmoid_bce", {}, x[:0], y[:0], "an empty batch"),
        ("bce", {"eps": 0.0, "log_floor": -100.0}, x.clamp(0, 1), y, "a log at its floor"),
        ("bce", {"eps": 0.0}, x.clamp(0, 1), y, "a probability of 0 without a floor"),
    ]


@pytest.mark.parametrize(
    "name, params, x, y, why", _fallback_cases(), ids=[c[-1] for c in _fallback_cases()]
)
def test_outside_its_domain_the_spec_answers(name, params, x, y, why):
    """The call gives exactly what the loss gives with no kernel at all."""
    loss = mlloss.get(name, backend="torch", **params)
    kernel = loss._kernel(OPS)
    assert kernel is None or kernel(x, y, False) is None, why
    spec = mlloss.spec(name)
    # a Loss of its own (get() shares one between equal calls), made to use no kernel: the
    # spec's fused formula, as before kernels existed
    plain = mlloss.Loss(spec, "torch", "mean", spec.resolve_params(params))
    plain._kernels[OPS.name] = None
    for got, expected in zip(loss.value_and_grad(x, y), plain.value_and_grad(x, y), strict=True):
        torch.testing.assert_close(got, expected, equal_nan=True, rtol=0, atol=0)


UNIT_LABELS = sorted(n for n, k in KERNELS.items() if k.labels == "unit")


@pytest.mark.parametrize("bad", ["twice", "missing", "nan"])
@pytest.mark.parametrize("name", UNIT_LABELS)
def test_unvalidated_labels_out_of_range_take_the_formula(name, bad):
    """Without validation the kernel checks the targets' domain itself (in its one read),
    whether it is a check of its own (sigmoid_bce, focal) or the generic one."""
    x, y = _inputs(name, torch.float64)
    loss = mlloss.get(name, backend="torch", validate=False)
    y = {"twice": y * 2, "missing": y.clone().fill_(-1.0), "nan": y.clone()}[bad]
    if bad == "nan":
        y[3, 4] = float("nan")
    assert loss._kernel(OPS)(x, y, False) is None
    assert loss._kernel(OPS)(x.clone().requires_grad_(True), y, False) is None


def test_smoothed_labels_are_validated_before_the_kernel():
    """With label smoothing, a label just outside [0, 1] can land inside it once smoothed,
    where the kernel's own check reads it: such a kernel leaves the check to validation,
    which raises as without the kernel; in range, the kernel takes the call."""
    x, y = _inputs("sigmoid_bce", torch.float64)
    loss = mlloss.get("sigmoid_bce", backend="torch", label_smoothing=0.2)
    assert not loss._kernel(OPS).checks_targets
    assert loss._kernel(OPS)(x, y, True) is not None
    bad = y.clone()
    bad[0, 0] = 1.05
    with pytest.raises(ValueError, match=r"sigmoid_bce: targets expect labels in \[0, 1\]"):
        loss(x, bad)


def _count_reads(monkeypatch):
    """Counts the device-to-host reads (item, tolist, bool) made on torch tensors."""
    reads = []
    for method in ("item", "tolist", "__bool__"):
        original = getattr(torch.Tensor, method)

        def counted(self, *args, _original=original, _method=method, **kwargs):
            reads.append(_method)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counted)
    return reads


@pytest.mark.parametrize("validate", [False, True])
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_an_ordinary_call_reads_the_device_once_in_the_kernel(monkeypatch, name, validate):
    """On a GPU every read waits for the device. A kernel's checks (its domain, its own
    conditions, a finite value) fold into one read, and they stand for validation, which
    runs only when the kernel declines a call: an ordinary call reads once, a class-index
    kernel's twice (it reads the indices' range before any indexing), and two_way's, asl's,
    bce's and hill's twice on the CPU only (where a read waits for nothing: two_way reads
    whether its shared shift held before it writes the gradient, asl and bce whether every
    label is 0 or 1 before they take one log an entry, hill before it takes the sigmoids of
    one argument an entry)."""
    x, y = _inputs(name, torch.float32, shape=(64, 80))
    x.requires_grad_(True)
    loss = mlloss.get(name, backend="torch", validate=validate)
    kernel = loss._kernel(OPS)
    reads = _count_reads(monkeypatch)
    value = loss(x, y)
    index = KERNELS[name].labels == "index"
    cpu_read = name in ("two_way", "asl", "bce", "hill") and x.device.type == "cpu"
    assert len(reads) == 1 + index + cpu_read, reads
    assert kernel.checks_targets
    assert kernel(x, y, False) is not None  # the kernel took the call
    monkeypatch.undo()
    value.backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    "name, params",
    [
        ("sigmoid_bce", {"pos_weight": 2.0}),
        ("sigmoid_bce", {"class_weight": [1.0] * 17}),
        ("focal", {"label_smoothing": 0.1}),
        ("asl", {"gamma_pos": 1.0}),
        ("asl", {"clip": 0.0}),
        ("asl", {"stop_grad_weight": True}),
        ("softmax_ce", {"class_weight": [1.0] * 17}),
        ("bce_focal", {"label_smoothing": 0.1}),
        ("bce_focal", {"gamma": 0.5}),
    ],
)
def test_settings_without_a_kernel(name, params):
    assert mlloss.get(name, backend="torch", **params)._kernel(OPS) is None


def test_reduction_none_has_no_kernel():
    assert mlloss.get("sigmoid_bce", backend="torch", reduction="none")._kernel(OPS) is None


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_backward_keeps_only_logits_and_targets(name):
    x, y = _inputs(name, torch.float32, shape=(64, 50))
    x.requires_grad_(True)
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        mlloss.get(name, backend="torch")(x, y)
    # a kernel keeps its gradient alone (the logits' bytes, less than the logits and targets)
    assert sum(saved) == x.numel() * x.element_size()


def test_autograd_through_the_kernel_matches_value_and_grad():
    x, y = _inputs("focal", torch.float64)
    loss = mlloss.get("focal", backend="torch")
    leaf = x.clone().requires_grad_(True)
    (2.0 * loss(leaf, y)).backward()
    _, grad = loss.value_and_grad(x, y)
    torch.testing.assert_close(leaf.grad, 2.0 * grad, rtol=1e-14, atol=0)


def test_the_conformance_suite_reaches_every_kernel(monkeypatch):
    """The fixtures' golden values check the kernels: every kernel answers some of their
    calls (the clean cases) and steps aside for others (missing labels, NaN, inf)."""
    from mlloss.backends import torch_kernels
    from mlloss.conformance import runner

    answered: dict[str, int] = {}
    original = torch_kernels.kernel_for

    def counting(name, *args):
        run = original(name, *args)
        if run is None:
            return None

        def counted(x, y, checked):
            out = run(x, y, checked)
            answered[name] = answered.get(name, 0) + (out is not None)
            return out

        return counted

    monkeypatch.setattr(torch_kernels, "kernel_for", counting)
    monkeypatch.setattr(mlloss.loss, "_resolved", {})  # losses resolved anew, kernels too
    cells = runner.run_backend("torch", sorted(KERNELS), ["float64", "float32"], ["cpu"])
    assert [c for c in cells if c.status != "pass"] == []
    assert sorted(name for name, n in answered.items() if n > 0) == sorted(KERNELS)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_a_retained_graph_gives_the_same_gradient_twice(name):
    """A kernel's backward leaves the gradient it kept as it was (a g of 1 hands it over, and
    autograd copies it for a retained graph), so a second backward gets the same gradient."""
    x, y = _inputs(name, torch.float64)
    leaf = x.clone().requires_grad_(True)
    value = mlloss.get(name, backend="torch")(leaf, y)
    first = torch.autograd.grad(value, leaf, retain_graph=True)[0]
    second = torch.autograd.grad(value, leaf)[0]
    torch.testing.assert_close(first, second, rtol=0, atol=0)


@pytest.mark.parametrize(
    "name, params", [(n, p) for n, p in SETTINGS if KERNELS[n].fused is not None]
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_fused_kernel_gives_the_value_of_its_forward(name, params, dtype):
    """With the logits needing a gradient, a fused kernel computes value and gradient in one
    go; without, only the value (its plain forward). The two values agree, the gradient
    equals the formula's, and the kernel's path was the one taken."""
    x, y = _inputs(name, dtype, shape=(40, 23), seed=3)
    loss = mlloss.get(name, backend="torch", **params)
    with torch.no_grad():
        alone = loss(x, y)
    leaf = x.clone().requires_grad_(True)
    fused = loss(leaf, y)
    (grad,) = torch.autograd.grad(fused, leaf)
    formula = mlloss.get(name, backend="torch", fused=False, **params)
    _, formula_grad = formula.value_and_grad(x, y)
    _close(fused.detach(), alone, RTOL[dtype])
    _close(grad, formula_grad, RTOL[dtype])
    assert fused.grad_fn is not None and type(fused.grad_fn).__name__.startswith("_Kernel")


@pytest.mark.parametrize("name", ["focal", "asl", "sigmoid_bce"])
def test_two_calls_before_one_backward_keep_their_own_gradients(name):
    """The fused kernels' temporaries are scratch reused by the next call of the same shape:
    nothing a call returns or keeps may live there."""
    loss = mlloss.get(name, backend="torch")
    (x1, y1), (x2, y2) = _inputs(name, torch.float64, seed=4), _inputs(name, torch.float64, seed=5)
    a, b = x1.clone().requires_grad_(True), x2.clone().requires_grad_(True)
    (loss(a, y1) + 3.0 * loss(b, y2)).backward()
    _, g1 = loss.value_and_grad(x1, y1)
    _, g2 = loss.value_and_grad(x2, y2)
    torch.testing.assert_close(a.grad, g1, rtol=1e-14, atol=0)
    torch.testing.assert_close(b.grad, 3.0 * g2, rtol=1e-14, atol=0)


def test_scratch_is_per_thread_and_shared_by_smaller_shapes():
    import threading

    from mlloss.backends import torch_kernels

    torch_kernels.release_scratch()
    x = torch.zeros(5, 7)
    first = torch_kernels._scratch(x, 2)
    again = torch_kernels._scratch(x, 1)
    assert again[0].data_ptr() == first[0].data_ptr()
    smaller = torch_kernels._scratch(torch.zeros(3, 7), 3)  # a tiled kernel's last block
    assert smaller[0].shape == (3, 7) and smaller[0].data_ptr() == first[0].data_ptr()
    # every buffer has the largest size asked: a larger shape later fits each of the three
    larger = torch_kernels._scratch(torch.zeros(6, 7), 3)
    assert [t.shape for t in larger] == [(6, 7)] * 3
    assert len({t.data_ptr() for t in larger}) == 3
    assert torch_kernels._scratch(torch.zeros(5, 7, dtype=torch.float64), 1)[0].dtype == (
        torch.float64
    )
    other = []
    thread = threading.Thread(target=lambda: other.extend(torch_kernels._scratch(x, 1)))
    thread.start()
    thread.join()
    assert other[0].data_ptr() not in {t.data_ptr() for t in torch_kernels._scratch(x, 2)}
    torch_kernels.release_scratch()
    assert torch_kernels._SCRATCH.buffers == []


FUSED = sorted(name for name, kernel in KERNELS.items() if kernel.fused is not None)
HARD_LABELS = ("focal", "poly1_focal", "splc", "bce_focal", "zlpr", "lsep", "bp_mll", "two_way")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("name", "soft"),
    # the focal family's kernels take 0/1 labels only; class indices are never soft
    [
        (name, soft)
        for name in FUSED
        for soft in (False, True)
        if KERNELS[name].rows_apart
        and not KERNELS[name].blocks_itself
        and (not soft or name not in (*HARD_LABELS, "asl", "sparse_softmax_ce"))
    ],
)
def test_a_tiled_kernel_computes_what_the_whole_batch_does(monkeypatch, name, soft, dtype):
    """On the CPU a batch of two blocks of rows or more runs block by block, with a gradient
    and without (evaluation): each entry's gradient is computed by the same operations (to
    the last bits: see below), and the value is the same sum in another order. Blocks of 7
    rows of 17 classes over 45 rows (a last block of 3), with leading axes, and soft labels
    in one block only (sigmoid_bce takes its soft form there)."""
    from mlloss.backends import torch_kernels

    x, y = _inputs(name, dtype, shape=(45, 17), seed=3)
    if soft:
        y[10:12] = _inputs(name, dtype, soft=True, shape=(2, 17), seed=4)[1]
    x, y = x.reshape(3, 15, 17), y.reshape(3, 15, *y.shape[1:])
    loss = mlloss.get(name, backend="torch")

    def run():
        leaf = x.clone().requires_grad_(True)
        value = loss._kernel(OPS)(leaf, y, True)  # the loss of the moment (see below)
        evaluated = loss._kernel(OPS)(x, y, True)  # no gradient: the forward alone
        assert value is not None and evaluated is not None  # the kernel took the calls
        value.backward()
        return value.detach(), leaf.grad, evaluated

    whole_value, whole_grad, whole_evaluated = run()
    blocks = []
    kernel = KERNELS[name]

    def spy(fn, part):
        def counted(xb, *args, **kwargs):
            blocks.append((part, tuple(xb.shape)))
            return fn(xb, *args, **kwargs)

        return counted

    spied = dataclasses.replace(
        kernel, fused=spy(kernel.fused, "fused"), forward=spy(kernel.forward, "forward")
    )
    monkeypatch.setitem(KERNELS, name, spied)
    monkeypatch.setattr(mlloss.loss, "_resolved", {})  # the loss resolved anew, with the spy
    monkeypatch.setattr(torch_kernels, "_BLOCK_ENTRIES", 7 * 17)
    loss = mlloss.get(name, backend="torch")
    tiled_value, tiled_grad, tiled_evaluated = run()
    shapes = [(7, 17)] * 6 + [(3, 17)]
    assert blocks == [("fused", s) for s in shapes] + [("forward", s) for s in shapes]
    # the same operations per entry, but an entry may fall in a vectorized loop's scalar tail
    # in one split and not the other, where the transcendental functions round differently
    tolerance = 8 * torch.finfo(torch.float32 if dtype == torch.bfloat16 else dtype).eps
    _close(tiled_grad, whole_grad, tolerance)
    _close(tiled_value, whole_value, tolerance)
    _close(tiled_evaluated, whole_evaluated, tolerance)
    _close(tiled_evaluated, tiled_value, tolerance)
    assert tiled_value.dtype == dtype and tiled_grad.dtype == dtype


def test_a_batch_level_kernel_runs_whole(monkeypatch):
    """two_way's value couples every row (its means over samples): however small the
    blocks, it runs over the whole batch at once, and equals the formula."""
    from mlloss.backends import torch_kernels

    shapes = []
    kernel = KERNELS["two_way"]

    def spied(x, *args, **kwargs):
        shapes.append(tuple(x.shape))
        return kernel.fused(x, *args, **kwargs)

    monkeypatch.setitem(KERNELS, "two_way", dataclasses.replace(kernel, fused=spied))
    monkeypatch.setattr(mlloss.loss, "_resolved", {})
    monkeypatch.setattr(torch_kernels, "_BLOCK_ENTRIES", 7 * 17)
    x, y = _inputs("two_way", torch.float64, shape=(45, 17), seed=3)
    _, (value, grad), (value_f, grad_f) = _both("two_way", {}, "mean", x, y)
    assert shapes == [(45, 17)]
    _close(value, value_f, 1e-13)
    _close(grad, grad_f, 1e-13)


@pytest.mark.parametrize("name", FUSED)
def test_a_block_that_declines_sends_the_whole_batch_to_the_formula(monkeypatch, name):
    """A NaN logit in the third block: the tiled kernel declines the whole call (a block
    whose own read declined stops it there), and the formula's NaN policy answers."""
    from mlloss.backends import torch_kernels

    monkeypatch.setattr(torch_kernels, "_BLOCK_ENTRIES", 7 * 17)
    x, y = _inputs(name, torch.float64, shape=(45, 17), seed=3)
    x[20, 3] = float("nan")
    loss = mlloss.get(name, backend="torch")
    assert loss._kernel(OPS)(x.clone().requires_grad_(True), y, True) is None
    assert torch.isnan(loss(x.clone().requires_grad_(True), y))


@pytest.mark.parametrize("name", ["focal", "asl"])
def test_threads_calling_one_loss_at_once_get_their_own_results(name):
    from concurrent.futures import ThreadPoolExecutor

    loss = mlloss.get(name, backend="torch")
    inputs = [_inputs(name, torch.float32, shape=(256, 300), seed=s) for s in range(6)]
    expected = [loss.value_and_grad(x, y) for x, y in inputs]
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda xy: loss.value_and_grad(*xy), inputs * 3))
    for (value, grad), (value_e, grad_e) in zip(got, expected * 3, strict=True):
        torch.testing.assert_close(value, value_e, rtol=0, atol=0)
        torch.testing.assert_close(grad, grad_e, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_bce_clips_like_its_formula(dtype):
    """Probabilities outside [eps, 1 - eps] (and at 0 and 1) are clipped, and their gradient
    is 0 there; at the bounds themselves it passes (the closed interval)."""
    g = torch.Generator().manual_seed(6)
    x = (torch.randn(40, 9, generator=g, dtype=torch.float64) / 2 + 0.5).to(dtype)
    x[0, :3] = torch.tensor([0.0, 1.0, 1e-3], dtype=dtype)
    y = (torch.rand(40, 9, generator=g) < 0.4).to(dtype)
    for params in ({}, {"eps": 1e-3}):
        loss, (value, grad), (value_f, grad_f) = _both("bce", params, "mean", x, y)
        assert _kernel_used(loss, x, y)
        _close(value, value_f, RTOL[dtype])
        _close(grad, grad_f, RTOL[dtype])
        assert (grad[(x < 0.001) | (x > 0.999)] == 0).all()


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_inference_mode_then_training(name):
    """Evaluation under torch.inference_mode, then a training step with the same shape: the
    scratch made during the first is written to by the second."""
    from mlloss.backends import torch_kernels

    torch_kernels.release_scratch()
    x, y = _inputs(name, torch.float32, seed=7)
    loss = mlloss.get(name, backend="torch")
    with torch.inference_mode():
        evaluated = loss(x, y)
    leaf = x.clone().requires_grad_(True)
    trained = loss(leaf, y)
    trained.backward()
    torch.testing.assert_close(trained.detach(), evaluated, rtol=2e-6, atol=0)
    assert leaf.grad is not None and bool(torch.isfinite(leaf.grad).all())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_multilabel_hinge_kernel_at_ties_with_the_margin(dtype):
    """Logits half a unit apart put many (positive, negative) pairs exactly at the margin,
    where the hinge is flat: the kernel's binary searches count such a pair as inactive, as
    the formula's d > 0 does, in the value and in the gradient."""
    g = torch.Generator().manual_seed(5)
    x = (torch.randint(-6, 7, (40, 23), generator=g) / 2).to(dtype)
    y = (torch.rand(40, 23, generator=g) < 0.4).to(dtype)
    loss, (value, grad), (value_f, grad_f) = _both("multilabel_hinge", {}, "mean", x, y)
    assert _kernel_used(loss, x, y)
    # one pair counted differently would move a gradient entry by 1/C of itself or more
    _close(value, value_f, 4 * torch.finfo(dtype).eps)
    _close(grad, grad_f, 4 * torch.finfo(dtype).eps)


def _hinge_both_paths(x, y, margin, monkeypatch):
    """(value, gradient) of the kernel's packed-key sort and of its torch sort (the path of
    float64, and of any device but the CPU), both on the same float32 call."""
    from mlloss.backends import hinge_rows, torch_kernels

    def run():
        out = torch.empty_like(x)
        value, _, _ = torch_kernels._multilabel_hinge_value(x, y, {"margin": margin}, out=out)
        return value, out

    packed = run()
    monkeypatch.setattr(hinge_rows, "MAX_CLASSES", 0)
    return packed, run()


@pytest.mark.parametrize("margin", [0.0, 0.5, 1.0])
def test_multilabel_hinge_packed_keys_equal_the_sorted_rows(margin, monkeypatch):
    """The packed keys order each row as the float comparisons do: ties with the margin,
    both signed zeros (one number, so a tie), many rows sorted by several threads, and a
    transposed (non-contiguous) batch give the same counts, so the same value and
    gradient, as the torch sort and binary search; so does a batch with two leading axes
    swapped (its gradient's buffer made contiguous for numpy's rows)."""
    g = torch.Generator().manual_seed(11)
    halves = torch.randint(-4, 5, (300, 30), generator=g) / 2.0
    signs = torch.where(torch.rand(300, 30, generator=g) < 0.5, -1.0, 1.0)
    x = halves * signs  # -0.0 beside +0.0
    assert bool((x == 0).any() & torch.signbit(x).logical_and(x == 0).any())
    y = (torch.rand(300, 30, generator=g) < 0.4).float()
    spread = torch.randn(30, 300, generator=g).t()  # transposed: not contiguous
    swapped = torch.randn(30, 10, 30, generator=g).transpose(0, 1)
    labels = (torch.rand(10, 30, 30, generator=g) < 0.4).float()
    for xs, ys in ((x, y), (x.t().contiguous().t(), y), (spread, y), (swapped, labels)):
        (value, grad), (value_s, grad_s) = _hinge_both_paths(xs, ys, margin, monkeypatch)
        monkeypatch.undo()
        assert float(value) == float(value_s)
        assert torch.equal(grad, grad_s)


@pytest.mark.parametrize("layout", ["transposed", "leading axes swapped"])
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_a_strided_batch_equals_its_contiguous_copy(name, layout):
    """Logits that are a view with other strides (a transposed batch; a (time, batch,
    classes) tensor with its first two axes swapped, as sequence models hand it over): the
    kernel's value and gradient equal those of the contiguous copy. (ATen's ``_softmax.out``
    once wrote softmax_ce's and sparse_softmax_ce's softmax into a buffer with the batch's
    strides as if it were contiguous: a wrong gradient, and sparse_softmax_ce a wrong
    value.)"""
    if layout == "transposed":
        base, _ = _inputs(name, torch.float32, shape=(17, 33))
        x = base.t()
    else:
        if mlloss.spec(name).per == "batch":
            pytest.skip("a loss of one value per batch takes a 2-D batch")
        base, _ = _inputs(name, torch.float32, shape=(5, 7, 17))
        x = base.transpose(0, 1)
    _, y = _inputs(name, torch.float32, shape=tuple(x.shape), seed=1)
    assert not x.is_contiguous()
    loss = mlloss.get(name, backend="torch")
    value, grad = loss.value_and_grad(x, y)
    expected_value, expected_grad = loss.value_and_grad(x.contiguous(), y)
    _close(value, expected_value, 1e-6)
    _close(grad, expected_grad, 1e-6)


def test_multilabel_hinge_of_a_permuted_batch_through_get():
    """A (time, batch, classes) tensor permuted to (batch, time, classes), as sequence models
    hand it over: the value and gradient equal those of its contiguous copy. (The packed keys
    once wrote this gradient into a reshaped copy of a strided buffer, and returned the
    buffer unwritten.)"""
    g = torch.Generator().manual_seed(12)
    x = torch.randn(7, 5, 40, generator=g).transpose(0, 1)
    y = (torch.rand(5, 7, 40, generator=g) < 0.3).float()
    assert not x.is_contiguous()
    loss = mlloss.get("multilabel_hinge", backend="torch")
    results = []
    for xs in (x, x.contiguous()):
        leaf = xs.detach().requires_grad_(True)
        value = loss(leaf, y)
        value.backward()
        results.append((value.detach(), leaf.grad))
    (value, grad), (expected_value, expected_grad) = results
    assert torch.equal(value, expected_value)
    assert torch.equal(grad, expected_grad)


def test_multilabel_hinge_packed_keys_take_float32_on_the_cpu(monkeypatch):
    """float32 on the CPU (and half precision, computed in float32) runs the packed keys;
    a wrong count there would show against the formula in test_kernel_equals_formula."""
    from mlloss.backends import torch_kernels

    taken = []
    original = torch_kernels._multilabel_hinge_packed
    monkeypatch.setattr(
        torch_kernels,
        "_multilabel_hinge_packed",
        lambda *a, **k: taken.append(a[0].dtype) or original(*a, **k),
    )
    loss = mlloss.get("multilabel_hinge", backend="torch")
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        x, y = _inputs("multilabel_hinge", dtype)
        loss.value_and_grad(x, y)
    assert taken == [torch.float32, torch.float32]


def _two_way_paths(x, y, monkeypatch, shared=True):
    """two_way's (value, gradient) through the kernel, with the batch's shared shift
    allowed or refused, and how many calls the shared shift took."""
    from mlloss.backends import torch_kernels

    taken = []
    original = torch_kernels._two_way_shared

    def spied(*args, **kwargs):
        found = original(*args, **kwargs) if shared else None
        taken.append(found is not None)
        return found

    monkeypatch.setattr(torch_kernels, "_two_way_shared", spied)
    try:
        value, grad = mlloss.get("two_way", backend="torch").value_and_grad(x, y)
    finally:
        monkeypatch.undo()
    return value, grad, taken


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_two_way_shared_shift_equals_each_slices_own(dtype, monkeypatch):
    """On ordinary logits the batch's shared shift is taken and gives the per-slice
    shifts' value and gradient to rounding."""
    x, y = _inputs("two_way", dtype, shape=(300, 40))
    value, grad, taken = _two_way_paths(x, y, monkeypatch)
    value_s, grad_s, refused = _two_way_paths(x, y, monkeypatch, shared=False)
    assert taken == [True] and refused == [False]
    _close(value, value_s, 8 * torch.finfo(dtype).eps)
    _close(grad, grad_s, 8 * torch.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_two_way_shared_shift_steps_aside_where_it_would_underflow(dtype, monkeypatch):
    """A row whose negatives lie far below the batch's largest negative (every e^(z - m)
    of them below the smallest normal number) and whose positives lie further below still
    (a badly ranked row: L about 50, its loss and its negatives' gradients far from 0)
    would lose its negatives' sum to underflow with the shared shift: the kernel takes
    each slice's own shift there, and equals the formula."""
    x, y = _inputs("two_way", dtype, shape=(60, 30))
    far = 900.0 if dtype == torch.float64 else 100.0
    y[5] = 0.0
    y[5, :4] = 1.0
    x[5] = torch.where(y[5] > 0, -far - 50.0, -far) + x[5] / 10
    value, grad, taken = _two_way_paths(x, y, monkeypatch)
    assert taken == [False]
    formula = mlloss.get("two_way", backend="torch", fused=False)
    value_f, grad_f = formula.value_and_grad(x, y)
    _close(value, value_f, RTOL[dtype])
    _close(grad, grad_f, RTOL[dtype])
    assert bool(torch.isfinite(grad).all())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_two_way_shared_shift_block_by_block(dtype, monkeypatch):
    """A batch of at least two blocks runs block by block of rows (here blocks of 12 rows,
    the last one shorter; the first block holds no negative and the second no positive,
    so each set's largest z comes from other blocks): the same value and gradient as the
    whole batch at once, and as the formula."""
    from mlloss.backends import torch_kernels

    x, y = _inputs("two_way", dtype, shape=(100, 40))
    y[:12], y[12:24] = 1.0, 0.0
    whole = _two_way_paths(x, y, monkeypatch)
    monkeypatch.setattr(torch_kernels, "_BLOCK_ENTRIES", 12 * 40)
    value, grad, taken = _two_way_paths(x, y, monkeypatch)
    assert taken == [True]
    _close(value, whole[0], 8 * torch.finfo(dtype).eps)
    _close(grad, whole[1], 8 * torch.finfo(dtype).eps)
    value_f, grad_f = mlloss.get("two_way", backend="torch", fused=False).value_and_grad(x, y)
    _close(value, value_f, RTOL[dtype])
    _close(grad, grad_f, RTOL[dtype])


def _fused_with_logs_counted(name, x, y, monkeypatch, **params):
    """(value, gradient, calls of torch.log) of the torch kernel's fused form, scale 0.5: a
    kernel that takes one log an entry takes it as log_() of a lerp, not torch.log."""
    from mlloss.backends import torch_kernels

    calls = []
    original = torch.log

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    p = dict(mlloss.get(name, **params).params)
    monkeypatch.setattr(torch, "log", counted)
    try:
        total, _, grad = torch_kernels.KERNELS[name].fused(x, y, p, 0.5, out=torch.empty_like(x))
    finally:
        monkeypatch.setattr(torch, "log", original)
    return total, grad, len(calls)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "name, params",
    [
        ("asl", {}),
        ("asl", {"clip": 0.1, "gamma_neg": 1.0}),
        ("asl", {"gamma_neg": 2.5}),
        ("bce", {}),
        ("bce", {"eps": 1e-3}),
    ],
)
def test_hard_labels_take_one_log_with_the_same_bits(dtype, name, params, monkeypatch):
    """On the CPU, asl's and bce's labels in {0, 1} take each entry's one log (of the lerp
    of both arguments by the label): the same value and gradient, to the bit, as both logs
    mixed by lerp, where the check, made to fail here, sends them (asl's second log is
    torch.log(p), bce's both); soft labels, and bce's log floor, keep both logs."""
    from mlloss.backends import torch_kernels

    both_logs = {"asl": 1, "bce": 2}[name]
    x, y = _inputs(name, dtype, shape=(60, 23))
    value, grad, logs = _fused_with_logs_counted(name, x, y, monkeypatch, **params)
    assert logs == 0
    binary = torch_kernels._binary
    monkeypatch.setattr(torch_kernels, "_binary", lambda a, b: binary(a, b) & False)
    value_g, grad_g, logs_g = _fused_with_logs_counted(name, x, y, monkeypatch, **params)
    assert logs_g == both_logs
    assert float(value) == float(value_g) and torch.equal(grad, grad_g)
    monkeypatch.setattr(torch_kernels, "_binary", binary)
    soft = _inputs(name, dtype, soft=True, shape=(60, 23))
    assert _fused_with_logs_counted(name, *soft, monkeypatch, **params)[2] == both_logs
    if name == "bce":
        floored = _fused_with_logs_counted(name, x, y, monkeypatch, **params, log_floor=-100.0)
        assert floored[2] == both_logs
