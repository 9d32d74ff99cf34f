"""Documentation generated from the specs (``mlloss docs``): ``docs/losses.md``, the catalog,
and ``docs/porting.md``, every framework's own loss that mlloss maps."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mlloss

DECODE_RULES = {
    "logit_threshold": "sigmoid(x) > threshold (default 0.5); or the top k",
    "probability_threshold": "p > threshold (default 0.5); or the top k",
    "zero_threshold": "x > 0; or the top k",
    "top_k": "the top k of each row, or x > threshold (a logit)",
    "top1": "the arg-max of each row; or the top k",
    "top_count": "the top round(max(count, count_floor)) of each row, from the count= head",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_losses() -> str:
    """The catalog page: every loss with its formula, parameters, decode rule, subgradients,
    natives and references, in ``mlloss.names()`` order."""
    lines = [
        "# The loss catalog",
        "",
        "Generated from the specs by `mlloss docs`; a test fails when this page is stale.",
        "Targets: multi-hot or soft labels in [0, 1], a negative entry a missing label (left",
        "out of every sum, count and gradient), or class indices for `sparse_softmax_ce`.",
        "",
        "| loss | per | input | summary |",
        "|---|---|---|---|",
    ]
    for name in mlloss.names():
        spec = mlloss.spec(name)
        lines.append(
            f"| [`{name}`](#{name}) | {spec.per} | {spec.input_kind} | {_cell(spec.summary)} |"
        )
    for name in mlloss.names():
        spec = mlloss.spec(name)
        lines += ["", f"## {name}", "", spec.summary, "", f"$$ {spec.formula} $$", ""]
        lines.append(
            f"One value per {spec.per}; input: {spec.input_kind}; targets: {spec.target_kind}."
        )
        if spec.aliases:
            lines.append(f"Aliases: {', '.join(f'`{a}`' for a in spec.aliases)}.")
        lines.append(f"Decode: {DECODE_RULES[spec.decode]}.")
        if spec.params:
            lines += ["", "| parameter | default | allowed | meaning |", "|---|---|---|---|"]
            for p in spec.params:
                lines.append(
                    f"| `{p.name}` | `{p.default!r}` | {_cell(p.allowed())} | {_cell(p.doc)} |"
                )
        for kink, rule in spec.subgradients.items():
            lines.append(f"\nSubgradient of `{kink}`: {rule}.")
        if spec.natives:
            natives = ", ".join(dict.fromkeys(f"`{n.name}`" for n in spec.natives))
            lines += ["", f"Natives ([porting](porting.md)): {natives}."]
        if spec.notes:
            lines += ["", spec.notes]
        lines += ["", "References: " + "; ".join(spec.references) + "."]
    return "\n".join(lines) + "\n"


# porting ----------------------------------------------------------------------------------------

_REDUCE = {
    "reduction": "its `reduction=`: none, sum, mean (over every element or sample)",
    "index_reduction": "its `reduction=`; mean is `weighted_mean` (the sum over the sum of the "
    "targets' class weights)",
    "keras": "mean over the last axis (`mean_over_classes`), then its `reduction=` "
    "(sum_over_batch_size and mean: mean; sum; None/none)",
    "per_sample": "unreduced: the mean over the last axis for an element-wise loss",
    "unreduced": "unreduced",
}
_ORDER = ("torch", "torchvision", "tensorflow", "keras", "optax")


def _arguments(native: Any) -> str:
    parts = [f"`{k}={v!r}` selects it" for k, v in native.when.items()]
    parts += [f"`{a}` → `{p}`" for a, p in native.rename.items() if a != p]
    parts += [f"`{a}`" for a, p in native.rename.items() if a == p]
    parts += [f"implies `{k}={v!r}`" for k, v in native.fixed.items()]
    if native.convert is not None:
        doc = (native.convert.__doc__ or native.convert.__name__).split("\n\n")[0]
        parts.append(" ".join(doc.split()).replace("``", "`").rstrip("."))
    parts += [f"`{k}={v!r}` only" for k, v in native.require.items()]
    return "; ".join(parts) or "none"


def render_porting(verified: Mapping[str, str]) -> str:
    """docs/porting.md: every framework's own loss that mlloss maps, with its exact
    translation and every way it differs from the plain loss; ``verified`` maps each native
    framework to the version whose native column last passed (``mlloss docs --verify``)."""
    from mlloss.conformance.tolerances import NATIVE_DIFFERENCES

    shown = ", ".join(f"{f} {verified[f]}" for f in _ORDER if f in verified) or "none yet"
    missing = [f for f in _ORDER if f not in verified]
    lines = [
        "# Porting between frameworks",
        "",
        "Generated from the specs by `mlloss docs`; a test fails when this page is stale.",
        "",
        "Every framework's own loss below maps to one mlloss loss exactly: "
        "`mlloss.from_native(name, backend=..., **its_arguments)` returns the mlloss loss that "
        "returns what the native returns (the same values in the same shape), and "
        '`mlloss port "name(args)" --to FRAMEWORK` prints the code for another framework '
        "after running both on random inputs. The returned loss is always called as "
        "`loss(predictions, targets)`, predictions first, even where the native takes the "
        "targets first (Keras, TensorFlow). A native is named as users write it: class or "
        "function (`torch.nn.BCEWithLogitsLoss`, `torch.nn.functional.binary_cross_entropy_"
        "with_logits`, `F.` for short), `tf.` or `tensorflow.`, `optax.` or `optax.losses.`, "
        "`keras.losses.` or `tf.keras.losses.`. Tensor arguments may be NumPy arrays or any "
        "framework's tensors. An unknown native or argument, or an argument at a value without "
        "an exact mapping, is refused with an error that lists what is known.",
        "",
        "Two reductions exist for natives: `mean_over_classes=True` (Keras averages every "
        "element-wise loss over the last axis before it reduces) and "
        '`reduction="weighted_mean"` (torch\'s mean for class indices with `weight=`). '
        "Natives have no missing labels: a negative multi-hot target is missing in mlloss and "
        "a number in the native. torch puts classes on axis 1 and mlloss on the last axis: "
        "the two agree for (N, C) inputs. Keras's loss classes compute in their `dtype` "
        "(float32 by default); mlloss computes in the input's dtype.",
        "",
        f"Verified against: {shown}. Each native runs live on the golden fixtures as its own "
        "column of `mlloss conform` (`native:torch`, ...), values and gradients, in float64 "
        "and float32.",
    ]
    if missing:
        lines.append(
            f"Not verified live here: {', '.join(missing)} (torchvision's PyPI wheels do not "
            "import beside the CPU build of torch 2.13.0; its mapping is tested against its "
            "documented formula)."
        )
    lines += [
        "",
        "| loss | native | arguments | reduction | differs from the plain loss | verified |",
        "|---|---|---|---|---|---|",
    ]
    for name in mlloss.names():
        spec = mlloss.spec(name)
        for native in sorted(spec.natives, key=lambda n: _ORDER.index(n.framework)):
            forms = "".join(f"<br>`{f}`" for f in native.forms)
            call = "targets first; " if native.targets_first else ""
            version = verified.get(native.framework)
            checked = f"{native.framework} {version}" if version else "formula only"
            lines.append(
                f"| `{name}` | `{native.name}`{forms} | {_cell(_arguments(native))} | "
                f"{_cell(call + _REDUCE[native.reduce])} | {_cell(native.note or '—')} | "
                f"{checked} |"
            )
    lines += [
        "",
        "## Where a native's output differs from the golden reference",
        "",
        "Each is a property of the native, found by its conformance column; the comparisons are "
        "run and reported, not counted.",
        "",
    ]
    for d in NATIVE_DIFFERENCES:
        where = ", ".join(d.cases) if d.cases else "every case"
        if d.losses:
            where += " of " + ", ".join(f"`{loss}`" for loss in d.losses)
        what = d.quantity or "values and gradients"
        natives = ", ".join(f"`{n}`" for n in d.natives)
        lines.append(f"- {natives} ({where}; {what}): {d.reason}.")
    lines += [
        "",
        "## Not mapped",
        "",
        "- `optax.smooth_labels` before `optax.sigmoid_binary_cross_entropy`: it moves binary "
        "targets toward 1/C, while mlloss's binary smoothing moves them toward 0.5.",
        "- `keras.losses.BinaryFocalCrossentropy(from_logits=True)` under Keras's JAX or torch "
        "backend: there Keras takes sigmoid(x) and clips it at 1e-7 before the log.",
        "- torch's `weight=` of any shape but (C,) or a number; `axis` other than -1; optax's "
        "`where=`; Keras's `sample_weight`.",
    ]
    return "\n".join(lines) + "\n"
