"""The session report: built once, on the controller, in ``pytest_sessionfinish``.

It owns what the session's end produces: the JSON report's data, the JSON and HTML files
written, the comparison with a baseline, and the lines that say what could not be done.
The terminal section (``report/terminal.py``) only prints it; nothing else changes it.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from pytest_hypomnesis._json import JsonObject
from pytest_hypomnesis.plugin.frameworks import jax_preallocation
from pytest_hypomnesis.probe import chain
from pytest_hypomnesis.record import DeviceIdentity, MeasuredTestRecord, device_identity
from pytest_hypomnesis.report.schema import (
    Report,
    ReportDevice,
    RunRecord,
    build_report,
    write_report_atomic,
)

if TYPE_CHECKING:
    from pytest_hypomnesis.gpumodel import GpuDeviceInfo
    from pytest_hypomnesis.plugin.options import Settings
    from pytest_hypomnesis.report.compare import Comparison

__all__ = ["SessionReport", "build_session_report"]


@dataclass(frozen=True, slots=True)
class SessionReport:
    """What one session's end produced. ``failed``: a gate that failed, or a report asked
    for and not written (a CI job must not go green without its artifact)."""

    data: Report
    """The JSON report (``schema``, ``created``, ..., ``tests``), written or not."""
    json_error: str | None
    """Why the JSON report was not written; ``None`` when written or not asked for."""
    comparison: Comparison | None
    problems: tuple[str, ...]
    """Lines for the summary: an HTML report not written, a comparison not made."""
    failed: bool
    notes: tuple[str, ...] = ()
    """What the summary's header should add about the GPUs (an assumed CUDA order...)."""

    @property
    def tests(self) -> list[MeasuredTestRecord]:
        return self.data["tests"]


def _device_entry(ordinal: int, info: GpuDeviceInfo, identity: DeviceIdentity) -> ReportDevice:
    """The backend's figures (``GpuDeviceInfo``'s fields, in order) under the CUDA ordinal,
    then which GPU it is; the backend's name where NVML gave none."""
    return {
        "index": ordinal,
        "name": info.name if identity["name"] is None else identity["name"],
        "total_bytes": info.total_bytes,
        "free_bytes": info.free_bytes,
        "used_bytes": info.used_bytes,
        "reserved_bytes": info.reserved_bytes,
        "driver_version": info.driver_version,
        "uuid": identity["uuid"],
        "nvml_index": identity["nvml_index"],
        "pci_bus_id": identity["pci_bus_id"],
        "parent_uuid": identity["parent_uuid"],
    }


def _devices(settings: Settings) -> list[ReportDevice]:
    """The watched GPUs, ``index`` = CUDA ordinal (what records and budgets key by), with
    which GPU each is (``uuid``, ``nvml_index``, ``pci_bus_id``, ``parent_uuid``)."""
    try:
        fake = chain.current_fake()
        if fake is not None:
            targets: list[tuple[int, int, DeviceIdentity]] = [
                (d.index, d.index, device_identity(d.uuid, d.index, d.pci_bus_id, d.name))
                for d in fake.devices
            ]
        else:
            cuda, visible = chain.cuda_devices()
            targets = [
                (
                    d.cuda_ordinal,
                    d.nvml_index,
                    device_identity(d.uuid, d.nvml_index, d.pci_bus_id, d.name, d.parent_uuid)
                    if visible.mapped
                    else device_identity(None, None, None, None),
                )
                for d in cuda
            ]
        found = []
        for ordinal, index, identity in targets:
            if settings.devices is None or ordinal in settings.devices:
                info = chain.device_info(index, identity["uuid"])
                found.append(_device_entry(ordinal, info, identity))
        return found
    except Exception:  # the report is best-effort about devices; never fail the session
        return []


def _ram_total_bytes() -> int | None:
    if sys.platform != "win32":  # spelled out for mypy's platform checks
        try:
            # sysconf where it exists: importing psutil only for this cost ~15 ms per run.
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            pass
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:
        return None


def _jax_preallocation(tests: Sequence[MeasuredTestRecord]) -> str | None:
    # JAX may be loaded only in the xdist workers: their records say so.
    jax = "jax" in sys.modules or any(
        "jax" in (record["vram"].get("allocators") or {}) for record in tests
    )
    return jax_preallocation(loaded=jax)


def _machine(
    devices: list[ReportDevice],
    gpu_reason: Callable[[], str | None],
    tests: Sequence[MeasuredTestRecord],
    cuda_warmup: str | None,
) -> JsonObject:
    reason = None
    if not devices:
        try:
            reason = gpu_reason()
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
    return {
        "hostname": platform.node(),
        "system": platform.system(),
        "release": platform.release(),
        "arch": platform.machine(),
        "python_implementation": platform.python_implementation(),
        "cpu_count": os.cpu_count(),
        "ram_total_bytes": _ram_total_bytes(),
        "gpu_unavailable_reason": reason,
        "jax_preallocation": _jax_preallocation(tests),
        "cuda_warmup": cuda_warmup,
    }


def _report_data(
    settings: Settings,
    tests: Sequence[MeasuredTestRecord],
    gpu_reason: Callable[[], str | None],
    pytest_version: str,
    run_peaks: Mapping[str, int] | None,
    cuda_warmup: str | None,
) -> Report:
    from pytest_hypomnesis import __version__

    devices = _devices(settings)
    return build_report(
        created=datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        versions={
            "plugin": __version__,
            "pytest": pytest_version,
            "python": platform.python_version(),
        },
        machine=_machine(devices, gpu_reason, tests, cuda_warmup),
        settings=settings.to_dict(),
        devices=devices,
        tests=tests,
        run=None if run_peaks is None else _run(run_peaks),
    )


def _run(peaks: Mapping[str, int]) -> RunRecord:
    """The whole run's RAM peak: the highest RSS any one of its processes reached (what
    ``/usr/bin/time`` and CI accounting see when the kernel's mark is left alone)."""
    return {
        "ram_peak_bytes": max(peaks.values()) if peaks else None,
        "ram_peak_bytes_by_worker": dict(sorted(peaks.items())),
    }


def _write_json(path: str, data: Report) -> str | None:
    """An error line instead of raising: a session hook must not."""
    try:
        write_report_atomic(path, data)
    except (OSError, TypeError, ValueError) as exc:
        return f"hypomnesis: could not write the JSON report to {path}: {exc}"
    return None


def _write_html(
    path: str,
    data: Report,
    baseline: Mapping[str, object] | None,
    comparison: Comparison | None,
) -> str | None:
    """An error line for the summary instead of raising."""
    from pytest_hypomnesis.report.compare import CompareError
    from pytest_hypomnesis.report.html import render_html, write_html_atomic

    try:
        page = render_html(data, baseline=baseline, comparison=comparison)
    except CompareError as exc:
        return f"hypomnesis: warning: HTML report not written to {path}: {exc}"
    try:
        write_html_atomic(path, page)
    except OSError as exc:
        return f"hypomnesis: could not write the HTML report to {path}: {exc}"
    return None


def build_session_report(
    settings: Settings,
    tests: Sequence[MeasuredTestRecord],
    *,
    baseline: Mapping[str, object] | None,
    gpu_reason: Callable[[], str | None],
    pytest_version: str,
    run_peaks: Mapping[str, int] | None = None,
    notes: Sequence[str] = (),
    outcomes: Mapping[str, int] | None = None,
    cuda_warmup: str | None = None,
) -> SessionReport:
    """Build the report once, write the JSON, compare with the baseline, write the HTML.
    Never raises for a report problem; ``gpu_reason`` says why no GPU was measured;
    ``run_peaks`` is each process's run RAM peak (``master``, ``gw0``, ...); ``outcomes``
    are pytest's own counts (errors included), for the HTML heading; ``cuda_warmup`` is
    what ``--hypomnesis-cuda-warmup`` did in this process."""
    data = _report_data(settings, tests, gpu_reason, pytest_version, run_peaks, cuda_warmup)
    if outcomes is not None:
        data["outcomes"] = dict(outcomes)
    problems: list[str] = []
    failed = False
    json_error = None
    if settings.json_path is not None:
        json_error = _write_json(settings.json_path, data)
        failed = json_error is not None
    comparison = None
    if baseline is not None:
        # The gate's and the HTML page's modules load only for a run that asks for them.
        from pytest_hypomnesis.report.compare import CompareError, compare

        try:
            comparison = compare(baseline, data, settings.thresholds)
        except CompareError as exc:
            problems.append(f"hypomnesis: warning: cannot compare with the baseline: {exc}")
        if comparison is not None and comparison.failed:
            failed = True
        if comparison is not None and comparison.not_compared and settings.strict:
            # Under --hypomnesis-strict a check the gate could not make fails like a budget
            # that could not be checked.
            problems.append(
                "hypomnesis: error: --hypomnesis-strict: the baseline gate could not compare "
                f"{len(comparison.not_compared)} figure(s) (unknown on one side)"
            )
            failed = True
    if settings.html_path is not None:
        problem = _write_html(settings.html_path, data, baseline, comparison)
        if problem is not None:
            problems.append(problem)
            failed = True
    return SessionReport(
        data=data,
        json_error=json_error,
        comparison=comparison,
        problems=tuple(problems),
        failed=failed,
        notes=tuple(notes),
    )
