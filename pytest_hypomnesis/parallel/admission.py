"""The admission rule: does a test's VRAM need fit on its GPU now?

Free memory is the device total, less the headroom, less this process's own current
figure, less, for every other process on the GPU, the larger of what it reserved
(its figure when admitted plus the need) and what NVML says it holds now (caching
allocators and CUDA contexts keep memory between tests), less the device-wide used memory
that no listed process accounts for (processes NVML cannot attribute, other containers).

A need of ``None`` means unknown: the test runs alone on its GPU. It is admitted when no
other process holds a reservation; while it waits it is queued in the ledger and no new
test is admitted on that GPU, so it cannot starve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_hypomnesis._units import format_bytes_iec
from pytest_hypomnesis.parallel.ledger import Entry

__all__ = ["DeviceNow", "Verdict", "decide", "headroom_bytes"]


@dataclass(frozen=True, slots=True)
class DeviceNow:
    """One GPU as NVML sees it now: total and device-wide used bytes, and the per-process
    rows it could attribute (pid -> used bytes)."""

    total_bytes: int
    used_bytes: int
    process_bytes: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class Verdict:
    admit: bool
    never_fits: str | None = None
    """Why the need can never fit this GPU (fail at once), else ``None``."""
    free_bytes: int | None = None
    """What the rule left for this test; ``None`` for an exclusive need."""
    holders: tuple[str, ...] = ()
    """Who holds the memory, for a message when the wait times out."""
    queue_exclusive: bool = False
    """An exclusive test that must wait: queue it in the ledger."""


def headroom_bytes(total_bytes: int, fraction: float) -> int:
    return math.ceil(total_bytes * fraction)


def _holders(
    me: int, entries: Sequence[Entry], device: DeviceNow, unaccounted: int
) -> tuple[dict[int, int], tuple[str, ...]]:
    reserved: dict[int, int] = {}
    labels: dict[int, list[str]] = {}
    for e in entries:
        if e.pid == me or e.kind != "reserved":
            continue
        if e.need_bytes is not None:
            reserved[e.pid] = reserved.get(e.pid, 0) + e.base_bytes + e.need_bytes
        labels.setdefault(e.pid, []).append(e.describe())
    held: dict[int, int] = {}
    lines: list[str] = []
    for pid in sorted((set(reserved) | set(device.process_bytes) | set(labels)) - {me}):
        nvml = device.process_bytes.get(pid)
        held[pid] = max(reserved.get(pid, 0), nvml or 0)
        now = "no NVML row" if nvml is None else f"holds {format_bytes_iec(nvml)}"
        what = "; ".join(labels.get(pid, [])) or f"pid {pid} (not in the ledger)"
        lines.append(f"{what}, {now}")
    if unaccounted:
        lines.append(f"{format_bytes_iec(unaccounted)} used by no listed process")
    return held, tuple(lines)


def decide(
    need_bytes: int | None,
    me: int,
    entries: Sequence[Entry],
    device: DeviceNow,
    headroom_fraction: float,
    *,
    queued_since: float | None = None,
) -> Verdict:
    """Whether a test of this process needing ``need_bytes`` (``None``: unknown, run
    alone) may start now. ``entries`` are the ledger's live entries; ``queued_since`` is
    when this process's own exclusive wait was queued, if it is."""
    headroom = headroom_bytes(device.total_bytes, headroom_fraction)
    capacity = device.total_bytes - headroom
    if need_bytes is not None and need_bytes > capacity:
        return Verdict(
            False,
            never_fits=(
                f"needs {format_bytes_iec(need_bytes)} of VRAM but the GPU has "
                f"{format_bytes_iec(device.total_bytes)} "
                f"({format_bytes_iec(capacity)} after the "
                f"{headroom_fraction:.0%} headroom)"
            ),
        )
    listed = sum(device.process_bytes.values())
    unaccounted = max(device.used_bytes - listed, 0)
    held, holders = _holders(me, entries, device, unaccounted)
    others = [e for e in entries if e.pid != me]
    if any(e.kind == "reserved" and e.need_bytes is None for e in others):
        return Verdict(False, holders=holders, queue_exclusive=need_bytes is None)
    if need_bytes is None:
        # Queued exclusive tests go in order; reservations of others must end first.
        ahead = [
            e
            for e in others
            if e.kind == "waiting" and (queued_since is None or e.since < queued_since)
        ]
        if ahead or any(e.kind == "reserved" for e in others):
            return Verdict(False, holders=holders, queue_exclusive=True)
        return Verdict(True, holders=holders)
    if any(e.kind == "waiting" for e in others):
        return Verdict(False, holders=holders)
    mine = device.process_bytes.get(me, 0)
    free = capacity - mine - sum(held.values()) - unaccounted
    if need_bytes <= free:
        return Verdict(True, free_bytes=free, holders=holders)
    if not held and not unaccounted:
        # Only this process holds memory: waiting frees nothing. Its caching allocator
        # can reuse what it holds, so let the test run (it is judged on its budget).
        return Verdict(True, free_bytes=free, holders=holders)
    return Verdict(False, free_bytes=free, holders=holders)
