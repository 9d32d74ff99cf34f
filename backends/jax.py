"""JAX backend. Pure functions: every loss runs under ``jax.jit``, ``jax.vmap`` and
``jax.grad``; the fused backward is ``jax.custom_vjp``. float64 needs ``jax_enable_x64``
(without it JAX computes float64 inputs in float32, as it does everywhere)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from mlloss.ops import OpsBase


class JaxOps(OpsBase):
    name = "jax"

    # tensors in and out
    def is_concrete(self, x):
        return not isinstance(x, jax.core.Tracer)

    def reading(self) -> Any:
        return jax.ensure_compile_time_eval()

    def is_tensor(self, x: Any) -> bool:
        return isinstance(x, jax.Array)

    def asarray(self, x: Any, dtype: str | None = None, like: Any = None) -> jax.Array:
        return jnp.asarray(x, dtype=dtype)

    def to_numpy(self, x: Any) -> Any:
        import numpy as np

        return np.asarray(x)

    def dtype_name(self, x: Any) -> str:
        return jnp.result_type(x).name

    def cast(self, x: Any, dtype: str) -> jax.Array:
        return jnp.asarray(x).astype(dtype)

    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(jnp.shape(x))

    def devices(self) -> tuple[str, ...]:
        return ("cpu", "cuda") if _gpus() else ("cpu",)

    def to_device(self, x: Any, device: str) -> jax.Array:
        target = _gpus()[0] if device == "cuda" else jax.devices("cpu")[0]
        return jax.device_put(x, target)

    def arange(self, n: int, like: Any) -> jax.Array:
        return jnp.arange(n)

    def zeros_like(self, x):
        return jnp.zeros_like(x)

    # element-wise
    def exp(self, x):
        return jnp.exp(x)

    def log(self, x):
        return jnp.log(x)

    def log1p(self, x):
        return jnp.log1p(x)

    def sigmoid(self, x):
        return jax.nn.sigmoid(x)

    def log_sigmoid(self, x):
        return jax.nn.log_sigmoid(x)

    def softplus(self, x):
        return jax.nn.softplus(x)

    def abs(self, x):
        return jnp.abs(x)

    def maximum(self, a, b):
        return jnp.maximum(a, b)

    def minimum(self, a, b):
        return jnp.minimum(a, b)

    def where(self, cond, a, b):
        return jnp.where(cond, a, b)

    def isfinite(self, x):
        return jnp.isfinite(x)

    def stop_gradient(self, x):
        return jax.lax.stop_gradient(x)

    # reductions
    def sum(self, x, axis=None, keepdims=False):
        if _halving(x, axis):
            return _halving_reduce(x, axis, jnp.add, keepdims)
        return jnp.sum(x, axis=axis, keepdims=keepdims)

    def max(self, x, axis=None, keepdims=False):
        if _halving(x, axis):
            return _halving_reduce(x, axis, jnp.maximum, keepdims)
        return jnp.max(x, axis=axis, keepdims=keepdims, initial=-jnp.inf)

    def any(self, x, axis=None, keepdims=False):
        return jnp.any(x, axis=axis, keepdims=keepdims)

    def argmax(self, x, axis=-1):
        return jnp.argmax(x, axis=axis)

    def argsort(self, x, axis=-1):
        return jnp.argsort(x, axis=axis, stable=True)

    def expand_dims(self, x, axis):
        return jnp.expand_dims(x, axis)

    # differentiation
    def custom_vjp(self, value_fn: Callable[..., Any], vjp_fn: Callable[..., Any], n_diff=1):
        @jax.custom_vjp
        def fused(*args):
            return value_fn(*args)

        def forward(*primals):
            args = tuple(primal.value for primal in primals)
            return value_fn(*args), (args, perturbed(primals[n_diff:]))

        def backward(res, g):
            args, others = res
            g = materialized(g)
            grads = vjp_fn(g, *args)
            grads = (grads,) if n_diff == 1 else tuple(grads)
            return (*grads, *other_cotangents(value_fn, args, n_diff, others, g))

        fused.defvjp(forward, backward, symbolic_zeros=True)
        return fused

    def values_kernel(self, name, params, fallback=None):
        """A fused kernel for this loss's per-sample values (see jax_kernels; it needs no
        fallback), or None."""
        from mlloss.backends.jax_kernels import values_kernel

        return values_kernel(name, params)

    def fused_kernel(self, name, params, reduction, per, mean_over_classes, fallback=None):
        """The whole loss as one computation (see jax_kernels.WHOLE), or None."""
        from mlloss.backends.jax_kernels import fused_kernel

        return fused_kernel(name, params, reduction, per, mean_over_classes, fallback)

    def runs_kernels(self, x):
        # the whole-loss kernels read no values in Python: they run under jit too
        return True

    def value_and_grad(self, f, x, *more):
        value, pullback = jax.vjp(f, x, *more)
        grads = pullback(jnp.ones_like(value))
        return value, (grads if more else grads[0])


def perturbed(primals: Sequence[Any]) -> tuple[bool, ...]:
    """Which of a ``custom_vjp`` forward's primals (``symbolic_zeros=True``) the caller
    differentiates, known when tracing."""
    return tuple(bool(primal.perturbed) for primal in primals)


def materialized(g: Any) -> Any:
    """A cotangent that may be a symbolic zero, as an array."""
    if isinstance(g, jax.custom_derivatives.SymbolicZero):
        return jnp.zeros(g.shape, g.dtype)
    return g


def other_cotangents(
    value_fn: Callable[..., Any], args: Sequence[Any], first: int, wanted: Sequence[bool], g: Any
) -> list[Any]:
    """Cotangents for ``args[first:]`` (the targets, per-class tensors): autodiff of
    ``value_fn`` for those the caller differentiates (``wanted``; a fused backward's closed
    form is with respect to the logits and heads only), None for the rest, so that the
    common case, targets held constant, computes nothing more."""
    out: list[Any] = [None] * len(wanted)
    chosen = [i for i, want in enumerate(wanted) if want]
    if not chosen:
        return out

    def of_chosen(*values: Any) -> Any:
        full = list(args)
        for i, value in zip(chosen, values, strict=True):
            full[first + i] = value
        return value_fn(*full)

    _, pullback = jax.vjp(of_chosen, *(args[first + i] for i in chosen))
    for i, cotangent in zip(chosen, pullback(g), strict=True):
        out[i] = cotangent
    return out


#: the most entries after a reduced axis for which XLA's own reduction runs; beyond it a sum or a
#: max over a leading axis takes :func:`_halving_reduce`. XLA on the CPU (jax 0.10) reduces a
#: leading axis of a wide array far slower than it reads it: at 256x20000 float32 a column sum
#: took 11-13 ms against 0.36 ms halving, at 1000x16384 6.3 against 2.5 ms, at 1024x20000 71
#: against 3.8; at 8192 and below the two are within noise of each other.
_HALVING_WIDTH = 8192


def _halving(x: Any, axis: Any) -> bool:
    """Whether a sum or max of ``x`` along ``axis`` takes :func:`_halving_reduce`: on the CPU,
    one axis, not the last, of a floating array at least two long, with more than
    :data:`_HALVING_WIDTH` entries after it. (Other platforms keep XLA's reduction.)"""
    shape = jnp.shape(x)
    if type(axis) is not int or not -len(shape) <= axis < len(shape):
        return False
    axis %= len(shape)
    return (
        math.prod(shape[axis + 1 :]) > _HALVING_WIDTH
        and shape[axis] >= 2
        and jnp.issubdtype(jnp.result_type(x), jnp.floating)
        and jax.default_backend() == "cpu"
    )


def _halving_reduce(x: jax.Array, axis: int, op: Callable[..., Any], keepdims: bool) -> Any:
    """``op`` (add, maximum) over ``axis`` by halving: the longest power-of-two prefix takes
    in the rest, then each step combines the first half with the second, element-wise over
    every entry after the axis (pairwise summation: as accurate as XLA's own or more). Half
    precision is summed in float32, as ``jnp.sum`` sums it."""
    x = jnp.asarray(x)
    axis %= x.ndim
    dtype = x.dtype
    if op is jnp.add and jnp.finfo(dtype).bits < 32:
        x = x.astype(jnp.float32)
    n = x.shape[axis]
    k = 1 << (n.bit_length() - 1)
    part = jax.lax.slice_in_dim
    if k < n:  # fold the entries past the power of two into the first ones
        head = op(part(x, 0, n - k, axis=axis), part(x, k, n, axis=axis))
        x = jnp.concatenate([head, part(x, n - k, k, axis=axis)], axis=axis)
    while x.shape[axis] > 1:
        half = x.shape[axis] // 2
        x = op(part(x, 0, half, axis=axis), part(x, half, 2 * half, axis=axis))
    x = x.astype(dtype)
    return x if keepdims else jnp.squeeze(x, axis)


def _gpus() -> list[Any]:
    try:
        return jax.devices("gpu")
    except RuntimeError:  # no GPU platform in this jaxlib or on this machine
        return []


ops = JaxOps()
