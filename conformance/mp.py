"""An :class:`~mlloss.ops.Ops` over mpmath numbers: the golden reference evaluates each spec's
own formula at :data:`DIGITS` significant digits.

Tensors are NumPy object arrays of ``mpmath.mpf``. To the loss pipeline this backend looks like
a float64 one (``dtype_name`` says ``"float64"``) that happens to carry 60 digits, so specs run
through it unchanged. Integer arrays (class indices) and masks stay ordinary NumPy arrays.
Every operation must run inside :func:`precision`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import mpmath
import numpy as np

from mlloss.ops import OpsBase

#: working precision of the golden reference, in significant decimal digits
DIGITS = 60

_mpf = np.frompyfunc(lambda v: mpmath.mpf(v), 1, 1)


def _elementwise(fn: Callable[[Any], Any]) -> Callable[[Any], np.ndarray]:
    ufunc = np.frompyfunc(fn, 1, 1)

    def apply(x: Any) -> np.ndarray:
        return np.asarray(ufunc(x), dtype=object)

    return apply


def _softplus(v: Any) -> Any:
    return mpmath.log1p(mpmath.exp(v))


def _sigmoid(v: Any) -> Any:
    return 1 / (1 + mpmath.exp(-v))


def _pick(choose_first: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Any]:
    def pick(a: Any, b: Any) -> Any:
        if mpmath.isnan(a) or mpmath.isnan(b):
            return mpmath.mpf("nan")
        return a if choose_first(a, b) else b

    return pick


_maximum = np.frompyfunc(_pick(lambda a, b: a >= b), 2, 1)
_minimum = np.frompyfunc(_pick(lambda a, b: a <= b), 2, 1)
_isfinite = np.frompyfunc(lambda v: bool(mpmath.isfinite(v)), 1, 1)


@contextlib.contextmanager
def precision(digits: int = DIGITS) -> Iterator[None]:
    """Run mpmath at ``digits`` significant digits inside the block."""
    with mpmath.workdps(digits):
        yield


class MpmathOps(OpsBase):
    """``constants``: the dtype the emulated computation holds Python constants in (None:
    exactly as Python holds them, float64). float32 for inputs computed in float32."""

    name = "mpmath"
    autodiff = False

    def __init__(self, constants: str | None = None) -> None:
        self.constants = constants
        self._tape: tuple[str, list[Any]] | None = None

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[Any]]:
        """Record what each ``stop_gradient`` sees, in order (for :meth:`replaying`)."""
        tape: list[Any] = []
        self._tape = ("record", tape)
        try:
            yield tape
        finally:
            self._tape = None

    @contextlib.contextmanager
    def replaying(self, tape: list[Any]) -> Iterator[None]:
        """Each ``stop_gradient`` returns what it saw when recorded: the quantities a spec
        declares constant for differentiation stay at their values at the recorded point,
        so numerical differentiation sees them as constants too."""
        self._tape = ("replay", list(tape))
        try:
            yield
        finally:
            self._tape = None

    def scalar(self, value, like):
        if self.constants is None:
            return value
        return float(np.asarray(value, dtype=self.constants))

    # tensors in and out
    def is_tensor(self, x: Any) -> bool:
        return isinstance(x, np.ndarray)

    def asarray(self, x: Any, dtype: str | None = None, like: Any = None) -> np.ndarray:
        array = np.asarray(x)
        if dtype in ("float64", "float32", "float16", "bfloat16") or array.dtype.kind == "f":
            return self.to_mp(array)
        return array if dtype is None else array.astype(dtype)

    def to_mp(self, x: Any) -> np.ndarray:
        """Exact conversion: every binary float is an mpf without rounding."""
        array = np.asarray(x)
        if array.dtype == object:
            return array
        with np.errstate(invalid="ignore"):  # NaN converts to mpf('nan'), as intended
            converted = _mpf(array.astype(np.float64))
        return np.asarray(converted, dtype=object).reshape(array.shape)

    def to_numpy(self, x: Any) -> np.ndarray:
        array = np.asarray(x)
        if array.dtype != object:
            return array
        return np.asarray(np.frompyfunc(float, 1, 1)(array), dtype=np.float64)

    def dtype_name(self, x: Any) -> str:
        array = np.asarray(x)
        return "float64" if array.dtype == object else array.dtype.name

    def cast(self, x: Any, dtype: str) -> np.ndarray:
        if dtype.startswith(("float", "bfloat")):
            array = np.asarray(x)
            if array.dtype == bool:
                array = array.astype(np.int64)
            return self.to_mp(array)
        return np.asarray(x).astype(dtype)

    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(np.shape(x))

    def arange(self, n: int, like: Any) -> np.ndarray:
        return np.arange(n)

    def zeros_like(self, x: Any) -> np.ndarray:
        return self.to_mp(np.zeros(np.shape(x)))

    # element-wise
    exp = staticmethod(_elementwise(mpmath.exp))
    log = staticmethod(_elementwise(mpmath.log))
    log1p = staticmethod(_elementwise(mpmath.log1p))
    sigmoid = staticmethod(_elementwise(_sigmoid))
    softplus = staticmethod(_elementwise(_softplus))
    abs = staticmethod(_elementwise(abs))

    def log_sigmoid(self, x):
        return -self.softplus(-x)

    def maximum(self, a, b):
        return np.asarray(_maximum(self._mp(a), self._mp(b)), dtype=object)

    def minimum(self, a, b):
        return np.asarray(_minimum(self._mp(a), self._mp(b)), dtype=object)

    def where(self, cond, a, b):
        return np.where(np.asarray(cond, dtype=bool), self._mp(a), self._mp(b))

    def isfinite(self, x):
        return np.asarray(_isfinite(x), dtype=bool).reshape(np.shape(x))

    def stop_gradient(self, x):
        if self._tape is None:
            return x
        mode, tape = self._tape
        if mode == "record":
            tape.append(x)
            return x
        return tape.pop(0)

    # reductions
    def sum(self, x, axis=None, keepdims=False):
        out = np.sum(np.asarray(x, dtype=object), axis=axis, keepdims=keepdims)
        return self._mp(out)

    def max(self, x, axis=None, keepdims=False):
        array = np.asarray(x, dtype=object)
        if axis is None:
            array, axis = array.reshape(-1), 0
        # a -inf column first: the max of nothing is -inf, and reduce never sees an empty axis
        start = np.full(_reduced_shape(array.shape, axis), mpmath.mpf("-inf"), dtype=object)
        out = _maximum.reduce(np.concatenate([start, array], axis=axis), axis=axis)
        out = np.asarray(out, dtype=object)
        return np.expand_dims(out, axis) if keepdims else out

    def any(self, x, axis=None, keepdims=False):
        return np.any(x, axis=axis, keepdims=keepdims)

    def argmax(self, x, axis=-1):
        return np.argmax(self.to_numpy(x), axis=axis)

    def argsort(self, x, axis=-1):
        return np.argsort(self.to_numpy(x), axis=axis, kind="stable")

    def expand_dims(self, x, axis):
        return np.expand_dims(x, axis)

    # differentiation: the golden gradient is numerical (see golden.py), never from here
    def custom_vjp(self, value_fn, vjp_fn, n_diff=1):
        return value_fn

    def value_and_grad(self, f, x, *more):
        raise NotImplementedError("the golden gradient is computed by numerical differentiation")

    def _mp(self, value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return self.to_mp(value) if value.dtype != object else value
        if isinstance(value, (int, float, np.floating, np.integer)):
            return mpmath.mpf(float(value))
        return value


def _reduced_shape(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    out = list(shape)
    out[axis] = 1
    return tuple(out)


ops = MpmathOps()
#: the reference for inputs computed in float32 (float32, float16 and bfloat16)
ops_float32 = MpmathOps(constants="float32")
