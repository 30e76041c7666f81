"""``hmn report FILE.json...``: the plugin's summary table from saved JSON reports.

Several files (CI shards, xdist runs on several machines) merge into one table with a
``source`` column naming the file each row came from, so a test run in two places shows
once per place. The table is ``_summary.summary_lines``, the plugin's own code.

Extension points for later flags: ``add_parser`` builds the subparser, ``load_all`` reads
the files, ``render`` builds the lines, ``run`` wires them and returns the exit code
(0; 1 is reserved for a comparison gate).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from pytest_hypomnesis.cli._args import UsageError

__all__ = ["LoadedReport", "add_parser", "load_all", "non_negative_int_arg", "render", "run"]


@dataclass(frozen=True)
class LoadedReport:
    """One validated report and the name it is shown under (the path as given)."""

    source: str
    data: dict[str, Any]


def non_negative_int_arg(text: str) -> int:
    stripped = text.strip()
    if not stripped.isascii() or not stripped.isdigit():
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: not a whole number")
    return int(stripped)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="print the plugin's summary table from JSON reports",
        description=(
            "Print the pytest plugin's summary table from one or more --hypomnesis-json "
            "reports. Several files merge into one table with a source column."
        ),
    )
    parser.add_argument(
        "files", nargs="+", metavar="FILE.json", help="reports written by --hypomnesis-json"
    )
    parser.add_argument(
        "--top",
        type=non_negative_int_arg,
        default=10,
        metavar="N",
        help="rows to show, heaviest first (default 10; 0 = all)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="add the RAM start/end, outcome and worker columns",
    )
    return parser


def load_all(paths: Sequence[str]) -> list[LoadedReport]:
    """Read and validate every file; the first bad one is a ``UsageError`` naming it."""
    from pytest_hypomnesis._jsonreport import ReportError, load_report

    loaded = []
    for path in paths:
        try:
            loaded.append(LoadedReport(source=path, data=load_report(path)))
        except ReportError as exc:
            raise UsageError(str(exc)) from None
    return loaded


def render(reports: Sequence[LoadedReport], *, top: int, verbose: bool = False) -> list[str]:
    """Header line(s), then the one merged table."""
    from pytest_hypomnesis._summary import header_line, summary_lines

    headers: dict[str, list[str]] = {}
    for rep in reports:
        headers.setdefault(header_line(rep.data), []).append(rep.source)
    if len(headers) == 1:
        lines = list(headers)
    else:
        # Shards from different machines or settings: say which header is whose.
        lines = [f"{text} [{', '.join(srcs)}]" for text, srcs in headers.items()]
    tests: list[dict[str, Any]] = []
    sources: list[str] = []
    for rep in reports:
        for record in rep.data["tests"]:
            tests.append(record)
            sources.append(rep.source)
    if not tests:
        lines.append("hypomnesis: no measured tests in " + ", ".join(r.source for r in reports))
        return lines
    table = summary_lines(
        tests, top=top, verbose=verbose, sources=sources if len(reports) > 1 else None
    )
    return lines + table


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    reports = load_all(args.files)
    out.write("".join(line + "\n" for line in render(reports, top=args.top, verbose=args.verbose)))
    return 0
