"""A run without a GPU writes the reason once, at the report's top level
(``vram_unavailable_reason``), not in each of its records; every loader puts it back, so
each test still shows it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from pytest_hypomnesis.record import MeasuredTestRecord
from pytest_hypomnesis.report.schema import Report, build_report, load_report, report_text
from tests.helpers.reports import make_test

REASON = "NVML: NVML Shared Library Not Found; nvidia-smi: not found on PATH"
OTHER = "no watched GPU exists (2 visible)"


def _record(nodeid: str, reason: str) -> dict[str, Any]:
    record = make_test(nodeid)
    record["vram"]["unavailable_reason"] = reason
    record["vram"]["allocators"] = None
    return record


def _report(tests: list[dict[str, Any]]) -> Report:
    return build_report(
        created="2026-12-02T00:00:00+00:00",
        versions={"plugin": "0", "pytest": "0", "python": "0"},
        machine={},
        settings={},
        devices=[],
        tests=cast("list[MeasuredTestRecord]", tests),  # plain dicts from make_test
    )


def test_the_shared_reason_is_written_once_and_read_back_per_test(tmp_path: Path) -> None:
    rerun = _record("t.py::r", REASON)
    rerun["attempts"] = [
        {k: rerun[k] for k in ("outcome", "worker", "duration_s", "ram", "vram", "budgets")}
        | {"budget_failed": False}
    ]
    tests = [_record(f"t.py::{i}", REASON) for i in range(50)] + [_record("t.py::x", OTHER), rerun]
    data = _report(tests)
    assert data["vram_unavailable_reason"] == REASON
    text = report_text(data)
    assert text.count(json.dumps(REASON)) == 1  # once, at the top level
    assert text.count(json.dumps(OTHER)) == 1  # a record's own reason stays in it
    (tmp_path / "r.json").write_text(text, encoding="utf-8")
    loaded = load_report(tmp_path / "r.json")
    reasons = [t["vram"]["unavailable_reason"] for t in loaded["tests"]]
    assert reasons == [REASON] * 50 + [OTHER, REASON]
    assert loaded["tests"][-1]["attempts"][0]["vram"]["unavailable_reason"] == REASON
    # The data in memory (terminal, HTML, gate) was never changed.
    assert all(t["vram"]["unavailable_reason"] in (REASON, OTHER) for t in data["tests"])


def test_records_with_a_gpu_give_no_shared_reason() -> None:
    data = _report([make_test("t.py::a", vram={"0": (1, 1)})])
    assert "vram_unavailable_reason" not in data
