"""The host-wide VRAM reservation ledger: one file per GPU UUID, guarded by an OS file lock.

Every process that admits tests on a GPU (each xdist worker of each pytest run on the
host) writes its reservation here before the test's setup and removes it when the test
ends. An entry names its process by PID and the process's start time, so a PID reused by
another program is not mistaken for the original; entries of processes that no longer
exist are dropped whenever the ledger is opened, so a killed worker frees its GPU.

The file is JSON, rewritten whole (temp file and rename) under the lock, so a reader never
sees half of it. A corrupt or foreign file is treated as empty and replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import psutil

from pytest_hypomnesis._platform import debug
from pytest_hypomnesis._units import format_bytes_iec
from pytest_hypomnesis.parallel.filelock import locked_file

__all__ = ["Entry", "Ledger", "LedgerState", "default_ledger_dir", "process_started"]

_FORMAT = "pytest-hypomnesis-ledger/1"
Kind = Literal["reserved", "waiting"]


def default_ledger_dir() -> str:
    return tempfile.gettempdir()


def process_started(pid: int) -> float | None:
    """The process's start time (seconds since the epoch), ``None`` if it does not exist."""
    try:
        process = psutil.Process(pid)
        # An exited process not yet reaped by its parent (a killed xdist worker) is a
        # zombie: its files, CUDA context and GPU memory are already gone.
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time()
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return -1.0


@dataclass(frozen=True, slots=True)
class Entry:
    """One process's claim on a GPU: ``reserved`` (admitted, running a test) or
    ``waiting`` (an exclusive test queued, which stops new admissions). ``need_bytes`` is
    ``None`` for an exclusive claim: the whole GPU."""

    pid: int
    started: float
    kind: Kind
    need_bytes: int | None
    nodeid: str
    since: float
    base_bytes: int = 0
    """The process's own NVML figure when admitted: the need comes on top of it."""

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "started": self.started,
            "kind": self.kind,
            "need_bytes": self.need_bytes,
            "nodeid": self.nodeid,
            "since": self.since,
            "base_bytes": self.base_bytes,
        }

    @classmethod
    def from_json(cls, raw: Any) -> Entry | None:
        if not isinstance(raw, dict):
            return None
        pid, started, kind = raw.get("pid"), raw.get("started"), raw.get("kind")
        need, nodeid, since = raw.get("need_bytes"), raw.get("nodeid"), raw.get("since")
        base = raw.get("base_bytes", 0)
        if (
            not isinstance(pid, int)
            or not isinstance(started, (int, float))
            or kind not in ("reserved", "waiting")
            or not (need is None or (isinstance(need, int) and need >= 0))
            or not isinstance(nodeid, str)
            or not isinstance(since, (int, float))
            or not isinstance(base, int)
        ):
            return None
        return cls(pid, float(started), kind, need, nodeid, float(since), base)

    def describe(self) -> str:
        what = "the whole GPU" if self.need_bytes is None else format_bytes_iec(self.need_bytes)
        verb = "waits for" if self.kind == "waiting" else "reserved"
        return f"pid {self.pid} ({self.nodeid}) {verb} {what}"


@dataclass(slots=True)
class LedgerState:
    """The live entries of one GPU while the lock is held; change ``entries`` in place."""

    entries: list[Entry] = field(default_factory=list)

    def others(self, pid: int) -> list[Entry]:
        return [e for e in self.entries if e.pid != pid]

    def remove(self, pid: int, nodeid: str | None = None) -> None:
        self.entries[:] = [
            e for e in self.entries if not (e.pid == pid and (nodeid is None or e.nodeid == nodeid))
        ]


_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class Ledger:
    """The ledger of the GPU ``uuid`` under ``directory``."""

    def __init__(self, directory: str, uuid: str) -> None:
        self.directory = directory
        self.uuid = uuid
        stem = "hypomnesis-gpu-" + _SAFE.sub("_", uuid)
        self.path = os.path.join(directory, stem + ".json")
        self.lock_path = os.path.join(directory, stem + ".lock")
        self._me = os.getpid()
        self._my_start = process_started(self._me) or 0.0

    @property
    def pid(self) -> int:
        if os.getpid() != self._me:  # a forked child is another process
            self._me = os.getpid()
            self._my_start = process_started(self._me) or 0.0
        return self._me

    def entry(self, kind: Kind, need_bytes: int | None, nodeid: str, base_bytes: int = 0) -> Entry:
        """An entry for this process."""
        pid = self.pid
        return Entry(pid, self._my_start, kind, need_bytes, nodeid, time.time(), base_bytes)

    @contextmanager
    def locked(self) -> Iterator[LedgerState]:
        """The live entries, under the lock; written back when the body changed them."""
        with locked_file(self.lock_path):
            loaded = self._read()
            state = LedgerState([e for e in loaded if _alive(e)])
            yield state
            if state.entries != loaded:
                self._write(state.entries)

    def snapshot(self) -> list[Entry]:
        with self.locked() as state:
            return list(state.entries)

    def _read(self) -> list[Entry]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            debug("ledger", f"{self.path} unreadable, starting empty: {exc}")
            return []
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            debug("ledger", f"{self.path} is not a ledger, starting empty")
            return []
        raw_entries = data.get("entries")
        if not isinstance(raw_entries, list):
            return []
        entries = [Entry.from_json(raw) for raw in raw_entries]
        return [e for e in entries if e is not None]

    def _write(self, entries: list[Entry]) -> None:
        data = {"format": _FORMAT, "uuid": self.uuid, "entries": [e.to_json() for e in entries]}
        fd, tmp = tempfile.mkstemp(prefix=".hypomnesis-ledger.", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(entry: Entry) -> bool:
    started = process_started(entry.pid)
    if started is None:
        return False
    # -1: exists but cannot be inspected (another user's process): keep it.
    return started < 0 or abs(started - entry.started) < 1.0
