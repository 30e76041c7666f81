"""Running ``hmn`` in process, and the report records its ``report`` command reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from pytest_hypomnesis import __version__
from pytest_hypomnesis.cli import main
from tests.helpers.units import GIB, MIB

if TYPE_CHECKING:
    from pytest_hypomnesis.record import MeasuredTestRecord
    from pytest_hypomnesis.report.schema import RunRecord

__all__ = ["cli_record", "hmn", "write_cli_report"]


def hmn(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``hmn ARGS`` in this process: exit status, stdout, stderr."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def cli_record(
    nodeid: str, ram_inc: int, vram_inc: int | None, outcome: str = "passed"
) -> dict[str, Any]:
    devices = {}
    if vram_inc is not None:
        devices["0"] = {
            "start_bytes": 0,
            "peak_bytes": vram_inc,
            "end_bytes": 0,
            "increase_bytes": vram_inc,
            "device_used_peak_bytes": vram_inc,
            "samples": 3,
        }
    return {
        "nodeid": nodeid,
        "outcome": outcome,
        "worker": "master",
        "scope": "call",
        "duration_s": 0.25,
        "ram": {
            "start_bytes": 100 * MIB,
            "peak_bytes": 100 * MIB + ram_inc,
            "end_bytes": 100 * MIB,
            "increase_bytes": ram_inc,
            "method": "hwm",
        },
        "vram": {
            "source": "nvml" if vram_inc is not None else None,
            "devices": devices,
            "torch_peak_allocated_bytes": None,
            "unavailable_reason": None,
        },
        "budgets": [],
    }


def write_cli_report(
    path: Path, tests: list[dict[str, Any]], *, run: RunRecord | None = None
) -> Path:
    from pytest_hypomnesis.report.schema import build_report

    data = build_report(
        created="2026-01-01T00:00:00+00:00",
        versions={"plugin": __version__, "pytest": "8", "python": "3.11"},
        machine={"hostname": "ci"},
        settings={"scope": "call", "interval_s": 0.01},
        devices=[{"index": 0, "name": "Fake", "total_bytes": 16 * GIB, "driver_version": "1.0"}],
        # Records as older reports hold them (no CUDA context, no allocators), on purpose.
        tests=cast("list[MeasuredTestRecord]", tests),
        run=run,
    )
    path.write_text(json.dumps(data), encoding="utf-8")
    return path
