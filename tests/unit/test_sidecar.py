"""The RAM sidecar: a separate process samples RSS, so a spike inside a C call that holds
the GIL is caught; when it cannot start or dies, the thread samples and the reason is kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from pytest_hypomnesis.plugin.engine import Engine
from pytest_hypomnesis.probe import sidecar
from pytest_hypomnesis.probe.chain import process_rss
from pytest_hypomnesis.probe.rampeak import RamPeakMeter
from pytest_hypomnesis.probe.sidecar import RssSidecar, SidecarError
from tests.helpers.gilspike import hold_spike
from tests.helpers.units import MIB

SPIKE = 64 * MIB
HOLD_MS = 1000
INTERVAL_S = 0.005

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the GIL-holding spike is a Linux build"
)


def _engine(**kwargs: object) -> Engine:
    # keep_hwm: the kernel's mark is left alone, as where the reset is refused.
    return Engine(interval_s=INTERVAL_S, keep_hwm=True, **kwargs)  # type: ignore[arg-type]


def test_a_thread_misses_a_spike_held_under_the_gil(gil_spike_library: Path) -> None:
    """What the sidecar is for: a sampling thread is frozen for the whole call."""
    before = process_rss()
    seen = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen.append(process_rss())
            time.sleep(INTERVAL_S)

    thread = threading.Thread(target=sample)
    thread.start()
    time.sleep(0.05)
    hold_spike(gil_spike_library, SPIKE, HOLD_MS)
    time.sleep(0.05)
    stop.set()
    thread.join()
    assert len(seen) > 10  # the thread did sample, before and after the call
    assert max(seen) - before < SPIKE // 2


def test_the_sidecar_catches_it(gil_spike_library: Path) -> None:
    engine = _engine()
    try:
        assert engine.ram.method == "sidecar"
        span = engine.begin()
        hold_spike(gil_spike_library, SPIKE, HOLD_MS)
        record = engine.end(span)
    finally:
        engine.close()
    ram = record["ram"]
    assert ram["method"] == "sidecar"
    assert ram["increase_bytes"] is not None and ram["increase_bytes"] >= SPIKE * 9 // 10
    # Freed before the end: the end figure is back down.
    assert ram["end_bytes"] is not None and ram["peak_bytes"] is not None
    assert ram["peak_bytes"] - ram["end_bytes"] >= SPIKE * 9 // 10


def test_the_engine_thread_misses_it_without_the_sidecar(
    gil_spike_library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sidecar, "DISABLED", "switched off by the test")
    engine = _engine()
    try:
        assert engine.ram.method == "sampled"
        span = engine.begin()
        time.sleep(0.05)
        hold_spike(gil_spike_library, SPIKE, HOLD_MS)
        record = engine.end(span)
        notes = engine.notes()
    finally:
        engine.close()
    assert record["ram"]["method"] == "sampled"
    assert record["ram"]["increase_bytes"] is not None
    assert record["ram"]["increase_bytes"] < SPIKE // 2
    assert any("could not start: switched off by the test" in n for n in notes)


def test_nested_spans_fold_the_sidecar_peak_into_the_outer_one(
    gil_spike_library: Path,
) -> None:
    engine = _engine()
    try:
        outer = engine.begin()
        hold_spike(gil_spike_library, SPIKE, 300)
        inner = engine.begin()  # resets the sidecar's maximum: the outer keeps its peak
        inner_record = engine.end(inner)
        outer_record = engine.end(outer)
    finally:
        engine.close()
    assert outer_record["ram"]["increase_bytes"] is not None
    assert outer_record["ram"]["increase_bytes"] >= SPIKE * 9 // 10
    assert inner_record["ram"]["increase_bytes"] is not None
    assert inner_record["ram"]["increase_bytes"] < SPIKE // 2


def test_cannot_start_gives_the_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sidecar, "EXECUTABLE", str(tmp_path / "no-such-python"))
    meter = RamPeakMeter(reset_allowed=False, interval_s=INTERVAL_S)
    assert meter.method == "sampled"
    assert meter.fallback_reason is not None
    assert "could not start" in meter.fallback_reason
    assert "no-such-python" in meter.fallback_reason
    assert meter.peak_bytes() is None


def test_an_interpreter_that_exits_at_once_gives_its_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    false = "/bin/false" if os.path.exists("/bin/false") else "/usr/bin/false"
    monkeypatch.setattr(sidecar, "EXECUTABLE", false)
    meter = RamPeakMeter(reset_allowed=False, interval_s=INTERVAL_S)
    assert meter.method == "sampled"
    assert meter.fallback_reason is not None
    assert meter.fallback_reason == "the RAM sidecar could not start: it exited with status 1"


def test_an_interpreter_without_psutil_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The sidecar's own words come back: here psutil's directory holds no psutil.
    monkeypatch.setattr(sidecar, "_psutil_dir", lambda: str(tmp_path))
    sc = RssSidecar(interval_s=INTERVAL_S)
    with pytest.raises(SidecarError, match=r"^ModuleNotFoundError: No module named 'psutil'"):
        sc.start()


def test_a_sidecar_that_dies_mid_span_falls_back_without_a_crash() -> None:
    engine = _engine()
    try:
        first = engine.end(engine.begin())
        assert first["ram"]["method"] == "sidecar"
        span = engine.begin()
        pid = engine.ram.sidecar_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)
        time.sleep(INTERVAL_S * 2)  # a death is seen within an interval
        record = engine.end(span)
        later = engine.end(engine.begin())  # the thread samples from now on
        notes = engine.notes()
    finally:
        engine.close()
    assert record["ram"]["method"] == "sampled"
    assert record["ram"]["peak_bytes"] is not None  # the start and end readings still count
    assert later["ram"]["method"] == "sampled"
    assert any("the RAM sidecar stopped sampling (exited with status -9)" in n for n in notes)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ")[-1].startswith("Z")  # exited, not yet reaped
    except FileNotFoundError:
        return True


def _wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.02)
    return False


PARENT = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, sys.argv[1])
    from pytest_hypomnesis.probe.sidecar import RssSidecar
    sc = RssSidecar(interval_s=0.01)
    sc.start()
    print(sc.pid, flush=True)
    time.sleep(60)
    """
)


def test_the_sidecar_exits_when_its_parent_dies() -> None:
    root = str(Path(__file__).resolve().parents[2])
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, root], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert os.path.exists(f"/proc/{pid}")
    finally:
        parent.kill()
        parent.wait()
    if not _wait_gone(pid):
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the sidecar outlived its parent by 10 s")


def test_a_forked_child_never_resets_its_parents_sidecar() -> None:
    sc = RssSidecar(interval_s=INTERVAL_S)
    try:
        sc.start()
        parent_sidecar = sc.pid
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            try:
                os.close(read)
                # The child's own sidecar, measuring the child.
                sc.peak_bytes()
                os.write(write, str(sc.pid).encode())
            finally:
                os._exit(0)
        os.close(write)
        os.waitpid(child, 0)
        child_sidecar = int(os.read(read, 64) or b"0")
        os.close(read)
        assert child_sidecar not in (0, parent_sidecar)
        assert sc.pid == parent_sidecar
        time.sleep(0.05)
        assert sc.peak_bytes() is not None  # the parent's still samples, its span intact
    finally:
        sc.close()
