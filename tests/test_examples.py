"""Each example in examples/ runs as a user would run it (its own process, from its folder),
trains, decodes with its loss's rule, and beats predicting every label by a clear margin."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"
NEEDS = {
    "torch_multilabel.py": ("torch",),
    "keras_multilabel.py": ("keras", "tensorflow"),
    "jax_multilabel.py": ("jax", "optax"),
    "tensorflow_multilabel.py": ("tensorflow",),
}


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*_multilabel.py")) == sorted(NEEDS)


@pytest.mark.parametrize("example", sorted(NEEDS))
def test_example_trains_a_classifier(example):
    pytest.importorskip("sklearn")
    for module in NEEDS[example]:
        pytest.importorskip(module)
    result = subprocess.run(
        [sys.executable, example],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = dict(re.findall(r"^\s*(\w+): ([0-9.]+)$", result.stdout, flags=re.M))
    metrics = {k: float(v) for k, v in metrics.items()}
    assert set(metrics) == {"micro_f1", "macro_f1", "mAP", "all_labels_micro_f1"}, result.stdout
    assert metrics["micro_f1"] > metrics["all_labels_micro_f1"] + 0.05, metrics
    assert metrics["macro_f1"] > 0.4, metrics
    # 8 labels, about 2 per sample: ranking at random gives a mAP near 0.25
    assert metrics["mAP"] > 0.55, metrics
