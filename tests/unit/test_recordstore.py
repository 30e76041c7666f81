"""The controller's compact record store: order, replacement, and the records unchanged."""

from __future__ import annotations

import json
from typing import Any, cast

from pytest_hypomnesis.record import MeasuredTestRecord
from pytest_hypomnesis.report.recordstore import RecordStore


def record(i: int, *, scope: str = "call") -> MeasuredTestRecord:
    data: dict[str, Any] = {
        "nodeid": f"t.py::test_{i}",
        "outcome": "passed",
        "worker": "gw0",
        "scope": scope,
        "duration_s": 0.000123 * i,
        "ram": {
            "start_bytes": 50_000_000 + i,
            "peak_bytes": None,
            "end_bytes": 2**63,
            "increase_bytes": 0,
            "method": "rusage",
        },
        "vram": {
            "source": None,
            "devices": {"0": {"start_bytes": 1, "samples": 2}},
            "torch_peak_allocated_bytes": None,
            "unavailable_reason": "NVML: Not Found \u00e9",
        },
        "budgets": [],
        "budget_failed": False,
    }
    return cast(MeasuredTestRecord, data)


def test_records_come_back_equal_and_in_order_across_batches() -> None:
    store = RecordStore(batch=4)
    expected = [record(i) for i in range(23)]
    for r in expected:
        store[r["nodeid"]] = json.loads(json.dumps(r))
    assert len(store) == 23
    assert store.values() == expected
    assert store.values() == expected  # decoding leaves the store as it was


def test_a_later_record_replaces_the_earlier_in_place_flushed_or_not() -> None:
    store = RecordStore(batch=2)
    for i in range(10):
        store[f"t.py::test_{i}"] = record(i)
    store["t.py::test_0"] = record(0, scope="test")  # already compressed
    store["t.py::test_9"] = record(9, scope="test")  # still pending
    values = store.values()
    assert [r["nodeid"] for r in values] == [f"t.py::test_{i}" for i in range(10)]
    assert [r["scope"] for r in values] == ["test"] + ["call"] * 8 + ["test"]
    assert len(store) == 10


def test_empty() -> None:
    assert RecordStore().values() == []
    assert len(RecordStore()) == 0


def test_a_record_kept_with_its_text_comes_back_the_same() -> None:
    # Every other record arrived as text (an xdist worker's), the rest as dicts.
    store = RecordStore(batch=4)
    expected = [record(i) for i in range(23)]
    for i, r in enumerate(expected):
        text = json.dumps(r, separators=(",", ":")) if i % 2 else None
        store.add(r["nodeid"], json.loads(json.dumps(r)), text)
    assert store.values() == expected


def test_a_replacement_that_came_as_a_dict_drops_the_earlier_text() -> None:
    store = RecordStore(batch=2)
    first = record(0)
    store.add("t.py::test_0", first, json.dumps(first, separators=(",", ":")))
    store.add("t.py::test_0", record(0, scope="test"))  # pending still: replaced in place
    for i in range(1, 6):
        store.add(f"t.py::test_{i}", record(i))
    assert [r["scope"] for r in store.values()] == ["test"] + ["call"] * 5
