"""What the four examples share: the data set and the report. Each example trains a small
multi-label classifier with a catalog loss and decodes with that loss's own rule."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import make_multilabel_classification
from sklearn.metrics import average_precision_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

CLASSES = 8


def data(seed: int = 0):
    """(x_train, x_test, y_train, y_test): 2,000 samples, 20 features, 8 labels (about 2 per
    sample), standardised, float32."""
    x, y = make_multilabel_classification(
        n_samples=2000, n_features=20, n_classes=CLASSES, n_labels=2, random_state=seed
    )
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=seed)
    scaler = StandardScaler().fit(x_train)
    as32 = (scaler.transform(x_train), scaler.transform(x_test), y_train, y_test)
    return tuple(a.astype(np.float32) for a in as32)


def report(loss: str, y_true, predicted, scores) -> dict[str, float]:
    """Micro and macro F1 of the decoded labels, mAP (macro average precision) of the scores,
    and, for scale, the micro F1 of predicting every label."""
    y_true, predicted, scores = (np.asarray(a) for a in (y_true, predicted, scores))
    result = {
        "micro_f1": f1_score(y_true, predicted, average="micro", zero_division=0),
        "macro_f1": f1_score(y_true, predicted, average="macro", zero_division=0),
        "mAP": average_precision_score(y_true, scores, average="macro"),
        "all_labels_micro_f1": f1_score(
            y_true, np.ones_like(y_true), average="micro", zero_division=0
        ),
    }
    print(f"loss: {loss}")
    for name, value in result.items():
        print(f"{name:>20}: {value:.3f}")
    return result
