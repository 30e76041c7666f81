"""RSS peaks sampled by a sidecar process, so a spike inside a C call is caught.

Where the kernel's high-water mark cannot be reset (macOS, Windows, containers that refuse
the ``clear_refs`` write, ``--hypomnesis-keep-hwm``) a span's RAM peak has to be sampled.
A thread in this process cannot sample while a C extension holds the GIL (a 64 MiB spike
held for seconds inside such a call was missed every time), so the sampling runs in a
separate process: ``python -I -S`` with psutil's directory alone on its path (nothing of
the user's is imported, not even ``.pth`` files), polling this process's RSS (with
``children``, plus every descendant's) at the interval and keeping a running maximum.

Protocol, one line each way (the parent asks, the sidecar answers):
``p`` → ``<peak> <now> <pids>``: the maximum since the last reset (a fresh reading
included), the reading now, the descendant PIDs (``-`` for none); ``r``: the same answer,
then the maximum restarts from the reading now. The sidecar exits on end of input, when
its parent is gone (``getppid`` changes, or psutil no longer finds it), or when the
parent's answers cannot be written.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from pathlib import Path

__all__ = ["SIDECAR_SCRIPT", "RssSidecar", "SidecarError", "SidecarReading"]

# Patched by tests: a reason here makes every start fail with it (the thread is used).
DISABLED: str | None = None
# The interpreter the sidecar runs in (tests point it at something that cannot start).
EXECUTABLE: str | None = None

_MARK = "hypomnesis-rss-sidecar"
START_TIMEOUT_S = 20.0
"""How long the first answer may take: a loaded CI machine starts Python slowly."""
ANSWER_TIMEOUT_S = 5.0
"""A question unanswered this long means the sidecar is stuck (stopped, swapped out)."""

SIDECAR_SCRIPT = r"""
import os, signal, sys, threading, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent's Ctrl-C is the parent's
out = sys.stdout
def say(text):
    out.write(text + "\n"); out.flush()
try:
    sys.path.append(sys.argv[1])
    import psutil
    pid, interval, children = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
    target = psutil.Process(pid)
    me = os.getpid()
    posix = os.name == "posix"
    kinds = {}  # pid -> whether it is a sidecar (ours, or another engine's in this process)
    def ours(kid):
        known = kinds.get(kid.pid)
        if known is None:
            try:
                known = kids_mark in kid.cmdline()
            except psutil.Error:
                known = False
            if len(kinds) > 4096:
                kinds.clear()
            kinds[kid.pid] = known
        return known
    kids_mark = sys.argv[5]
    def sample():
        total = target.memory_info().rss
        pids = []
        if children:
            for kid in target.children(recursive=True):
                if kid.pid == me or ours(kid):
                    continue
                try:
                    total += kid.memory_info().rss
                except psutil.Error:  # ended between the listing and the reading
                    continue
                pids.append(kid.pid)
        return total, pids
    now, pids = sample()
except Exception as exc:
    say("error %s: %s" % (type(exc).__name__, exc))
    sys.exit(0)
lock = threading.Lock()
state = {"peak": now}
def gone():
    os._exit(0)
def answer():
    for line in sys.stdin:
        cmd = line.strip()
        with lock:
            try:
                now, pids = sample()
            except Exception:
                gone()
            peak = max(state["peak"], now)
            state["peak"] = now if cmd == "r" else peak
        try:
            say("%d %d %s" % (peak, now, ",".join(map(str, pids)) or "-"))
        except Exception:
            gone()
    gone()
say("ready %d" % now)
threading.Thread(target=answer, daemon=True).start()
checks = 0
while True:
    time.sleep(interval)
    if posix and os.getppid() != pid:
        gone()
    checks += 1
    if checks * interval >= 1.0:  # a reused PID: psutil compares the start time
        checks = 0
        if not target.is_running():
            gone()
    with lock:
        try:
            now, _ = sample()
        except Exception:
            gone()
        if now > state["peak"]:
            state["peak"] = now
"""


class SidecarError(Exception):
    """The sidecar could not start, or stopped answering; the text says why."""


class SidecarReading:
    """One answer: ``peak_bytes`` since the last reset, ``now_bytes``, descendant ``pids``."""

    __slots__ = ("now_bytes", "peak_bytes", "pids")

    def __init__(self, peak_bytes: int, now_bytes: int, pids: tuple[int, ...]) -> None:
        self.peak_bytes = peak_bytes
        self.now_bytes = now_bytes
        self.pids = pids


def _psutil_dir() -> str:
    spec = importlib.util.find_spec("psutil")
    if spec is None or spec.origin is None:
        raise SidecarError("psutil is not installed")
    return str(Path(spec.origin).resolve().parent.parent)


class RssSidecar:
    """The sidecar of this process: started on first use, asked at span boundaries.

    Thread-safe (the sampler thread asks for descendant PIDs while a test's thread opens a
    span). After a fork the child never talks to its parent's sidecar: it starts its own.
    """

    def __init__(self, *, interval_s: float, children: bool = False) -> None:
        self.interval_s = interval_s
        self.children = children
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner_pid: int | None = None
        self._buffer = b""

    @property
    def pid(self) -> int | None:
        """The sidecar's PID while it runs for this process."""
        proc = self._proc
        return proc.pid if proc is not None and self._owner_pid == os.getpid() else None

    def start(self) -> int:
        """Start it (if not running for this process); the RSS it read first. Raises
        ``SidecarError`` with the reason when it cannot start."""
        with self._lock:
            self._ensure()
            return self._first_bytes

    def peak(self) -> SidecarReading:
        """The maximum since the last reset, leaving it running."""
        return self._ask(b"p\n")

    def reset(self) -> SidecarReading:
        """The maximum since the last reset, then start a new one from the reading now."""
        return self._ask(b"r\n")

    def close(self) -> None:
        """End the sidecar (end of input, then a kill if it lingers)."""
        with self._lock:
            self._stop()

    # -- internals -----------------------------------------------------------------------

    def _ensure(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is not None and self._owner_pid == os.getpid():
            return proc
        # A forked child holds copies of the parent's pipes: drop them unused (closing our
        # copies leaves the parent's sidecar running for the parent).
        if proc is not None:
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
        self._proc = None
        self._buffer = b""
        if DISABLED is not None:
            raise SidecarError(DISABLED)
        executable = EXECUTABLE or sys.executable
        if not executable:
            raise SidecarError("no Python executable to run it (sys.executable is empty)")
        argv = [
            executable,
            "-I",
            "-S",
            "-c",
            SIDECAR_SCRIPT,
            _psutil_dir(),
            str(os.getpid()),
            repr(self.interval_s),
            "1" if self.children else "0",
            # Other sidecars of this process (another engine's) are not its children's
            # memory: they carry this mark on their command line.
            _MARK,
        ]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                # Out of the terminal's process group: Ctrl-C and job control are the test
                # run's; the sidecar ends when the run's process does.
                start_new_session=sys.platform != "win32",
                close_fds=True,
            )
        except OSError as exc:
            raise SidecarError(f"could not start {executable}: {exc}") from None
        self._proc, self._owner_pid = proc, os.getpid()
        try:
            first = self._read_line(START_TIMEOUT_S)
        except SidecarError as exc:
            self._stop()
            raise SidecarError(str(exc)) from None
        if not first.startswith("ready "):
            self._stop()
            raise SidecarError(first.removeprefix("error "))
        self._first_bytes = int(first.split()[1])
        return proc

    def _ask(self, question: bytes) -> SidecarReading:
        with self._lock:
            proc = self._ensure()
            assert proc.stdin is not None
            try:
                proc.stdin.write(question)
                proc.stdin.flush()
                line = self._read_line(ANSWER_TIMEOUT_S)
                peak, now, pids = line.split()
                reading = SidecarReading(
                    int(peak), int(now), () if pids == "-" else tuple(map(int, pids.split(",")))
                )
            except (OSError, ValueError, SidecarError) as exc:
                self._stop()
                raise SidecarError(f"stopped answering ({_describe(exc)})") from None
            return reading

    def _read_line(self, timeout_s: float) -> str:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        while b"\n" not in self._buffer:
            if sys.platform != "win32":  # select() cannot wait on a pipe on Windows
                import select

                ready, _, _ = select.select([fd], [], [], timeout_s)
                if not ready:
                    raise SidecarError(f"no answer within {timeout_s:g}s")
            chunk = os.read(fd, 65536)
            if not chunk:
                try:
                    code: int | None = proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    code = None
                raise SidecarError("it exited" if code is None else f"it exited with status {code}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("ascii", "replace").strip()

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        self._buffer = b""
        if proc is None or self._owner_pid != os.getpid():
            return
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        try:
            proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, SidecarError) else f"{type(exc).__name__}: {exc}"
