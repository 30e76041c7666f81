"""The controller's output: the ``hypomnesis`` terminal section, the JSON and HTML reports
and the regression gate against a baseline."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest

from pytest_hypomnesis._units import format_bytes_iec
from pytest_hypomnesis.probe import chain
from pytest_hypomnesis.record import (
    MeasuredTestRecord,
    heaviness,
    over_budget,
    vram_increase_bytes,
)
from pytest_hypomnesis.report.schema import build_report, write_report_atomic
from pytest_hypomnesis.report.table import header_line, summary_lines

if TYPE_CHECKING:
    from pytest_hypomnesis.plugin.hooks import HypomnesisPlugin

__all__ = ["finish_session", "report_data", "summary", "write_json"]


def _devices(plugin: HypomnesisPlugin) -> list[dict[str, Any]]:
    try:
        count = chain.device_count()
        indices = range(count) if plugin.settings.devices is None else plugin.settings.devices
        return [chain.device_info(i).to_dict() for i in indices if i < count]
    except Exception:  # the report is best-effort about devices; never fail the session
        return []


def _machine(devices: list[dict[str, Any]], plugin: HypomnesisPlugin) -> dict[str, Any]:
    ram_total: int | None = None
    try:
        if sys.platform == "win32":
            raise OSError("no sysconf")
        # sysconf where it exists: importing psutil only for this cost ~15 ms per run.
        ram_total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        try:
            import psutil

            ram_total = int(psutil.virtual_memory().total)
        except Exception:
            ram_total = None
    reason = None
    if not devices:
        try:
            reason = plugin.engine.unavailable_reason()
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
    return {
        "hostname": platform.node(),
        "system": platform.system(),
        "release": platform.release(),
        "arch": platform.machine(),
        "python_implementation": platform.python_implementation(),
        "cpu_count": os.cpu_count(),
        "ram_total_bytes": ram_total,
        "gpu_unavailable_reason": reason,
    }


def report_data(plugin: HypomnesisPlugin) -> dict[str, Any]:
    """The whole report, built once per call from the collected records."""
    from pytest_hypomnesis import __version__

    cache = plugin.report_cache
    if cache is not None and len(cache["tests"]) == len(plugin.records):
        return cache
    devices = _devices(plugin)
    data = build_report(
        created=datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        versions={
            "plugin": __version__,
            "pytest": pytest.__version__,
            "python": platform.python_version(),
        },
        machine=_machine(devices, plugin),
        settings=plugin.settings.to_dict(),
        devices=devices,
        tests=list(plugin.records.values()),
    )
    plugin.report_cache = data
    return data


def write_json(plugin: HypomnesisPlugin, session: pytest.Session) -> str | None:
    """Write the report; returns an error line instead of raising (a session hook must not)."""
    path = plugin.settings.json_path
    assert path is not None
    try:
        write_report_atomic(path, report_data(plugin))
    except (OSError, TypeError, ValueError) as exc:
        return f"hypomnesis: could not write the JSON report to {path}: {exc}"
    return None


def _write_html(plugin: HypomnesisPlugin, data: dict[str, Any]) -> bool:
    """Write the HTML report; on failure add a summary line and return False."""
    from pytest_hypomnesis.report.compare import CompareError
    from pytest_hypomnesis.report.html import render_html, write_html_atomic

    path = plugin.settings.html_path
    assert path is not None
    try:
        page = render_html(data, baseline=plugin.baseline, comparison=plugin.comparison)
    except CompareError as exc:
        plugin.report_problems.append(
            f"hypomnesis: warning: HTML report not written to {path}: {exc}"
        )
        return False
    try:
        write_html_atomic(path, page)
    except OSError as exc:
        plugin.report_problems.append(
            f"hypomnesis: could not write the HTML report to {path}: {exc}"
        )
        return False
    return True


def finish_session(plugin: HypomnesisPlugin, session: pytest.Session) -> None:
    """At session end, on the controller: build the report once, write the JSON, compare
    with the baseline, write the HTML. Never raises for a report problem (a session hook
    must not); a failed gate turns an otherwise passing run's exit status into 1."""
    settings = plugin.settings
    data = report_data(plugin)
    # A failed gate, or a report that was asked for and not written (a CI job must not go
    # green without its artifact), fails an otherwise passing run; a failing run stays so.
    failed = False
    if settings.json_path is not None:
        plugin.json_error = write_json(plugin, session)
        failed = plugin.json_error is not None
    if plugin.baseline is not None:
        # The gate's and the HTML page's modules load only for a run that asks for them.
        from pytest_hypomnesis.report.compare import CompareError, compare

        try:
            plugin.comparison = compare(plugin.baseline, data, settings.thresholds)
        except CompareError as exc:
            plugin.report_problems.append(
                f"hypomnesis: warning: cannot compare with the baseline: {exc}"
            )
        if plugin.comparison is not None and plugin.comparison.failed:
            failed = True
    if settings.html_path is not None and not _write_html(plugin, data):
        failed = True
    if failed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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


def _table(plugin: HypomnesisPlugin, tr: pytest.TerminalReporter, verbosity: int) -> None:
    data = report_data(plugin)
    tests: list[MeasuredTestRecord] = data["tests"]
    if verbosity <= -2:
        tr.write_line(_one_line(tests))
        return
    tr.write_sep("=", "hypomnesis")
    if verbosity >= 0:
        tr.write_line(header_line(data))
    if not tests:
        tr.write_line("no test was measured")
    for line in summary_lines(tests, top=plugin.settings.top, verbose=verbosity >= 1):
        tr.write_line(line, red=" OVER" in line)
    if verbosity >= 0:
        if plugin.settings.json_path and not plugin.json_error:
            tr.write_line(f"JSON report: {plugin.settings.json_path}")
        if plugin.settings.html_path and not plugin.report_problems:
            tr.write_line(f"HTML report: {plugin.settings.html_path}")


def _comparison(
    plugin: HypomnesisPlugin, tr: pytest.TerminalReporter, verbosity: int, *, section_open: bool
) -> None:
    comparison = plugin.comparison
    if comparison is None:
        return
    if not section_open and verbosity > -2:
        tr.write_sep("=", "hypomnesis")
    from pytest_hypomnesis.report.compare import format_comparison

    lines = format_comparison(comparison, max_listed=None if verbosity >= 1 else 20)
    warned = 1 + len(comparison.warnings)
    regressed = warned + len(comparison.regressions)
    for i, line in enumerate(lines):
        if i == 0:
            tr.write_line(line, red=comparison.failed, green=not comparison.failed)
        else:
            tr.write_line(line, yellow=i < warned, red=warned <= i < regressed)


def summary(plugin: HypomnesisPlugin, tr: pytest.TerminalReporter) -> None:
    if plugin.json_error:
        tr.write_line(plugin.json_error, red=True, bold=True)
    verbosity = plugin.config.get_verbosity("hypomnesis")
    enabled = plugin.settings.enabled
    if enabled:
        _table(plugin, tr, verbosity)
    _comparison(plugin, tr, verbosity, section_open=enabled and verbosity > -2)
    for line in plugin.report_problems:
        tr.write_line(line, yellow=True, bold=True)
