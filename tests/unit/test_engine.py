"""The measurement engine (``plugin/engine.py``) driven directly: spans, nesting, peeks,
and per-device VRAM from a fake GPU. No pytest run around it."""

from __future__ import annotations

import mmap
from collections.abc import Iterator

import pytest

from pytest_hypomnesis.plugin.engine import Engine
from pytest_hypomnesis.probe.fake import FakeGpu
from pytest_hypomnesis.record import vram_increase_bytes, vram_peak_bytes

MIB = 1024 * 1024
GIB = 1024 * MIB


@pytest.fixture
def engine() -> Iterator[Engine]:
    made = Engine(interval_s=0.001)
    try:
        yield made
    finally:
        made.close()


def _touch(size: int) -> mmap.mmap:
    block = mmap.mmap(-1, size)
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 1
    return block


def test_no_gpu_span_has_ram_figures_and_says_why_no_vram(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYPOMNESIS_NVML_LIBRARY", "/nonexistent")
    span = engine.begin()
    block = _touch(32 * MIB)
    block.close()
    record = engine.end(span)
    ram = record["ram"]
    assert ram["start_bytes"] is not None and ram["peak_bytes"] is not None
    assert ram["increase_bytes"] == max(ram["peak_bytes"] - ram["start_bytes"], 0)
    assert ram["method"] in ("rusage", "hwm", "sampled")
    if engine.ram.exact:  # the kernel's high-water mark catches the freed 32 MiB
        assert ram["increase_bytes"] >= 30 * MIB
    assert record["vram"]["devices"] == {}
    assert record["vram"]["unavailable_reason"]
    assert record["timeline"] is None and record["duration_s"] >= 0


def test_fake_gpu_start_peak_end_per_device(engine: Engine, fake_gpu: FakeGpu) -> None:
    fake_gpu.add_device()
    fake_gpu.add_device()
    fake_gpu.set_process_vram(0, GIB)
    span = engine.begin()
    fake_gpu.set_process_vram(0, 3 * GIB)
    fake_gpu.set_process_vram(1, 512 * MIB)
    seen = engine.peek(span)  # a reading now: the 3 GiB is caught, the span stays open
    assert seen["vram"]["devices"]["0"]["end_bytes"] is None
    fake_gpu.set_process_vram(0, 2 * GIB)
    record = engine.end(span)
    gpu0, gpu1 = record["vram"]["devices"]["0"], record["vram"]["devices"]["1"]
    assert (gpu0["start_bytes"], gpu0["peak_bytes"], gpu0["end_bytes"]) == (GIB, 3 * GIB, 2 * GIB)
    assert gpu0["increase_bytes"] == 2 * GIB and gpu0["samples"] >= 3
    assert gpu1["start_bytes"] == 0 and gpu1["peak_bytes"] == 512 * MIB
    assert record["vram"]["source"] == "nvml" and record["vram"]["unavailable_reason"] is None
    assert vram_peak_bytes(record) == 3 * GIB + 512 * MIB
    assert vram_increase_bytes(record) == 2 * GIB + 512 * MIB


def test_device_added_mid_span_started_at_zero(engine: Engine, fake_gpu: FakeGpu) -> None:
    fake_gpu.add_device()
    span = engine.begin()
    fake_gpu.add_device()
    fake_gpu.set_process_vram(1, GIB)
    record = engine.end(span)
    assert record["vram"]["devices"]["1"]["start_bytes"] == 0
    assert record["vram"]["devices"]["1"]["increase_bytes"] == GIB


def test_watched_devices_only(fake_gpu: FakeGpu) -> None:
    for _ in range(3):
        fake_gpu.add_device()
    engine = Engine(interval_s=0.001, devices=(2, 7))
    try:
        record = engine.end(engine.begin())
    finally:
        engine.close()
    assert list(record["vram"]["devices"]) == ["2"]


def test_inner_span_does_not_hide_the_outer_peak(engine: Engine) -> None:
    outer = engine.begin()
    inner = engine.begin()
    block = _touch(24 * MIB)
    block.close()
    inner_record = engine.end(inner)
    outer_record = engine.end(outer)
    inner_peak = inner_record["ram"]["peak_bytes"]
    outer_peak = outer_record["ram"]["peak_bytes"]
    assert inner_peak is not None and outer_peak is not None
    # Resetting the high-water mark for the inner span folds the running peak into the
    # outer one first: the outer span's peak covers the inner one's.
    assert outer_peak >= inner_peak


def test_timeline_series_on_request(engine: Engine, fake_gpu: FakeGpu) -> None:
    fake_gpu.add_device()
    span = engine.begin(timeline=True)
    fake_gpu.set_process_vram(0, GIB)
    engine.peek(span)
    record = engine.end(span)
    timeline = record["timeline"]
    assert timeline is not None
    assert len(timeline["t_s"]) == len(timeline["rss_bytes"]) == len(timeline["vram_bytes"]["0"])
    assert max(v for v in timeline["vram_bytes"]["0"] if v is not None) == GIB


def test_plain_span_when_nothing_to_sample(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPOMNESIS_NVML_LIBRARY", "/nonexistent")
    engine.end(engine.begin())  # resolves the (empty) readers once
    span = engine.begin()
    if not span.plain:
        pytest.skip("RAM peak sampled here, or a GPU reader exists: no plain branch")
    record = engine.end(span)
    assert record["vram"]["devices"] == {} and record["vram"]["unavailable_reason"]


def test_plain_span_then_a_fake_gpu_reads_the_fake(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A span begun with nothing to sample, then a fake GPU installed inside it (fixture
    set-up under scope=test): its end reads the fake's devices."""
    from pytest_hypomnesis.probe import chain

    monkeypatch.setenv("HYPOMNESIS_NVML_LIBRARY", "/nonexistent")
    engine.end(engine.begin())
    span = engine.begin()
    fake = FakeGpu()
    fake.add_device()
    previous = chain.set_fake(fake)
    try:
        fake.set_process_vram(0, MIB)
        record = engine.end(span)
    finally:
        chain.set_fake(previous)
    assert record["vram"]["devices"]["0"]["end_bytes"] == MIB
