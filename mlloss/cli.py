"""The ``mlloss`` command (also ``python -m mlloss``).

``mlloss list``: the catalog. ``mlloss show NAME``: one loss in full. ``mlloss conform``: the
question's worked example on every installed backend, checked against the printed table (the
full conformance matrix replaces it when the golden fixtures land).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import mlloss
from mlloss import backends
from mlloss.port import TARGETS


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
        help="the conformance suite: every loss x backend x dtype x device against the golden",
    )
    conform.add_argument(
        "--backend",
        action="append",
        metavar="B",
        help="repeatable; a backend (numpy, torch, tensorflow, jax) or a framework's own "
        "losses (native:torch, native:torchvision, native:tensorflow, native:keras, "
        "native:optax); default all",
    )
    conform.add_argument(
        "--no-natives", action="store_true", help="leave out the frameworks' own losses"
    )
    conform.add_argument("--loss", action="append", metavar="L", help="repeatable; default all")
    conform.add_argument("--dtype", action="append", metavar="D", help="repeatable; default all")
    conform.add_argument("--device", action="append", metavar="D", help="cpu, cuda (repeatable)")
    conform.add_argument("--json", metavar="PATH", help="also write every case as JSON")
    conform.add_argument(
        "--all-rows", action="store_true", help="list skipped and not-installed cells one by one"
    )
    conform.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        metavar="N",
        help="processes to run backends in (default: 2, or 1 on one core)",
    )
    conform.set_defaults(run=_conform)

    plot = sub.add_parser("plot", help="the loss and its gradient against the logit (PNG)")
    plot.add_argument("name")
    plot.add_argument("--out", metavar="FILE", help="default: NAME.png")
    plot.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a loss parameter (repeatable), e.g. --param gamma=2",
    )
    plot.set_defaults(run=_plot)

    port = sub.add_parser(
        "port",
        help="a framework's own loss as code for another framework, checked numerically",
    )
    port.add_argument(
        "native", help='the loss as code, e.g. "keras.losses.BinaryFocalCrossentropy(gamma=2.0)"'
    )
    port.add_argument("--to", required=True, choices=sorted(TARGETS), help="the target")
    port.add_argument("--no-check", action="store_true", help="print without checking")
    port.set_defaults(run=_port)

    bench = sub.add_parser(
        "bench", help="forward + backward time per loss and backend, as ratios to natives"
    )
    bench.add_argument("--loss", action="append", metavar="L", help="repeatable; default all")
    bench.add_argument(
        "--backend", action="append", metavar="B", help="torch, tensorflow, jax (repeatable)"
    )
    bench.add_argument(
        "--shape", action="append", metavar="NxC", help="repeatable; default the four standard"
    )
    bench.add_argument(
        "--device", default="cpu", choices=("cpu", "cuda"), help="where the tensors live"
    )
    bench.add_argument("--repeat", type=int, default=7, metavar="N", help="timed runs (median)")
    bench.add_argument("--json", metavar="PATH", help="also write every row as JSON")
    bench.set_defaults(run=_bench)

    docs = sub.add_parser(
        "docs", help="write docs/losses.md and docs/porting.md from the specs (or --check them)"
    )
    docs.add_argument("--out", default="docs/losses.md", metavar="PATH")
    docs.add_argument("--porting", default="docs/porting.md", metavar="PATH")
    docs.add_argument(
        "--verified",
        default="docs/natives-verified.json",
        metavar="PATH",
        help="the framework versions porting.md names as verified",
    )
    docs.add_argument("--check", action="store_true", help="exit 1 when a page is stale")
    docs.add_argument(
        "--verify",
        action="store_true",
        help="run every installed framework's native column first, and record the versions "
        "whose column passes",
    )
    docs.set_defaults(run=_docs)

    regenerate = sub.add_parser(
        "golden", help="regenerate the golden fixtures (or --check them against a regeneration)"
    )
    regenerate.add_argument("--loss", action="append", metavar="L", help="repeatable; default all")
    regenerate.add_argument(
        "--check", action="store_true", help="exit 1 when a stored fixture differs"
    )
    regenerate.set_defaults(run=_golden)
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
            lines.append(f"    {n.name}{note}")
    for ref in spec.references:
        lines.append(f"  reference: {ref}")
    if spec.notes:
        lines.append(f"  notes: {spec.notes}")
    print("\n".join(lines))
    return 0


def _conform(args: argparse.Namespace) -> int:
    from mlloss.conformance import report, runner

    runner.load_entry_point_backends()
    losses = [mlloss.spec(name).name for name in args.loss or mlloss.names()]
    from mlloss.conformance import natives as native_columns

    named = args.backend or [
        *backends.names(),
        *map(native_columns.column, native_columns.FRAMEWORKS),
    ]
    prefix = native_columns.COLUMN
    frameworks = [b[len(prefix) :] for b in named if b.startswith(prefix)]
    if args.no_natives:
        frameworks = []
    chosen = [backends.canonical(b) for b in named if not b.startswith(prefix)]
    total = runner.cell_count(losses, chosen, args.dtype, args.device)
    total += native_columns.cell_count(losses, frameworks, args.dtype, args.device)
    advance, done = runner.progress_printer(total)
    try:
        result = runner.run(
            losses,
            chosen,
            args.dtype,
            args.device,
            progress=advance,
            workers=args.workers,
            natives=frameworks,
        )
    finally:
        done()
    report.print_report(result, all_rows=args.all_rows)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result.as_dict(), handle, indent=1)
    ran = [c for c in result.cells if c.status in ("pass", "fail")]
    if not ran:
        print("mlloss conform: nothing ran (no backend installed?)", file=sys.stderr)
        return 1
    return 1 if result.failed else 0


def _port(args: argparse.Namespace) -> int:
    from mlloss.port import port

    result = port(args.native, args.to, check=not args.no_check)
    print(result.code)
    for line in result.checked.splitlines():
        print(f"# {line}")
    return 0 if result.agreed else 1


def _bench(args: argparse.Namespace) -> int:
    from mlloss import bench

    shapes = bench.SHAPES
    if args.shape:
        try:
            shapes = tuple(tuple(int(v) for v in s.lower().split("x")) for s in args.shape)
        except ValueError:
            raise ValueError(f"--shape expects NxC, like 4096x1000; got {args.shape}") from None
    losses = [mlloss.spec(n).name for n in args.loss] if args.loss else None
    rows = bench.run(
        losses,
        args.backend,
        shapes,
        repeat=args.repeat,
        device=args.device,
        on_skip=lambda why: print(why, file=sys.stderr),
    )
    print(bench.table(rows))
    print(
        f"\nimport mlloss: {bench.import_ms():.1f} ms (median of 7 fresh interpreters, "
        "bytecode cached; no framework imported)"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump([r.as_dict() for r in rows], handle, indent=1)
    return 0


def _plot(args: argparse.Namespace) -> int:
    import ast

    from mlloss.plot import plot

    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--param expects KEY=VALUE; got {item!r}")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    name = mlloss.spec(args.name).name
    print(f"wrote {plot(name, args.out or f'{name}.png', **params)}")
    return 0


def _docs(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mlloss.docs import render_losses, render_porting

    verified_path = Path(args.verified)
    verified = json.loads(verified_path.read_text()) if verified_path.exists() else {}
    if args.verify:
        verified = {**verified, **_verify_natives()}
        verified_path.write_text(json.dumps(verified, indent=1, sort_keys=True) + "\n")
        print(f"wrote {verified_path}: {verified}")
    pages = {Path(args.out): render_losses(), Path(args.porting): render_porting(verified)}
    stale = 0
    for path, text in pages.items():
        if args.check:
            current = path.read_text(encoding="utf-8") if path.exists() else ""
            print(f"{path}: {'up to date' if current == text else 'stale: run `mlloss docs`'}")
            stale += current != text
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    return 1 if stale else 0


def _verify_natives() -> dict[str, str]:
    """The installed native frameworks whose conformance columns pass, with their versions."""
    from mlloss.conformance import natives as native_columns
    from mlloss.conformance import runner

    passed = {}
    for framework in native_columns.FRAMEWORKS:
        if not native_columns.installed(framework):
            continue
        report = runner.run(
            mlloss.names(),
            [],
            ["float64", "float32"],
            ["cpu"],
            natives=[framework],
            with_seed=False,
        )
        ran = [c for c in report.cells if c.status in ("pass", "fail")]
        if ran and not report.failed:
            passed[framework] = str(native_columns.version(framework))
            if framework == "keras":
                from mlloss.natives import keras_backend

                passed[framework] += f" ({keras_backend()} backend)"
        print(f"native:{framework}: {'pass' if framework in passed else 'FAILED'}")
    return passed


def _golden(args: argparse.Namespace) -> int:
    from mlloss.conformance import golden

    losses = [mlloss.spec(name).name for name in args.loss or mlloss.names()]
    if not args.check:
        for name in losses:
            golden.write(name)
            print(f"wrote {golden.FIXTURES / name}.npz and .json")
        return 0
    problems = [p for name in losses for p in golden.check(name)]
    for problem in problems:
        print(problem)
    print(
        f"{len(losses)} fixtures: "
        + ("stored differ from regenerated" if problems else "stored equal regenerated")
    )
    return 1 if problems else 0
