"""Train a small multi-label classifier in JAX with optax and the sigmoid BCE (pure
function, jit-compiled step), decode with its own rule, report F1 and mAP."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import CLASSES, data, report

import mlloss
import mlloss.jax


def main() -> None:
    x_train, x_test, y_train, y_test = data()
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    params = {
        "w1": jax.random.normal(k1, (x_train.shape[1], 64)) * 0.2,
        "b1": jnp.zeros(64),
        "w2": jax.random.normal(k2, (64, CLASSES)) * 0.2,
        "b2": jnp.zeros(CLASSES),
    }
    loss_fn = mlloss.jax.loss("sigmoid_bce", label_smoothing=0.05)

    def logits_of(p, x):
        return jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    optimizer = optax.adam(1e-2)
    state = optimizer.init(params)

    @jax.jit
    def step(p, s, x, y):
        value, grads = jax.value_and_grad(lambda q: loss_fn(logits_of(q, x), y))(p)
        updates, s = optimizer.update(grads, s)
        return optax.apply_updates(p, updates), s, value

    rng = np.random.default_rng(0)
    for _epoch in range(10):
        for batch in np.array_split(rng.permutation(len(x_train)), len(x_train) // 128):
            params, state, _ = step(params, state, x_train[batch], y_train[batch])
    logits = np.asarray(logits_of(params, x_test), dtype=np.float64)
    predicted = mlloss.get("sigmoid_bce").decode(logits)
    report("sigmoid_bce (JAX, optax)", y_test, predicted, logits)


if __name__ == "__main__":
    main()
