"""The ``hypomnesis`` terminal section: prints the session report, changes nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pytest_hypomnesis._units import format_bytes_iec
from pytest_hypomnesis.record import (
    MeasuredTestRecord,
    heaviness,
    over_budget,
    vram_increase_bytes,
)
from pytest_hypomnesis.report.table import (
    header_line,
    header_notes,
    not_checked_lines,
    run_peak_line,
    summary_lines,
    unit_note,
    wrap_header,
)

if TYPE_CHECKING:
    from pytest_hypomnesis.plugin.options import Settings
    from pytest_hypomnesis.report.session import SessionReport

__all__ = ["not_checked", "summary"]


def _one_line(tests: list[MeasuredTestRecord]) -> str:
    failed = sum(1 for t in tests if over_budget(t))
    text = f"hypomnesis: {len(tests)} tests measured, {failed} over budget"
    if tests:
        top = min(tests, key=heaviness)
        ram = format_bytes_iec(top["ram"]["increase_bytes"])
        vram = vram_increase_bytes(top)
        heavy = f"RAM +{ram}" + ("" if vram is None else f", VRAM +{format_bytes_iec(vram)}")
        text += f"; heaviest {top['nodeid']} ({heavy})"
    return text


def _terminal_width(tr: pytest.TerminalReporter) -> int:
    """The terminal's width as pytest's terminal writer knows it (``COLUMNS`` honoured,
    80 when the output is not a terminal)."""
    writer = getattr(tr, "_tw", None)
    width = getattr(writer, "fullwidth", None)
    if isinstance(width, int) and width > 0:
        return width
    import shutil

    return shutil.get_terminal_size().columns


def _table(
    report: SessionReport, settings: Settings, tr: pytest.TerminalReporter, verbosity: int
) -> None:
    tests = report.tests
    if verbosity <= -2:
        tr.write_line(_one_line(tests))
        return
    tr.write_sep("=", "hypomnesis")
    width = _terminal_width(tr)
    if verbosity >= 0:
        for line in wrap_header(header_line(report.data), width):
            tr.write_line(line)
        run_peak = run_peak_line(report.data)
        if run_peak is not None:
            for line in wrap_header(run_peak, width):
                tr.write_line(line)
        for note in report.notes:
            for line in wrap_header(f"hypomnesis: note: {note}", width):
                tr.write_line(line, yellow=True)
        for note in header_notes(report.data):
            for line in wrap_header(note, width):
                tr.write_line(line, yellow=True)
    unit = unit_note(tests, settings.size_texts)
    if unit is not None and verbosity >= 0:
        for line in wrap_header(unit, width):
            tr.write_line(line)
    for line in not_checked_lines(tests):
        tr.write_line(line, yellow=True)
    if not tests:
        tr.write_line("no test was measured")
    table = summary_lines(tests, top=settings.top, verbose=verbosity >= 1, width=width)
    for line in table:
        tr.write_line(line, red=" OVER" in line)
    if verbosity >= 0:
        if settings.json_path and not report.json_error:
            tr.write_line(f"JSON report: {settings.json_path}")
        if settings.html_path and not report.problems:
            tr.write_line(f"HTML report: {settings.html_path}")


def _comparison(
    report: SessionReport, tr: pytest.TerminalReporter, verbosity: int, *, section_open: bool
) -> None:
    comparison = report.comparison
    if comparison is None:
        return
    if not section_open and verbosity > -2:
        tr.write_sep("=", "hypomnesis")
    from pytest_hypomnesis.report.compare import (  # loads only for a gate
        format_comparison,
        not_compared_lines,
    )

    lines = format_comparison(comparison, max_listed=None if verbosity >= 1 else 20)
    unchecked = len(not_compared_lines(comparison.not_compared))
    warned = 1 + len(comparison.warnings) + unchecked
    regressed = warned + len(comparison.regressions)
    for i, line in enumerate(lines):
        if i == 0:
            clean = not comparison.failed and not unchecked
            tr.write_line(
                line, red=comparison.failed, green=clean, yellow=not comparison.failed and not clean
            )
        else:
            tr.write_line(line, yellow=i < warned, red=warned <= i < regressed)


def summary(
    report: SessionReport, settings: Settings, tr: pytest.TerminalReporter, verbosity: int
) -> None:
    if report.json_error:
        tr.write_line(report.json_error, red=True, bold=True)
    enabled = settings.enabled
    if enabled:
        _table(report, settings, tr, verbosity)
    _comparison(report, tr, verbosity, section_open=enabled and verbosity > -2)
    for line in report.problems:
        tr.write_line(line, yellow=True, bold=True)


def not_checked(
    records: list[MeasuredTestRecord], tr: pytest.TerminalReporter, verbosity: int
) -> None:
    """Without the summary (a budget on a run without ``--hypomnesis``): only the lines
    saying which budgets could not be checked, once each."""
    if verbosity <= -2:
        return
    for line in not_checked_lines(records):
        tr.write_line(line, yellow=True)
