"""Documentation generated from the specs: ``docs/losses.md`` (``mlloss docs``)."""

from __future__ import annotations

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
            lines += ["", "Natives:", ""]
            for n in spec.natives:
                note = f" — {n.note}" if n.note else ""
                lines.append(f"- {n.framework}: `{n.call}`{note}")
        if spec.notes:
            lines += ["", spec.notes]
        lines += ["", "References: " + "; ".join(spec.references) + "."]
    return "\n".join(lines) + "\n"
