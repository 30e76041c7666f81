"""``hmn watch [PID...]``: sample per-PID VRAM and adapter spill on a timer (parity §6.4).

A scrolling ``time(1)``-style sampler, not a TUI. Ends at ``--duration`` or Ctrl-C, both
with the closing summary. Exit 0 = no spill observed, 1 = spilled, 2 = hard error.
The loop takes its clock, sleep, listing and tracker as arguments, so tests run it
instantly against scripted samples.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO

from pytest_hypomnesis._errors import HypomnesisError
from pytest_hypomnesis.cli._durations import format_secs
from pytest_hypomnesis.cli._failures import failure_text
from pytest_hypomnesis.cli._watchstate import (
    HEADER_LINE,
    Selection,
    WatchState,
    format_rows_json,
    format_rows_text,
    format_summary_json,
    format_summary_text,
)
from pytest_hypomnesis.cli.spill import Tracker, make_tracker
from pytest_hypomnesis.model import GpuProcessEntry
from pytest_hypomnesis.probe import chain

__all__ = ["SLEEP_CHUNK_MS", "WatchConfig", "WatchIO", "run", "watch"]

# Ctrl-C is noticed within this long even when --interval is minutes.
SLEEP_CHUNK_MS = 200
_NS_PER_MS = 1_000_000


_clock_ns: Callable[[], int] = time.monotonic_ns
_sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class WatchConfig:
    selection: Selection
    interval_ms: int
    duration_ms: int | None
    device: int
    json: bool


def _device_name(index: int) -> str | None:
    try:
        return chain.device_info(index).name
    except HypomnesisError:
        return None


@dataclass
class WatchIO:
    """Everything the loop reads or writes; the defaults are the real ones."""

    sample: Callable[[int], list[GpuProcessEntry]] = chain.gpu_processes
    device_name: Callable[[int], str | None] = _device_name
    tracker_factory: Callable[[int], Tracker] = make_tracker
    # Looked up when a WatchIO is made, so tests (and the docs check) can swap in a fake
    # clock for a whole ``hmn watch`` run.
    clock_ns: Callable[[], int] = field(default_factory=lambda: _clock_ns)
    sleep: Callable[[float], None] = field(default_factory=lambda: _sleep)
    interrupted: Callable[[], bool] = field(default=lambda: False)
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)


def _say(stream: TextIO, lines: Sequence[str]) -> None:
    if lines:
        stream.write("".join(line + "\n" for line in lines))
        stream.flush()


def _sleep_interruptibly(total_ms: int, io: WatchIO) -> None:
    remaining_ms = total_ms
    while remaining_ms > 0 and not io.interrupted():
        step_ms = min(remaining_ms, SLEEP_CHUNK_MS)
        io.sleep(step_ms / 1000)
        remaining_ms -= step_ms


def watch(config: WatchConfig, io: WatchIO) -> int:
    """The whole watch: attach, header, t=0 row, the loop, the closing summary."""
    device = config.device
    device_name = io.device_name(device)
    try:
        first_rows = io.sample(device)
    except HypomnesisError as exc:
        _say(io.err, [f"hmn: watch failed to query device {device}: {failure_text(exc)}"])
        return 2
    selection = config.selection
    watched = selection.select(first_rows)
    if not watched:
        if not selection.follow_new:
            _say(
                io.err,
                [
                    f"hmn: watch found no GPU processes on device {device} to auto-select "
                    f"(top {selection.top}); re-run with an explicit PID once a workload is "
                    "running"
                ],
            )
            return 2
        _say(
            io.err,
            [
                f"hmn: watch found no GPU processes on device {device} yet (top "
                f"{selection.top} by committed); waiting for work to appear"
            ],
        )
    tracker: Tracker | None
    try:
        tracker = io.tracker_factory(device)
    except HypomnesisError as exc:
        _say(io.err, [f"hmn: watch spill tracking unavailable ({exc}); showing per-PID VRAM only"])
        tracker = None

    suffix = f" [{device_name}]" if device_name is not None else ""
    _say(
        io.err,
        [
            f"hmn watch: device {device}{suffix}, interval "
            f"{format_secs(config.interval_ms / 1000)}, {selection.describe(len(watched))}"
        ],
    )
    if not config.json:
        _say(io.out, [HEADER_LINE])
    # The clock starts here, after the first listing, the tracker and the banner, as in the
    # crate: sample k is stamped about k intervals in however slow attaching was (an
    # nvidia-smi fallback takes a while), and --duration counts from here too.
    # Integer nanoseconds, so t_ms truncates exactly as the crate's Duration::as_millis.
    start_ns = io.clock_ns()

    state = WatchState()

    def emit(elapsed_ns: int, rows: Sequence[GpuProcessEntry]) -> None:
        elapsed_s = elapsed_ns / 1e9
        spilling = False
        if tracker is not None:
            tracker.observe("+" + format_secs(elapsed_s))
            spilling = tracker.is_spilling()
        sample_rows, notes = state.fold(rows, watched, spilling)
        _say(io.err, notes)
        if config.json:
            _say(io.out, format_rows_json(elapsed_ns // _NS_PER_MS, sample_rows))
        else:
            _say(io.out, format_rows_text(elapsed_s, sample_rows))

    emit(0, first_rows)

    def finished() -> bool:
        if io.interrupted():
            return True
        return config.duration_ms is not None and (io.clock_ns() - start_ns) >= (
            config.duration_ms * _NS_PER_MS
        )

    while not finished():
        _sleep_interruptibly(config.interval_ms, io)
        if finished():
            break
        elapsed_ns = io.clock_ns() - start_ns
        elapsed_s = elapsed_ns / 1e9
        try:
            rows = io.sample(device)
        except HypomnesisError as exc:
            _say(
                io.err,
                [
                    f"hmn watch: sample failed at +{format_secs(elapsed_s)} "
                    f"({failure_text(exc)}); "
                    "skipping interval"
                ],
            )
            continue
        if selection.follow_new:
            following = selection.select(rows)
            change = state.followed_change(watched, following, rows, elapsed_s)
            if change is not None:
                _say(io.err, [change])
            watched = following
        emit(elapsed_ns, rows)

    report = tracker.into_report() if tracker is not None else None
    per_pid = state.summary()
    if config.json:
        _say(io.out, [format_summary_json(report, per_pid)])
    else:
        _say(io.out, format_summary_text(report, per_pid))
    return 1 if report is not None and report.spilled() else 0


@contextmanager
def _sigint_flag() -> Iterator[Callable[[], bool]]:
    """Ctrl-C sets a flag the loop polls, so it ends with the closing summary."""
    hit: list[bool] = []

    def handler(signum: int, frame: object) -> None:
        hit.append(True)

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: Ctrl-C stays a KeyboardInterrupt
        yield lambda: bool(hit)
        return
    try:
        yield lambda: bool(hit)
    finally:
        signal.signal(signal.SIGINT, previous)


def run(args: argparse.Namespace, io: WatchIO | None = None) -> int:
    # Selection validates --follow-new against PIDs before any hardware call.
    config = WatchConfig(
        selection=Selection(args.pids, args.top, args.follow_new),
        interval_ms=args.interval,
        duration_ms=args.duration,
        device=args.device,
        json=args.json,
    )
    if io is not None:
        return watch(config, io)
    with _sigint_flag() as interrupted:
        return watch(config, WatchIO(interrupted=interrupted))
