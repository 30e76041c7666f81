"""Plain-dict JSON reports (schema ``pytest-hypomnesis/1``) for tests of the report tools.

The records carry every field ``_jsonreport.validate_test_record`` requires, so a report
built here also loads through ``load_report`` (``test_factory_reports_validate`` checks it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.units import GIB, MIB


def make_test(
    nodeid: str,
    *,
    ram_increase: int | None = 0,
    ram_start: int = 100 * MIB,
    ram_peak: int | None = None,
    vram: Mapping[str, tuple[int | None, int | None]] | None = None,
    outcome: str = "passed",
    budgets: Sequence[Mapping[str, Any]] = (),
    timeline: Mapping[str, Any] | None = None,
    duration_s: float = 0.5,
) -> dict[str, Any]:
    """One test record. ``vram`` maps a device index to ``(increase, peak)`` bytes;
    ``None`` gives a record from a machine without a GPU (empty ``devices``)."""
    if ram_peak is None and ram_increase is not None:
        ram_peak = ram_start + ram_increase
    devices = {
        index: {
            "start_bytes": None if peak is None or inc is None else peak - inc,
            "peak_bytes": peak,
            "end_bytes": peak,
            "increase_bytes": inc,
            "device_used_peak_bytes": None if peak is None else peak + GIB,
            "samples": 12,
        }
        for index, (inc, peak) in (vram or {}).items()
    }
    record: dict[str, Any] = {
        "nodeid": nodeid,
        "outcome": outcome,
        "worker": "master",
        "scope": "call",
        "duration_s": duration_s,
        "ram": {
            "start_bytes": ram_start,
            "peak_bytes": ram_peak,
            "end_bytes": ram_start,
            "increase_bytes": ram_increase,
            "method": "hwm",
        },
        "vram": {
            "source": "nvml" if vram else None,
            "devices": devices,
            "torch_peak_allocated_bytes": None,
            "unavailable_reason": None if vram else "no GPU",
        },
        "budgets": [dict(b) for b in budgets],
    }
    if timeline is not None:
        record["timeline"] = dict(timeline)
    return record


def make_budget(
    kind: str, limit_bytes: int, measured_bytes: int | None, passed: bool | None
) -> dict[str, Any]:
    return {
        "kind": kind,
        "limit_bytes": limit_bytes,
        "measured_bytes": measured_bytes,
        "passed": passed,
        "absolute": False,
        "device": None,
        "origin": "marker",
        "message": None,
    }


def make_report(
    tests: Sequence[Mapping[str, Any]],
    *,
    scope: str = "call",
    watched: Sequence[int] | None = (0,),
    interval_s: float = 0.01,
    gpu_names: Sequence[str] = ("NVIDIA H100 80GB HBM3",),
) -> dict[str, Any]:
    return {
        "schema": "pytest-hypomnesis/1",
        "created": "2026-11-01T12:00:00+00:00",
        "versions": {"plugin": "0.1.0", "pytest": "9.2.0", "python": "3.11.7"},
        "machine": {"hostname": "ci-runner", "platform": "linux"},
        "settings": {
            "scope": scope,
            "interval_s": interval_s,
            "max_ram_bytes": None,
            "max_vram_bytes": None,
            "devices": None if watched is None else list(watched),
        },
        "devices": [
            {
                "index": i,
                "name": name,
                "total_bytes": 80 * GIB,
                "free_bytes": 79 * GIB,
                "used_bytes": GIB,
                "reserved_bytes": 0,
                "driver_version": "580.65",
            }
            for i, name in enumerate(gpu_names)
        ],
        "tests": [dict(t) for t in tests],
    }


def write_report(path: Path, report: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(report), encoding="utf-8")
    return path


def load_error(
    path: Path, content: str | None, load: Callable[[Path], object], error: type[Exception]
) -> str:
    """The one-line message of the ``error`` that ``load(path)`` raises when ``path`` holds
    ``content`` (``None``: no file there)."""
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(error) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message
    return message
