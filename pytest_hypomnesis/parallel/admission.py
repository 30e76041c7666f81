"""The admission rule: does a test's VRAM need fit on its GPU now?

Free memory is the device total, less the headroom, less this process's own current
figure, less, for every other process on the GPU, the larger of what it reserved
(its figure when admitted plus the need) and what NVML says it holds now (caching
allocators and CUDA contexts keep memory between tests), less the device-wide used memory
that no listed process accounts for (processes NVML cannot attribute, other containers).

A need of ``None`` means unknown: the test runs alone on its GPU. It is admitted when no
other process holds a reservation; while it waits it is queued in the ledger and no new
test is admitted on that GPU, so it cannot starve.

A test that waits is queued in the ledger with its need. A later test yields to the ones
queued before it that fit now (they are admitted at their next poll), for at most
``YIELD_S``; without that, the worker that just finished a test (it asks again at once)
would win every race against a worker polling for a larger need, which then waits while
its GPU runs one test at a time. A queued test that does not fit now holds nobody up, so
memory that waiting cannot free (another worker's cache) never deadlocks two workers.
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
    queue: bool = False
    """The test must wait: queue it in the ledger, so later tests do not pass it."""


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
    yield_ahead: bool = True,
) -> Verdict:
    """Whether a test of this process needing ``need_bytes`` (``None``: unknown, run
    alone) may start now. ``entries`` are the ledger's live entries; ``queued_since`` is
    when this process's own wait was queued, if it is; ``yield_ahead``: leave tests queued
    earlier the memory they can take now (the admitter stops yielding after a while, so a
    stuck neighbour cannot hold this test up)."""
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
        return Verdict(False, holders=holders, queue=True)
    # Tests waiting on this GPU go in the order they queued: one queued before this one
    # (every one, while this one is not queued yet) comes first.
    ahead = [
        e
        for e in others
        if e.kind == "waiting" and (queued_since is None or e.since < queued_since)
    ]
    if need_bytes is None:
        if ahead or any(e.kind == "reserved" for e in others):
            return Verdict(False, holders=holders, queue=True)
        return Verdict(True, holders=holders)
    if any(e.need_bytes is None for e in ahead):
        return Verdict(False, holders=holders, queue=True)  # an exclusive test is queued
    mine = device.process_bytes.get(me, 0)
    free = capacity - mine - sum(held.values()) - unaccounted
    # Tests queued ahead that fit now will be admitted at their next poll: while this test
    # yields, it leaves them that memory (the worker that just finished a test asks again
    # at once, and would otherwise win every race against one polling for a larger need).
    promised = 0
    for e in sorted(ahead, key=lambda e: e.since):
        if e.need_bytes is not None and promised + e.need_bytes <= free:
            promised += e.need_bytes
    if need_bytes <= free - promised or (need_bytes <= free and not yield_ahead):
        return Verdict(True, free_bytes=free, holders=holders)
    if not held and not unaccounted and not promised:
        # Only this process holds memory: waiting frees nothing. Its caching allocator
        # can reuse what it holds, so let the test run (it is judged on its budget).
        return Verdict(True, free_bytes=free, holders=holders)
    return Verdict(False, free_bytes=free, holders=holders, queue=True)
