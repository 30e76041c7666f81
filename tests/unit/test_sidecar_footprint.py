"""macOS: the RAM sidecar reads ``phys_footprint`` through ``proc_pid_rusage``, as this
process reads itself, so a span's start, peak and end are one metric and it is the one
every other macOS reading gives. Driven on Linux through a fake ``proc_pid_rusage`` with
Apple's ``rusage_info_v0`` layout and the kernel's failures (tests/fake_libproc/): its
footprint is a process's RSS plus ``FAKE_LIBPROC_EXTRA_BYTES``, so a figure that took the
resident size (8 bytes earlier) or psutil's RSS is off by that much."""

from __future__ import annotations

import ast
import errno
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_hypomnesis.plugin.engine import Engine
from pytest_hypomnesis.probe import footprint, rampeak, sidecar
from pytest_hypomnesis.probe.rampeak import RamPeakMeter
from pytest_hypomnesis.probe.rss import procfs_rss
from pytest_hypomnesis.probe.sidecar import RssSidecar
from tests.helpers.gilspike import hold_spike
from tests.helpers.units import GIB, MIB

EXTRA = 3 * GIB  # footprint - RSS in the fake: far above any RSS of this process
NEAR = 32 * MIB  # two readings of a live process a few ms apart
INTERVAL_S = 0.005
SPIKE = 64 * MIB

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the fake libproc is a Linux build"
)


@pytest.fixture
def fake(fake_libproc: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sidecar (and this process) read the footprint through the fake library."""
    monkeypatch.setattr(sidecar, "FOOTPRINT_LIBRARY", str(fake_libproc))
    monkeypatch.setenv("FAKE_LIBPROC_EXTRA_BYTES", str(EXTRA))
    monkeypatch.delenv("FAKE_LIBPROC_EPERM", raising=False)
    return fake_libproc


@pytest.fixture
def meter() -> Iterator[RamPeakMeter]:
    made = RamPeakMeter(reset_allowed=False, interval_s=INTERVAL_S)
    yield made
    made.close()


def _is_footprint(value: int | None) -> bool:
    return value is not None and abs(value - (procfs_rss() + EXTRA)) < NEAR


def _is_rss(value: int | None) -> bool:
    return value is not None and abs(value - procfs_rss()) < NEAR


# -- the reader ------------------------------------------------------------------------------


def test_the_reader_takes_ri_phys_footprint_at_its_offset(fake: Path) -> None:
    # <sys/resource.h>: uuid[16] then u64 user, system, pkg_idle, interrupt, pageins, wired,
    # resident, phys_footprint; the fake's static_asserts pin the same layout.
    assert footprint.PHYS_FOOTPRINT_OFFSET == 72
    assert footprint.RUSAGE_INFO_V0_SIZE == 96
    assert _is_footprint(footprint.footprint_reader(str(fake))(os.getpid()))


def test_a_dead_pid_is_esrch(fake: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the PID names nothing now
    with pytest.raises(OSError, match=r"proc_pid_rusage\(\d+, RUSAGE_INFO_V0\) failed: ESRCH") as e:
        footprint.footprint_reader(str(fake))(proc.pid)
    assert e.value.errno == errno.ESRCH


def test_another_users_process_is_eperm(fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LIBPROC_EPERM", "others")
    read = footprint.footprint_reader(str(fake))
    assert _is_footprint(read(os.getpid()))  # one's own process is always readable
    with pytest.raises(OSError, match="failed: EPERM") as e:
        read(os.getppid())
    assert e.value.errno == errno.EPERM


def test_the_sidecar_runs_the_file_by_path_so_it_imports_only_the_stdlib() -> None:
    # ``python -I -S`` has only the stdlib (and psutil's directory) on its path.
    tree = ast.parse(Path(footprint.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names), imported


# -- the sidecar reads it, and the span reads what the sidecar reads -------------------------


def test_the_sidecar_samples_the_footprint(fake: Path) -> None:
    sc = RssSidecar(interval_s=INTERVAL_S)
    try:
        sc.start()
        assert sc.reads_footprint and sc.footprint_refused is None
        time.sleep(INTERVAL_S * 4)
        assert _is_footprint(sc.peak_bytes())  # the sidecar's own samples
        assert _is_footprint(sc.own_footprint_bytes())  # this process, the same call
    finally:
        sc.close()


def test_the_span_is_footprint_from_start_to_end(fake: Path, gil_spike_library: Path) -> None:
    engine = Engine(interval_s=INTERVAL_S, keep_hwm=True)
    try:
        span = engine.begin()
        hold_spike(gil_spike_library, SPIKE, 500)  # the GIL held: only the sidecar sees it
        record = engine.end(span)
        notes = engine.notes()
    finally:
        engine.close()
    ram = record["ram"]
    assert ram["method"] == "sidecar"
    assert _is_footprint(ram["start_bytes"]) and _is_footprint(ram["end_bytes"])
    assert ram["increase_bytes"] is not None and ram["increase_bytes"] >= SPIKE * 9 // 10
    assert not any("phys_footprint" in n for n in notes), notes


def test_children_are_read_through_the_same_call(fake: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    made = RamPeakMeter(reset_allowed=False, children=True, interval_s=INTERVAL_S)
    try:
        assert made.method == "sidecar"
        deadline = time.monotonic() + 10
        while child.pid not in made.descendants() and time.monotonic() < deadline:
            time.sleep(INTERVAL_S)
        assert child.pid in made.descendants()
        # The child's footprint carries the fake's extra too: it was not read as RSS.
        assert made.read_rss() - procfs_rss() >= 2 * EXTRA - NEAR
    finally:
        made.close()
        child.kill()
        child.wait()


# -- where the footprint cannot be read: psutil's RSS, said ----------------------------------


def _assert_psutil_span(meter: RamPeakMeter, why: str) -> None:
    assert meter.method == "sidecar"
    assert meter.read_rss is rampeak._psutil_rss
    assert _is_rss(meter.read_rss())
    assert _is_rss(meter.peak_then_reset())  # the sidecar's samples: RSS as well
    assert meter.metric_note is not None
    assert meter.metric_note.startswith(
        "RAM figures of the spans the sidecar samples are psutil's resident size, "
        "not phys_footprint: proc_pid_rusage failed ("
    )
    assert why in meter.metric_note, meter.metric_note


@pytest.mark.parametrize(
    ("refuse", "where"),
    [
        # This process may read itself; the sidecar, another process, may not read it.
        ("others", "the sidecar's proc_pid_rusage({pid}, RUSAGE_INFO_V0) failed: EPERM"),
        ("all", "proc_pid_rusage({pid}, RUSAGE_INFO_V0) failed: EPERM"),
    ],
)
def test_eperm(
    fake: Path, monkeypatch: pytest.MonkeyPatch, meter: RamPeakMeter, refuse: str, where: str
) -> None:
    monkeypatch.setenv("FAKE_LIBPROC_EPERM", refuse)
    said = f"({where.format(pid=os.getpid())} (Operation not permitted)"
    _assert_psutil_span(meter, said + (" (in this process))" if refuse == "all" else ")"))


def test_no_library(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, meter: RamPeakMeter) -> None:
    monkeypatch.setattr(sidecar, "FOOTPRINT_LIBRARY", str(tmp_path / "libSystem.B.dylib"))
    _assert_psutil_span(meter, "OSError: ")
    assert meter.metric_note is not None and "libSystem.B.dylib" in meter.metric_note


def test_a_library_without_the_call(
    monkeypatch: pytest.MonkeyPatch, gil_spike_library: Path, meter: RamPeakMeter
) -> None:
    monkeypatch.setattr(sidecar, "FOOTPRINT_LIBRARY", str(gil_spike_library))
    _assert_psutil_span(meter, "AttributeError: ")
    assert meter.metric_note is not None and "proc_pid_rusage" in meter.metric_note


def test_the_reason_reaches_the_engines_notes(fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LIBPROC_EPERM", "others")
    engine = Engine(interval_s=INTERVAL_S, keep_hwm=True)
    try:
        record = engine.end(engine.begin())
        notes = engine.notes()
    finally:
        engine.close()
    assert record["ram"]["method"] == "sidecar"
    assert _is_rss(record["ram"]["start_bytes"]) and _is_rss(record["ram"]["peak_bytes"])
    assert sum("not phys_footprint: proc_pid_rusage failed" in n for n in notes) == 1, notes


def test_off_macos_nothing_changes(meter: RamPeakMeter) -> None:
    assert sidecar.FOOTPRINT_LIBRARY is None
    assert meter.method == "sidecar"
    assert meter.metric_note is None
    assert _is_rss(meter.peak_then_reset())
