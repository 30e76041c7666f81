"""RSS peaks sampled by a sidecar process, so a spike inside a C call is caught.

Where the kernel's high-water mark cannot be reset (macOS, Windows, containers that refuse
the ``clear_refs`` write, ``--hypomnesis-keep-hwm``) a span's RAM peak has to be sampled.
A thread in this process cannot sample while a C extension holds the GIL (a 64 MiB spike
held for seconds inside such a call was missed every time), so the sampling runs in a
separate process: ``python -I -S`` with psutil's directory alone on its path (nothing of
the user's is imported, not even ``.pth`` files), polling this process's RSS (with
``children``, plus every descendant's) at the interval and keeping a running maximum.

On macOS the figure is ``phys_footprint``, as everywhere else there, not psutil's resident
size: the sidecar runs ``probe/footprint.py`` by path and reads each process through
``proc_pid_rusage``, and this process reads itself through the same call. Where that call
cannot be made (here or in the sidecar), both read psutil's RSS and ``footprint_refused``
says why, so a span never mixes the two and never passes one off as the other.

The two share one small memory-mapped file, so a span boundary costs no round trip
(asking through a pipe took 50-400 us on a loaded machine; reading the page takes about
one): the parent bumps a **generation** number to start a new span; the sidecar reads the
generation before each sample, restarts its maximum when it changed, and publishes
``(generation, maximum, last total, last children's share, descendant PIDs)`` under a
sequence lock. A maximum of an older generation is not this span's: until the sidecar's
first sample after a reset the span's peak is the parent's own readings.

The sidecar exits when its input pipe closes (the parent is gone: the parent never writes
to it), when its parent PID changes, or when psutil no longer finds the parent.
"""

from __future__ import annotations

import importlib.util
import mmap
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pytest_hypomnesis._errors import RamError
from pytest_hypomnesis._platform import IS_MACOS, IS_WINDOWS
from pytest_hypomnesis.probe import footprint

__all__ = ["SIDECAR_SCRIPT", "RssSidecar", "SidecarError"]

# Patched by tests: a reason here makes every start fail with it (the thread is used).
DISABLED: str | None = None
# The interpreter the sidecar runs in (tests point it at something that cannot start).
EXECUTABLE: str | None = None
# Whose ``proc_pid_rusage`` reads the footprint; ``None``: the OS's RSS is the figure (Linux,
# Windows). Tests point it at a fake built on Linux.
FOOTPRINT_LIBRARY: str | None = footprint.LIBRARY if IS_MACOS else None

START_TIMEOUT_S = 20.0
"""How long the first answer may take: a loaded CI machine starts Python slowly."""
STUCK_S = 5.0
"""No new sample for this long (plus a few intervals) means the sidecar is stuck."""
_MARK = "hypomnesis-rss-sidecar"
MAX_PIDS = 1024
# Slots of 8 bytes. SEQ..PIDS are written by the sidecar only, GEN by the parent only.
SEQ, GEN, ACK, PEAK, TOTAL, KIDS, BEAT, NPIDS, PIDS = range(9)
_SLOTS = PIDS + MAX_PIDS
_SIZE = _SLOTS * 8

SIDECAR_SCRIPT = r"""
import mmap, os, signal, sys, threading, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent's Ctrl-C is the parent's
def say(text):
    sys.stdout.write(text + "\n"); sys.stdout.flush()
try:
    sys.path.append(sys.argv[1])
    import psutil
    pid, interval, children = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
    mark, path, size = sys.argv[5], sys.argv[6], int(sys.argv[7])
    source, library = sys.argv[8], sys.argv[9]
    SEQ, GEN, ACK, PEAK, TOTAL, KIDS, BEAT, NPIDS, PIDS = range(9)
    max_pids = size // 8 - PIDS
    fd = os.open(path, os.O_RDWR)
    slots = memoryview(mmap.mmap(fd, size)).cast("Q")
    os.close(fd)
    target = psutil.Process(pid)
    me = os.getpid()
    footprint, refused = None, ""
    if library:  # macOS: phys_footprint, read by the very code the parent reads itself with
        try:
            found = {"__name__": "hypomnesis_footprint"}
            with open(source, "rb") as fh:
                exec(compile(fh.read(), source, "exec"), found)
            footprint = found["footprint_reader"](library)
            footprint(pid)
        except Exception as exc:
            why = getattr(exc, "strerror", None)  # the reader's own words name the call
            footprint, refused = None, why or "%s: %s" % (type(exc).__name__, exc)
    kinds = {}  # pid -> whether it is a sidecar (ours, or another engine's in this process)
    def ours(kid):
        known = kinds.get(kid.pid)
        if known is None:
            try:
                known = mark in kid.cmdline()
            except psutil.Error:
                known = False
            if len(kinds) > 4096:
                kinds.clear()
            kinds[kid.pid] = known
        return known
    # Linux: each thread's children straight from /proc (CONFIG_PROC_CHILDREN), not
    # psutil's children(), which reads every process on the machine (10 ms a sample on a
    # busy one); psutil where the file does not exist.
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    fast = os.path.exists("/proc/%d/task/%d/children" % (me, me))
    def proc_kids():
        out, stack = [], [pid]
        while stack:
            parent = stack.pop()
            try:
                tids = os.listdir("/proc/%d/task" % parent)
            except OSError:
                continue
            for tid in tids:
                try:
                    with open("/proc/%d/task/%s/children" % (parent, tid), "rb") as fh:
                        found = fh.read().split()
                except OSError:
                    continue
                for kid in found:
                    kid = int(kid)
                    if kid != me:
                        out.append(kid)
                        stack.append(kid)
        return out
    def proc_rss(kid):
        with open("/proc/%d/statm" % kid, "rb") as fh:
            return int(fh.read().split()[1]) * page
    def proc_ours(kid):
        known = kinds.get(kid)
        if known is None:
            try:
                with open("/proc/%d/cmdline" % kid, "rb") as fh:
                    known = mark.encode() in fh.read()
            except OSError:
                known = False
            if len(kinds) > 4096:
                kinds.clear()
            kinds[kid] = known
        return known
    def sample():
        own = footprint(pid) if footprint else target.memory_info().rss
        kids, pids = 0, []
        if children and fast:
            for kid in proc_kids():
                if proc_ours(kid):
                    continue
                try:
                    kids += footprint(kid) if footprint else proc_rss(kid)
                except (OSError, ValueError, IndexError):  # ended meanwhile (or not ours)
                    continue
                pids.append(kid)
        elif children:
            for kid in target.children(recursive=True):
                if kid.pid == me or ours(kid):
                    continue
                try:
                    kids += footprint(kid.pid) if footprint else kid.memory_info().rss
                except (psutil.Error, OSError):  # ended between the listing and the reading
                    continue
                pids.append(kid.pid)
        return own + kids, kids, pids
    def publish(gen, peak, total, kids, pids):
        slots[SEQ] += 1  # odd: being written
        slots[ACK], slots[PEAK], slots[TOTAL], slots[KIDS] = gen, peak, total, kids
        n = min(len(pids), max_pids)
        for i in range(n):
            slots[PIDS + i] = pids[i]
        slots[NPIDS] = n
        slots[BEAT] += 1
        slots[SEQ] += 1
    gen = slots[GEN]
    total, kids, pids = sample()
    peak = total
    publish(gen, peak, total, kids, pids)  # before "ready": the first read finds a sample
except Exception as exc:
    say("error %s: %s" % (type(exc).__name__, exc))
    sys.exit(0)
def gone():
    os._exit(0)
def watch_input():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except Exception:
        pass
    gone()
threading.Thread(target=watch_input, daemon=True).start()
say("ready phys_footprint" if footprint else ("ready rss " + refused).strip())
posix = os.name == "posix"
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
    asked = slots[GEN]  # read before the sample: a sample after a reset is the new span's
    try:
        total, kids, pids = sample()
    except Exception:
        gone()
    if asked != gen:
        gen, peak = asked, total
    elif total > peak:
        peak = total
    publish(gen, peak, total, kids, pids)
"""


class SidecarError(Exception):
    """The sidecar could not start, or stopped sampling; the text says why."""


def _psutil_dir() -> str:
    spec = importlib.util.find_spec("psutil")
    if spec is None or spec.origin is None:
        raise SidecarError("psutil is not installed")
    return str(Path(spec.origin).resolve().parent.parent)


def _shm_dir() -> str | None:
    # A RAM-backed directory where there is one: the page never goes to disk.
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class RssSidecar:
    """The sidecar of this process: started on first use, read at span boundaries.

    Reads are lock-free (a sequence lock on the shared page); ``start``/``close`` take a
    lock. After a fork the child never touches its parent's page: it starts its own.
    """

    def __init__(self, *, interval_s: float, children: bool = False) -> None:
        self.interval_s = interval_s
        self.children = children
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner_pid: int | None = None
        self._map: mmap.mmap | None = None
        self._slots: memoryview | None = None
        self._path: str | None = None
        self._gen = 0
        self._beat = -1
        self._beat_at = 0.0
        self._polled_at = 0.0
        self._stuck_s = STUCK_S + 20 * interval_s
        self._own_footprint: Callable[[int], int] | None = None
        self.footprint_refused: str | None = None
        """Why the footprint was wanted (macOS) and psutil's RSS is read instead."""

    @property
    def pid(self) -> int | None:
        """The sidecar's PID while it runs for this process."""
        proc = self._proc
        return proc.pid if proc is not None and self._owner_pid == os.getpid() else None

    @property
    def reads_footprint(self) -> bool:
        """Whether the running sidecar reads ``phys_footprint`` (``own_footprint_bytes``
        is then this process's figure in the same metric)."""
        return self._own_footprint is not None and self._owner_pid == os.getpid()

    def own_footprint_bytes(self) -> int:
        """This process's ``phys_footprint`` through the sidecar's own call; ``RamError``."""
        read = self._own_footprint
        if read is None:
            raise RamError("the RAM sidecar does not read phys_footprint")
        try:
            return read(os.getpid())
        except OSError as exc:
            raise RamError(str(exc.strerror or exc)) from None

    def start(self) -> None:
        """Start it (if not running for this process). Raises ``SidecarError`` with the
        reason when it cannot start."""
        self._running()

    def peak_bytes(self) -> int | None:
        """The highest total the sidecar sampled since the last ``reset()``; ``None``
        before its first sample of this span."""
        gen, peak, _, _, _ = self._read()
        return peak if gen == self._gen else None

    def reset(self) -> int | None:
        """``peak_bytes()``, then a new span begins (the sidecar's next sample starts it)."""
        gen, peak, _, _, _ = self._read()
        slots = self._slots
        assert slots is not None
        self._gen += 1
        slots[GEN] = self._gen
        return peak if gen == self._gen - 1 else None

    def children_bytes(self) -> int:
        """The descendants' RSS at the sidecar's last sample (``children`` only)."""
        return self._read()[3]

    def pids(self) -> tuple[int, ...]:
        """The descendants the sidecar listed at its last sample (``children`` only)."""
        return self._read()[4]

    def close(self) -> None:
        """End the sidecar (its input closes; a kill if it lingers) and drop the page."""
        with self._lock:
            self._stop()

    # -- internals -----------------------------------------------------------------------

    def _running(self) -> memoryview:
        slots = self._slots
        if slots is not None and self._owner_pid == os.getpid():
            return slots
        with self._lock:
            return self._start_locked()

    def _read(self) -> tuple[int, int, int, int, tuple[int, ...]]:
        slots = self._running()
        proc = self._proc
        assert proc is not None
        for _ in range(1000):
            seq = slots[SEQ]
            if seq & 1:
                continue  # being written: a few µs
            gen, peak, total, kids, beat = (
                slots[ACK],
                slots[PEAK],
                slots[TOTAL],
                slots[KIDS],
                slots[BEAT],
            )
            pids: tuple[int, ...] = ()
            if self.children:
                n = min(slots[NPIDS], MAX_PIDS)
                pids = tuple(slots[PIDS : PIDS + n])
            if slots[SEQ] == seq:
                break
        else:
            self._fail("kept its page locked")
        self._check_alive(proc, beat)
        return gen, peak, total, kids, pids

    def _check_alive(self, proc: subprocess.Popen[bytes], beat: int) -> None:
        # A waitpid(WNOHANG) at most once an interval (2 µs, several reads per test): the
        # samples on the page may be from before it died, and what came after would be
        # missed unsaid. A death is seen within an interval, like a spike.
        now = time.monotonic()
        if now - self._polled_at >= self.interval_s:
            self._polled_at = now
            code = proc.poll()
            if code is not None:
                self._fail(f"exited with status {code}")
        if beat != self._beat:
            self._beat, self._beat_at = beat, now
            return
        if now - self._beat_at > self._stuck_s:
            self._fail(f"has not sampled for {now - self._beat_at:.0f}s")

    def _fail(self, why: str) -> None:
        self.close()
        raise SidecarError(f"stopped sampling ({why})")

    def _start_locked(self) -> memoryview:
        if self._slots is not None and self._owner_pid == os.getpid():
            return self._slots
        # A forked child shares its parent's page and pipes: drop them unused (its own
        # sidecar measures it; writing the page would reset the parent's span).
        self._proc = self._map = self._slots = self._path = None
        if DISABLED is not None:
            raise SidecarError(DISABLED)
        executable = EXECUTABLE or sys.executable
        if not executable:
            raise SidecarError("no Python executable to run it (sys.executable is empty)")
        try:
            fd, path = tempfile.mkstemp(prefix="hypomnesis-sidecar-", dir=_shm_dir())
        except OSError as exc:
            raise SidecarError(f"could not create its shared page: {exc}") from None
        try:
            os.ftruncate(fd, _SIZE)
            page = mmap.mmap(fd, _SIZE)
        except OSError as exc:
            os.close(fd)
            _unlink(path)
            raise SidecarError(f"could not map its shared page: {exc}") from None
        os.close(fd)
        library, read = self._footprint_reader()
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
            path,
            str(_SIZE),
            footprint.__file__,
            library or "",
        ]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                # Out of the terminal's process group: Ctrl-C and job control are the test
                # run's; the sidecar ends when the run's process does.
                start_new_session=not IS_WINDOWS,
                close_fds=True,
            )
        except OSError as exc:
            page.close()
            _unlink(path)
            raise SidecarError(f"could not start {executable}: {exc}") from None
        self._proc, self._owner_pid, self._path = proc, os.getpid(), path
        self._map = page
        try:
            first = _first_line(proc, START_TIMEOUT_S)
        except SidecarError:
            self._stop()
            raise
        if first == "ready phys_footprint" and read is not None:
            self._own_footprint = read
        elif first.startswith("ready rss"):
            refused = first.removeprefix("ready rss").strip()
            if library is not None and refused:
                self.footprint_refused = f"the sidecar's {refused}"
        else:
            self._stop()
            raise SidecarError(first.removeprefix("error "))
        if sys.platform != "win32":  # both have it mapped: the name is no longer needed
            _unlink(path)
            self._path = None
        self._gen, self._beat, self._beat_at = 0, -1, time.monotonic()
        self._slots = memoryview(page).cast("Q")
        return self._slots

    def _footprint_reader(self) -> tuple[str | None, Callable[[int], int] | None]:
        """The library for the sidecar, and this process's reader through it: both, or
        neither (with ``footprint_refused`` saying why where it was wanted)."""
        self._own_footprint = self.footprint_refused = None
        library = FOOTPRINT_LIBRARY
        if library is None:
            return None, None
        try:
            read = footprint.footprint_reader(library)
            read(os.getpid())
        except (OSError, AttributeError) as exc:
            self.footprint_refused = f"{_text(exc)} (in this process)"
            return None, None
        return library, read

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        slots, self._slots = self._slots, None
        page, self._map = self._map, None
        path, self._path = self._path, None
        if self._owner_pid != os.getpid():
            return  # the parent's, inherited through a fork: never ours to end
        if slots is not None:
            slots.release()
        if page is not None:
            page.close()
        if path is not None:
            _unlink(path)
        if proc is None:
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


def _text(exc: BaseException) -> str:
    # The sidecar's own form, so a refusal reads the same from either side: a failed read
    # says which call and errno; a library that will not load, in Python's words.
    why = exc.strerror if isinstance(exc, OSError) else None
    return why or f"{type(exc).__name__}: {exc}"


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _first_line(proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    """The sidecar's one line (``ready`` or ``error ...``), or ``SidecarError``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffer = b""
    deadline = time.monotonic() + timeout_s
    while b"\n" not in buffer:
        if sys.platform != "win32":  # select() cannot wait on a pipe on Windows
            import select

            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise SidecarError(f"no answer within {timeout_s:g}s")
        chunk = os.read(fd, 4096)
        if not chunk:
            try:
                code: int | None = proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                code = None
            raise SidecarError("it exited" if code is None else f"it exited with status {code}")
        buffer += chunk
    return buffer.partition(b"\n")[0].decode("ascii", "replace").strip()
