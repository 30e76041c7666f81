"""Silent zeros in the engine and probes (issue 11): a reading that fails mid-span makes
that device's figures unknown with the backend's reason, never the increase from the good
readings; kept fds survive a test closing them; hung calls and failed inits recover."""

from __future__ import annotations

import itertools
import mmap
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_hypomnesis.model import GpuQuerySource, Snapshot
from pytest_hypomnesis.plugin import engine as engine_module
from pytest_hypomnesis.plugin.engine import Engine
from pytest_hypomnesis.probe import chain, rss
from pytest_hypomnesis.probe.readings import VramReading
from pytest_hypomnesis.record import SpanRecord
from tests.helpers.fakenvml import (
    NOT_AVAILABLE,
    SELF,
    FakeNvml,
    FakeNvmlDevice,
    FakeProcess,
)
from tests.helpers.units import GIB, MIB

V3 = "nvmlDeviceGetComputeRunningProcesses_v3"


@pytest.fixture
def engine() -> Iterator[Engine]:
    # A long interval: the sampler stays out of the way; the test takes each reading.
    made = Engine(interval_s=30.0)
    yield made
    made.close()


def _device(self_used: int | None, total: int = 16 * GIB) -> FakeNvmlDevice:
    processes = () if self_used is None else (FakeProcess(SELF, self_used),)
    return FakeNvmlDevice(total_bytes=total, used_bytes=GIB, processes=processes)


def _spike_then(fake_nvml: FakeNvml, engine: Engine, then: dict[str, object]) -> SpanRecord:
    """Start at 100 MiB, a good reading at 900 MiB, then ``then`` (a fault) for the end."""
    fake_nvml.set([_device(100 * MIB)])
    span = engine.begin()
    fake_nvml.set_self_used(900 * MIB)
    engine.peek(span)  # one good reading of the spike
    fake_nvml.set(
        then.get("devices", [_device(900 * MIB)]),  # type: ignore[arg-type]
        errors=then.get("errors"),  # type: ignore[arg-type]
    )
    return engine.end(span)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"errors": {"*": "GPU_IS_LOST"}}, "GPU is lost"),
        ({"errors": {V3: "GPU_IS_LOST"}}, "GPU is lost"),
        ({"errors": {V3: "NOT_SUPPORTED"}}, "Not Supported"),
        ({"devices": [_device(NOT_AVAILABLE)]}, "not available"),
        ({"devices": [_device(17 * GIB)]}, "exceeds the device total"),
    ],
)
def test_a_reading_failing_mid_span_makes_the_device_unknown(
    fake_nvml: FakeNvml, engine: Engine, fault: dict[str, object], reason: str
) -> None:
    record = _spike_then(fake_nvml, engine, fault)
    figures = record["vram"]["devices"]["0"]
    # Not the 800 MiB increase from the one good spike reading: unknown, with the reason.
    assert figures["increase_bytes"] is None
    assert figures["peak_bytes"] is None
    assert figures["start_bytes"] is None
    assert figures["end_bytes"] is None
    assert figures["failed_samples"] >= 1
    assert figures["samples"] == 2
    assert reason in (figures["unavailable_reason"] or "")
    assert reason in (record["vram"]["unavailable_reason"] or "")


def test_a_clean_span_has_no_failed_samples(fake_nvml: FakeNvml, engine: Engine) -> None:
    fake_nvml.set([_device(100 * MIB)])
    span = engine.begin()
    fake_nvml.set_self_used(900 * MIB)
    record = engine.end(span)
    figures = record["vram"]["devices"]["0"]
    assert figures["increase_bytes"] == 800 * MIB
    assert figures["failed_samples"] == 0
    assert figures["unavailable_reason"] is None


def test_nvml_flapping_still_leaves_the_span_unknown(fake_nvml: FakeNvml, engine: Engine) -> None:
    fake_nvml.set([_device(100 * MIB)])
    span = engine.begin()
    fake_nvml.set([_device(900 * MIB)], errors={V3: "UNKNOWN"})
    engine.peek(span)
    fake_nvml.set([_device(100 * MIB)])  # answers again at the end
    record = engine.end(span)
    figures = record["vram"]["devices"]["0"]
    assert figures["increase_bytes"] is None
    assert figures["failed_samples"] == 1


def test_the_listing_failing_on_two_gpus(fake_nvml: FakeNvml, engine: Engine) -> None:
    fake_nvml.set([_device(100 * MIB), _device(100 * MIB)])
    span = engine.begin()
    fake_nvml.set([_device(900 * MIB), _device(900 * MIB)])
    engine.peek(span)
    fake_nvml.set([_device(900 * MIB), _device(900 * MIB)], errors={V3: "GPU_IS_LOST"})
    record = engine.end(span)
    devices = record["vram"]["devices"]
    assert [devices[i]["increase_bytes"] for i in ("0", "1")] == [None, None]
    assert "GPU 0: " in (record["vram"]["unavailable_reason"] or "")
    assert "GPU 1: " in (record["vram"]["unavailable_reason"] or "")


def test_a_reader_that_raises_is_a_failed_sample_not_a_skipped_one(
    monkeypatch: pytest.MonkeyPatch, engine: Engine
) -> None:
    calls = iter([100 * MIB, 900 * MIB])

    def reader() -> VramReading:
        value = next(calls, None)
        if value is None:
            raise RuntimeError("driver went away")
        return VramReading(value, None, GpuQuerySource.NVML)

    monkeypatch.setattr(engine, "readers", lambda: ([(0, reader)], None))
    span = engine.begin()
    engine.peek(span)
    record = engine.end(span)
    figures = record["vram"]["devices"]["0"]
    assert figures["increase_bytes"] is None
    assert "RuntimeError: driver went away" in (figures["unavailable_reason"] or "")


# --- the real reason, not a guess -----------------------------------------------------------


def test_driver_not_loaded_is_said_not_no_gpu_visible(fake_nvml: FakeNvml, engine: Engine) -> None:
    fake_nvml.fail("*", "DRIVER_NOT_LOADED")
    reason = engine.unavailable_reason() or ""
    assert "Driver Not Loaded" in reason
    assert reason != "no GPU visible"


def test_a_lost_gpu_is_said_not_nvml_unavailable(fake_nvml: FakeNvml, engine: Engine) -> None:
    fake_nvml.set([_device(100 * MIB)], errors={V3: "GPU_IS_LOST"})
    reason = engine.unavailable_reason() or ""
    assert "GPU is lost" in reason
    assert "NVML unavailable" not in reason


# --- NVML init failing at session start is retried with back-off ----------------------------


def test_nvml_init_failing_at_start_is_retried(
    fake_nvml: FakeNvml, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(engine_module, "_clock", lambda: now[0])
    fake_nvml.set([_device(100 * MIB)], errors={"*": "UNKNOWN"})
    span = engine.begin()
    first = engine.end(span)
    assert first["vram"]["devices"] == {}
    assert "Unknown Error" in (first["vram"]["unavailable_reason"] or "")
    fake_nvml.set([_device(100 * MIB)])  # the driver is ready now
    from pytest_hypomnesis.probe import nvml

    monkeypatch.setattr(nvml, "_INIT_RETRY_S", 0.0)
    span = engine.begin()  # inside the back-off: not retried yet
    assert engine.end(span)["vram"]["devices"] == {}
    now[0] += 1.5
    span = engine.begin()
    later = engine.end(span)
    assert later["vram"]["devices"]["0"]["end_bytes"] == 100 * MIB
    assert later["vram"]["unavailable_reason"] is None


def test_retry_backs_off(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(engine_module, "_clock", lambda: now[0])
    resolved: list[float] = []
    monkeypatch.setattr(chain, "current_fake", lambda: None)

    def counted() -> tuple[int | None, tuple[str, ...]]:
        resolved.append(now[0])
        return None, ("NVML: Unknown Error",)

    monkeypatch.setattr(chain, "counted_devices", counted)
    monkeypatch.setattr(Snapshot, "now", classmethod(lambda cls, index=0: Snapshot(ram_bytes=1)))
    for _ in range(200):
        engine.end(engine.begin())
        now[0] += 0.5
    # 1 s, 2 s, 4 s, ... between attempts, not one per test.
    gaps = [b - a for a, b in itertools.pairwise(resolved)]
    assert len(resolved) < 12
    assert gaps == sorted(gaps)


# --- a hung driver call on the sampler thread -----------------------------------------------


def test_a_hung_sampler_call_makes_later_readings_unknown_not_a_hung_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine_module, "HUNG_CALL_S", 0.2)
    release = threading.Event()
    entered = threading.Event()

    def reader() -> VramReading:
        if threading.current_thread().name == "hypomnesis-sampler":
            entered.set()
            release.wait(30)  # a driver call that does not return
        return VramReading(100 * MIB, None, GpuQuerySource.NVML)

    made = Engine(interval_s=0.01)
    monkeypatch.setattr(made, "readers", lambda: ([(0, reader)], None))
    try:
        span = made.begin()
        assert entered.wait(10)
        time.sleep(0.3)
        started = time.monotonic()
        record = made.end(span)
        assert time.monotonic() - started < 5
        figures = record["vram"]["devices"]["0"]
        assert figures["increase_bytes"] is None
        assert "hung driver call" in (figures["unavailable_reason"] or "")
    finally:
        release.set()
        made.close()


def test_nvml_reader_gives_up_on_a_lock_held_by_a_hung_call(
    fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_hypomnesis.probe import nvml

    fake_nvml.set([_device(100 * MIB)])
    reader = nvml.self_reader(0)
    monkeypatch.setattr(nvml, "CALL_TIMEOUT_S", 0.1)
    with nvml._lock:  # as a driver call that never returns would hold it
        reading = reader()
    assert reading.process_used_bytes is None
    assert "did not return within 0.1s" in (reading.failure or "")
    assert reader().process_used_bytes == 100 * MIB


# --- memory_report blocks from several threads at once --------------------------------------


def test_blocks_opened_from_other_threads_never_lose_a_peak(engine: Engine) -> None:
    """One thread allocates and frees inside its blocks while others open and close blocks
    as fast as they can: each open folds the running peak into the open blocks and resets
    it; done apart, a peak that came between the fold and the reset was lost (a 0 B
    increase)."""
    if not engine.ram.exact:
        pytest.skip("the RAM peak is sampled here (no resettable high-water mark)")
    size = 16 * MIB
    stop = threading.Event()
    increases: list[int | None] = []

    def disturb() -> None:
        while not stop.is_set():
            engine.end(engine.begin())

    def work() -> None:
        for _ in range(150):
            span = engine.begin()
            block = mmap.mmap(-1, size)
            for offset in range(0, size, mmap.PAGESIZE):
                block[offset] = 1
            block.close()
            increases.append(engine.end(span)["ram"]["increase_bytes"])

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the GIL over often, so the threads interleave
    others = [threading.Thread(target=disturb) for _ in range(3)]
    try:
        for thread in others:
            thread.start()
        worker = threading.Thread(target=work)
        worker.start()
        worker.join(120)
    finally:
        stop.set()
        sys.setswitchinterval(switch)
        for thread in others:
            thread.join(30)
    assert len(increases) == 150
    assert min(i or 0 for i in increases) >= size * 3 // 4


# --- a test that closes file descriptors -----------------------------------------------------


def test_closed_and_reused_fds_are_never_written_into_or_read(engine: Engine) -> None:
    rss.procfs_rss()
    engine.end(engine.begin())  # kept fds open: statm, clear_refs, status
    kept = [k.fd for k in (rss._statm, engine.ram._clear, engine.ram._status) if k.fd is not None]
    assert kept
    for fd in kept:
        os.close(fd)  # as os.closerange(3, 1024) in a test would
    with tempfile.TemporaryDirectory() as tmp:
        # The test's own files take the freed numbers.
        files = []
        for i in range(len(kept) + 4):
            path = Path(tmp) / f"user{i}.txt"
            path.write_text("user data 123 456 789\n", encoding="utf-8")
            files.append((path, os.open(path, os.O_RDWR)))
        assert {fd for _, fd in files} & set(kept)
        try:
            before = rss.procfs_rss()
            span = engine.begin()
            record = engine.end(span)
            after = rss.procfs_rss()
        finally:
            for _, fd in files:
                os.close(fd)
        for path, _ in files:
            assert path.read_text(encoding="utf-8") == "user data 123 456 789\n"
    # Real figures, not "123 pages" read out of the user's file.
    assert before > 1024 * 1024 and after > 1024 * 1024
    assert record["ram"]["start_bytes"] is not None and record["ram"]["start_bytes"] > 1024**2
    if engine.ram.exact:
        assert record["ram"]["peak_bytes"] is not None
