"""Run in a fresh process with KERAS_BACKEND set: train a small model a few steps with
mlloss.keras.Loss, save it, load it back; print the results as JSON for the test to check."""

import json
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

import mlloss.keras


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 10)).astype("float32")
    w = rng.normal(size=(10, 5)).astype("float32")
    multi_hot = (x @ w > 0.5).astype("float32")
    multi_hot[::7, 2] = -1.0  # missing labels
    classes = np.argmax(x @ w, axis=-1).astype("int32")
    out = {"backend": keras.config.backend()}
    for loss, y, params in [
        ("focal", multi_hot, {"gamma": 2.0, "alpha": 0.25}),
        ("sigmoid_bce", multi_hot, {"pos_weight": [1.0, 2.0, 1.0, 1.0, 3.0]}),
        ("sparse_softmax_ce", classes, {"label_smoothing": 0.1}),
    ]:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(5)])
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss=mlloss.keras.Loss(loss, **params))
        history = model.fit(x, y, epochs=4, batch_size=64, verbose=0).history["loss"]
        path = Path(tempfile.mkdtemp()) / "model.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        logits = np.asarray(model.predict(x, verbose=0))
        direct = float(mlloss.get(loss, backend="numpy", **params)(logits.astype("float64"), y))
        out[loss] = {
            "history": history,
            "reloaded_max_diff": float(
                np.abs(np.asarray(loaded.predict(x, verbose=0)) - logits).max()
            ),
            "reloaded_config": loaded.loss.get_config(),
            "config": model.loss.get_config(),
            "evaluate": float(model.evaluate(x, y, batch_size=256, verbose=0)),
            "direct": direct,
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
