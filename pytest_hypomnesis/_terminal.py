"""The controller's output: the ``hypomnesis`` terminal section and the JSON report."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest

from pytest_hypomnesis import _probe
from pytest_hypomnesis._format import format_bytes_iec
from pytest_hypomnesis._jsonreport import build_report, write_report_atomic
from pytest_hypomnesis._summary import (
    header_line,
    over_budget,
    sort_key,
    summary_lines,
    vram_increase_bytes,
)

if TYPE_CHECKING:
    from pytest_hypomnesis.plugin import HypomnesisPlugin

__all__ = ["report_data", "summary", "write_json"]


def _devices(plugin: HypomnesisPlugin) -> list[dict[str, Any]]:
    try:
        count = _probe.device_count()
        indices = range(count) if plugin.settings.devices is None else plugin.settings.devices
        return [_probe.device_info(i).to_dict() for i in indices if i < count]
    except Exception:  # the report is best-effort about devices; never fail the session
        return []


def _machine(devices: list[dict[str, Any]], plugin: HypomnesisPlugin) -> dict[str, Any]:
    try:
        import psutil

        ram_total: int | None = int(psutil.virtual_memory().total)
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


def _one_line(tests: list[dict[str, Any]]) -> str:
    failed = sum(1 for t in tests if over_budget(t))
    text = f"hypomnesis: {len(tests)} tests measured, {failed} over budget"
    if tests:
        top = min(tests, key=sort_key)
        ram = format_bytes_iec(top["ram"]["increase_bytes"])
        vram = vram_increase_bytes(top)
        heavy = f"RAM +{ram}" + ("" if vram is None else f", VRAM +{format_bytes_iec(vram)}")
        text += f"; heaviest {top['nodeid']} ({heavy})"
    return text


def summary(plugin: HypomnesisPlugin, tr: pytest.TerminalReporter) -> None:
    if plugin.json_error:
        tr.write_line(plugin.json_error, red=True, bold=True)
    if not plugin.settings.enabled:
        return
    verbosity = plugin.config.get_verbosity("hypomnesis")
    data = report_data(plugin)
    tests: list[dict[str, Any]] = data["tests"]
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
    if plugin.settings.json_path and not plugin.json_error and verbosity >= 0:
        tr.write_line(f"JSON report: {plugin.settings.json_path}")
