"""Fused eager kernels for every loss but partition on torch, proved equal to their specs.

Eager torch runs every operation of a spec's formula as a kernel of its own (a focal loss is
dozens of passes over the logits, and torch's CPU kernels are slow on logs of 0 and on
masks: docs/design.md). For each loss (partition's count head aside), this module computes
the same value and gradient in a handful of passes: the reduction folded into a dot
product, the gradient's scale folded into its last multiply, and nothing kept for the
backward but the gradient (the logits' bytes). The spec stays the definition: a kernel is used
only where it computes exactly what the spec says, and every result it gives is checked by
the conformance suite through ``mlloss.get`` like any other.

A kernel covers the common case, and says so by asking for a fallback otherwise:

- it runs only eagerly (not inside ``torch.compile``, where the spec's formula compiles into
  one fused kernel anyway, nor on functorch's wrapped tensors), for ``"mean"`` and ``"sum"``,
  for the parameter values listed in its ``supports``;
- each call checks that the targets are in the kernel's domain (no missing labels, class
  indices in range: one reduction, folded into the read below; sigmoid_bce's and focal's own
  pass over y - y^2 tells it too; class indices are read before any indexing), which stands
  for the caller's validation (it runs only when the kernel declines a call), and, in the
  one read, that the result is finite and the kernel's own checks hold (0/1 labels for focal,
  logits within asl's log range, a softmax within the normal range): the checks fold into
  the value (NaN where one fails), so that one read of it tells all (sigmoid_bce reads its
  labels' check and its value together; on a GPU every read waits for the device, so an
  ordinary call reads once). A NaN or infinite logit
  makes the result non-finite, so those calls go through the spec's formula with its
  non-finite policy, as does an empty batch.

Each kernel is a ``forward(x, y, p) -> (sum of the unreduced values, checks)`` (``checks``:
0-d boolean tensors, or a bool where the kernel read its own result already), used when the
logits need no gradient, and a ``fused(x, y, p, scale, out=None) -> (sum, checks, scale *
d sum / d x)`` (the gradient written into ``out`` when given), used when they do, both in the
compute dtype (float32 for half precision inputs): sigmoid_bce, focal, asl and bce share
their transcendentals between value and gradient, the cross-entropies and poly1 their
softmax, and the backward keeps only the gradient (the logits' bytes) and multiplies it by
g. On the CPU a large batch runs through ``fused`` block by block of rows (``_blocks``), so
that a block's temporaries stay in the cache. Temporaries that die within a call come from
``_scratch`` on the CPU (see the comment there).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from mlloss.backends import hinge_rows
from mlloss.backends.torch import ops
from mlloss.losses.binary import smooth_binary

Forward = Callable[..., tuple[torch.Tensor, Any]]
Fused = Callable[..., tuple[torch.Tensor, Any, torch.Tensor | None]]

# the smallest logit whose sigmoid is still a normal number, with a margin: below it log(p)
# of a subnormal p loses digits, and a call falls back to the spec's log_sigmoid
_LOG_SIGMOID_SAFE = {torch.float32: -80.0, torch.float64: -700.0}


@dataclass(frozen=True)
class Kernel:
    """``forward(x, y, p) -> (sum of the unreduced values, checks)`` and ``fused(x, y, p,
    scale, out=None) -> (sum, checks, scale * d sum / d x)``, in the compute dtype."""

    forward: Forward
    # the value and the gradient from their shared temporaries (the gradient into ``out``
    # when given; None with checks False when the kernel declined), used when the logits need
    # a gradient; the backward then only multiplies it by the upstream gradient
    fused: Fused
    supports: Callable[[Mapping[str, Any]], bool]
    per_sample_mean: bool = False  # multilabel_soft_margin: each sample's mean over classes
    labels: str = "unit"  # "unit": multi-hot in [0, 1]; "index": class indices in [0, C)
    # each row's value depends on its row alone (so a batch may run block by block of rows)
    rows_apart: bool = True
    # the kernel works through a large batch in blocks of rows itself (multilabel_hinge's
    # float32 rows, shared among threads by backends/hinge_rows.py): never tiled here
    blocks_itself: bool = False
    # forward checks the targets' domain itself (among its checks): no separate pass first
    own_domain: bool = False


# Every large temporary costs a fresh allocation on the CPU: glibc hands a freed block of
# megabytes back to the system and faults its pages in anew on the next call, which at
# 4096x1000 float32 costs more (about 3 ms a buffer) than a sigmoid. So the kernels write into
# the temporaries they already have wherever they can, and the fused kernels take their
# temporaries (never what they return or keep) from a per-thread scratch of the call's shape.


class _Scratch(threading.local):
    key: torch.dtype | None = None
    buffers: list[torch.Tensor]
    views: dict[tuple[int, ...], list[torch.Tensor]]  # of the buffers, by shape

    def __init__(self) -> None:
        self.buffers, self.views = [], {}


_SCRATCH = _Scratch()


def _scratch(like: torch.Tensor, count: int) -> list[torch.Tensor]:
    """``count`` tensors of ``like``'s shape, dtype and device for temporaries that die within
    the call. On the CPU they are views of the same flat buffers each call of this thread with
    this dtype makes (kept at the largest size asked since the dtype last changed: a tiled
    kernel's blocks, the last one smaller, share them); elsewhere they are fresh (CUDA's
    caching allocator already reuses its blocks)."""
    if like.device.type != "cpu":
        return [torch.empty(like.shape, dtype=like.dtype, device=like.device) for _ in range(count)]
    shape = tuple(like.shape)
    scratch = _SCRATCH
    views = scratch.views.get(shape) if scratch.key == like.dtype else None
    if views is not None and len(views) >= count:
        return views[:count]
    size = like.numel()
    if scratch.key != like.dtype or (scratch.buffers and scratch.buffers[0].numel() < size):
        scratch.key, scratch.buffers, scratch.views = like.dtype, [], {}
    capacity = scratch.buffers[0].numel() if scratch.buffers else size  # one for all
    while len(scratch.buffers) < count:
        # an ordinary tensor even when first made under inference_mode (an inference tensor
        # could not be written to outside it, by the next training step)
        with torch.inference_mode(False):
            scratch.buffers.append(torch.empty(capacity, dtype=like.dtype))
    if len(scratch.views) > 4:  # shapes come and go: keep the views of the recent ones
        scratch.views.clear()
    views = scratch.views[shape] = [b[:size].view(shape) for b in scratch.buffers]
    return views[:count]


def release_scratch() -> None:
    """Drop this thread's scratch buffers (they are made again on the next fused call)."""
    _SCRATCH.key, _SCRATCH.buffers, _SCRATCH.views = None, [], {}


def _flat_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.dot(a.reshape(-1), b.reshape(-1))


def _row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum_c a_c b_c for each row, shaped (..., 1). (A batched matmul of (1, C) by (C, 1),
    which needs no (N, C) temporary, took 5x as long on the CPU: 0.31 against 0.06 ms for
    524 x 1000 float32.)"""
    return torch.linalg.vecdot(a, b, dim=-1).unsqueeze(-1)


def _signed(x: torch.Tensor, y: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """z = x (1 - 2y): for a label in {0, 1}, the logit signed so that the entry's BCE is
    softplus(z) and its 1 - p_t is sigmoid(z). Exact: x - 2x = -x in floating point."""
    return torch.addcmul(x, x, y, value=-2.0, out=out)


def _all_zero(a: torch.Tensor) -> torch.Tensor:
    """Whether a (NaN-free) tensor is 0 everywhere, as a 0-d tensor: its min and max in one
    pass (several times cheaper than ``Tensor.any`` on floating-point tensors on the CPU)."""
    low, high = torch.aminmax(a)
    return (low == 0) & (high == 0)


def _power_(base: torch.Tensor, exponent: float) -> torch.Tensor:
    """base ** exponent, written over base. torch's CPU pow has fast paths for the exponents
    2 and 3 only; any other costs exp(e log b), about ten multiplies, so 4 (asl's default) is
    taken as a square squared."""
    if exponent == 4.0:
        return base.mul_(base).mul_(base)
    return base if exponent == 1.0 else base.pow_(exponent)


def _softplus_(z: torch.Tensor) -> torch.Tensor:
    """softplus(z) = log(1 + e^z), written over z. Above the threshold softplus returns z
    itself, which is then the correctly rounded value: e^-z < eps e^-4 there."""
    threshold = _SOFTPLUS_THRESHOLD.get(z.dtype)
    if threshold is None:  # float32 20, float64 41
        threshold = _SOFTPLUS_THRESHOLD.setdefault(
            z.dtype, math.ceil(-math.log(torch.finfo(z.dtype).eps)) + 4
        )
    return torch._C._nn.softplus(z, 1.0, threshold, out=z)


_SOFTPLUS_THRESHOLD: dict[torch.dtype, int] = {}


# sigmoid_bce, multilabel_soft_margin -----------------------------------------------------------


def _sigmoid_bce_value(x, y, p, grad=False, out=None):
    """(sum of y softplus(-x) + (1 - y) softplus(x), taken, scale-free gradient or None).

    For hard labels (0 or 1) the entry's loss is softplus(z), z = x (1 - 2y), exact with no
    cancellation, and its gradient is (1 - 2y) sigmoid(z), exact where sigmoid(x) - y is not
    (y = 1, large x). Whether every label is hard is read from y - y^2: 0 exactly at 0 and 1,
    positive inside (0, 1), negative outside [0, 1] and NaN for NaN, so its minimum and maximum
    say it. The hard path is computed first and read in the same device-to-host read as that
    minimum and maximum (on a GPU every read waits for the device), so an ordinary call reads
    once. ``taken`` is a bool: the kernel read its own result.

    Soft labels (label smoothing, distillation) take softplus(z) - (y - r) x with r = round(y),
    z = x (1 - 2r): the two terms cancel at most one bit; their gradient is sigmoid(x) - y.
    A label outside [0, 1] or NaN is the formula's call (taken False)."""
    y = smooth_binary(y, p.get("label_smoothing", 0.0))
    (buffer,) = _scratch(x, 1)
    torch.addcmul(y, y, y, value=-1.0, out=buffer)
    low, high = torch.aminmax(buffer)
    z = _signed(x, y, out=buffer)
    sigmoid = torch.sigmoid(z, out=out) if grad else None
    total = _softplus_(z).sum()
    low, high, value = torch.stack((low, high, total)).tolist()  # the one read
    if low == 0 and high == 0:
        if sigmoid is not None:  # (1 - 2y) sigmoid(z)
            sigmoid.addcmul_(sigmoid, y, value=-2.0)
        return total, math.isfinite(value), sigmoid
    if not low >= 0:  # a label outside [0, 1] (or NaN)
        return total, False, None
    torch.round(y, out=buffer).sub_(y)
    correction = _flat_dot(buffer, x)
    z = _signed(x, buffer.add_(y), out=buffer)
    total = _softplus_(z).sum() + correction
    gradient = torch.sigmoid(x, out=out).sub_(y) if grad else None
    return total, math.isfinite(total.item()), gradient


def _sigmoid_bce_forward(x, y, p):
    total, taken, _ = _sigmoid_bce_value(x, y, p)
    return total, taken


def _sigmoid_bce_fused(x, y, p, scale, out=None):
    total, taken, grad = _sigmoid_bce_value(x, y, p, grad=True, out=out)
    return total, taken, None if grad is None else grad.mul_(scale)


def _no_weights(p):
    return p.get("pos_weight") is None and p.get("class_weight") is None


# bce (probabilities) --------------------------------------------------------------------------


def _bce_logs(x, y, p, out=None):
    """(q, 1 - q, the summed value, checks, log q in ``out`` or None) with q = clip(x, eps,
    1 - eps), the two logs mixed by lerp (exact at y = 0 and y = 1, where one of them is
    taken as it is). Labels in {0, 1} (_hard_labels_read), without a log floor, take each
    entry's one log, of lerp(1 - q, q, y): the same bits, a log less."""
    hard = p["log_floor"] is None and _hard_labels_read(x, y)
    q, one_minus, logs = _scratch(x, 3)
    eps = p["eps"]
    torch.clamp(x, eps, 1.0 - eps, out=q)  # 1 - eps rounded as the formula's bound is
    torch.neg(q, out=one_minus).add_(1.0)
    if hard:
        total = -torch.lerp(one_minus, q, y, out=logs).log_().sum()
        return q, one_minus, total, [], None
    torch.log(one_minus, out=logs)
    log_q = torch.log(q, out=out)
    checks = []
    if p["log_floor"] is not None:  # taken only where no log reaches the floor (then flat)
        floor = p["log_floor"]
        checks = [(log_q.amin() > floor) & (logs.amin() > floor)]
    total = -torch.lerp(logs, log_q, y, out=logs).sum()
    return q, one_minus, total, checks, log_q


def _bce_forward(x, y, p):
    y = smooth_binary(y, p["label_smoothing"])
    _, _, total, checks, _ = _bce_logs(x, y, p)
    return total, checks


def _bce_fused(x, y, p, scale, out=None):
    """-(y log q + (1 - y) log(1 - q)) and scale (q - y) / (q (1 - q)) where the clip passes
    x (q == x), 0 outside, into the buffer of log q (read for the last time)."""
    y = smooth_binary(y, p["label_smoothing"])
    q, one_minus, total, checks, grad = _bce_logs(x, y, p, out)
    grad = torch.sub(q, y, out=_fresh(x, out) if grad is None else grad)
    grad.div_(one_minus.mul_(q))
    # the mask as numbers, in a buffer read for the last time above (a product with a bool
    # tensor is several times slower than with a float one on the CPU)
    return total, checks, grad.mul_(torch.eq(q, x, out=one_minus)).mul_(scale)


def _plain_bce(p):
    return p.get("class_weight") is None


# softmax_ce, sparse_softmax_ce, poly1 ---------------------------------------------------------


def _softmax_ce_coefficients(y, p, classes):
    """(a, s/C): the target distribution is q = a y + s/C, a per row ((1 - s) / the row's
    label count with normalize_targets, else 1 - s)."""
    s = p["label_smoothing"]
    a: Any = 1.0 - s
    if p["normalize_targets"]:
        a = (1.0 - s) / y.sum(dim=-1, keepdim=True).clamp_min_(1.0)
    return a, s / classes


def _softmax_ce_forward(x, y, p):
    (log_p,) = _scratch(x, 1)
    torch.ops.aten._log_softmax.out(x, -1, False, out=log_p)
    a, uniform = _softmax_ce_coefficients(y, p, x.shape[-1])
    # one coefficient for every row, or one per row (normalize_targets)
    total = -a * _flat_dot(y, log_p) if isinstance(a, float) else -(a * _row_dot(y, log_p)).sum()
    if uniform:
        total = total - uniform * log_p.sum()
    return total, []


def _softmax_ce_fused(x, y, p, scale, out=None):
    """The value (see _softmax_ce_forward) and scale * its gradient, softmax sum_c q_c - q,
    written over the softmax."""
    total, checks = _softmax_ce_forward(x, y, p)
    a, uniform = _softmax_ce_coefficients(y, p, x.shape[-1])
    mass = a * y.sum(dim=-1, keepdim=True) + uniform * x.shape[-1]
    grad = torch.ops.aten._softmax.out(x, -1, False, out=_fresh(x, out))
    grad.mul_(mass * scale)
    # a: one coefficient for every row, or one per row (normalize_targets)
    grad = (
        grad.add_(y, alpha=-a * scale)
        if isinstance(a, float)
        else grad.addcmul_(y, a, value=-scale)
    )
    return total, checks, grad.sub_(uniform * scale) if uniform else grad


def _fresh(like: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """``out``, or a new contiguous tensor of ``like``'s shape: ATen's ``_softmax.out`` (and
    numpy's rows) write a strided buffer as if it were contiguous, so a gradient that took a
    transposed batch's strides came out wrong."""
    return torch.empty_like(like, memory_format=torch.contiguous_format) if out is None else out


def _plain_softmax_ce(p):
    return p.get("class_weight") is None


def _sparse_value(x, y, p, softmax):
    """(sum of -(1 - s) log softmax(x)_y - (s/C) sum_c log softmax(x)_c, checks). Without
    smoothing, from ``softmax`` (computed by the caller, or here when None): a picked
    probability below the smallest normal number (a logit gap over about 87 in float32) would
    lose digits in its log, and the check sends that call to the formula's log_softmax."""
    s = p["label_smoothing"]
    index = y.unsqueeze(-1)
    if not s:
        softmax = torch.softmax(x, dim=-1) if softmax is None else softmax
        picked = softmax.gather(-1, index)
        normal = picked.amin() >= torch.finfo(x.dtype).tiny
        return -picked.log_().sum(), [normal]
    (log_p,) = _scratch(x, 1)
    torch.ops.aten._log_softmax.out(x, -1, False, out=log_p)
    total = -(1.0 - s) * log_p.gather(-1, index).sum() - (s / x.shape[-1]) * log_p.sum()
    return total, []


def _sparse_forward(x, y, p):
    return _sparse_value(x, y, p, None)


def _sparse_fused(x, y, p, scale, out=None):
    """The value (see _sparse_value) and scale * its gradient together, the gradient written
    over the softmax: softmax - (1 - s) onehot(y) - s/C, times the scale."""
    s = p["label_smoothing"]
    index = y.unsqueeze(-1)
    softmax = torch.ops.aten._softmax.out(x, -1, False, out=_fresh(x, out))
    total, checks = _sparse_value(x, y, p, softmax)
    grad = softmax.mul_(scale)
    at_label = torch.full(index.shape, -(1.0 - s) * scale, dtype=grad.dtype, device=grad.device)
    grad.scatter_add_(-1, index, at_label)
    return total, checks, grad.sub_(scale * (s / x.shape[-1])) if s else grad


def _poly1_forward(x, y, p):
    """cross-entropy + epsilon (sum_c y_c - sum_c y_c softmax_c), summed over the rows (the
    log-softmax becomes the softmax in place)."""
    (log_p,) = _scratch(x, 1)
    torch.ops.aten._log_softmax.out(x, -1, False, out=log_p)
    cross_entropy = -_flat_dot(y, log_p)
    softmax = log_p.exp_()
    p_t = _flat_dot(y, softmax)
    return cross_entropy + p["epsilon"] * (y.sum() - p_t), []


def _poly1_fused(x, y, p, scale, out=None):
    """The value (see _poly1_forward) and scale * its gradient together: softmax (n + eps
    p_t - eps y) - y per row (n = sum_c y_c, p_t = sum_c y_c softmax_c), from the forward's
    softmax (in the scratch)."""
    eps = p["epsilon"]
    (log_p,) = _scratch(x, 1)
    torch.ops.aten._log_softmax.out(x, -1, False, out=log_p)
    cross_entropy = -_flat_dot(y, log_p)
    softmax = log_p.exp_()
    p_t = _row_dot(softmax, y)
    total = cross_entropy + eps * (y.sum() - p_t.sum())
    row = y.sum(dim=-1, keepdim=True).add_(p_t, alpha=eps)
    grad = torch.add(row, y, alpha=-eps, out=_fresh(x, out))
    return total, [], grad.mul_(softmax).sub_(y).mul_(scale)


# focal, asl -----------------------------------------------------------------------------------


def _focal_forward(x, y, p):
    """alpha_t sigmoid(z)^gamma softplus(z), z = x (1 - 2y), for labels in {0, 1}: the check
    (y - y^2 is 0 exactly at 0 and 1) is one of the call's checks, its temporary then z's."""
    buffer = torch.addcmul(y, y, y, value=-1.0)
    binary = _all_zero(buffer)
    z = _signed(x, y, out=buffer)
    gamma, alpha = p["gamma"], p["alpha"]
    weight = torch.sigmoid(z).pow_(gamma) if gamma != 0.0 else None
    loss = _softplus_(z)
    if alpha is not None:  # alpha_t = (1 - alpha) + (2 alpha - 1) y
        alpha_t = y.mul(2.0 * alpha - 1.0).add_(1.0 - alpha)
        weight = alpha_t if weight is None else weight.mul_(alpha_t)
    return (loss.sum() if weight is None else _flat_dot(loss, weight)), [binary]


def _times_alpha_t_(w: torch.Tensor, y: torch.Tensor, alpha: float | None) -> float:
    """w alpha_t = c w (1 + b y) for labels in {0, 1}, written over w; returns c. No
    difference of sums: every term stays non-negative."""
    if alpha is None:
        return 1.0
    if alpha == 1.0:  # alpha_t = y
        w.mul_(y)
        return 1.0
    w.addcmul_(w, y, value=(2.0 * alpha - 1.0) / (1.0 - alpha))
    return 1.0 - alpha


def _focusing(z, gamma, weight, out=None):
    """The focal family's shared core at a signed logit z, whose entry's loss is
    s^gamma softplus(z), s = sigmoid(z): (softplus(z) written over z, s^gamma in ``weight``
    (None when gamma is 0), and with ``out`` the loss's derivative in z, s^gamma [gamma
    sigmoid(-z) softplus(z) + s], in ``out``; else None). Two sigmoids and a softplus in all,
    where a forward and a backward apart compute three and two."""
    if gamma == 0.0:
        inner = None if out is None else torch.sigmoid(z, out=out)
        return _softplus_(z), None, inner
    inner = None if out is None else torch.neg(z, out=out).sigmoid_()  # sigmoid(-z), exact
    torch.sigmoid(z, out=weight)
    loss = _softplus_(z)
    if inner is not None:  # gamma sigmoid(-z) softplus(z) + s, then times s^gamma
        torch.addcmul(weight, inner, loss, value=gamma, out=inner)
    _power_(weight, gamma)
    if inner is not None:
        inner.mul_(weight)
    return loss, weight, inner


def _focal_fused(x, y, p, scale, out=None):
    """The value and scale * its gradient together: alpha_t s^gamma softplus(z) and
    (1 - 2y) alpha_t s^gamma [gamma sigmoid(-z) softplus(z) + s], s = sigmoid(z), sharing z,
    both sigmoids and the softplus (see _focusing), in three logits-sized buffers."""
    binary = _binary(x, y)
    buffer, weight = _scratch(x, 2)
    z = _signed(x, y, out=buffer)
    gamma, alpha = p["gamma"], p["alpha"]
    loss, weight, grad = _focusing(z, gamma, weight, _fresh(x, out))
    if weight is None:
        total = _times_alpha_t_(loss, y, alpha) * loss.sum()
    else:
        total = _times_alpha_t_(weight, y, alpha) * _flat_dot(loss, weight)
    # (1 - 2y) alpha_t times the scale, into the softplus's buffer (read for the last time):
    # 1 - 2y without alpha, (1 - alpha) - y with it (y in {0, 1})
    a, b = (1.0, -2.0) if alpha is None else (1.0 - alpha, -1.0)
    return total, [binary], grad.mul_(torch.mul(y, b * scale, out=loss).add_(a * scale))


def _focal_supported(p):
    return p.get("label_smoothing", 0.0) == 0.0


def _asl_forward(x, y, p):
    """Positives -log p (gamma_pos = 0), negatives p_m^gamma_neg (-log(1 - p_m)), chosen per
    entry by lerp, which is exact at y = 0 and y = 1 (the loss is linear in y)."""
    q = torch.sigmoid(x)
    p_m = (q - p["clip"]).clamp_min_(0.0)
    negative = torch.log1p(torch.neg(p_m)).neg_().mul_(p_m.pow_(p["gamma_neg"]))
    positive = q.log_().neg_()
    safe = x.amin() >= _LOG_SIGMOID_SAFE[x.dtype]
    return torch.lerp(negative, positive, y, out=negative).sum(), [safe]


def _asl_fused(x, y, p, scale, out=None):
    """The value (see _asl_forward) and scale * its gradient together, from one sigmoid, the
    logs log(1 - p_m) and log p, and p_m^(gamma_neg - 1), in five logits-sized buffers:
    positives p - 1; negatives d negative / dx = p (1 - p) p_m^(g - 1) [p_m / (1 - p_m) +
    g (-log(1 - p_m))], which is 0 where p <= clip (p_m = 0, g >= 1). Labels in {0, 1}
    (_hard_labels_read) take one log an entry, of lerp(1 - p_m, p, y) (exact at 0 and 1):
    the log each entry's own label needs, so the same bits for a log less (about 0.27 ms per
    block of 2^19 entries); soft labels take both logs of every entry."""
    hard = _hard_labels_read(x, y)
    gamma_neg = p["gamma_neg"]
    q, p_m, logs, negative = _scratch(x, 4)
    torch.sigmoid(x, out=q)
    torch.sub(q, p["clip"], out=p_m).clamp_min_(0.0)
    torch.neg(p_m, out=logs).add_(1.0)  # 1 - p_m (rsub takes no out=)
    inner = torch.div(p_m, logs, out=out)
    if hard:  # log(1 - p_m) at a negative, log p at a positive
        torch.lerp(logs, q, y, out=logs)
    logs.log_()  # log(1 - p_m) <= 0 (where the label is 0)
    inner.add_(logs, alpha=-gamma_neg)  # a positive's is replaced below
    torch.mul(logs, p_m, out=negative)  # p_m log(1 - p_m): a negative's value negated
    # p_m^(g - 1) over p_m; at g = 1 that is 1 where p_m > 0 and 0 at p_m = 0 (its sign)
    power = p_m.sign_() if gamma_neg == 1.0 else _power_(p_m, gamma_neg - 1.0)
    negative.mul_(power)
    inner.mul_(power).mul_(torch.addcmul(q, q, q, value=-1.0, out=power))
    safe = x.amin() >= _LOG_SIGMOID_SAFE[x.dtype]
    positive = logs if hard else torch.log(q, out=power)  # log p: a positive's value negated
    # both branches negated, and their lerp: exactly the lerp of the values, negated
    total = torch.lerp(negative, positive, y, out=negative).sum().neg_()
    grad = torch.lerp(inner, q.sub_(1.0), y, out=inner).mul_(scale)
    return total, [safe], grad


def _asl_supported(p):
    # gamma_neg >= 1 keeps p_m^(gamma_neg - 1) finite at p_m = 0
    return (
        p["gamma_pos"] == 0.0
        and p["gamma_neg"] >= 1.0
        and p["clip"] > 0.0
        and not p["stop_grad_weight"]
    )


# poly1_focal, splc, hill, bce_focal ------------------------------------------------------------


def _binary(x, y):
    """Whether every label is 0 or 1 (y - y^2 is 0 exactly there), as a 0-d tensor."""
    (buffer,) = _scratch(x, 1)
    return _all_zero(torch.addcmul(y, y, y, value=-1.0, out=buffer))


def _hard_labels_read(x, y):
    """Whether every label is 0 or 1, read now, for a kernel that then computes only what
    each entry's own label needs (asl and bce one log an entry, hill the sigmoids of one
    argument): on the CPU only, where a read waits for nothing; elsewhere False, so that the
    kernel keeps its one read."""
    return x.device.type == "cpu" and bool(_binary(x, y))


def _forward_of(value: Callable[..., Any]) -> Forward:
    """A kernel's forward from its ``value(x, y, p, out=None) -> (sum, checks, grad)``."""

    def forward(x, y, p):
        total, checks, _ = value(x, y, p)
        return total, checks

    return forward


def _fused_of(value: Callable[..., Any]) -> Fused:
    """A kernel's fused form from the same ``value``, which returns the scale-free gradient
    and the factor to scale it by (alpha's constant, or 1) when it writes one."""

    def fused(x, y, p, scale, out=None):
        total, checks, found = value(x, y, p, out=_fresh(x, out))
        if found is None:  # declined
            return total, checks, None
        grad, factor = found
        return total, checks, grad.mul_(factor * scale)

    return fused


def _poly1_focal_value(x, y, p, out=None):
    """Labels in {0, 1}: alpha_t s^g softplus(z) + eps s^(g + 1), s = sigmoid(z),
    z = x (1 - 2y); with ``out``, its derivative (1 - 2y) s^g [alpha_t (s + g sigmoid(-z)
    softplus(z)) + eps (g + 1) s sigmoid(-z)] (alpha_t = 1 without alpha)."""
    eps, gamma, alpha = p["epsilon"], p["gamma"], p["alpha"]
    binary = _binary(x, y)
    buffers = _scratch(x, 3 if alpha is None else 4)
    z, s, spare = buffers[:3]
    _signed(x, y, out=z)
    torch.sigmoid(z, out=s)
    grad = None if out is None else torch.neg(z, out=out).sigmoid_()  # sigmoid(-z)
    loss = _softplus_(z)
    alpha_t = None
    if alpha is not None:  # alpha_t = (1 - alpha) + (2 alpha - 1) y
        alpha_t = torch.mul(y, 2.0 * alpha - 1.0, out=buffers[3]).add_(1.0 - alpha)
        loss.mul_(alpha_t)
    if grad is not None:
        # sigmoid(-z) [g alpha_t softplus(z) + eps (g + 1) s] + alpha_t s
        grad.mul_(torch.mul(loss, gamma, out=spare).add_(s, alpha=eps * (gamma + 1.0)))
        if alpha_t is None:
            grad.add_(s)
        else:
            grad.addcmul_(alpha_t, s)
    loss.add_(s, alpha=eps)  # alpha_t softplus(z) + eps s
    weight = _power_(s, gamma)
    total = _flat_dot(loss, weight)
    if grad is None:
        return total, [binary], None
    grad.mul_(weight).mul_(torch.mul(y, -2.0, out=spare).add_(1.0))
    return total, [binary], (grad, 1.0)


def _splc_value(x, y, p, out=None):
    """Labels in {0, 1}: with z = x - m y, the pseudo-label t = 1 where y = 1 or sigmoid(z) >
    tau, else 0 (a constant), and w = z (1 - 2t), the entry's loss is focal's at w:
    s^g softplus(w), s = sigmoid(w), its derivative (1 - 2t) times the core's (_focusing)."""
    gamma, tau = p["gamma"], p["tau"]
    binary = _binary(x, y)
    w, target, weight = _scratch(x, 3)
    torch.add(x, y, alpha=-p["margin"], out=w)
    # 1 where confident (tau rounded to the compute dtype, as in the formula's comparison)
    torch.sigmoid(w, out=target).gt_(tau)
    target.addcmul_(target, y, value=-1.0).add_(y)  # y = 1, or confident where y = 0
    _signed(w, target, out=w)
    loss, weight, grad = _focusing(w, gamma, weight, out)
    total = loss.sum() if weight is None else _flat_dot(loss, weight)
    if grad is None:
        return total, [binary], None
    return total, [binary], (grad.mul_(torch.mul(target, -2.0, out=loss).add_(1.0)), 1.0)


def _hill_value(x, y, p, out=None):
    """Positives s^g softplus(v) at v = m - x, s = sigmoid(v) (the focal core at v, its
    derivative in x the core's negated); negatives (lambda - q) q^2, q = sigmoid(x), its
    derivative q^2 sigmoid(-x) (2 lambda - 3 q); mixed per entry by lerp (exact at y = 0 and
    y = 1, and the loss is linear in y). Labels in {0, 1} (_hard_labels_read) take
    :func:`_hill_hard`."""
    if _hard_labels_read(x, y):
        return _hill_hard(x, y, p, out)
    lamb, gamma = p["lamb"], p["gamma"]
    v, square, q, rest = _scratch(x, 4)
    torch.neg(x, out=v).add_(p["margin"])
    positive, weight, d_positive = _focusing(v, gamma, square, out)
    if weight is not None:  # s^g in square's buffer, read here for the last time
        positive.mul_(weight)
    torch.sigmoid(x, out=q)
    torch.neg(q, out=rest).add_(lamb)  # lambda - q
    torch.mul(q, q, out=square)
    if d_positive is not None:
        d_negative = torch.neg(x, out=q).sigmoid_().mul_(square)  # q^2 sigmoid(-x)
    negative = square.mul_(rest)
    total = torch.lerp(negative, positive, y, out=negative).sum()
    if d_positive is None:
        return total, [], None
    d_negative.mul_(rest.mul_(3.0).sub_(lamb))  # 2 lambda - 3q = 3 (lambda - q) - lambda
    d_negative.neg_()
    return total, [], (torch.lerp(d_negative, d_positive, y, out=d_positive).neg_(), 1.0)


def _hill_hard(x, y, p, out=None):
    """:func:`_hill_value` for labels in {0, 1}: each entry needs the sigmoids of one argument
    only, w = v = m - x at a positive and w = x at a negative, so one sigmoid(w), one
    sigmoid(-w) and one softplus(w) serve both (the soft form takes both sigmoids at both
    arguments: 1.4-1.55 ms against 1.6-1.75 ms a block of 2^19 entries)."""
    lamb, gamma = p["lamb"], p["gamma"]
    w, s, square, rest, spare, *power = _scratch(x, 5 if gamma in (0.0, 2.0) else 6)
    _signed(x, y, out=w).add_(y, alpha=p["margin"])  # -x + m (as m - x rounds) or x
    torch.sigmoid(w, out=s)  # sigmoid(v) at a positive, q at a negative
    r = None if out is None else torch.neg(w, out=out).sigmoid_()
    softplus = _softplus_(w)
    torch.mul(s, s, out=square)  # q^2 at a negative; s^2 at a positive
    # a positive's s^gamma: 1 at gamma 0, s^2 in square's buffer at 2, else a buffer of its own
    if gamma == 0.0:
        weight = None
    elif gamma == 2.0:
        weight = square
    else:
        weight = _power_(power[0].copy_(s), gamma)
    torch.neg(s, out=rest).add_(lamb)  # lambda - q
    if r is not None:
        # a negative's q^2 sigmoid(-x) (2 lambda - 3 q), 2 lambda - 3 q as 3 (lambda - q) -
        # lambda, as the soft form computes it
        d_negative = torch.mul(rest, 3.0, out=spare).sub_(lamb).mul_(r).mul_(square)
        # a positive's s^g [g sigmoid(-v) softplus(v) + s], over r, negated (d/dx = -d/dv)
        d_positive = torch.addcmul(s, r, softplus, value=gamma, out=r)
        if weight is not None:
            d_positive.mul_(weight)
        grad = torch.lerp(d_negative, d_positive.neg_(), y, out=d_positive)
    positive = softplus if weight is None else softplus.mul_(weight)
    negative = rest.mul_(square)
    total = torch.lerp(negative, positive, y, out=negative).sum()
    return total, [], None if r is None else (grad, 1.0)


def _bce_focal_value(x, y, p, out=None):
    """Probabilities x in [0, 1] and labels in {0, 1}: alpha_t w^g (-log q_t) with
    w = 1 - p_t = lerp(x, 1 - x, y) and q_t = lerp(1 - q, q, y), q = clip(x, eps, 1 - eps);
    its derivative alpha_t w^(g - 1) [g (1 - 2y) (-log q_t) + w (1 - 2y) / q_t [q == x]]
    (the clip passes no gradient outside its interval)."""
    gamma, alpha, eps = p["gamma"], p["alpha"], p["eps"]
    binary = _binary(x, y)
    low, high = torch.aminmax(x)
    unit = (low >= 0) & (high <= 1)  # else the focusing factor's clip at [0, 1] acts too
    q, w, spare = _scratch(x, 3)
    torch.clamp(x, eps, 1.0 - eps, out=q)
    grad = None
    if out is not None:  # (1 - 2y) / q_t where the clip passes x
        grad = torch.eq(q, x, out=out)
    torch.neg(q, out=w).add_(1.0)
    q_t = torch.lerp(w, q, y, out=q)
    if grad is not None:
        grad.mul_(torch.mul(y, -2.0, out=w).add_(1.0)).div_(q_t)
    bce = q_t.log_().neg_()
    torch.neg(x, out=w).add_(1.0)
    torch.lerp(x, w, y, out=w)  # w = 1 - p_t
    if grad is not None and gamma != 0.0:
        # g (1 - 2y) (-log q_t) + w d_bce, then times w^(g - 1)
        grad.mul_(w).add_(torch.mul(y, -2.0 * gamma, out=spare).add_(gamma).mul_(bce))
        if gamma != 1.0:
            grad.mul_(torch.pow(w, gamma - 1.0, out=spare))
    if gamma == 0.0:
        factor = _times_alpha_t_(bce, y, alpha)
        total = factor * bce.sum()
    else:
        factor = _times_alpha_t_(_power_(w, gamma), y, alpha)
        total = factor * _flat_dot(bce, w)
    checks = [binary, unit]
    if grad is None:
        return total, checks, None
    if alpha is not None and alpha != 1.0:  # alpha_t / (1 - alpha) = 1 + b y
        grad.addcmul_(grad, y, value=(2.0 * alpha - 1.0) / (1.0 - alpha))
    elif alpha == 1.0:
        grad.mul_(y)
    return total, checks, (grad, factor)


def _bce_focal_supported(p):
    # gamma in (0, 1) has an infinite derivative at w = 0
    return p["label_smoothing"] == 0.0 and (p["gamma"] == 0.0 or p["gamma"] >= 1.0)


# zlpr, lsep, bp_mll ----------------------------------------------------------------------------


def _set_shifts(z, y, other, dim):
    """Along ``dim`` (kept; a tuple of every axis for the whole tensor), each slice's largest
    z among its negatives and among its positives, m_n and m_p (the slice's smallest z for a
    set it lacks), for labels in {0, 1}, from exact products with the labels (``other`` is
    overwritten); and whether every z is finite, as a 0-d tensor."""
    smallest = z.amin(dim=dim, keepdim=True)
    # the negatives' z, the smallest at positives: z - z y + y smallest
    stand_in = torch.addcmul(z, z, y, value=-1.0, out=other).addcmul_(y, smallest)
    m_n = stand_in.amax(dim=dim, keepdim=True)
    # the positives' z (to rounding), the smallest at negatives: z + smallest - the above
    m_p = torch.sub(z, stand_in, out=other).add_(smallest).amax(dim=dim, keepdim=True)
    return m_n, m_p, torch.isfinite(smallest.sum() + m_n.sum() + m_p.sum())


def _set_sums(z, y, other, dim=-1):
    """For labels in {0, 1} and z (in a scratch buffer, overwritten): along ``dim``, each
    slice's shifts m_n and m_p, the largest z among its negatives and among its positives
    (to rounding: any shift near the largest keeps exp(z - m) from overflow and the largest
    term from underflow; where a set is empty, the slice's smallest z); e = exp(z - m) with
    the shift of each entry's set, split into the negatives' (in ``other``, 0 at positives)
    and the positives' (in z's buffer, 0 at negatives) by exact products; each set's sum of
    it (S_n, S_p: at least about 1, 0 for an empty set), each kept along ``dim``; and
    whether every z is finite (a NaN or an infinity makes a slice's smallest or largest z
    non-finite). Every broadcast of a slice's value is an addcmul or a sub (torch's CPU lerp
    and where are several times slower with a broadcast operand)."""
    m_n, m_p, finite = _set_shifts(z, y, other, dim)
    z.sub_(m_n).addcmul_(y, m_n - m_p).exp_()  # the shift m_n + y (m_p - m_n)
    negatives = torch.addcmul(z, z, y, value=-1.0, out=other)  # e (1 - y), exact
    positives = z.sub_(negatives)  # e y, exact
    s_n = negatives.sum(dim=dim, keepdim=True)
    s_p = positives.sum(dim=dim, keepdim=True)
    return m_n, m_p, s_n, s_p, finite


def _ranking_value(row_parts):
    """A ranking kernel's value function from ``row_parts(m_n, m_p, s_n, s_p, y) -> (each
    row's value, f_n, f_p)``: with z = x (1 - 2y) (a negative's logit, a positive's
    negated), a negative's derivative is e^(z - m_n) f_n, a positive's -e^(z - m_p) f_p (see
    _set_sums)."""

    def value(x, y, p, out=None):
        binary = _binary(x, y)
        e, other = (_fresh(x, out), *_scratch(x, 1)) if out is not None else _scratch(x, 2)
        m_n, m_p, s_n, s_p, finite = _set_sums(_signed(x, y, out=e), y, other)
        rows, f_n, f_p = row_parts(m_n, m_p, s_n, s_p, y)
        total = rows.sum()
        if out is None:
            return total, [binary, finite], None
        grad = e.mul_(f_p.neg_()).add_(other.mul_(f_n))  # each entry has one nonzero term
        return total, [binary, finite], (grad, 1.0)

    return value


def _present(s: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` where the set whose sum is ``s`` has an entry, 0 where it is empty."""
    return torch.where(s > 0, value, 0.0)


def _zlpr_rows(m_n, m_p, s_n, s_p, y):
    """softplus(A_n) + softplus(A_p), A = m + log S = LSE of the set (-inf when empty); a
    negative's derivative e^(x - softplus(A_n)), so f = exp(m - softplus(A))."""
    a_n, a_p = m_n + s_n.log(), m_p + s_p.log()
    softplus_n, softplus_p = _softplus_(a_n), _softplus_(a_p)
    f_n = _present(s_n, torch.exp(m_n - softplus_n))
    f_p = _present(s_p, torch.exp(m_p - softplus_p))
    return softplus_n + softplus_p, f_n, f_p


def _lsep_rows(m_n, m_p, s_n, s_p, y):
    """softplus(L), L = A_n + A_p (LSE of the negatives' x plus that of the positives' -x);
    a negative's derivative sigmoid(L) e^(x - A_n), so f_n = sigmoid(L) / S_n; 0 for a row
    without a positive or without a negative."""
    both = (s_n > 0) & (s_p > 0)
    pairs = torch.where(both, m_n + m_p + (s_n * s_p).log(), -math.inf)
    f_n, f_p = _pair_factors(pairs, both, s_n, s_p)
    return _softplus_(pairs), f_n, f_p


def _pair_factors(pairs, both, s_n, s_p, count=1):
    """(f_n, f_p) of a softplus(L) over a pair of log-sum-exps (lsep, two_way): sigmoid(L) /
    (S count), 0 where a set is empty."""
    weight = torch.sigmoid(pairs).div_(count)
    return torch.where(both, weight / s_n, 0.0), torch.where(both, weight / s_p, 0.0)


def _bp_mll_rows(m_n, m_p, s_n, s_p, y):
    """exp(A_n + A_p) / (n_pos n_neg); a negative's derivative e^x e^(A_p) / norm, so
    f_n = exp(m_n + A_p - log norm); 0 for a row without a positive or without a
    negative."""
    positives = y.sum(dim=-1, keepdim=True)
    both = (s_n > 0) & (s_p > 0)
    norm = torch.where(both, positives * (y.shape[-1] - positives), 1.0).log_()
    a_n, a_p = m_n + s_n.log(), m_p + s_p.log()
    rows = torch.where(both, torch.exp(a_n + a_p - norm), 0.0)
    f_n = torch.where(both, torch.exp(m_n + a_p - norm), 0.0)
    f_p = torch.where(both, torch.exp(m_p + a_n - norm), 0.0)
    return rows, f_n, f_p


def _two_way_value(x, y, p, out=None):
    """The batch's value: for each axis (over samples for each class, then over classes for
    each sample), the mean over the slices with a positive of softplus(L), L = tn LSE_neg(x /
    tn) + tp LSE_pos(-x / tp) (-inf without a negative). With z = x / tn at negatives and
    -x / tp at positives, L = tn (m_n + log S_n) + tp (m_p + log S_p), and a negative's
    derivative is sigmoid(L) e^(z - m_n) / S_n, a positive's -sigmoid(L) e^(z - m_p) / S_p,
    over the axis's count of slices. On the CPU the shifts m are the batch's (one
    exponential serves both axes) where that loses no digit (_two_way_shared), else each
    slice's own."""
    if x.dim() != 2:  # a single sample is a batch of one: the formula's
        return x.new_zeros(()), False, None
    tp, tn = p["tp"], p["tn"]
    # the shared shift's bound is read before the gradient: on the CPU, where a read waits
    # for nothing (elsewhere the per-slice shifts keep the kernel's one read)
    shared = _two_way_shared(x, y, tp, tn, out) if x.device.type == "cpu" else None
    if shared is not None:
        total, checks, grad = shared
        return total, checks, None if out is None else (grad, 1.0)
    binary = _binary(x, y)
    z, other = _scratch(x, 2)
    total, checks = x.new_zeros(()), [binary]
    for dim in (0, -1):
        _two_way_z(x, y, tp, tn, z)
        m_n, m_p, s_n, s_p, finite = _set_sums(z, y, other, dim)
        checks.append(finite)
        has_positive = s_p > 0
        both = has_positive & (s_n > 0)
        pairs = torch.where(both, tn * (m_n + s_n.log()) + tp * (m_p + s_p.log()), -math.inf)
        count = has_positive.sum().clamp_min(1)
        total = total + _softplus_(pairs.clone()).sum() / count
        if out is None:
            continue
        f_n, f_p = _pair_factors(pairs, both, s_n, s_p, count)
        part = z.mul_(f_p.neg_()).add_(other.mul_(f_n))  # one nonzero term an entry
        if dim == 0:
            out.copy_(part)
        else:
            out.add_(part)
    return total, checks, None if out is None else (out, 1.0)


def _two_way_z(x, y, tp, tn, out):
    """z = x / tn at negatives, -x / tp at positives: x over the temperature signed by the
    label (tn - (tn + tp) y), into ``out``."""
    return torch.div(x, torch.mul(y, -(tn + tp), out=out).add_(tn), out=out)


def _two_way_shared(x, y, tp, tn, out=None):
    """two_way with each set's shift taken once for the whole batch (its largest z): e =
    e^(z - m) then serves the sums along both axes, and the gradient is e times each
    entry's row factor plus its column factor: one exponential and a few passes, where each
    slice's own shift needs a set of passes per axis. A batch of at least two blocks of
    2^19 entries runs block by block of rows, so that a block's temporaries stay in the
    cache: the largest z of each set first, then each block's e (kept in the gradient's
    buffer) and its row sums, its column sums added up, then each block's gradient.

    A shared shift can only lose digits to underflow: terms below the smallest normal
    number, up to a slice's length of them, against the slice's sum S. Where every
    slice's S is at least that smallest number times 2^30 times the longer axis, what is
    lost is below 2^-30 of S (and of every gradient entry's scale), so the result is the
    per-slice one to rounding; with a slice below it (one set's z spread over about 58
    units in float32, 700 in float64) the call returns None, for the per-slice shifts.
    Returns (value, checks, gradient or None): the checks (every label 0 or 1, every
    logit finite) are left for the kernel's read; the bound is read here."""
    rows, classes = x.shape
    step = rows if rows < 2 * max(1, _BLOCK_ENTRIES // classes) else _BLOCK_ENTRIES // classes
    blocks = [slice(start, start + step) for start in range(0, rows, step)]
    largest, checks = [], []
    grad = _fresh(x, out)
    for block in blocks:  # each set's largest z (-inf for a set the block lacks)
        xb, yb = x[block], y[block]
        checks.append(_binary(xb, yb))
        (other,) = _scratch(xb, 1)
        # z, kept in the gradient's buffer for the exponentials below
        z = _two_way_z(xb, yb, tp, tn, grad[block])
        m_n, m_p, finite = _set_shifts(z, yb, other, (0, 1))
        checks.append(finite)
        positives = yb.sum()
        present = torch.stack((positives < yb.numel(), positives > 0))
        largest.append(torch.where(present, torch.cat((m_n, m_p)).view(2), -math.inf))
    shifts = torch.stack(largest).amax(dim=0)
    # a set the batch lacks is never shifted (its entries do not exist): 0 stands in
    m_n, m_p = torch.where(shifts > -math.inf, shifts, 0.0).unbind()
    row_sums, column_sums = [], 0.0
    for block in blocks:  # each block's e (over its z), its row sums, its column sums added up
        xb, yb, e = x[block], y[block], grad[block]
        e.sub_(m_n).addcmul_(yb, m_n - m_p).exp_()
        negatives, positives = _scratch(xb, 2)
        torch.addcmul(e, e, yb, value=-1.0, out=negatives)  # e (1 - y), exact
        torch.mul(e, yb, out=positives)  # e y, exact
        sums = (negatives.sum(0), positives.sum(0), yb.sum(0))
        column_sums = sums if block.start == 0 else tuple(map(torch.add, column_sums, sums))
        row_sums.append(torch.stack((negatives.sum(-1), positives.sum(-1), yb.sum(-1)), -1))
    columns = [c.unsqueeze(0) for c in column_sums]  # each (1, C)
    rows_of = [r.unsqueeze(-1) for r in torch.cat(row_sums).unbind(-1)]  # each (N, 1)
    floor = torch.finfo(x.dtype).tiny * 2.0**30 * max(rows, classes)
    total, holds, factors = x.new_zeros(()), x.new_ones((), dtype=torch.bool), []
    for (s_n, s_p, positive_count), length in ((columns, rows), (rows_of, classes)):
        has_positive, has_negative = positive_count > 0, positive_count < length
        low = ((s_n < floor) & has_negative) | ((s_p < floor) & has_positive)
        holds = holds & ~low.any()
        both = has_positive & has_negative
        pairs = torch.where(both, tn * (m_n + s_n.log()) + tp * (m_p + s_p.log()), -math.inf)
        count = has_positive.sum().clamp_min(1)
        total = total + _softplus_(pairs.clone()).sum() / count
        factors.append(_pair_factors(pairs, both, s_n, s_p, count))
    ordinary = torch.stack(checks).all()
    # a NaN, an infinity or a soft label: taken here, and declined by the kernel's read
    if not bool(holds | ~ordinary):
        return None
    if out is None:
        return total, [ordinary], None
    (f_n_columns, f_p_columns), (f_n_rows, f_p_rows) = factors
    for block in blocks:  # e times the entry's factor: f_n (1 - y) - f_p y, exact
        yb, e = y[block], grad[block]
        f_n, f_p = _scratch(yb, 2)
        torch.add(f_n_rows[block], f_n_columns, out=f_n).addcmul_(f_n, yb, value=-1.0)
        f_n.addcmul_(torch.add(f_p_rows[block], f_p_columns, out=f_p), yb, value=-1.0)
        e.mul_(f_n)
    return total, [ordinary], grad


_zlpr_value = _ranking_value(_zlpr_rows)
_lsep_value = _ranking_value(_lsep_rows)
_bp_mll_value = _ranking_value(_bp_mll_rows)


# abs_kl, probability_ce, sparse_probability_ce (probabilities) --------------------------------


def _abs_kl_value(x, y, p, out=None):
    """sum (Q - P)(log Q - log P), P = max(y, eps), Q = max(x, eps) (the product of two
    differences of one sign: |.| already); its derivative log Q - log P + 1 - P / Q where
    the clip passes x (x >= eps), 0 below."""
    eps = p["eps"]
    target, q, log_ratio = _scratch(x, 3)
    torch.clamp_min(y, eps, out=target)
    torch.clamp_min(x, eps, out=q)
    torch.log(q, out=log_ratio).sub_(torch.log(target))
    if out is not None:  # (log Q - log P) + 1 - P / Q
        grad = torch.add(log_ratio, 1.0, out=out).sub_(torch.div(target, q))
    total = _flat_dot(q.sub_(target), log_ratio)
    if out is None:
        return total, [], None
    return total, [], (grad.mul_(torch.ge(x, eps, out=target)), 1.0)  # 0 where x < eps


def _probability_targets(y, p):
    """The targets smoothed toward 1/C as the formula smooths them (every label observed)."""
    s = p["label_smoothing"]
    return y if not s else y * (1.0 - s) + s / y.shape[-1]


def _probability_ce_value(x, y, p, out=None):
    """-sum y' log clip(u, eps, 1 - eps), u = x / S (S the row's sum, 1 where it is not
    positive); its derivative (sum_c y'_c m_c - y'_j m_j / u_j) / S, m where the clip passes
    u (there u = q, the clipped value, which is never 0)."""
    eps = p["eps"]
    target = _probability_targets(y, p)
    row = x.sum(dim=-1, keepdim=True)
    checks = [torch.isfinite(row.sum())]  # a NaN or infinity in a row reaches its sum
    row = torch.where(row > 0, row, 1.0)
    u, q, log_q = _scratch(x, 3)
    torch.div(x, row, out=u)
    torch.clamp(u, eps, 1.0 - eps, out=q)
    total = -_flat_dot(target, torch.log(q, out=log_q))
    if out is None:
        return total, checks, None
    weighted = torch.eq(q, u, out=u).mul_(target)  # y' m: 1 where the clip passes u
    grad = torch.div(weighted, q, out=out)
    grad.neg_().add_(weighted.sum(dim=-1, keepdim=True)).div_(row)
    return total, checks, (grad, 1.0)


def _sparse_probability_ce_value(x, y, p, out=None):
    """log sum_c q_c - log q_y, q = clip(x, eps, 1 - eps); its derivative (1 / sum_c q_c -
    [c = y] / q_y) where the clip passes x, 0 outside."""
    eps = p["eps"]
    (q,) = _scratch(x, 1)
    torch.clamp(x, eps, 1.0 - eps, out=q)
    row = q.sum(dim=-1, keepdim=True)
    index = y.unsqueeze(-1)
    picked = q.gather(-1, index)
    total = row.log().sum() - picked.log().sum()
    # a NaN stays NaN through the clip (an infinity is clipped, as in the formula)
    if out is None:
        return total, [], None
    grad = torch.eq(q, x, out=out)  # 1 where the clip passes x
    at_label = grad.gather(-1, index).div_(picked).neg_()
    grad.div_(row).scatter_add_(-1, index, at_label)
    return total, [], (grad, 1.0)


def _probability_supported(p):
    return p["eps"] > 0.0 and p.get("class_weight") is None


# multilabel_hinge ----------------------------------------------------------------------------


def _positions(x: torch.Tensor) -> torch.Tensor:
    """0, 1, ..., C - 1 along the last axis, broadcast to x's shape."""
    classes = x.shape[-1]
    return torch.arange(classes, device=x.device).expand(x.shape)


def _multilabel_hinge_value(x, y, p, out=None):
    """Each row's sum over (positive j, negative i) of max(0, m - x_j + x_i), over its C
    classes, in O(C log C) instead of the formula's C x C pairs, from one sort of the row: a
    positive's active negatives (x_i > x_j - m) lie after its threshold x_j - m in the
    sorted row, counted and summed from suffix counts and sums over the negatives
    (accumulated in float64); a negative's active positives (x_j - m < x_i) are those whose
    threshold's place in the sorted row is at or before its own, counted by one cumsum of
    where the thresholds fell (torch's CPU binary search costs about 30 ns a query, twice a
    sort's share, so it runs once). The derivative: -(its active negatives) / C for a
    positive, +(its active positives) / C for a negative. Positives: y >= 0.5, as the
    formula thresholds soft labels. float32 on the CPU (half precision included) takes
    _multilabel_hinge_packed instead: the same counts from one numpy sort of packed keys."""
    margin = p["margin"]
    classes = x.shape[-1]
    if x.device.type == "cpu" and x.dtype == torch.float32 and classes <= hinge_rows.MAX_CLASSES:
        return _multilabel_hinge_packed(x, y, margin, out)
    positive = y >= 0.5
    x = x.contiguous()  # the binary search copies non-contiguous rows, with a warning
    ordered, order = x.sort(dim=-1)
    sorted_positive = positive.gather(-1, order)
    wide = torch.float64

    def suffix(a: torch.Tensor) -> torch.Tensor:
        """a[k:] summed for each k in 0..C (a[C:] sums to 0), in a's dtype."""
        sums = a.flip(-1).cumsum(-1).flip(-1)
        return torch.cat((sums, sums.new_zeros(*sums.shape[:-1], 1)), dim=-1)

    negative_sums = suffix(torch.where(sorted_positive, 0.0, ordered.to(wide)))
    negative_counts = suffix((~sorted_positive).to(torch.int64))
    thresholds = x - margin
    # per positive: where its threshold falls; the negatives after it are its active ones
    start = torch.searchsorted(ordered, thresholds, right=True)
    active = negative_counts.gather(-1, start)
    above_sum = negative_sums.gather(-1, start)
    terms = torch.where(positive, active * (margin - x.to(wide)) + above_sum, 0.0)
    total = terms.sum() / classes
    checks = [torch.isfinite(x.sum())]
    if out is None:
        return total.to(x.dtype), checks, None
    # per negative at sorted position k: the positives whose threshold lies below it, those
    # whose search above ended at k or before (each adds 1 from its end on, by a cumsum)
    ends = torch.zeros(*x.shape[:-1], classes + 1, dtype=torch.int64, device=x.device)
    ends.scatter_add_(-1, start, positive.to(torch.int64))
    reached = ends.cumsum(-1)
    rank = torch.empty_like(order).scatter_(-1, order, _positions(x))
    passing = reached.gather(-1, rank)
    grad = torch.where(positive, -active, passing).to(x.dtype)
    torch.div(grad, classes, out=out)
    return total.to(x.dtype), checks, (out, 1.0)


def _multilabel_hinge_packed(x, y, margin, out=None):
    """multilabel_hinge on float32 rows on the CPU: each row's counts of active pairs from
    one numpy sort of packed int64 keys (backends/hinge_rows.py, shared with TensorFlow's and
    JAX's kernels), its rows shared among torch's threads; x and the gradient's buffer go to
    numpy as they are (no copy)."""
    classes = x.shape[-1]
    # numpy writes the gradient into a contiguous buffer (out as it is where it is one)
    grad = _fresh(x, out if out is not None and out.is_contiguous() else None)
    values = hinge_rows.row_values(
        x.detach().contiguous().numpy().reshape(-1, classes),
        y.detach().numpy().reshape(-1, classes),
        margin,
        grad.numpy().reshape(-1, classes),
        torch.get_num_threads(),
    )
    if out is not None and grad is not out:
        grad = out.copy_(grad)
    total = torch.from_numpy(values).sum()
    checks = [torch.isfinite(x.sum())]
    if out is None:
        return total.to(x.dtype), checks, None
    return total.to(x.dtype), checks, (grad, 1.0)


KERNELS: dict[str, Kernel] = {
    "sigmoid_bce": Kernel(_sigmoid_bce_forward, _sigmoid_bce_fused, _no_weights, own_domain=True),
    "multilabel_soft_margin": Kernel(
        _sigmoid_bce_forward,
        _sigmoid_bce_fused,
        _no_weights,
        per_sample_mean=True,
        own_domain=True,
    ),
    "softmax_ce": Kernel(_softmax_ce_forward, _softmax_ce_fused, _plain_softmax_ce),
    "sparse_softmax_ce": Kernel(_sparse_forward, _sparse_fused, _plain_softmax_ce, labels="index"),
    "poly1": Kernel(_poly1_forward, _poly1_fused, lambda p: True),
    "bce": Kernel(_bce_forward, _bce_fused, _plain_bce),
    # focal's own check (labels 0 or 1) is stricter than the domain [0, 1]
    "focal": Kernel(_focal_forward, _focal_fused, _focal_supported, own_domain=True),
    "asl": Kernel(_asl_forward, _asl_fused, _asl_supported),
    "poly1_focal": Kernel(
        _forward_of(_poly1_focal_value),
        _fused_of(_poly1_focal_value),
        lambda p: True,
        own_domain=True,
    ),
    "splc": Kernel(
        _forward_of(_splc_value), _fused_of(_splc_value), lambda p: True, own_domain=True
    ),
    "hill": Kernel(_forward_of(_hill_value), _fused_of(_hill_value), lambda p: True),
    "bce_focal": Kernel(
        _forward_of(_bce_focal_value),
        _fused_of(_bce_focal_value),
        _bce_focal_supported,
        own_domain=True,
    ),
    "abs_kl": Kernel(_forward_of(_abs_kl_value), _fused_of(_abs_kl_value), lambda p: True),
    "probability_ce": Kernel(
        _forward_of(_probability_ce_value),
        _fused_of(_probability_ce_value),
        _probability_supported,
    ),
    "sparse_probability_ce": Kernel(
        _forward_of(_sparse_probability_ce_value),
        _fused_of(_sparse_probability_ce_value),
        _probability_supported,
        labels="index",
    ),
    # the ranking losses: labels 0 or 1 (soft labels are thresholded or weighted: formula)
    **{
        name: Kernel(_forward_of(value), _fused_of(value), lambda p: True, own_domain=True)
        for name, value in (
            ("zlpr", _zlpr_value),
            ("lsep", _lsep_value),
            ("bp_mll", _bp_mll_value),
        )
    },
    "multilabel_hinge": Kernel(
        _forward_of(_multilabel_hinge_value),
        _fused_of(_multilabel_hinge_value),
        lambda p: True,
        blocks_itself=True,
    ),
    "two_way": Kernel(
        _forward_of(_two_way_value),
        _fused_of(_two_way_value),
        lambda p: True,
        own_domain=True,
        rows_apart=False,
    ),
}

_COMPUTE = {torch.float16: torch.float32, torch.bfloat16: torch.float32}


def _unit_interval(y: torch.Tensor) -> torch.Tensor:
    """Whether every target is in [0, 1] (none missing, no NaN), as a 0-d tensor: a check
    folded into the kernel's one read instead of a read of its own."""
    low, high = torch.aminmax(y)
    return (low >= 0) & (high <= 1)


def _to(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x if x.dtype == dtype else x.to(dtype)


def _taken(total: torch.Tensor, checks: list[torch.Tensor] | bool) -> bool:
    """Whether the kernel takes the call: its checks hold and the value is finite. A kernel
    that read its own result says so as a bool; else the checks fold into the value (NaN
    where one fails) and one device-to-host read tells both."""
    if isinstance(checks, bool):
        return checks
    probe = total
    for check in checks:
        probe = torch.where(check, probe, math.nan)
    return math.isfinite(probe.item())


#: entries per block of rows when a fused kernel runs tiled on the CPU: 2 MB of float32 per
#: temporary, so that a block's few temporaries stay in the cache between the kernel's
#: operations instead of each operation streaming the whole batch through memory. Measured
#: (2-core CI machine, 32 MB L3) against 2^16-2^21: smaller blocks pay more in per-operation
#: dispatch, larger ones leave the cache; 2^19 was fastest at 4096x1000 and 256x20000.
_BLOCK_ENTRIES = 2**19


def _blocks(
    kernel: Kernel,
    x: torch.Tensor,
    y: torch.Tensor,
    params: Any,
    scale: float,
    compute: Any,
    with_grad: bool,
) -> tuple[torch.Tensor, list[torch.Tensor] | bool, torch.Tensor | None]:
    """With ``with_grad``, ``kernel.fused``'s (sum, checks, scale * gradient), the gradient in
    ``x``'s dtype; else ``kernel.forward``'s (sum, checks, None). On the CPU a batch of at
    least two blocks of rows runs block by block (each block's value and checks are its own,
    summed and gathered; its gradient goes straight into its rows), and stops at a block whose
    own read already declined the call."""
    index = kernel.labels == "index"  # class indices: one per row, never cast

    def run(xb: torch.Tensor, yb: torch.Tensor, out: torch.Tensor | None) -> Any:
        xb, yb = _to(xb, compute), yb if index else _to(yb, compute)
        if with_grad:
            return kernel.fused(xb, yb, params, scale, out=out)
        return (*kernel.forward(xb, yb, params), None)

    classes = x.shape[-1]
    rows = x.numel() // classes
    block = max(1, _BLOCK_ENTRIES // classes)
    whole = not kernel.rows_apart or kernel.blocks_itself
    if x.device.type != "cpu" or rows < 2 * block or whole:
        total, checks, grad = run(x, y, None)
        return total, checks, None if grad is None else _to(grad, x.dtype)
    x2, y2 = x.reshape(rows, classes), y.reshape(rows) if index else y.reshape(rows, classes)
    grad = torch.empty((rows, classes), dtype=x.dtype) if with_grad else None
    direct = compute == x.dtype  # else each block's float32 gradient is converted into grad
    totals: list[torch.Tensor] = []
    gathered: list[torch.Tensor] = []
    read_itself = True  # every block read its own result (and took it)
    for start in range(0, rows, block):
        rows_of = slice(start, start + block)
        out = grad[rows_of] if grad is not None and direct else None
        total, checks, local = run(x2[rows_of], y2[rows_of], out)
        if checks is False or (with_grad and local is None):
            return total, False, None
        if grad is not None and not direct:
            grad[rows_of].copy_(local)
        totals.append(total)
        if not isinstance(checks, bool):
            read_itself = False
            gathered.extend(checks)
    total = torch.stack(totals).sum()
    grad = None if grad is None else grad.view(x.shape)
    if read_itself:
        return total, True, grad
    return total, [torch.stack(gathered).all()] if gathered else [], grad


class _KernelFunction(torch.autograd.Function):
    """The kernel's value in forward; in backward, the gradient the forward computed (when
    the logits need one), times the upstream gradient. ``status[0]`` tells the caller whether
    the kernel took the call (a flag beside the graph: no second output, no tensor for it).
    Targets that need a gradient never reach a kernel (``kernel_for``)."""

    @staticmethod
    def forward(ctx, x, y, kernel, params, scale, status, domain):
        """``domain``: the targets' domain still needs checking (multi-hot targets that no
        validation read): a check of its own among the kernel's."""
        compute = _COMPUTE.get(x.dtype, x.dtype)
        with_grad = ctx.needs_input_grad[0]
        total, checks, grad = _blocks(kernel, x, y, params, scale, compute, with_grad)
        if with_grad:
            # the gradient, in the logits' dtype (their bytes), is all the backward needs
            ctx.save_for_backward(grad)
        if domain and not isinstance(checks, bool):
            checks = [*checks, _unit_interval(y)]
        status[0] = _taken(total, checks)
        return _to(total * scale, x.dtype)

    @staticmethod
    def backward(ctx, g):
        (grad,) = ctx.saved_tensors
        # g is 1 when the loss itself is differentiated: the gradient is forward's as it is
        # (autograd takes the tensor over once the graph is freed, and copies it when the
        # graph is retained). Read only on the CPU, where reading g costs no sync.
        if g.device.type == "cpu" and g.item() == 1.0:
            return grad, *(None,) * 6
        # else times g into a new tensor (a retained graph's next backward reads it again)
        compute = _COMPUTE.get(grad.dtype, grad.dtype)
        return _to(_to(grad, compute) * _to(g, compute), grad.dtype), *(None,) * 6


def _plain(x: torch.Tensor) -> bool:
    """An ordinary eager tensor (not a compile's fake tensor, nor a functorch wrapper)."""
    if torch.compiler.is_compiling():
        return False
    wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    return wrapped is None or not wrapped(x)


def kernel_for(
    name: str, params: Mapping[str, Any], reduction: str, per: str, mean_over_classes: bool
) -> Callable[..., torch.Tensor | None] | None:
    """The loss as one fused kernel, ``fn(x, y, checked) -> value | None`` (None: take the
    spec's formula), or None when no kernel computes this loss with these settings."""
    kernel = KERNELS.get(name)
    if kernel is None or reduction not in ("mean", "sum", "weighted_mean"):
        return None
    # no kernel takes class weights, so a weighted mean here is the plain mean
    if not kernel.supports(params):
        return None
    ignore = params.get("ignore_index")
    frozen = dict(params)

    def run(x: torch.Tensor, y: torch.Tensor, checked: bool) -> torch.Tensor | None:
        if x.numel() == 0 or x.dim() < 1 or not _plain(x):
            return None
        if ops.differentiable(y):  # the targets' gradient: the formula's autodiff
            return None
        classes = x.shape[-1]
        if kernel.labels == "index" and ignore is not None and 0 <= ignore < classes:
            return None  # an ignored class inside the range would need a mask
        # what the reduction divides the summed per-entry values by: a sample's mean over
        # its classes divides by C, a mean over entries or samples by their number
        over_classes = kernel.per_sample_mean or mean_over_classes
        if reduction == "sum" or per == "batch":  # a batch's loss is one value
            divide = classes if over_classes else 1
        else:
            divide = x.numel() if per == "element" or over_classes else x.numel() // classes
        unchecked = not (kernel.own_domain or checked)
        # class indices out of range would index out of bounds: read before the kernel runs
        if unchecked and kernel.labels == "index" and not ops.within(y, 0, classes - 1):
            return None
        status = [False]
        domain = unchecked and kernel.labels == "unit"
        value = _KernelFunction.apply(x, y, kernel, frozen, 1.0 / divide, status, domain)
        return value if status[0] else None

    # a call the kernel takes had every target in its domain, checked on the targets as they
    # came (not on smoothed ones, which a label just outside [0, 1] could fall inside), so the
    # caller checks them only when it declines (mlloss.loss.Loss._forward)
    run.checks_targets = not (kernel.own_domain and params.get("label_smoothing"))  # type: ignore[attr-defined]
    return run


__all__ = ["KERNELS", "Kernel", "kernel_for"]
