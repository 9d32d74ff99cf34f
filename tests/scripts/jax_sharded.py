"""Four host devices (XLA_FLAGS=--xla_force_host_platform_device_count=4, set before JAX is
imported), the batch sharded over them, jax.jit with shardings, every loss: the value and
the parameter gradients against the same step on one device. Prints JSON errors."""

from __future__ import annotations

import json
import os
import sys

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))

import parallel_cases as cases  # noqa: E402

import mlloss.jax  # noqa: E402


def objective(name):
    loss_fn = mlloss.jax.loss(name)
    activation = cases.activation(name)
    heads = mlloss.spec(name).heads

    def f(params, x, y):
        w, h = params
        scores = x @ w
        if activation == "sigmoid":
            scores = jax.nn.sigmoid(scores)
        elif activation == "softmax":
            scores = jax.nn.softmax(scores, axis=-1)
        extra = {k: jax.nn.softplus((x @ h)[:, i]) for i, k in enumerate(heads)}
        return loss_fn(scores, y, **extra)

    return jax.value_and_grad(f)


def main():
    devices = jax.devices("cpu")
    assert len(devices) == 4, devices
    mesh = Mesh(np.array(devices), ("batch",))
    batch = NamedSharding(mesh, PartitionSpec("batch"))
    replicated = NamedSharding(mesh, PartitionSpec())
    results = {}
    for name in cases.losses():
        x, y = cases.data(name)
        params = tuple(jnp.asarray(p) for p in cases.params(name))
        step = objective(name)
        value, grads = jax.jit(step)(params, jnp.asarray(x), jnp.asarray(y))
        sharded = jax.jit(
            step,
            in_shardings=((replicated, replicated), batch, batch),
            out_shardings=(replicated, (replicated, replicated)),
        )
        xs, ys = jax.device_put(x, batch), jax.device_put(y, batch)
        assert len(xs.sharding.device_set) == 4
        value_s, grads_s = sharded(jax.device_put(params, replicated), xs, ys)
        results[name] = {
            "value": float(abs(value_s - value) / max(abs(value), 1e-300)),
            "grad": max(
                float(jnp.max(jnp.abs(a - b)) / max(float(jnp.max(jnp.abs(b))), 1e-300))
                for a, b in zip(grads_s, grads, strict=True)
                if b.size
            ),
        }
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
