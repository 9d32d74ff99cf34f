"""PyTorch backend. Tensors stay on the caller's device; the fused backward is an
``autograd.Function`` (traceable by ``torch.compile(fullgraph=True)``)."""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from typing import Any

import torch

from mlloss.ops import OpsBase

_DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "int32": torch.int32,
    "int64": torch.int64,
    "bool": torch.bool,
}


class _FusedPair:
    """A spec's value and its closed-form vector-Jacobian product."""

    __slots__ = ("__weakref__", "n_diff", "value_fn", "vjp_fn")

    def __init__(self, value_fn: Callable[..., Any], vjp_fn: Callable[..., Any], n_diff: int):
        self.value_fn = value_fn
        self.vjp_fn = vjp_fn
        self.n_diff = n_diff


# The formulas reach the Function through a module-level table and a constant key, so that
# torch.compile traces them from a known source (a class made per loss, or formulas passed as
# arguments, are not traceable; nor is a WeakValueDictionary). An entry is removed when the
# function that uses it is collected.
_fused_pairs: dict[int, _FusedPair] = {}
_keys = itertools.count()


class _Fused(torch.autograd.Function):
    """The spec's value in forward, its closed-form gradient in backward. Only the inputs are
    saved for backward, never an intermediate."""

    @staticmethod
    def forward(ctx, key, *args):
        ctx.key = key
        ctx.save_for_backward(*args)
        return _fused_pairs[key].value_fn(*args)

    @staticmethod
    def backward(ctx, g):
        args = ctx.saved_tensors
        pair = _fused_pairs[ctx.key]
        grads = pair.vjp_fn(g, *args)
        grads = (grads,) if pair.n_diff == 1 else tuple(grads)
        return (None, *grads, *(None for _ in args[pair.n_diff :]))


class TorchOps(OpsBase):
    name = "torch"

    # tensors in and out
    def is_concrete(self, x):
        # dynamo traces with fake tensors; outside a compile, tensors hold their values
        return not torch.compiler.is_compiling()

    def is_tensor(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor)

    def differentiable(self, x) -> bool:
        return isinstance(x, torch.Tensor) and x.requires_grad and torch.is_grad_enabled()

    def asarray(self, x: Any, dtype: str | None = None, like: Any = None) -> torch.Tensor:
        device = like.device if isinstance(like, torch.Tensor) else None
        return torch.as_tensor(x, dtype=None if dtype is None else _DTYPES[dtype], device=device)

    def to_numpy(self, x: torch.Tensor) -> Any:
        x = x.detach().to("cpu")
        if x.dtype == torch.bfloat16:
            import ml_dtypes

            return x.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return x.numpy()

    def dtype_name(self, x: torch.Tensor) -> str:
        return str(x.dtype).removeprefix("torch.")

    def cast(self, x: torch.Tensor, dtype: str) -> torch.Tensor:
        return x.to(_DTYPES[dtype])

    def shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return tuple(x.shape)

    def devices(self) -> tuple[str, ...]:
        return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)

    def to_device(self, x: torch.Tensor, device: str) -> torch.Tensor:
        return x.to(device)

    def arange(self, n: int, like: Any) -> torch.Tensor:
        return torch.arange(n, device=like.device)

    def zeros_like(self, x):
        return torch.zeros_like(x)

    # element-wise
    def exp(self, x):
        return torch.exp(x)

    def log(self, x):
        return torch.log(x)

    def log1p(self, x):
        return torch.log1p(x)

    def sigmoid(self, x):
        return torch.sigmoid(x)

    def log_sigmoid(self, x):
        return torch.nn.functional.logsigmoid(x)

    def softplus(self, x):
        # F.softplus returns x itself above a fixed threshold of 20, an error of e^-20 that
        # float64 sees; logaddexp is exact at every magnitude and smooth at 0.
        return torch.logaddexp(x, torch.zeros((), dtype=x.dtype, device=x.device))

    def abs(self, x):
        return torch.abs(x)

    def within(self, x, low, high):
        # the extremes in one pass (aminmax), read together
        least, most = torch.stack(torch.aminmax(x)).tolist()
        return low <= least and most <= high

    def maximum(self, a, b):
        return torch.maximum(a, self._like(b, a))

    def minimum(self, a, b):
        return torch.minimum(a, self._like(b, a))

    def where(self, cond, a, b):
        return torch.where(cond, a, b)

    def isfinite(self, x):
        return torch.isfinite(x)

    def stop_gradient(self, x):
        return x.detach()

    # reductions
    def sum(self, x, axis=None, keepdims=False):
        if axis is None:
            return torch.sum(x)
        return torch.sum(x, dim=axis, keepdim=keepdims)

    def max(self, x, axis=None, keepdims=False):
        if axis is None:
            return torch.amax(x) if x.numel() else torch.tensor(-torch.inf, dtype=x.dtype)
        if x.shape[axis] == 0:  # amax refuses an empty axis; the max of nothing is -inf
            shape = list(x.shape)
            shape[axis] = 1
            out = torch.full(shape, -torch.inf, dtype=x.dtype, device=x.device)
            return out if keepdims else out.squeeze(axis)
        return torch.amax(x, dim=axis, keepdim=keepdims)

    def any(self, x, axis=None, keepdims=False):
        if axis is None:
            return torch.any(x)
        return torch.any(x, dim=axis, keepdim=keepdims)

    def argmax(self, x, axis=-1):
        return torch.argmax(x, dim=axis)

    def argsort(self, x, axis=-1):
        return torch.argsort(x, dim=axis, stable=True)

    def expand_dims(self, x, axis):
        return torch.unsqueeze(x, axis)

    # differentiation
    def custom_vjp(self, value_fn: Callable[..., Any], vjp_fn: Callable[..., Any], n_diff=1):
        pair = _FusedPair(value_fn, vjp_fn, n_diff)
        key = next(_keys)
        _fused_pairs[key] = pair

        def fused(*args):
            if not (torch.is_grad_enabled() and any(a.requires_grad for a in args[:n_diff])):
                # nothing to differentiate: no Function node (and dynamo traces this path
                # without the Function, which it mis-traces when no input needs a gradient)
                return value_fn(*args)
            return _Fused.apply(key, *args)

        weakref.finalize(fused, _fused_pairs.pop, key, None)
        return fused

    def fused_kernel(self, name, params, reduction, per, mean_over_classes, fallback=None):
        """A hand-fused eager kernel for this loss (see torch_kernels), or None. A call it
        does not take returns None to the caller (``fallback`` is not needed)."""
        from mlloss.backends.torch_kernels import kernel_for

        return kernel_for(name, params, reduction, per, mean_over_classes)

    def value_and_grad(self, f, x, *more):
        with torch.enable_grad():
            leaves = [a.detach().requires_grad_(True) for a in (x, *more)]
            value = f(*leaves)
            if not value.requires_grad:
                grads = tuple(torch.zeros_like(leaf) for leaf in leaves)
            else:
                grads = torch.autograd.grad(
                    value, leaves, grad_outputs=torch.ones_like(value), allow_unused=True
                )
                grads = tuple(
                    torch.zeros_like(leaf) if g is None else g
                    for leaf, g in zip(leaves, grads, strict=True)
                )
        return value.detach(), (grads if more else grads[0])

    @staticmethod
    def _like(b, a):
        return b if isinstance(b, torch.Tensor) else torch.tensor(b, dtype=a.dtype, device=a.device)


ops = TorchOps()
