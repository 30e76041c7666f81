"""``hmn report FILE.json...``: the plugin's summary table from saved JSON reports.

Several files (CI shards, xdist runs on several machines) merge into one table with a
``source`` column naming the file each row came from, so a test run in two places shows
once per place. The table is ``_summary.summary_lines``, the plugin's own code.

``--compare BASE.json`` compares the merged tests with a baseline report and prints the
comparison after the table; ``--fail EXPR`` makes it a gate (exit 1 on a regression);
``--html PATH`` writes the HTML report of the merged tests. Exit 2 on bad input (a report,
the baseline, an expression), with one line and nothing printed before it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from pytest_hypomnesis.cli._args import UsageError, non_negative_int_arg

if TYPE_CHECKING:
    from pytest_hypomnesis.record import MeasuredTestRecord
    from pytest_hypomnesis.report.schema import Report

__all__ = [
    "LoadedReport",
    "load_all",
    "merged",
    "non_negative_int_arg",
    "render",
    "run",
]


@dataclass(frozen=True)
class LoadedReport:
    """One validated report and the name it is shown under (the path as given)."""

    source: str
    data: Report


def load_all(paths: Sequence[str]) -> list[LoadedReport]:
    """Read and validate every file; the first bad one is a ``UsageError`` naming it."""
    from pytest_hypomnesis.report.schema import ReportError, load_report

    loaded = []
    for path in paths:
        try:
            loaded.append(LoadedReport(source=path, data=load_report(path)))
        except ReportError as exc:
            raise UsageError(str(exc)) from None
    return loaded


def render(reports: Sequence[LoadedReport], *, top: int, verbose: bool = False) -> list[str]:
    """Header line(s), then the one merged table."""
    from pytest_hypomnesis.report.table import (
        header_line,
        header_notes,
        not_checked_lines,
        run_peak_line,
        summary_lines,
        unit_note,
    )

    headers: dict[str, list[str]] = {}
    for rep in reports:
        headers.setdefault(header_line(rep.data), []).append(rep.source)
    if len(headers) == 1:
        lines = list(headers)
    else:
        # Shards from different machines or settings: say which header is whose.
        lines = [f"{text} [{', '.join(srcs)}]" for text, srcs in headers.items()]
    # Each file's run RAM peak (the JSON's optional `run`), as the plugin prints it under
    # its header; shards are separate runs, so each keeps its own, named by its file.
    for rep in reports:
        peak = run_peak_line(rep.data)
        if peak is not None:
            lines.append(peak if len(reports) == 1 else f"{peak} [{rep.source}]")
    for note in dict.fromkeys(n for rep in reports for n in header_notes(rep.data)):
        lines.append(note)
    tests: list[MeasuredTestRecord] = []  # load_report validated every record
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
    unit = unit_note(tests)
    return lines + ([unit] if unit else []) + not_checked_lines(tests) + table


def merged(reports: Sequence[LoadedReport]) -> Report:
    """One report of every file's tests; the first file's settings, machine and devices
    (shards of one CI run share them)."""
    first = reports[0].data
    return {**first, "tests": [t for rep in reports for t in rep.data["tests"]]}


def _check_output_path(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"--html {path}: directory {parent} does not exist")
    if os.path.isdir(path):
        raise UsageError(f"--html {path}: is a directory, expected a file path")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from pytest_hypomnesis.report.compare import (
        BaselineError,
        CompareError,
        ThresholdError,
        compare,
        format_comparison,
        load_baseline,
        parse_fail_exprs,
    )

    out = out or sys.stdout
    compare_path: str | None = getattr(args, "compare", None)
    fail: str | None = getattr(args, "fail", None)
    html_path: str | None = getattr(args, "html", None)
    # Every input is checked before anything is printed: bad input is one line, exit 2.
    thresholds = []
    if fail is not None:
        if compare_path is None:
            raise UsageError("--fail needs --compare BASE.json, the baseline to compare with")
        try:
            thresholds = parse_fail_exprs(fail)
        except ThresholdError as exc:
            raise UsageError(f"--fail: {exc}") from None
    if html_path is not None:
        _check_output_path(html_path)
    reports = load_all(args.files)
    baseline = None
    if compare_path is not None:
        try:
            baseline = load_baseline(compare_path)
        except BaselineError as exc:
            raise UsageError(str(exc)) from None
    data = merged(reports)
    comparison = None
    try:
        if baseline is not None:
            comparison = compare(baseline, data, thresholds)
        page = None
        if html_path is not None:
            from pytest_hypomnesis.report.html import render_html

            page = render_html(data, baseline=baseline, comparison=comparison)
    except CompareError as exc:
        raise UsageError(str(exc)) from None
    lines = render(reports, top=args.top, verbose=args.verbose)
    if comparison is not None:
        lines += format_comparison(comparison, max_listed=None if args.verbose else 20)
    out.write("".join(line + "\n" for line in lines))
    if page is not None:
        from pytest_hypomnesis.report.html import write_html_atomic

        assert html_path is not None
        try:
            write_html_atomic(html_path, page)
        except OSError as exc:
            raise UsageError(f"cannot write the HTML report to {html_path}: {exc}") from None
    return 1 if comparison is not None and comparison.failed else 0
