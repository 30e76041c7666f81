"""Predicting a packed parallel run from an earlier report: ``hmn plan`` and the benchmark.

The model: ``gpus`` GPUs of ``capacity_bytes`` each (after headroom), ``per_gpu`` workers
on each, one queue of tests (largest need x duration first, as the needs scheduler hands
them out). A free worker takes the next test and starts it once its need fits on its GPU
next to the tests running there; a test of unknown need waits for its GPU to be empty and
runs alone. The lower bound no schedule can beat: the larger of the total need x time over
the total capacity and the longest test.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PlanTest", "lower_bound_s", "simulate_wall_s", "suggest_per_gpu"]


@dataclass(frozen=True, slots=True)
class PlanTest:
    nodeid: str
    need_bytes: int | None
    """``None``: unknown, the test runs alone on its GPU."""
    duration_s: float


def _size(test: PlanTest, capacity_bytes: int) -> int:
    return capacity_bytes if test.need_bytes is None else min(test.need_bytes, capacity_bytes)


def lower_bound_s(tests: Sequence[PlanTest], gpus: int, capacity_bytes: int) -> float:
    if not tests:
        return 0.0
    area = sum(_size(t, capacity_bytes) * t.duration_s for t in tests)
    return max(area / (gpus * capacity_bytes), max(t.duration_s for t in tests))


def _largest_first(tests: Sequence[PlanTest], capacity_bytes: int) -> list[PlanTest]:
    return sorted(tests, key=lambda t: -_size(t, capacity_bytes) * t.duration_s)


def simulate_wall_s(
    tests: Sequence[PlanTest], gpus: int, per_gpu: int, capacity_bytes: int
) -> float:
    """Predicted wall time of the packed run (tests that can never fit are left out)."""
    queue = [t for t in _largest_first(tests, capacity_bytes) if _fits(t, capacity_bytes)]
    workers = gpus * per_gpu
    used = [0] * gpus
    alone = [False] * gpus
    running = [0] * gpus
    waiting: list[PlanTest | None] = [None] * workers  # a test taken but not yet started
    busy = [False] * workers
    events: list[tuple[float, int, int]] = []  # (end time, worker, size)
    now = 0.0
    position = 0
    while True:
        for w in range(workers):
            if busy[w]:
                continue
            if waiting[w] is None and position < len(queue):
                waiting[w] = queue[position]
                position += 1
            test = waiting[w]
            if test is None:
                continue
            g = w % gpus
            size = _size(test, capacity_bytes)
            if test.need_bytes is not None and (alone[g] or _exclusive_queued(waiting, g, gpus)):
                continue  # an exclusive test running or queued here: nothing new starts
            exclusive = test.need_bytes is None
            if (running[g] == 0) if exclusive else (used[g] + size <= capacity_bytes):
                used[g] += size
                running[g] += 1
                alone[g] = exclusive
                busy[w] = True
                waiting[w] = None
                heapq.heappush(events, (now + test.duration_s, w, size))
        if not events:
            return now
        now, w, size = heapq.heappop(events)
        g = w % gpus
        used[g] -= size
        running[g] -= 1
        alone[g] = False
        busy[w] = False


def _exclusive_queued(waiting: Sequence[PlanTest | None], gpu: int, gpus: int) -> bool:
    return any(
        t is not None and t.need_bytes is None and w % gpus == gpu for w, t in enumerate(waiting)
    )


def _fits(test: PlanTest, capacity_bytes: int) -> bool:
    return test.need_bytes is None or test.need_bytes <= capacity_bytes


def suggest_per_gpu(
    tests: Sequence[PlanTest], gpus: int, capacity_bytes: int, *, most: int = 16
) -> tuple[int, float]:
    """The fewest workers per GPU within 5% of the best predicted wall time, and it."""
    walls = [(k, simulate_wall_s(tests, gpus, k, capacity_bytes)) for k in range(1, most + 1)]
    best = min(wall for _, wall in walls)
    return next((k, wall) for k, wall in walls if wall <= best * 1.05 + 1e-9)
