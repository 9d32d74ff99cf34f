"""Every loss runs under each framework's compiler: jax.jit / vmap / grad, tf.function (also
with jit_compile=True) and torch.compile(fullgraph=True), with values and gradients equal to
the eager NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
from cases import PARAM_SETS, inputs, setting_id
from conftest import backend_params

import mlloss
from mlloss import backends


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Every Loss shares Loss.__call__'s code object, and dynamo caches at most 8 compiled
    versions of one code object; each test compiles from a clean cache."""
    if backends.installed("torch"):
        import torch

        torch._dynamo.reset()


# for each loss: its defaults and its setting with the most parameters (per-class tensors
# included), so constants captured by the compiled function are exercised too
CASES = [
    (name, params)
    for name in sorted(PARAM_SETS)
    if not mlloss.spec(name).heads  # partition: test_losses_divergence.py
    for params in {0: PARAM_SETS[name][0], 1: max(PARAM_SETS[name], key=len)}.values()
]
IDS = [f"{n}[{setting_id(p)}]" for n, p in CASES]


def _reference(name, params, x, y, reduction="mean"):
    return mlloss.get(name, backend="numpy", reduction=reduction, **params).value_and_grad(x, y)


@pytest.mark.parametrize("backend_arg", [None, "jax"])
@pytest.mark.parametrize("jax_backend", backend_params(["jax"]))
@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_jax_jit_grad_and_vmap(name, params, jax_backend, backend_arg):
    import jax
    import jax.numpy as jnp

    x, y = inputs(name, params, seed=10)
    ref_value, ref_grad = _reference(name, params, x, y)
    loss = mlloss.get(name, backend=backend_arg, **params)
    value, grad = jax.jit(jax.value_and_grad(loss))(jnp.asarray(x), jnp.asarray(y))
    np.testing.assert_allclose(float(value), ref_value, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(grad), ref_grad, rtol=1e-11, atol=1e-14)
    # vmap over samples: one sample at a time is that sample alone (summed, the batch's sum,
    # except for a batch-level loss, which is one batch of one sample per call)
    per_sample = mlloss.get(name, backend=backend_arg, reduction="sum", **params)
    mapped = jax.jit(jax.vmap(per_sample))(jnp.asarray(x), jnp.asarray(y))
    assert mapped.shape == (x.shape[0],)
    if mlloss.spec(name).per == "batch":
        alone = [per_sample(jnp.asarray(x[i : i + 1]), jnp.asarray(y[i : i + 1])) for i in range(3)]
        np.testing.assert_allclose(np.asarray(mapped[:3]), np.asarray(alone), rtol=1e-12)
    else:
        total = mlloss.get(name, backend="numpy", reduction="sum", **params)(x, y)
        np.testing.assert_allclose(float(jnp.sum(mapped)), total, rtol=1e-12)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("tf_backend", backend_params(["tensorflow"]))
@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_tf_function(name, params, tf_backend, jit_compile):
    import tensorflow as tf

    x, y = inputs(name, params, seed=11)
    ref_value, ref_grad = _reference(name, params, x, y)
    loss = mlloss.get(name, **params)

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def step(a, b):
        with tf.GradientTape() as tape:
            tape.watch(a)
            value = loss(a, b)
        return value, tape.gradient(value, a)

    value, grad = step(tf.constant(x), tf.constant(y))
    np.testing.assert_allclose(value.numpy(), ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad.numpy(), ref_grad, rtol=1e-11, atol=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize("torch_backend", backend_params(["torch"]))
@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_torch_compile_fullgraph(name, params, torch_backend):
    import torch

    x, y = inputs(name, params, seed=12)
    ref_value, ref_grad = _reference(name, params, x, y)
    compiled = torch.compile(mlloss.get(name, backend="torch", **params), fullgraph=True)
    logits = torch.tensor(x, requires_grad=True)
    value = compiled(logits, torch.as_tensor(y))
    value.backward()
    np.testing.assert_allclose(value.item(), ref_value, rtol=1e-12)
    np.testing.assert_allclose(logits.grad.numpy(), ref_grad, rtol=1e-11, atol=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize("torch_backend", backend_params(["torch"]))
def test_torch_compile_with_inferred_backend_after_first_use(torch_backend):
    """With backend=None the backend is picked at call time; once it has been used (so nothing
    is imported inside the trace) a fullgraph compile works too."""
    import torch

    x, y = inputs("softmax_ce", {}, seed=13)
    loss = mlloss.get("softmax_ce")
    loss(torch.tensor(x), torch.tensor(y))
    value = torch.compile(loss, fullgraph=True)(torch.tensor(x), torch.tensor(y))
    np.testing.assert_allclose(value.item(), _reference("softmax_ce", {}, x, y)[0], rtol=1e-12)
