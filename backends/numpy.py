"""NumPy backend. bfloat16 comes from ml_dtypes; there is no autodiff, so a gradient is the
spec's closed form (and a spec without one is refused with a clear error)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlloss.ops import OpsBase


def _bfloat16() -> Any:
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - ml_dtypes ships with the test extra
        return None
    return ml_dtypes.bfloat16


class NumpyOps(OpsBase):
    name = "numpy"
    autodiff = False

    # tensors in and out
    def is_tensor(self, x: Any) -> bool:
        return isinstance(x, (np.ndarray, np.generic))

    def asarray(self, x: Any, dtype: str | None = None, like: Any = None) -> np.ndarray:
        return np.asarray(x, dtype=None if dtype is None else self._dtype(dtype))

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def dtype_name(self, x: Any) -> str:
        return np.asarray(x).dtype.name

    def cast(self, x: Any, dtype: str) -> np.ndarray:
        return np.asarray(x).astype(self._dtype(dtype), copy=False)

    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(np.shape(x))

    def arange(self, n: int, like: Any) -> np.ndarray:
        return np.arange(n)

    def zeros_like(self, x: Any) -> np.ndarray:
        return np.zeros_like(x)

    # element-wise
    def exp(self, x):
        return np.exp(x)

    def log(self, x):
        with np.errstate(divide="ignore"):  # log(0) = -inf is the intended value
            return np.log(x)

    def log1p(self, x):
        with np.errstate(divide="ignore"):
            return np.log1p(x)

    def sigmoid(self, x):
        # exp of a non-positive number only: no overflow warning, exact limits at +-inf
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.result_type(x))

    def log_sigmoid(self, x):
        return -self.softplus(-x)

    def softplus(self, x):
        return np.logaddexp(np.zeros((), dtype=np.result_type(x)), x)

    def abs(self, x):
        return np.abs(x)

    def maximum(self, a, b):
        return np.maximum(a, b)

    def minimum(self, a, b):
        return np.minimum(a, b)

    def where(self, cond, a, b):
        dtype = np.result_type(*[v for v in (a, b) if isinstance(v, (np.ndarray, np.generic))])
        return np.where(cond, a, b).astype(dtype, copy=False)

    def isfinite(self, x):
        return np.isfinite(x)

    def stop_gradient(self, x):
        return x

    # reductions
    def sum(self, x, axis=None, keepdims=False):
        return np.sum(x, axis=axis, keepdims=keepdims)

    def max(self, x, axis=None, keepdims=False):
        x = np.asarray(x)
        # the smallest value of the dtype, so that an empty axis has a maximum
        initial = np.iinfo(x.dtype).min if x.dtype.kind in "iu" else -np.inf
        return np.max(x, axis=axis, keepdims=keepdims, initial=initial)

    def any(self, x, axis=None, keepdims=False):
        return np.any(x, axis=axis, keepdims=keepdims)

    def argmax(self, x, axis=-1):
        return np.argmax(x, axis=axis)

    def argsort(self, x, axis=-1):
        return np.argsort(x, axis=axis, kind="stable")

    def expand_dims(self, x, axis):
        return np.expand_dims(x, axis)

    # differentiation
    def custom_vjp(self, value_fn, vjp_fn, n_diff=1):
        return value_fn

    def value_and_grad(self, f, x, *more):
        raise NotImplementedError(
            "NumPy has no autodiff: its gradient is the spec's closed form (fused path)"
        )

    @staticmethod
    def _dtype(name: str) -> Any:
        if name == "bfloat16":
            bf16 = _bfloat16()
            if bf16 is None:
                raise TypeError("bfloat16 on NumPy needs ml_dtypes: pip install ml_dtypes")
            return bf16
        return np.dtype(name)


ops = NumpyOps()
