"""Train a small multi-label classifier in TensorFlow with a custom training loop under
tf.function and the ZLPR loss (a ranking loss whose built-in threshold is the logit 0),
decode with its own rule, report F1 and mAP."""

import numpy as np
import tensorflow as tf
from _common import CLASSES, data, report

import mlloss
import mlloss.tensorflow


def main() -> None:
    tf.random.set_seed(0)
    x_train, x_test, y_train, y_test = data()
    init = tf.keras.initializers.GlorotUniform(seed=0)
    w1 = tf.Variable(init((x_train.shape[1], 64)))
    b1 = tf.Variable(tf.zeros(64))
    w2 = tf.Variable(init((64, CLASSES)))
    b2 = tf.Variable(tf.zeros(CLASSES))
    variables = [w1, b1, w2, b2]
    loss_fn = mlloss.tensorflow.loss("zlpr")
    optimizer = tf.keras.optimizers.Adam(1e-2)

    def logits_of(x):
        return tf.nn.relu(x @ w1 + b1) @ w2 + b2

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            value = loss_fn(logits_of(x), y)
        optimizer.apply_gradients(zip(tape.gradient(value, variables), variables, strict=True))
        return value

    dataset = tf.data.Dataset.from_tensor_slices((x_train, y_train.astype(np.float32)))
    for _epoch in range(10):
        for x, y in dataset.shuffle(len(x_train), seed=0).batch(128):
            step(x, y)
    logits = logits_of(x_test).numpy().astype(np.float64)
    predicted = mlloss.get("zlpr").decode(logits)
    report("zlpr (TensorFlow, tf.function)", y_test, predicted, logits)


if __name__ == "__main__":
    main()
