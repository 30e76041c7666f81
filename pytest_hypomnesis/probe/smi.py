"""The ``nvidia-smi`` subprocess backend (parity doc §4.6).

Unlike the crate, every call has a timeout (default 5 s, ``HYPOMNESIS_SMI_TIMEOUT`` seconds
to override), the executable's absolute path is resolved once, and nothing goes through a
shell. A hung ``nvidia-smi`` (a wedged driver does that) is killed together with anything it
spawned, so the caller gets its ``BackendFailure`` within the timeout plus a little slack.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import threading
import time
from typing import TYPE_CHECKING

from pytest_hypomnesis import _platform
from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis._platform import debug

if TYPE_CHECKING:
    import subprocess

    from pytest_hypomnesis.probe.readings import SmiDeviceReading

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "device_command",
    "device_query",
    "list_processes",
    "listing_command",
    "parse_device_output",
    "parse_listing_output",
    "timeout_s",
]

BACKEND = "nvidia-smi"
DEFAULT_TIMEOUT_S = 5.0
MIB = 1024 * 1024
U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
# How long we wait for a killed child's pipes to drain before abandoning them.
_KILL_GRACE_S = 0.5
_CREATE_NO_WINDOW = 0x08000000
# Rust's ``str::parse::<u64>`` accepts digits with an optional ``+``; Python's ``int()``
# would also take ``1_000`` and surrounding whitespace, which the crate rejects.
_UNSIGNED = re.compile(r"\+?[0-9]+")

_UNRESOLVED = object()
_path: object | str | None = _UNRESOLVED
_path_lock = threading.Lock()
# After a timeout, calls fail at once for this long (see _run).
HUNG_BACKOFF_S = 30.0
_hung_until = 0.0
_hung_reason: str | None = None


def _after_fork_in_child() -> None:
    global _path_lock
    _path_lock = threading.Lock()  # the parent may have forked while a thread held it


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _reset_for_tests() -> None:
    """Forget the resolved executable path (tests put fake ones on ``PATH``)."""
    global _path, _hung_reason
    with _path_lock:
        _path = _UNRESOLVED
        _hung_reason = None


def _which(name: str) -> str | None:
    """``shutil.which`` without importing shutil (and with it bz2, lzma, fnmatch) on POSIX,
    where ``hmn ps`` on a machine without a GPU looks nvidia-smi up and finds nothing."""
    if _platform.IS_WINDOWS:
        import shutil

        return shutil.which(name)
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder or os.curdir, name)
        if os.access(candidate, os.F_OK | os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def _executable() -> str:
    global _path
    with _path_lock:
        if _path is _UNRESOLVED:
            _path = _which("nvidia-smi")
            debug(BACKEND, f"resolved executable: {_path}")
        found = _path
    if not isinstance(found, str):
        raise BackendFailure(BACKEND, "not found on PATH")
    return found


def timeout_s() -> float:
    """The per-call timeout: ``HYPOMNESIS_SMI_TIMEOUT`` seconds if it is a positive
    number, else 5 s."""
    raw = os.environ.get("HYPOMNESIS_SMI_TIMEOUT", "").strip()
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if value > 0 and math.isfinite(value):
            return value
        debug(BACKEND, f"ignoring HYPOMNESIS_SMI_TIMEOUT={raw!r}; using {DEFAULT_TIMEOUT_S} s")
    return DEFAULT_TIMEOUT_S


def device_command(index: int) -> list[str]:
    """The crate's device query, after the executable."""
    return [
        "--query-gpu=memory.used,memory.total,driver_version",
        "--format=csv,noheader,nounits",
        f"--id={index}",
    ]


def listing_command(index: int) -> list[str]:
    """The crate's compute-process listing, after the executable."""
    return [
        "--query-compute-apps=pid,process_name,used_memory",
        "--format=csv,noheader,nounits",
        f"--id={index}",
    ]


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    import signal

    if sys.platform == "win32":
        proc.kill()
        return
    # The child leads its own session, so its grandchildren (which may hold our
    # pipes open) die with it.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()


def _run(args: list[str]) -> str:
    """Run the executable with ``args``; stdout as text, or ``BackendFailure``.

    ``subprocess.run`` cannot kill a process group, and on Windows its post-timeout
    ``communicate()`` blocks on a pipe a grandchild inherited; hence ``Popen`` here.
    """
    global _hung_until, _hung_reason
    exe = _executable()
    import subprocess  # only once there is something to run

    if _hung_reason is not None and time.monotonic() < _hung_until:
        # A wedged driver makes every call hang; paying the full timeout on each one would
        # turn every snapshot (and every measured test) into a multi-second stall.
        raise BackendFailure(BACKEND, f"{_hung_reason}; not retried for {HUNG_BACKOFF_S:.0f} s")
    limit_s = timeout_s()
    windows = _platform.IS_WINDOWS
    try:
        proc = subprocess.Popen(
            [exe, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # CREATE_NO_WINDOW: no console flash; POSIX: a session (and group) of its own.
            creationflags=_CREATE_NO_WINDOW if windows else 0,
            start_new_session=not windows,
        )
    except OSError as exc:
        raise BackendFailure(BACKEND, f"could not start {exe}: {exc}") from None
    try:
        out, err = proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        try:
            proc.communicate(timeout=_KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            # Someone outside the group still holds a pipe; abandon it.
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=_KILL_GRACE_S)
        _hung_reason = f"timed out after {limit_s:.1f} s"
        _hung_until = time.monotonic() + HUNG_BACKOFF_S
        raise BackendFailure(BACKEND, _hung_reason) from None
    stdout: str = out.decode("utf-8", errors="replace")
    if proc.returncode != 0:
        # nvidia-smi prints its own failures ("NVIDIA-SMI has failed because it couldn't
        # communicate with the NVIDIA driver. ...") on stdout, not stderr.
        first = err.decode("utf-8", errors="replace").strip().splitlines()
        first = first or stdout.strip().splitlines()
        detail = f": {first[0].strip()}" if first else ""
        if proc.returncode < 0:
            raise BackendFailure(BACKEND, f"killed by signal {-proc.returncode}{detail}")
        raise BackendFailure(BACKEND, f"exited with status {proc.returncode}{detail}")
    for line in stdout.splitlines():
        debug(BACKEND, f"raw: {line!r}")
    return stdout


def _unsigned(text: str, maximum: int) -> int | None:
    if not _UNSIGNED.fullmatch(text):
        return None
    value = int(text)
    return value if value <= maximum else None


def _mib_to_bytes(mib: int) -> int:
    return min(mib * MIB, U64_MAX)


def _unparsable(text: str) -> BackendFailure:
    shown = text if len(text) <= 80 else text[:77] + "..."
    return BackendFailure(BACKEND, f"unparsable output: {shown!r}")


def parse_device_output(stdout: str) -> SmiDeviceReading:
    """The first line of the device query: used MiB, total MiB, driver (optional)."""
    if not stdout.strip():
        raise BackendFailure(BACKEND, "empty output")
    first = stdout.splitlines()[0]
    fields = [f.strip() for f in first.split(",")]
    if len(fields) < 2:
        raise _unparsable(first)
    used = _unsigned(fields[0], U64_MAX)
    total = _unsigned(fields[1], U64_MAX)
    if used is None or total is None:
        raise _unparsable(first)
    driver = fields[2] if len(fields) > 2 and fields[2] else None
    from pytest_hypomnesis.probe.readings import SmiDeviceReading

    return SmiDeviceReading(
        used_bytes=_mib_to_bytes(used),
        total_bytes=_mib_to_bytes(total),
        driver_version=driver,
    )


def parse_listing_output(stdout: str) -> list[tuple[int, str | None, int]]:
    """``(pid, name, used_bytes)`` rows; lines that do not parse are dropped.

    The used figure follows the *last* comma and the pid precedes the *first*, so a
    process name may itself contain commas.
    """
    rows: list[tuple[int, str | None, int]] = []
    for raw_line in stdout.splitlines():
        line = raw_line.strip()
        if not line:
            continue
        head, sep, used_text = line.rpartition(",")
        if not sep:
            continue
        pid_text, name_sep, name_text = head.partition(",")
        if not name_sep:
            # The crate splits pid from name at the first comma and drops a line without one.
            continue
        pid = _unsigned(pid_text.strip(), U32_MAX)
        used = _unsigned(used_text.strip(), U64_MAX)
        if pid is None or used is None:
            continue
        name = name_text.strip() or None
        rows.append((pid, name, _mib_to_bytes(used)))
    return rows


def device_query(index: int) -> SmiDeviceReading:
    """Device-wide used/total/driver of GPU ``index``. Raises ``BackendFailure``, also for
    figures no device can have (used above total, a value past 2^64-1 bytes), which the
    crate would print as readings."""
    reading = parse_device_output(_run(device_command(index)))
    if reading.used_bytes >= U64_MAX or reading.total_bytes >= U64_MAX:
        raise BackendFailure(BACKEND, "device memory figure out of range (past 2^64-1 bytes)")
    if reading.used_bytes > reading.total_bytes:
        raise BackendFailure(
            BACKEND,
            f"impossible device figures: used {reading.used_bytes // MIB} MiB exceeds total "
            f"{reading.total_bytes // MIB} MiB",
        )
    return reading


def list_processes(index: int) -> list[tuple[int, str | None, int]]:
    """Compute processes on GPU ``index``; ``[]`` when the tool answers with no rows.
    Output of which no line parses is a failure, not an empty listing."""
    stdout = _run(listing_command(index))
    rows = parse_listing_output(stdout)
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not rows and lines:
        if all(line.rpartition(",")[2].strip().startswith("[") for line in lines):
            # WDDM prints "[N/A]" (or "[Not Supported]") where the figure would be.
            raise BackendFailure(BACKEND, f"per-process memory not available: {lines[0]!r}")
        raise _unparsable(lines[0])
    return rows
