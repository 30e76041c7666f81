"""The VRAM total over devices is the peak of the per-reading sum (``vram.total``), not the
sum of each device's own peak: two GPUs that each peak at 1 GiB, one after the other,
never held 2 GiB at once. Unknown on any device is unknown. Records written before
``vram.total`` fall back to the sum of the devices' figures (an upper bound)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest

from pytest_hypomnesis.plugin.budgets import Budget, judge
from pytest_hypomnesis.plugin.engine import Engine
from pytest_hypomnesis.probe.fake import FakeGpu
from pytest_hypomnesis.record import (
    VramRecord,
    vram_increase_bytes,
    vram_peak_bytes,
    vram_total_bytes,
)
from pytest_hypomnesis.report.schema import validate_test_record
from tests.helpers.reports import make_test
from tests.helpers.units import GIB, MIB


@pytest.fixture
def engine() -> Iterator[Engine]:
    # A sampler interval far beyond the test: every reading below is one the test takes.
    made = Engine(interval_s=3600.0)
    try:
        yield made
    finally:
        made.close()


def _staggered(engine: Engine, fake_gpu: FakeGpu) -> Any:
    fake_gpu.add_device()
    fake_gpu.add_device()
    span = engine.begin()  # reading 1: 0 + 0
    fake_gpu.set_process_vram(0, GIB)
    engine.peek(span)  # reading 2: 1 GiB + 0
    fake_gpu.set_process_vram(0, 0)
    fake_gpu.set_process_vram(1, GIB)
    engine.peek(span)  # reading 3: 0 + 1 GiB
    fake_gpu.set_process_vram(1, 0)
    return engine.end(span)  # reading 4: 0 + 0


def test_devices_peaking_one_after_the_other_total_their_largest_sum(
    engine: Engine, fake_gpu: FakeGpu
) -> None:
    record = _staggered(engine, fake_gpu)
    devices = record["vram"]["devices"]
    assert devices["0"]["peak_bytes"] == devices["1"]["peak_bytes"] == GIB
    assert record["vram"]["total"] == {
        "start_bytes": 0,
        "peak_bytes": GIB,
        "end_bytes": 0,
        "increase_bytes": GIB,
    }
    assert vram_peak_bytes(record) == GIB  # not 2 GiB
    assert vram_increase_bytes(record) == GIB
    validate_test_record(
        {**record, "nodeid": "t", "outcome": "passed", "worker": "master", "scope": "call"}
        | {"budgets": []}
    )


def test_a_budget_without_device_judges_the_total(engine: Engine, fake_gpu: FakeGpu) -> None:
    record = _staggered(engine, fake_gpu)
    (within,) = judge(
        [Budget("max_vram", int(1.5 * GIB), limit_text="1.5GiB")],
        record,
        scope="call",
        strict=False,
    )
    assert within["passed"] is True and within["measured_bytes"] == GIB
    (over,) = judge([Budget("max_vram", 512 * MIB)], record, scope="call", strict=False)
    assert over["passed"] is False and over["measured_bytes"] == GIB


def test_devices_holding_memory_at_once_add_up(engine: Engine, fake_gpu: FakeGpu) -> None:
    fake_gpu.add_device()
    fake_gpu.add_device()
    fake_gpu.set_process_vram(0, 256 * MIB)
    span = engine.begin()
    fake_gpu.set_process_vram(0, GIB)
    fake_gpu.set_process_vram(1, 2 * GIB)
    engine.peek(span)
    fake_gpu.set_process_vram(0, 256 * MIB)
    fake_gpu.set_process_vram(1, 0)
    record = engine.end(span)
    total = record["vram"]["total"]
    assert (total["start_bytes"], total["peak_bytes"], total["end_bytes"]) == (
        256 * MIB,
        3 * GIB,
        256 * MIB,
    )
    assert total["increase_bytes"] == 3 * GIB - 256 * MIB


def test_a_failed_reading_on_one_device_makes_the_total_unknown(
    engine: Engine, fake_gpu: FakeGpu, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_gpu.add_device()
    fake_gpu.add_device()
    span = engine.begin()
    fake_gpu.set_process_vram(0, GIB)
    readers, _ = engine.readers()
    good = dict(readers)

    def lost() -> Any:
        raise RuntimeError("GPU is lost")

    monkeypatch.setattr(engine, "_fake_readers", [(0, good[0]), (1, lost)])
    engine.peek(span)
    monkeypatch.setattr(engine, "_fake_readers", readers)
    record = engine.end(span)
    assert record["vram"]["devices"]["0"]["peak_bytes"] == GIB
    assert record["vram"]["devices"]["1"]["peak_bytes"] is None
    assert record["vram"]["total"]["peak_bytes"] is None
    assert vram_peak_bytes(record) is None


def test_no_gpu_has_no_total(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPOMNESIS_NVML_LIBRARY", "/nonexistent")
    record = engine.end(engine.begin())
    assert "total" not in record["vram"]
    assert vram_peak_bytes(record) is None


def test_a_record_without_a_total_sums_its_devices_as_an_upper_bound() -> None:
    old = make_test("t::a", vram={"0": (GIB, GIB), "1": (GIB, GIB)})
    vram = cast(VramRecord, old["vram"])
    assert "total" not in vram
    assert vram_total_bytes(vram, "peak_bytes") == 2 * GIB
    assert vram_total_bytes(vram, "increase_bytes") == 2 * GIB
    unknown = make_test("t::b", vram={"0": (GIB, GIB), "1": (None, None)})
    assert vram_total_bytes(cast(VramRecord, unknown["vram"]), "peak_bytes") is None


def test_a_fake_device_added_mid_span_counts_from_zero(engine: Engine, fake_gpu: FakeGpu) -> None:
    span = engine.begin()  # no device yet: the process held nothing on it
    fake_gpu.add_device()
    fake_gpu.set_process_vram(0, GIB)
    engine.peek(span)
    record = engine.end(span)
    total = record["vram"]["total"]
    assert (total["start_bytes"], total["peak_bytes"], total["increase_bytes"]) == (0, GIB, GIB)
