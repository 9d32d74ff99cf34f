"""tf.distribute.MirroredStrategy over two logical CPU devices, every loss: the value and
the parameter gradients of one step with uneven shards, against one replica on the whole
batch. Prints JSON {loss: {"value": err, "grad": err} | {"refused": message}}."""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))

import parallel_cases as cases

import mlloss.tensorflow


def model_outputs(name, x, w, h):
    scores = x @ w
    activation = cases.activation(name)
    if activation == "sigmoid":
        scores = tf.sigmoid(scores)
    elif activation == "softmax":
        scores = tf.nn.softmax(scores, axis=-1)
    heads = mlloss.spec(name).heads
    return scores, {k: tf.nn.softplus((x @ h)[:, i]) for i, k in enumerate(heads)}


def gradients(name, loss_fn, x, y, w, h):
    with tf.GradientTape() as tape:
        scores, heads = model_outputs(name, x, w, h)
        value = loss_fn(scores, y, **heads)
    grads = tape.gradient(value, [w, h], unconnected_gradients="zero")
    return value, grads


def shard(context, array):
    """This replica's rows of the batch: the shards are uneven (cases.SHARDS)."""
    replica = context.replica_id_in_sync_group
    start = sum(cases.SHARDS[:replica])
    return tf.constant(array[start : start + cases.SHARDS[replica]])


def main():
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    results = {}
    for name, loss_fn in cases.shardable(
        lambda n: mlloss.tensorflow.loss(n, data_parallel=True), results
    ):
        x, y = cases.data(name)
        w0, h0 = cases.params(name)
        with strategy.scope():
            w, h = tf.Variable(w0), tf.Variable(h0)

        xs = strategy.experimental_distribute_values_from_function(lambda c, a=x: shard(c, a))
        ys = strategy.experimental_distribute_values_from_function(lambda c, a=y: shard(c, a))

        @tf.function
        def step(xs, ys, loss_fn=loss_fn, name=name, w=w, h=h):
            def replica(inputs, targets):
                return gradients(name, loss_fn, inputs, targets, w, h)

            value, grads = strategy.run(replica, args=(xs, ys))
            total = strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
            summed = [strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None) for g in grads]
            return total, summed

        value, grads = step(xs, ys)
        alone, alone_grads = gradients(
            name, mlloss.tensorflow.loss(name), tf.constant(x), tf.constant(y), w, h
        )
        results[name] = cases.errors(value, grads, alone, alone_grads)
    # the control: each replica's own mean, summed by the strategy (wrong: it is neither
    # the global mean nor, with uneven counts, proportional to it)
    name = "sigmoid_bce"
    x, y = cases.data(name)
    w0, h0 = cases.params(name)
    with strategy.scope():
        w, h = tf.Variable(w0), tf.Variable(h0)
    xs = strategy.experimental_distribute_values_from_function(lambda c: shard(c, x))
    ys = strategy.experimental_distribute_values_from_function(lambda c: shard(c, y))
    plain = mlloss.tensorflow.loss(name)
    _, grads = strategy.run(lambda a, b: gradients(name, plain, a, b, w, h), args=(xs, ys))
    summed = strategy.reduce(tf.distribute.ReduceOp.SUM, grads[0], axis=None)
    _, alone = gradients(name, plain, tf.constant(x), tf.constant(y), w, h)
    error = float(tf.reduce_max(tf.abs(summed / 2 - alone[0])) / tf.reduce_max(tf.abs(alone[0])))
    results["naive mean of means (sigmoid_bce)"] = {"grad": error}
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
