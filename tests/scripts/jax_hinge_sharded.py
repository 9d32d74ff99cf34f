"""Two host devices, a float32 batch sharded over them under jax.jit: multilabel_hinge at a
size its whole-loss kernel takes (a computation sharded over several CPU devices
deadlocked in its all-reduce around numpy's sort, a ``pure_callback``; with more than one
device the kernel keeps XLA's sorted rows). Prints JSON: the value's and the gradient's
largest relative errors against the formula on NumPy in float64."""

from __future__ import annotations

import json
import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
).strip()

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import mlloss


def main():
    devices = jax.devices("cpu")
    assert len(devices) == 2, devices
    batch = NamedSharding(Mesh(np.array(devices), ("batch",)), PartitionSpec("batch"))
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(256, 128)) * 3).astype(np.float32)
    y = (rng.random((256, 128)) < 0.2).astype(np.float32)
    loss = mlloss.get("multilabel_hinge", backend="jax")
    step = jax.jit(jax.value_and_grad(lambda a, b: loss(a, b)))
    value, grad = step(jax.device_put(x, batch), jax.device_put(y, batch))
    expected = mlloss.get("multilabel_hinge", backend="numpy")
    want, want_grad = expected.value_and_grad(x.astype(np.float64), y.astype(np.float64))
    scale = np.abs(want_grad).max()
    print(
        json.dumps(
            {
                "value": abs(float(value) / want - 1.0),
                "grad": float(np.abs(np.asarray(grad) - want_grad).max() / scale),
            }
        )
    )


if __name__ == "__main__":
    main()
