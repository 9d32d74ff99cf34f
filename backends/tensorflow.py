"""TensorFlow backend. Works eagerly and inside ``tf.function`` (with or without
``jit_compile``); the fused backward is ``tf.custom_gradient``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from mlloss.ops import OpsBase

try:  # TensorFlow's own test of whether a tape watches a tensor (see _watched)
    from tensorflow.python.eager import record as _record
except ImportError:  # pragma: no cover - a TensorFlow that moved it
    _record = None


class TensorflowOps(OpsBase):
    name = "tensorflow"

    # tensors in and out
    def is_concrete(self, x):
        # inside tf.function tensors are symbolic: they have no numpy() to read
        return tf.executing_eagerly() and hasattr(x, "numpy")

    def is_tensor(self, x: Any) -> bool:
        return tf.is_tensor(x) or isinstance(x, tf.Variable)

    def differentiable(self, x) -> bool:
        # a trainable variable is watched by every tape; eagerly, a tensor a tape watches is
        # told by TensorFlow's own test (inside tf.function no tape records: the fused paths
        # give the targets no gradient there, None rather than a wrong one)
        if isinstance(x, tf.Variable):
            return bool(x.trainable)
        return tf.executing_eagerly() and _watched(x)

    def asarray(self, x: Any, dtype: str | None = None, like: Any = None) -> tf.Tensor:
        out = tf.convert_to_tensor(x)
        return out if dtype is None or out.dtype.name == dtype else tf.cast(out, dtype)

    def to_numpy(self, x: Any) -> Any:
        return x.numpy()

    def dtype_name(self, x: Any) -> str:
        return tf.as_dtype(x.dtype).name

    def cast(self, x: Any, dtype: str) -> tf.Tensor:
        return tf.cast(x, dtype)

    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(x.shape)

    def devices(self) -> tuple[str, ...]:
        return ("cpu", "cuda") if tf.config.list_physical_devices("GPU") else ("cpu",)

    def to_device(self, x: Any, device: str) -> tf.Tensor:
        with tf.device("GPU:0" if device == "cuda" else "CPU:0"):
            return tf.identity(x)

    def arange(self, n: int, like: Any) -> tf.Tensor:
        return tf.range(n, dtype=like.dtype)

    def zeros_like(self, x):
        return tf.zeros_like(x)

    # element-wise
    def exp(self, x):
        return tf.math.exp(x)

    def log(self, x):
        return tf.math.log(x)

    def log1p(self, x):
        return tf.math.log1p(x)

    def sigmoid(self, x):
        return tf.math.sigmoid(x)

    def log_sigmoid(self, x):
        return tf.math.log_sigmoid(x)

    def softplus(self, x):
        return tf.math.softplus(x)

    def abs(self, x):
        return tf.math.abs(x)

    def maximum(self, a, b):
        return tf.math.maximum(a, b)

    def minimum(self, a, b):
        return tf.math.minimum(a, b)

    def where(self, cond, a, b):
        # a Python float would be converted to float32 whatever the other operand's dtype
        if not tf.is_tensor(a):
            a = tf.constant(a, dtype=b.dtype)
        if not tf.is_tensor(b):
            b = tf.constant(b, dtype=a.dtype)
        return tf.where(cond, a, b)

    def isfinite(self, x):
        return tf.math.is_finite(x)

    def stop_gradient(self, x):
        return tf.stop_gradient(x)

    # reductions
    def sum(self, x, axis=None, keepdims=False):
        return tf.math.reduce_sum(x, axis=axis, keepdims=keepdims)

    def max(self, x, axis=None, keepdims=False):
        return tf.math.reduce_max(x, axis=axis, keepdims=keepdims)

    def any(self, x, axis=None, keepdims=False):
        return tf.math.reduce_any(x, axis=axis, keepdims=keepdims)

    def argmax(self, x, axis=-1):
        return tf.math.argmax(x, axis=axis)

    def argsort(self, x, axis=-1):
        return tf.argsort(x, axis=axis, stable=True)

    def expand_dims(self, x, axis):
        return tf.expand_dims(x, axis)

    # differentiation
    def custom_vjp(self, value_fn: Callable[..., Any], vjp_fn: Callable[..., Any], n_diff=1):
        def call(*args):
            consts = args[n_diff:]

            @tf.custom_gradient
            def fused(*diff):
                def backward(g):
                    grads = vjp_fn(g, *diff, *consts)
                    return grads if n_diff == 1 else list(grads)

                return value_fn(*diff, *consts), backward

            return fused(*args[:n_diff])

        return call

    def values_kernel(self, name, params, fallback):
        """TensorFlow's own fused kernel where it computes the loss (see
        tensorflow_kernels), with ``fallback`` for the batches it does not take; or None."""
        from mlloss.backends.tensorflow_kernels import values_kernel

        return values_kernel(name, params, fallback)

    def fused_kernel(self, name, params, reduction, per, mean_over_classes, fallback=None):
        """The whole loss as one XLA computation (see tensorflow_kernels), or None; focal and
        asl run ``fallback`` (the spec's path) inside it for a batch their plain form does not
        hold for."""
        from mlloss.backends.tensorflow_kernels import fused_kernel

        return fused_kernel(name, params, reduction, per, mean_over_classes, fallback)

    def runs_kernels(self, x):
        # the XLA kernels read no values in Python: they run inside tf.function too
        return True

    def value_and_grad(self, f, x, *more):
        args = (x, *more)
        with tf.GradientTape() as tape:
            for a in args:
                tape.watch(a)
            value = f(*args)
        grads = tape.gradient(value, list(args), unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return value, (tuple(grads) if more else grads[0])


ops = TensorflowOps()


def _watched(x: Any) -> bool:
    """Whether a tape records operations on ``x`` (TensorFlow's own test, not a public API:
    False where a release moves it)."""
    return _record is not None and bool(_record.should_record_backprop([x]))
