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


def outputs(name, params, x):
    """The model: its scores (logits or probabilities) and its heads."""
    w, h = params
    scores = x @ w
    activation = cases.activation(name)
    if activation == "sigmoid":
        scores = jax.nn.sigmoid(scores)
    elif activation == "softmax":
        scores = jax.nn.softmax(scores, axis=-1)
    heads = mlloss.spec(name).heads
    return scores, {k: jax.nn.softplus((x @ h)[:, i]) for i, k in enumerate(heads)}


def objective(name):
    loss_fn = mlloss.jax.loss(name)

    def f(params, x, y):
        scores, heads = outputs(name, params, x)
        return loss_fn(scores, y, **heads)

    return jax.value_and_grad(f)


def shard_map_objective(name, mesh):
    """docs/data-parallel.md's recipe: each device its shard, both parts psum-ed."""
    loss = mlloss.get(name, backend="jax")

    def local(params, x, y):
        scores, heads = outputs(name, params, x)
        total, count = loss.sum_and_count(scores, y, **heads)
        return jax.lax.psum(total, "batch") / jax.lax.psum(count, "batch")

    spec = PartitionSpec("batch")
    mapped = jax.shard_map(
        local, mesh=mesh, in_specs=(PartitionSpec(), spec, spec), out_specs=PartitionSpec()
    )
    return jax.value_and_grad(mapped)


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
        results[name] = cases.errors(value_s, grads_s, value, grads)
        if mlloss.spec(name).per != "batch":
            value_m, grads_m = jax.jit(shard_map_objective(name, mesh))(params, xs, ys)
            results[f"shard_map: {name}"] = cases.errors(value_m, grads_m, value, grads)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
