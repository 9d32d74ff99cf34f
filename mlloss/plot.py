"""``mlloss plot NAME``: the loss and its gradient against one logit (or probability), for a
positive and a negative label, computed by mlloss itself on NumPy. Needs matplotlib."""

from __future__ import annotations

from typing import Any

import numpy as np

import mlloss

CLASSES = 4  # sample-level losses: the plotted logit's row holds this many classes


def curves(name: str, **params: Any) -> dict[str, np.ndarray]:
    """x, and the loss and its gradient at x for a positive and a negative label. A
    sample-level loss varies logit 0 of a row of CLASSES logits, the others held at 0 (with
    one other class positive, so that a ranking loss has a pair)."""
    spec = mlloss.spec(name)
    if spec.input_kind == "probabilities":
        x = np.linspace(0.001, 0.999, 400)
    else:
        x = np.linspace(-6.0, 6.0, 400)
    loss = mlloss.get(name, backend="numpy", reduction="none", **params)
    out: dict[str, np.ndarray] = {"x": x}
    for label in ("positive", "negative"):
        values, grads = [], []
        for v in x:
            if spec.per == "element":
                logits, targets = np.array([[v]]), np.array([[1.0 if label == "positive" else 0.0]])
            else:
                logits = np.zeros((1, CLASSES))
                if spec.input_kind == "probabilities":
                    logits += 0.5
                logits[0, 0] = v
                if spec.target_kind == "class_index":
                    targets = np.array([0 if label == "positive" else 1])
                else:
                    targets = np.zeros((1, CLASSES))
                    targets[0, 0 if label == "positive" else 1] = 1.0
            # extra heads at a fixed, plausible value (partition: a count of 1 label)
            heads = {name: np.ones(logits.shape[:-1]) for name in spec.heads}
            value, grad = loss.value_and_grad(logits, targets, **heads)
            grad = grad[0] if spec.heads else grad
            values.append(float(np.sum(value)))
            grads.append(float(np.asarray(grad).reshape(-1)[0]))
        out[f"{label}_loss"], out[f"{label}_grad"] = np.array(values), np.array(grads)
    return out


def plot(name: str, out: str, **params: Any) -> str:
    """Draw :func:`curves` to ``out`` (PNG, or any format matplotlib knows); returns ``out``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError("mlloss plot needs matplotlib: pip install 'mlloss[plot]'") from error
    spec = mlloss.spec(name)
    data = curves(spec.name, **params)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(6, 6), sharex=True)
    for label, style in (("positive", "-"), ("negative", "--")):
        top.plot(data["x"], data[f"{label}_loss"], style, label=f"label {label}")
        bottom.plot(data["x"], data[f"{label}_grad"], style, label=f"label {label}")
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    top.set_title(f"{spec.name}({shown})" if shown else spec.name)
    top.set_ylabel("loss")
    bottom.set_ylabel("d loss / d input")
    varied = "probability" if spec.input_kind == "probabilities" else "logit"
    if spec.per != "element":
        varied += f" 0 (of {CLASSES}; the others fixed)"
    bottom.set_xlabel(varied)
    for axis in (top, bottom):
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out
