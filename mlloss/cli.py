"""The ``mlloss`` command (also ``python -m mlloss``).

``mlloss list``: the catalog. ``mlloss show NAME``: one loss in full. ``mlloss conform``: the
question's worked example on every installed backend, checked against the printed table (the
full conformance matrix replaces it when the golden fixtures land).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import mlloss
from mlloss import backends


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.run(args))
    except (ValueError, TypeError) as error:
        print(f"mlloss: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlloss",
        description="Classification losses defined once, run on NumPy, PyTorch, TensorFlow "
        "and JAX.",
    )
    parser.add_argument("--version", action="version", version=f"mlloss {mlloss.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    listing = sub.add_parser("list", help="the catalog, one line per loss")
    listing.set_defaults(run=_list)

    show = sub.add_parser("show", help="one loss: formula, parameters, decode rule, natives")
    show.add_argument("name")
    show.set_defaults(run=_show)

    conform = sub.add_parser(
        "conform",
        help="run the worked example on every installed backend and check it",
    )
    conform.add_argument(
        "--backend",
        action="append",
        metavar="B",
        help="a backend to run (repeatable; default: all four)",
    )
    conform.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    conform.set_defaults(run=_conform)
    return parser


def _list(args: argparse.Namespace) -> int:
    width = max(len(n) for n in mlloss.names())
    for name in mlloss.names():
        spec = mlloss.spec(name)
        print(f"{name:<{width}}  {spec.per:<7}  {spec.summary}")
    return 0


def _show(args: argparse.Namespace) -> int:
    spec = mlloss.spec(args.name)
    lines = [
        f"{spec.name}: {spec.summary}",
        f"  aliases:    {', '.join(spec.aliases) or '-'}",
        f"  per:        {spec.per}   input: {spec.input_kind}   targets: {spec.target_kind}",
        f"  formula:    {spec.formula}",
        f"  decode:     {spec.decode}",
        "  parameters:",
    ]
    for p in spec.params:
        lines.append(f"    {p.name} = {p.default!r}: {p.doc}; {p.allowed()}")
    if not spec.params:
        lines.append("    (none)")
    for kink, rule in spec.subgradients.items():
        lines.append(f"  subgradient at {kink}: {rule}")
    if spec.natives:
        lines.append("  natives:")
        for n in spec.natives:
            note = f"  ({n.note})" if n.note else ""
            lines.append(f"    {n.framework}: {n.call}{note}")
    for ref in spec.references:
        lines.append(f"  reference: {ref}")
    if spec.notes:
        lines.append(f"  notes: {spec.notes}")
    print("\n".join(lines))
    return 0


def _conform(args: argparse.Namespace) -> int:
    from mlloss.conformance import seed

    # torch before TensorFlow: the other order can crash in one process (Keras notes it too)
    chosen = [backends.canonical(b) for b in args.backend or backends.BACKENDS]
    order = [b for b in backends.BACKENDS if b in chosen]
    example = seed.load()
    results = [seed.run(b, example) for b in order]
    _print_seed_table(results)
    if args.json:
        payload = {
            "mlloss": mlloss.__version__,
            "case": "seed worked example: sigmoid_bce, reduction none, float32, cpu",
            "tolerance": seed.TOLERANCE,
            "results": [r.as_dict() for r in results],
        }
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
    failed = [r for r in results if r.status == "fail"]
    ran = [r for r in results if r.status != "not installed"]
    if not ran:
        print("mlloss conform: no backend installed ran", file=sys.stderr)
        return 1
    return 1 if failed else 0


def _print_seed_table(results: list) -> None:
    header = ("backend", "version", "max |err|", "at", "sum/N", "status")
    rows = []
    for r in results:
        if r.status == "not installed":
            rows.append((r.backend, "-", "-", "-", "-", "not installed"))
            continue
        rows.append(
            (
                r.backend,
                r.version or "-",
                f"{r.max_abs_error:.2e}",
                str(r.where),
                f"{r.batch_loss:.7f}",
                r.status.upper(),
            )
        )
    print("sigmoid_bce on the question's worked example (float32, cpu), against the printed")
    print("TensorFlow table within 5e-7; sum/N is the answer's reduce_mean(reduce_sum(.., 1))")
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
        for row in (header, *rows):
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
        return
    table = Table(*header)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
