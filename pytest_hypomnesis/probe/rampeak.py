"""The exact RAM peak of a span: reset the kernel's RSS high-water mark, read it back.

Writing ``5`` to ``/proc/self/clear_refs`` resets the high-water mark that both
``getrusage(RUSAGE_SELF).ru_maxrss`` and ``VmHWM`` report, so a spike of any length
between the reset and the read is caught exactly. Which of the two follows the reset is
checked once per process (MEASURED.md: ``ru_maxrss`` does here, at about 1 us a read).
Where neither does (other kernels, containers that forbid the write, macOS, Windows), or
the mark must be left alone (``--hypomnesis-keep-hwm``), or children are counted, the
method is ``sidecar``: a separate process samples RSS and keeps the running maximum
(probe/sidecar.py), which a C call holding the GIL cannot stop. Where that process cannot
start (or stops answering) the method is ``sampled``: the caller samples RSS in a thread,
and ``fallback_reason`` says why.
"""

from __future__ import annotations

import mmap
import os
import sys
import threading
from collections.abc import Callable

from pytest_hypomnesis._platform import debug
from pytest_hypomnesis.probe.keptfd import KeptFd
from pytest_hypomnesis.probe.rss import procfs_rss, read_status_field
from pytest_hypomnesis.probe.sidecar import RssSidecar, SidecarError

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

    def __init__(
        self,
        *,
        reset_allowed: bool = True,
        children: bool = False,
        interval_s: float = 0.01,
        sidecar: bool = True,
        read_rss: Callable[[], int] = procfs_rss,
    ) -> None:
        # ``reset_allowed=False`` (``--hypomnesis-keep-hwm``): never touch the kernel's
        # mark, so the parent's wait4()/getrusage(RUSAGE_CHILDREN) still see the whole
        # run's peak; peaks are then sampled (by the sidecar). ``children``: the figures
        # are this process's and its descendants' RSS, which only the sidecar reads.
        self._reset_allowed = reset_allowed
        self._children = children
        self._use_sidecar = sidecar or children
        self._sidecar = RssSidecar(interval_s=interval_s, children=children)
        self.fallback_reason: str | None = None
        """Why the sidecar is not used where it would be (it could not start, it died)."""
        self.metric_note: str | None = None
        """Set when the sidecar's spans read another figure than this OS's own (macOS:
        psutil's resident size, where ``proc_pid_rusage`` could not give the footprint)."""
        self._own_rss = read_rss
        self._sidecar_own = read_rss
        self.read_rss: Callable[[], int] = read_rss
        """RSS now, as the peaks count it: the figure the sidecar reads of this process
        (on macOS its footprint through the sidecar's own call, or psutil's resident
        size where that call fails; else the OS's own RSS, ``read_rss`` from
        ``probe.chain``), with ``children`` plus the descendants' share at the sidecar's
        last sample."""
        self._lock = threading.Lock()
        # Verified before each use: a test that closed fds and opened its own files must
        # not get "5" written into them, nor have its file read as /proc/self/status.
        self._clear = KeptFd("/proc/self/clear_refs", os.O_WRONLY)
        self._status = KeptFd("/proc/self/status", os.O_RDONLY)
        self._method: str | None = None

    @property
    def method(self) -> str:
        """``rusage`` or ``hwm`` (exact), ``sidecar``, or ``sampled``; calibrates (and
        starts the sidecar where needed) on first use."""
        if self._method is None:
            with self._lock:
                if self._method is None:
                    method = "sampled" if self._children else self._calibrate()
                    if method == "sampled" and self._use_sidecar:
                        method = self._start_sidecar()
                    self._method = method
        return self._method

    def _start_sidecar(self) -> str:
        try:
            self._sidecar.start()
        except SidecarError as exc:
            self._note_fallback(f"the RAM sidecar could not start: {exc}")
            return "sampled"
        # Start, peak and end of a span in the one metric the sidecar samples.
        refused = self._sidecar.footprint_refused
        if self._sidecar.reads_footprint:
            self._sidecar_own = self._sidecar.own_footprint_bytes
        elif refused is not None:
            self._sidecar_own = _psutil_rss
            self.metric_note = (
                f"RAM figures of the spans the sidecar samples are psutil's resident size, "
                f"not phys_footprint: proc_pid_rusage failed ({refused})"
            )
            debug("RSS", self.metric_note)
        self.read_rss = self._tree_rss if self._children else self._sidecar_own
        return "sidecar"

    def _note_fallback(self, reason: str) -> None:
        self.fallback_reason = reason
        self.read_rss = self._own_rss
        debug("RSS", f"{reason}; RAM peaks sampled by a thread")

    def _sidecar_failed(self, exc: SidecarError) -> None:
        # From now on the thread samples (the engine asks ``exact`` at every span start).
        self._note_fallback(f"the RAM sidecar {exc}")
        self._method = "sampled"

    def _tree_rss(self) -> int:
        own = self._sidecar_own()
        try:
            return own + self._sidecar.children_bytes()
        except SidecarError as exc:
            self._sidecar_failed(exc)
            return own

    def descendants(self) -> tuple[int, ...]:
        """The PIDs of this process's descendants (``children`` only), as the sidecar
        saw them now; ``()`` when it is not running."""
        if self._method != "sidecar" or not self._children:
            return ()
        try:
            return self._sidecar.pids()
        except SidecarError as exc:
            self._sidecar_failed(exc)
            return ()

    @property
    def sidecar_pid(self) -> int | None:
        """The sidecar's PID while it runs (tests end it to see the fallback)."""
        return self._sidecar.pid if self._method == "sidecar" else None

    @property
    def exact(self) -> bool:
        # Asked several times per test: after calibration it is a plain attribute read.
        method = self._method
        return (method if method is not None else self.method) != "sampled"

    def close(self) -> None:
        """Close the kept file descriptors and end the sidecar (the next use reopens
        and restarts them)."""
        with self._lock:
            self._close()
        self._sidecar.close()

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
            resident = procfs_rss()
        finally:
            probe.close()
        seen = reader()
        self._write_reset()
        after = reader()
        return seen >= resident - _PROBE_BYTES // 4 and after <= seen - _PROBE_BYTES // 2

    def _calibrate(self) -> str:
        # ``probe.chain`` allows the reset only on Linux (elsewhere: nothing to reset).
        if not self._reset_allowed:
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
        if method is None:
            method = self.method
        if method == "sidecar":
            self.peak_then_reset()
        elif method != "sampled":
            with self._lock:
                self._write_reset()

    def peak_then_reset(self) -> int | None:
        """Peak RSS since the last reset, then start a new span; ``None`` (and nothing
        reset) when sampling."""
        method = self._method  # after calibration a plain attribute read
        if method is None:
            method = self.method
        if method == "sampled":
            return None
        if method == "sidecar":
            # Its samples, and the fresh reading the boundary adds to them.
            now = self.read_rss()
            try:
                peak = self._sidecar.reset()
            except SidecarError as exc:
                self._sidecar_failed(exc)
                return now
            return now if peak is None or now > peak else peak
        peak = self.peak_bytes()
        with self._lock:
            self._write_reset()
        return peak

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
        if method == "sidecar":
            now = self.read_rss()
            try:
                peak = self._sidecar.peak_bytes()
            except SidecarError as exc:
                self._sidecar_failed(exc)
                return now
            return now if peak is None or now > peak else peak
        return None


_psutil_self: list[tuple[int, object]] = []


def _psutil_rss() -> int:
    """psutil's RSS of this process (macOS with a sidecar that could not read the
    footprint: the figure it reads instead), through one ``Process`` per PID (making one
    reads the process's start time)."""
    import psutil

    pid = os.getpid()
    if not _psutil_self or _psutil_self[0][0] != pid:
        _psutil_self[:] = [(pid, psutil.Process(pid))]
    proc = _psutil_self[0][1]
    assert isinstance(proc, psutil.Process)
    return int(proc.memory_info().rss)


def lifetime_peak_bytes() -> int | None:
    """The kernel's peak RSS of this process (``probe.chain`` asks only on Linux, where
    ``ru_maxrss`` is in KiB): exact for the whole run when the mark was never reset
    (``sampled`` method), else the peak since the last reset."""
    if sys.platform == "win32" or resource is None:
        return None
    try:
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    except (OSError, ValueError):
        return None
