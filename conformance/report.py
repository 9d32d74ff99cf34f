"""How ``mlloss conform`` prints its result: the matrix (one row per loss x backend x dtype x
device that ran, with its worst error in ulps and absolute, where, and pass/fail), then what
did not run and why, the failures in full, and the versions it ran against."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from mlloss.conformance.runner import Cell, Comparison, Report

MAX_FAILURES_SHOWN = 25


def _where(c: Comparison) -> str:
    index = "" if c.index is None else str(c.index).replace(" ", "")
    return f"{c.case} {c.reduction} {c.path} {c.quantity}{index}"


def _ulps(c: Comparison | None) -> str:
    if c is None or c.ulps is None:
        return "-"
    return "inf" if c.ulps == float("inf") else f"{c.ulps:.3g}"


def _abs(c: Comparison | None) -> str:
    return "-" if c is None else f"{c.abs_error:.2e}"


def matrix_rows(cells: Sequence[Cell]) -> list[tuple[str, ...]]:
    rows = []
    for cell in cells:
        if cell.status not in ("pass", "fail"):
            continue
        failures = cell.failures
        shown = failures[0] if failures else cell.worst
        rows.append(
            (
                cell.loss,
                cell.backend,
                cell.dtype,
                cell.device,
                cell.status.upper(),
                _ulps(shown),
                _abs(shown),
                _where(shown) if shown else "-",
            )
        )
    return rows


def _print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
        for row in (header, *rows):
            print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
        return
    table = Table(*header, title=title, title_justify="left")
    for row in rows:
        style = "red" if "FAIL" in row else None
        table.add_row(*row, style=style)
    Console(width=200).print(table)


def print_report(report: Report, all_rows: bool = False) -> None:
    cells = report.cells
    _print_table(
        "conformance: values and gradients against the 60-digit golden, reductions none/sum/"
        "mean, gradient paths fused and autodiff (NumPy: closed form)",
        ("loss", "backend", "dtype", "device", "status", "ulps", "|err|", "worst at"),
        matrix_rows(cells),
    )
    idle = [c for c in cells if c.status not in ("pass", "fail")]
    if all_rows:
        for c in idle:
            print(f"{c.status}: {c.loss} {c.backend} {c.dtype} {c.device} ({c.reason})")
    else:
        grouped: dict[tuple[str, str], set[str]] = defaultdict(set)
        for c in idle:
            grouped[(c.status, c.reason)].add(f"{c.backend}/{c.device}")
        for (status, reason), where in sorted(grouped.items()):
            print(f"{status}: {', '.join(sorted(where))} ({reason})")
    known = [(c, k) for c in cells for k in c.known]
    if known:
        reasons = sorted({k.known for _, k in known})
        print(f"known differences, reported not counted: {len(known)} comparisons")
        for reason in reasons:
            print(f"  - {reason}")
    failures = [(c, f) for c in cells for f in c.failures]
    if failures:
        print(f"FAILURES ({len(failures)} comparisons; first {MAX_FAILURES_SHOWN}):")
        for cell, f in failures[:MAX_FAILURES_SHOWN]:
            detail = f.note or f"got {f.got!r}, expected {f.expected!r}, {f.ratio:.3g}x tolerance"
            print(f"  {cell.loss} {cell.backend} {cell.dtype} {cell.device}: {_where(f)}: {detail}")
    for s in report.seed:
        if s.status != "not installed":
            print(
                f"worked example on {s.backend}: {s.status} (max |err| {s.max_abs_error:.2e} "
                f"against the thread's printed TensorFlow values, tolerance 5e-7)"
            )
    versions = ", ".join(f"{k} {v or 'not installed'}" for k, v in report.versions.items())
    print(f"versions: {versions}")
    counts = defaultdict(int)
    for c in cells:
        counts[c.status] += 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    verdict = "FAILED" if report.failed else "all passed"
    print(f"{len(cells)} cells: {summary}; {verdict} in {report.elapsed_s:.0f} s")
