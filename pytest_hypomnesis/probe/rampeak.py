"""The exact RAM peak of a span: reset the kernel's RSS high-water mark, read it back.

Writing ``5`` to ``/proc/self/clear_refs`` resets the high-water mark that both
``getrusage(RUSAGE_SELF).ru_maxrss`` and ``VmHWM`` report, so a spike of any length
between the reset and the read is caught exactly. Which of the two follows the reset is
checked once per process (MEASURED.md: ``ru_maxrss`` does here, at about 1 us a read);
where neither does (other kernels, containers that forbid the write, macOS, Windows) the
method is ``sampled`` and the caller samples RSS in a thread instead.
"""

from __future__ import annotations

import mmap
import os
import sys
import threading
from collections.abc import Callable

from pytest_hypomnesis._platform import IS_LINUX
from pytest_hypomnesis.probe.keptfd import KeptFd
from pytest_hypomnesis.probe.rss import process_rss, read_status_field

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

__all__ = ["RamPeakMeter", "lifetime_peak_bytes"]

_PROBE_BYTES = 16 * 1024 * 1024
# Which method works is a property of the kernel and the process's permissions: check
# once per process, not once per pytest session (pytester runs many in one process).
_CALIBRATED: dict[int, str] = {}


class RamPeakMeter:
    """Per-process: ``reset()`` the high-water mark, then ``peak_bytes()`` since it.

    File descriptors are opened once and reopened after a fork: an fd on ``/proc/self``
    still names the process that opened it, so a forked child would reset its parent.
    """

    def __init__(self, *, reset_allowed: bool = True) -> None:
        # ``reset_allowed=False`` (``--hypomnesis-keep-hwm``): never touch the kernel's
        # mark, so the parent's wait4()/getrusage(RUSAGE_CHILDREN) still see the whole
        # run's peak; peaks are then sampled.
        self._reset_allowed = reset_allowed
        self._lock = threading.Lock()
        # Verified before each use: a test that closed fds and opened its own files must
        # not get "5" written into them, nor have its file read as /proc/self/status.
        self._clear = KeptFd("/proc/self/clear_refs", os.O_WRONLY)
        self._status = KeptFd("/proc/self/status", os.O_RDONLY)
        self._method: str | None = None

    @property
    def method(self) -> str:
        """``rusage`` or ``hwm`` (exact) or ``sampled``; calibrates on first use."""
        if self._method is None:
            with self._lock:
                if self._method is None:
                    self._method = self._calibrate()
        return self._method

    @property
    def exact(self) -> bool:
        # Asked several times per test: after calibration it is a plain attribute read.
        method = self._method
        return (method if method is not None else self.method) != "sampled"

    def close(self) -> None:
        """Close the kept file descriptors (the next use reopens them)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        self._clear.close()
        self._status.close()

    def _ensure_open(self) -> None:
        if sys.platform == "win32":  # never calibrated there; also keeps mypy's win32 run clean
            raise OSError("no /proc on Windows")
        self._clear.get()
        if self._method in (None, "hwm"):
            self._status.get()

    def _write_reset(self) -> None:
        if sys.platform == "win32":
            raise OSError("no /proc on Windows")
        os.write(self._clear.get(), b"5")

    def _rusage_bytes(self) -> int:
        if sys.platform == "win32":
            raise OSError("no getrusage on Windows")
        assert resource is not None
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024

    def _hwm_bytes(self) -> int:
        if sys.platform == "win32":
            raise OSError("no /proc on Windows")
        text = os.pread(self._status.get(), 8192, 0).decode("ascii", "replace")
        return read_status_field(text, "VmHWM")

    def _follows_reset(self, reader: Callable[[], int]) -> bool:
        # An anonymous mapping, not a Python object: malloc could serve that from heap
        # pages that stay resident after the free (glibc raises its mmap threshold after
        # a large free), which would look like a reset that does not work.
        self._write_reset()
        probe = mmap.mmap(-1, _PROBE_BYTES)
        try:
            for offset in range(0, _PROBE_BYTES, mmap.PAGESIZE):
                probe[offset] = 1
            resident = process_rss()
        finally:
            probe.close()
        seen = reader()
        self._write_reset()
        after = reader()
        return seen >= resident - _PROBE_BYTES // 4 and after <= seen - _PROBE_BYTES // 2

    def _calibrate(self) -> str:
        if not IS_LINUX or not self._reset_allowed:
            return "sampled"
        known = _CALIBRATED.get(os.getpid())
        if known is not None:
            if known != "sampled":
                self._ensure_open()
            return known
        method = self._calibrate_now()
        _CALIBRATED[os.getpid()] = method
        return method

    def _calibrate_now(self) -> str:
        try:
            if resource is not None and self._follows_reset(self._rusage_bytes):
                return "rusage"
            if self._follows_reset(self._hwm_bytes):
                return "hwm"
        except Exception:  # write forbidden, odd /proc, RamError: sample instead
            pass
        self._close()
        return "sampled"

    def reset(self) -> None:
        """Start a new high-water span (no-op when sampling)."""
        method = self._method  # after calibration a plain attribute read
        if (method if method is not None else self.method) == "sampled":
            return
        with self._lock:
            self._write_reset()

    def peak_bytes(self) -> int | None:
        """Peak RSS since the last ``reset()``; ``None`` when sampling."""
        method = self._method
        if method is None:
            method = self.method
        if method == "rusage":
            return self._rusage_bytes()
        if method == "hwm":
            with self._lock:
                return self._hwm_bytes()
        return None


def lifetime_peak_bytes() -> int | None:
    """The kernel's peak RSS of this process, Linux only: exact for the whole run when the
    mark was never reset (``sampled`` method), else the peak since the last reset."""
    if sys.platform == "win32" or not IS_LINUX or resource is None:
        return None
    try:
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    except (OSError, ValueError):
        return None
