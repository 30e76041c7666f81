"""One typed test record and a report around it, for the schema and table tests."""

from __future__ import annotations

from typing import Any

from pytest_hypomnesis.record import MeasuredTestRecord
from pytest_hypomnesis.report.schema import Report, build_report
from tests.helpers.units import MIB

__all__ = ["make_record", "make_report"]


def make_record(nodeid: str = "t.py::test_a", **over: Any) -> MeasuredTestRecord:
    record: MeasuredTestRecord = {
        "nodeid": nodeid,
        "outcome": "failed",
        "worker": "master",
        "scope": "call",
        "duration_s": 0.25,
        "ram": {
            "start_bytes": 100 * MIB,
            "peak_bytes": 150 * MIB,
            "end_bytes": 110 * MIB,
            "increase_bytes": 50 * MIB,
            "method": "rusage",
        },
        "vram": {
            "source": "nvml",
            "devices": {
                "0": {
                    "start_bytes": 0,
                    "peak_bytes": 2 * 1024 * MIB,
                    "end_bytes": 0,
                    "increase_bytes": 2 * 1024 * MIB,
                    "device_used_peak_bytes": 3 * 1024 * MIB,
                    "samples": 7,
                    "cuda_context_bytes": None,
                    "gross_increase_bytes": 2 * 1024 * MIB,
                }
            },
            "torch_peak_allocated_bytes": None,
            "unavailable_reason": None,
            "allocators": None,
        },
        "budgets": [
            {
                "kind": "max_vram",
                "limit_bytes": 1024 * MIB,
                "measured_bytes": 2 * 1024 * MIB,
                "passed": False,
                "absolute": False,
                "device": None,
                "origin": "marker",
                "message": "max_vram: test used 2.00 GiB VRAM on GPU 0 (peak increase, NVML) "
                "> limit 1.00 GiB",
                "source": "auto",
                "figure": "driver",
            }
        ],
        "budget_failed": True,
    }
    record.update(over)  # type: ignore[typeddict-item]
    return record


def make_report(tests: list[MeasuredTestRecord] | None = None) -> Report:
    return build_report(
        created="2025-01-01T00:00:00+00:00",
        versions={"plugin": "0.1.0", "pytest": "9.2.0", "python": "3.11.7"},
        machine={"hostname": "h", "gpu_unavailable_reason": None},
        settings={"scope": "call", "interval_s": 0.01},
        devices=[{"index": 0, "name": "NVIDIA Fake", "total_bytes": 16 * 1024 * MIB}],
        tests=[make_record()] if tests is None else tests,
    )
