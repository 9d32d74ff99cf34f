"""The small namespace of primitives every spec is written against.

Each backend (``mlloss.backends.numpy``, ``.torch``, ``.tensorflow``, ``.jax``) subclasses
:class:`OpsBase` and implements the primitives of :class:`Ops`; the composites here
(masked logsumexp, ``xlogy``, ``clip`` with its declared subgradient, one-hot) are written once
over those primitives, so every backend follows the same conventions at the edges.

Arithmetic (``+ - * /``, comparisons, ``& | ~`` on masks) uses each framework's own operators.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

Tensor = Any

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


@runtime_checkable
class Ops(Protocol):
    """What a backend provides. Every method works on the backend's own tensors."""

    name: str
    autodiff: bool  # False: gradients come only from the specs' closed forms (NumPy)

    # tensors in and out
    def is_tensor(self, x: Any) -> bool: ...
    def asarray(self, x: Any, dtype: str | None = None, like: Tensor | None = None) -> Tensor: ...
    def to_numpy(self, x: Tensor) -> Any: ...
    def dtype_name(self, x: Tensor) -> str: ...
    def cast(self, x: Tensor, dtype: str) -> Tensor: ...
    def shape(self, x: Tensor) -> tuple[int, ...]: ...
    def arange(self, n: int, like: Tensor) -> Tensor: ...
    def zeros_like(self, x: Tensor) -> Tensor: ...
    def devices(self) -> tuple[str, ...]: ...
    def is_concrete(self, x: Tensor) -> bool: ...
    def to_device(self, x: Tensor, device: str) -> Tensor: ...

    # element-wise
    def exp(self, x: Tensor) -> Tensor: ...
    def log(self, x: Tensor) -> Tensor: ...
    def log1p(self, x: Tensor) -> Tensor: ...
    def sigmoid(self, x: Tensor) -> Tensor: ...
    def log_sigmoid(self, x: Tensor) -> Tensor: ...
    def softplus(self, x: Tensor) -> Tensor: ...
    def abs(self, x: Tensor) -> Tensor: ...
    def maximum(self, a: Tensor, b: Tensor | float) -> Tensor: ...
    def minimum(self, a: Tensor, b: Tensor | float) -> Tensor: ...
    def where(self, cond: Tensor, a: Tensor | float, b: Tensor | float) -> Tensor:
        """Element-wise select; a Python float takes the dtype of the other operand."""
        ...

    def isfinite(self, x: Tensor) -> Tensor: ...
    def stop_gradient(self, x: Tensor) -> Tensor: ...

    # reductions
    def sum(self, x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor: ...
    def max(self, x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor: ...
    def any(self, x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor: ...
    def argmax(self, x: Tensor, axis: int = -1) -> Tensor: ...
    def argsort(self, x: Tensor, axis: int = -1) -> Tensor: ...
    def expand_dims(self, x: Tensor, axis: int) -> Tensor: ...

    # differentiation
    def custom_vjp(
        self, value_fn: Callable[..., Tensor], vjp_fn: Callable[..., Any], n_diff: int = 1
    ) -> Callable[..., Tensor]:
        """``value_fn(*args)`` whose backward is ``vjp_fn(g, *args)``: the gradients of the
        first ``n_diff`` args (one tensor when ``n_diff`` is 1, else a tuple); the rest are
        constants."""
        ...

    def value_and_grad(self, f: Callable[..., Tensor], x: Tensor, *more: Tensor) -> Any:
        """``(f(x, *more), grads)``: the gradient of the sum of f's entries with respect to
        ``x`` (one tensor), or to every argument (a tuple) when there are several."""
        ...

    # composites (OpsBase writes these once)
    def logsumexp(
        self, x: Tensor, axis: int = -1, where: Tensor | None = None, keepdims: bool = False
    ) -> Tensor: ...
    def log_softmax(self, x: Tensor, axis: int = -1, where: Tensor | None = None) -> Tensor: ...
    def logaddexp(self, a: Tensor, b: Tensor) -> Tensor: ...
    def count(
        self, mask: Tensor, like: Tensor, axis: int | None = -1, keepdims: bool = False
    ) -> Tensor: ...
    def xlogy(self, a: Tensor, b: Tensor) -> Tensor: ...
    def xmul(self, a: Tensor, b: Tensor) -> Tensor: ...
    def xdivy(self, a: Tensor, b: Tensor) -> Tensor: ...
    def clip(self, x: Tensor, lo: float, hi: float) -> Tensor: ...
    def scalar(self, value: float, like: Tensor) -> float: ...
    def one_hot(self, index: Tensor, num_classes: int, dtype: str) -> Tensor: ...


class OpsBase:
    """Composites shared by every backend, written over the primitives of :class:`Ops`."""

    name = "base"
    autodiff = True

    def scalar(self, value, like):
        """A Python constant as it will meet ``like``: the framework rounds it to ``like``'s
        dtype when the two combine, so here it passes unchanged. (The golden reference, which
        computes exactly, rounds it the way the compute dtype will.) Used where a constant's
        rounding matters to the result, such as clip bounds near 1."""
        return value

    def devices(self) -> tuple[str, ...]:
        """The devices this backend can run on here: ``"cpu"``, and ``"cuda"`` when a GPU is
        visible to the framework."""
        return ("cpu",)

    def is_concrete(self, x) -> bool:
        """Whether ``x`` holds values that can be read now (eager), rather than standing for
        values in a trace being compiled (``jax.jit``, ``tf.function``, ``torch.compile``),
        where data-dependent checks cannot run."""
        return True

    def differentiable(self, x) -> bool:
        """Whether autodiff may ask for a gradient with respect to ``x`` (the targets) in this
        call: the fused paths' backward covers the logits and the heads only, so such a call
        takes the framework's autodiff of the formula. False where it cannot be told (JAX,
        whose fused backward differentiates the formula for the targets itself)."""
        return False

    def reading(self) -> Any:
        """A context in which operations on concrete tensors give concrete results that can
        be read, even inside a trace: for JAX, ``jax.ensure_compile_time_eval`` (under ``jit``
        an operation on a constant the function closes over is otherwise traced too)."""
        import contextlib

        return contextlib.nullcontext()

    def runs_kernels(self, x) -> bool:
        """Whether a whole-loss kernel (``fused_kernel``, where a backend has one) can run on
        ``x``: eager tensors, where a kernel may read values (torch's decide on the batch
        that way); a backend whose kernels are traced computations says True."""
        return self.is_concrete(x)

    def within(self, x, low: float, high: float) -> bool:
        """Whether every entry of a non-empty ``x`` is in [low, high] (False for a NaN), read
        from the device once. For an unsigned ``x``, ``low`` must be at most 0: it is not
        negated (it would wrap around), and no unsigned value is below 0."""
        import numpy as np  # loaded with every backend already; not at import mlloss

        test = self.max(x) <= high
        if self.dtype_name(x).startswith("uint"):
            assert low <= 0, "an unsigned tensor's lower bound must be at most 0"
        else:
            test = test & (-self.max(-x) >= low)
        return bool(np.asarray(self.to_numpy(test)))

    def to_device(self, x, device):
        """``x`` placed on ``device`` (one of :meth:`devices`)."""
        if device != "cpu":
            raise ValueError(f"backend {self.name!r} runs on the CPU only; got device {device!r}")
        return x

    def logsumexp(self, x, axis=-1, where=None, keepdims=False):
        """``log sum_{j: where_j} exp(x_j)`` along ``axis``; ``-inf`` where nothing is selected.

        Masked entries are replaced before ``exp`` (not after), so they add neither overflow nor
        a NaN gradient. The shift ``m`` is a constant for differentiation (it cancels exactly);
        an infinite maximum is not used as a shift, so ``+inf`` in gives ``+inf`` out.
        """
        if where is not None:
            x = self.where(where, x, float("-inf"))
        m = self.stop_gradient(self.max(x, axis=axis, keepdims=True))
        m = self.where(self.isfinite(m), m, 0.0)
        total = self.sum(self.exp(x - m), axis=axis, keepdims=True)
        # an empty selection sums to 0: its log is -inf, reached without a 0 * inf gradient
        empty = total == 0
        out = self.where(empty, float("-inf"), self.log(self.where(empty, 1.0, total))) + m
        return out if keepdims else self.sum(out, axis=axis)

    def log_softmax(self, x, axis=-1, where=None):
        """``x - logsumexp(x)`` along ``axis`` over the entries in ``where`` (``-inf`` elsewhere).

        Rows whose maximum is infinite get their limits instead of ``inf - inf = NaN``: when
        ``k`` entries are ``+inf`` they get ``-log k`` and the rest ``-inf``. (There the
        framework's autodiff sees constants; the fused backward gives the limit gradient.)
        """
        if where is not None:
            x = self.where(where, x, float("-inf"))
        m = self.stop_gradient(self.max(x, axis=axis, keepdims=True))
        infinite = ~self.isfinite(m) & (m == m)  # NaN takes the ordinary path: NaN out
        shifted = x - self.where(infinite, 0.0, m)
        limit = self.where(x == m, self.zeros_like(x), float("-inf"))
        shifted = self.where(infinite, limit, shifted)
        out = shifted - self.log(self.sum(self.exp(shifted), axis=axis, keepdims=True))
        return out if where is None else self.where(where, out, float("-inf"))

    def count(self, mask, like, axis=-1, keepdims=False):
        """How many entries of ``mask`` are true along ``axis``, in ``like``'s dtype."""
        return self.sum(self.cast(mask, self.dtype_name(like)), axis=axis, keepdims=keepdims)

    def logaddexp(self, a, b):
        """``log(exp(a) + exp(b))`` without overflow; ``-inf`` only when both are."""
        m = self.stop_gradient(self.maximum(a, b))
        m = self.where(self.isfinite(m), m, 0.0)
        return self.log(self.exp(a - m) + self.exp(b - m)) + m

    def xlogy(self, a, b):
        """``a * log(b)``, defined as 0 where ``a == 0`` (``log`` then never sees a NaN-maker)."""
        zero = a == 0
        return self.where(zero, 0.0, a * self.log(self.where(zero, 1.0, b)))

    def xmul(self, a, b):
        """``a * b``, defined as 0 where ``a == 0`` even when ``b`` is infinite."""
        zero = a == 0
        return self.where(zero, 0.0, a * self.where(zero, 1.0, b))

    def xdivy(self, a, b):
        """``a / b``, defined as 0 where ``a == 0`` even when ``b`` is 0."""
        zero = a == 0
        return self.where(zero, 0.0, a / self.where(zero, 1.0, b))

    def clip(self, x, lo, hi):
        """``x`` clipped to ``[lo, hi]``.

        Declared subgradient: 1 on the closed interval (the bounds included), 0 outside. The
        frameworks' own clips disagree exactly at the bounds; this one is the same everywhere.
        """
        return self.where(x < lo, lo, self.where(x > hi, hi, x))

    def top_k_mask(self, x, k):
        """True at the ``k`` largest entries of each row (ties: the lower index first); ``k``
        an int or a tensor broadcasting against the rows (one k per row)."""
        order = self.argsort(-x, axis=-1)  # stable: among equals, the lower index first
        rank = self.argsort(order, axis=-1)
        if self.is_tensor(k):
            rank = self.cast(rank, self.dtype_name(k))  # TensorFlow compares one dtype only
        return rank < k

    def one_hot(self, index, num_classes, dtype):
        """Rows of ``num_classes`` with a 1 at ``index``; all zeros for an index out of range."""
        hit = self.expand_dims(index, -1) == self.arange(num_classes, like=index)
        return self.cast(hit, dtype)
