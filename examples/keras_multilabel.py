"""Train a small multi-label classifier with Keras 3 and the focal loss, on whichever
backend KERAS_BACKEND names (tensorflow by default; jax and torch work the same), decode with
focal's own rule, report F1 and mAP."""

import keras
import numpy as np
from _common import CLASSES, data, report

import mlloss
import mlloss.keras


def main() -> None:
    keras.utils.set_random_seed(0)
    x_train, x_test, y_train, y_test = data()
    model = keras.Sequential(
        [
            keras.Input((x_train.shape[1],)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(CLASSES),  # logits: mlloss's sigmoid losses take logits
        ]
    )
    loss = mlloss.keras.Loss("focal", gamma=2.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    model.fit(x_train, y_train, epochs=10, batch_size=128, verbose=0)
    logits = np.asarray(model.predict(x_test, verbose=0), dtype=np.float64)
    predicted = mlloss.get("focal", gamma=2.0).decode(logits)
    report(f"focal (Keras on {keras.config.backend()})", y_test, predicted, logits)


if __name__ == "__main__":
    main()
