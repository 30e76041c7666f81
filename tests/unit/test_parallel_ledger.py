"""The host-wide VRAM ledger: one file per GPU UUID, an OS file lock, dead PIDs dropped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pytest_hypomnesis.parallel.ledger import Entry, Ledger, process_started

UUID = "GPU-00000000-0000-0000-0000-000000000000"


def test_reserve_and_release_round_trip(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path), UUID)
    with ledger.locked() as state:
        state.entries.append(ledger.entry("reserved", 2 * 1024**3, "t.py::a", base_bytes=5))
    assert Path(ledger.path).name == f"hypomnesis-gpu-{UUID}.json"
    (entry,) = Ledger(str(tmp_path), UUID).snapshot()
    assert (entry.pid, entry.kind, entry.need_bytes, entry.nodeid, entry.base_bytes) == (
        os.getpid(),
        "reserved",
        2 * 1024**3,
        "t.py::a",
        5,
    )
    with ledger.locked() as state:
        state.remove(os.getpid(), "t.py::a")
    assert ledger.snapshot() == []


def test_one_file_per_gpu(tmp_path: Path) -> None:
    a, b = Ledger(str(tmp_path), UUID), Ledger(str(tmp_path), "GPU-1/odd:name")
    with a.locked() as state:
        state.entries.append(a.entry("reserved", 1, "x"))
    assert b.snapshot() == []
    assert os.path.basename(b.path) == "hypomnesis-gpu-GPU-1_odd_name.json"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_dead_process_entries_are_dropped(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path), UUID)
    dead = Entry(_dead_pid(), 1.0, "reserved", 8 * 1024**3, "gone.py::t", 0.0)
    alive = ledger.entry("reserved", 1024, "here.py::t")
    with ledger.locked() as state:
        state.entries.extend([dead, alive])
    assert ledger.snapshot() == [alive]
    on_disk = json.loads(Path(ledger.path).read_text())["entries"]
    assert [e["nodeid"] for e in on_disk] == ["here.py::t"]


def test_a_reused_pid_is_not_the_old_process(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path), UUID)
    started = process_started(os.getpid())
    assert started is not None
    stale = Entry(os.getpid(), started - 3600, "reserved", 1, "old.py::t", 0.0)
    with ledger.locked() as state:
        state.entries.append(stale)
    assert ledger.snapshot() == []


def test_corrupt_or_foreign_file_reads_as_empty_and_is_replaced(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path), UUID)
    Path(ledger.path).write_text("{not json")
    assert ledger.snapshot() == []
    Path(ledger.path).write_text(json.dumps({"format": "other", "entries": [1]}))
    with ledger.locked() as state:
        state.entries.append(ledger.entry("waiting", None, "x"))
    assert json.loads(Path(ledger.path).read_text())["format"] == "pytest-hypomnesis-ledger/1"


_APPENDER = """
import sys
from pytest_hypomnesis.parallel.ledger import Ledger
ledger = Ledger(sys.argv[1], sys.argv[2])
for i in range(int(sys.argv[3])):
    with ledger.locked() as state:
        state.entries.append(ledger.entry("reserved", i, f"{sys.argv[4]}::{i}"))
"""


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    # Readers and writers in other processes must see each other's entries: the OS
    # lock serialises the read-modify-write. Each child's entries vanish when it exits.
    ledger = Ledger(str(tmp_path), UUID)
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _APPENDER + "\nimport time; time.sleep(3)\n",
                str(tmp_path),
                UUID,
                "40",
                f"w{n}",
            ]
        )
        for n in range(3)
    ]
    try:
        deadline = 200
        while deadline and len(ledger.snapshot()) < 120:
            import time

            time.sleep(0.05)
            deadline -= 1
        names = sorted(e.nodeid for e in ledger.snapshot())
        assert names == sorted(f"w{n}::{i}" for n in range(3) for i in range(40))
    finally:
        for run in runs:
            run.wait()
    assert ledger.snapshot() == []


def test_a_zombie_holds_nothing(tmp_path: Path) -> None:
    # A killed worker its parent has not reaped yet: exited, so its GPU memory is gone.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = 100
    while deadline and process_started(child.pid) is not None:
        import time

        time.sleep(0.05)
        deadline -= 1
    try:
        assert process_started(child.pid) is None
        ledger = Ledger(str(tmp_path), UUID)
        with ledger.locked() as state:
            state.entries.append(Entry(child.pid, 1.0, "reserved", 1, "z.py::t", 0.0))
        assert ledger.snapshot() == []
    finally:
        child.wait()
