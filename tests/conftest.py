"""Test process set-up: frameworks imported in the one order that is safe in one process
(torch before TensorFlow), JAX with float64 enabled, and shared parametrisation."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if importlib.util.find_spec("torch"):
    import torch  # noqa: F401  (must precede TensorFlow)
if importlib.util.find_spec("tensorflow"):
    import tensorflow  # noqa: F401
if importlib.util.find_spec("jax"):
    import jax

    jax.config.update("jax_enable_x64", True)

from mlloss import backends

FRAMEWORKS = ("torch", "tensorflow", "jax")


def backend_params(names=backends.BACKENDS):
    """One pytest param per backend, skipped with the reason when its framework is missing."""
    return [
        pytest.param(
            name,
            marks=pytest.mark.skipif(
                not backends.installed(name), reason=f"{name} is not installed"
            ),
        )
        for name in names
    ]


def devices():
    """CPU always; CUDA when a GPU is present, skipped with the reason otherwise."""
    has_cuda = False
    if importlib.util.find_spec("torch"):
        import torch

        has_cuda = torch.cuda.is_available()
    return [
        "cpu",
        pytest.param(
            "cuda", marks=pytest.mark.skipif(not has_cuda, reason="no CUDA device on this machine")
        ),
    ]


def to_backend(backend: str, array, dtype: str | None = None, device: str = "cpu"):
    """A NumPy array as a tensor of ``backend`` on ``device``."""
    array = np.asarray(array)
    if backend == "torch" and device != "cpu":
        tensor = backends.load("torch").asarray(array, dtype=dtype)
        return tensor.to(device)
    if backend == "jax" and device != "cpu":
        import jax

        return jax.device_put(
            backends.load("jax").asarray(array, dtype=dtype), jax.devices(device)[0]
        )
    if backend == "tensorflow" and device != "cpu":
        import tensorflow as tf

        with tf.device("GPU:0"):
            return tf.identity(backends.load("tensorflow").asarray(array, dtype=dtype))
    return backends.load(backend).asarray(array, dtype=dtype)


def to_numpy(backend: str, tensor) -> np.ndarray:
    """A backend tensor as NumPy; floating dtypes (bfloat16 included) as float64."""
    out = np.asarray(backends.load(backend).to_numpy(tensor))
    return out if out.dtype.kind in "biu" else out.astype(np.float64)
