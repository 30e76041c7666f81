"""``hmn spill -- CMD...``: run a command while observing WDDM spill (parity §6.3).

``time(1)``-style: the command inherits stdin/stdout/stderr, the report goes to stderr
(with ``--json`` the report object goes to stdout first), and the command's exit code is
passed through.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TextIO

from pytest_hypomnesis._errors import HypomnesisError
from pytest_hypomnesis._format import compact_json, format_vram
from pytest_hypomnesis.cli._durations import format_secs
from pytest_hypomnesis.model import SpillReport
from pytest_hypomnesis.probe import chain

__all__ = [
    "Tracker",
    "exit_code_for",
    "format_spill_report",
    "make_tracker",
    "run",
    "run_command",
    "spawn_error_message",
]


class Tracker(Protocol):
    """What ``hmn spill`` and ``hmn watch`` need of a ``SpillTracker``."""

    def observe(self, label: str) -> None: ...

    def is_spilling(self) -> bool: ...

    def is_measurable(self) -> bool: ...

    def into_report(self) -> SpillReport: ...


def make_tracker(device: int) -> Tracker:
    """A real ``SpillTracker``; raises ``HypomnesisError`` on a hard PDH failure."""
    from pytest_hypomnesis.probe.spill import SpillTracker

    tracker: Tracker = SpillTracker(device)
    return tracker


def elapsed_label(seconds: float) -> str:
    """The observation label: ``+12.4s``."""
    return "+" + format_secs(seconds)


def format_spill_report(prefix: str, report: SpillReport) -> list[str]:
    """The three-line block, continuation lines indented past ``<prefix>: ``."""
    indent = " " * (len(prefix) + 2)
    dedicated = f"{prefix}: peak dedicated {format_vram(report.peak_dedicated_bytes)}"
    if report.dedicated_limit_bytes:
        dedicated += f" / {format_vram(report.dedicated_limit_bytes)}"
    shared = (
        f"{indent}peak shared    {format_vram(report.peak_shared_bytes)} "
        f"(baseline {format_vram(report.baseline_shared_bytes)})"
    )
    longest = report.longest_episode()
    if longest is None:
        episodes = f"{indent}episodes       0 — no spill observed"
    else:
        episodes = (
            f"{indent}episodes       {len(report.episodes)} — total "
            f"{format_secs(report.total_spill_duration().total_seconds())}, longest "
            f"{format_secs(longest.duration.total_seconds())}, first "
            f"{report.first_spill_label()} into run"
        )
    return [dedicated, shared, episodes]


def exit_code_for(returncode: int | None) -> int:
    """The child's code when it is 0..255; a signal death or anything else is 1."""
    if returncode is None or not 0 <= returncode <= 255:
        return 1
    return returncode


def spawn_error_message(program: str, exc: OSError) -> str:
    # Rust prints io::Error as "No such file or directory (os error 2)".
    detail = exc.strerror or str(exc)
    if exc.errno is not None:
        detail += f" (os error {exc.errno})"
    return f'hmn: failed to spawn "{program}": {detail}'


def run_command(
    command: Sequence[str],
    tracker: Tracker | None,
    interval_s: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    err: TextIO | None = None,
) -> int | None:
    """Run ``command`` observing ``tracker`` every ``interval_s`` plus once after it exits.
    Returns the raw return code, or ``None`` when it could not be spawned."""
    err = err or sys.stderr
    start = clock()
    try:
        child = subprocess.Popen(list(command))
    except OSError as exc:
        err.write(spawn_error_message(command[0], exc) + "\n")
        return None
    while child.poll() is None:
        if tracker is not None:
            tracker.observe(elapsed_label(clock() - start))
        # Waiting on the child, not sleeping, ends the loop the moment it exits.
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=interval_s)
    if tracker is not None:
        tracker.observe(elapsed_label(clock() - start))
    return child.returncode


def _device_missing(device: int) -> str | None:
    count = chain.device_count()
    if count and device >= count:
        noun = "device" if count == 1 else "devices"
        return f"device index {device} out of range (have {count} {noun})"
    return None


def run(
    args: argparse.Namespace,
    command: Sequence[str],
    *,
    tracker_factory: Callable[[int], Tracker] = make_tracker,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    device = 0 if args.device is None else args.device
    if args.device is not None:
        missing = _device_missing(device)
        if missing is not None:
            err.write(f"hmn: {missing}\n")
            return 2
    tracker: Tracker | None
    try:
        tracker = tracker_factory(device)
    except HypomnesisError as exc:
        err.write(f"hmn: spill tracking unavailable ({exc}); running command unmeasured\n")
        tracker = None
    err.flush()
    returncode = run_command(command, tracker, args.interval / 1000, err=err)
    if returncode is None:
        return 1
    report = tracker.into_report() if tracker is not None else SpillReport()
    if args.json:
        out.write(compact_json(report.to_dict()) + "\n")
        out.flush()
    if tracker is None:
        err.write("hmn spill: spill not measurable (no tracker)\n")
    elif not report.measurable:
        err.write("hmn spill: spill not measurable on this platform\n")
    else:
        err.write("".join(line + "\n" for line in format_spill_report("hmn spill", report)))
    return exit_code_for(returncode)
