"""Planning a packed parallel run from an earlier report: the needs scheduler's plan,
``hmn plan`` and the benchmark.

``pack`` is the plan the needs scheduler hands out: list scheduling on a simulated clock,
largest need x duration first. Whenever a worker is free it takes the first test (of the
next ``LOOKAHEAD`` in priority order) that fits on its GPU next to the tests the plan
already runs there, so a large test and small ones share a GPU side by side instead of a
worker waiting with a test that does not fit. An unknown need is the whole GPU: when it is
the first remaining test, its worker waits for its GPU to drain and nothing else starts
there (as admission does). The result is each worker's sequence, which the scheduler sends
ahead of time: an xdist worker only starts a test once it holds the next one, so decisions
taken when a test ends would land one test late.

``simulate_wall_s`` is that plan's wall time for ``gpus`` GPUs of one size with
``per_gpu`` workers each (``hmn plan``). The lower bound no schedule can beat: the larger
of the total need x time over the total capacity and the longest test (and, for a given
number of workers, the total time over the workers).
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "LOOKAHEAD",
    "Packing",
    "PlanTest",
    "best_pack",
    "largest_first",
    "lower_bound_s",
    "pack",
    "simulate_wall_s",
    "suggest_per_gpu",
]

SEARCH_WORK = 20_000
"""Test starts the plan's search may simulate in all (about 10 ms per thousand)."""
SEARCH_TRIES = 1_000
SEARCH_BUDGET_S = 0.25

LOOKAHEAD = 256
"""How far down the priority order a free worker looks for a test that fits: bounds the
plan's cost on suites of many thousand tests (each start is one scan)."""


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


def simulate_wall_s(
    tests: Sequence[PlanTest], gpus: int, per_gpu: int, capacity_bytes: int
) -> float:
    """The planned wall time with ``per_gpu`` workers on each of ``gpus`` GPUs (worker
    ``w`` on GPU ``w % gpus``, as pinning deals them out); tests that can never fit are
    left out."""
    runnable = [t for t in tests if t.need_bytes is None or t.need_bytes <= capacity_bytes]
    workers = [w % gpus for w in range(gpus * per_gpu)]
    return best_pack(runnable, workers, [capacity_bytes] * gpus).wall_s


@dataclass(frozen=True, slots=True)
class Packing:
    sequences: list[list[int]]
    """Per worker, indices into the planned tests in the order it runs them."""
    wall_s: float
    """The plan's predicted wall time."""


def pack(
    tests: Sequence[PlanTest],
    worker_gpus: Sequence[int],
    capacities: Sequence[int | None],
    *,
    order: Sequence[int] | None = None,
    lookahead: int = LOOKAHEAD,
) -> Packing:
    """Each worker's sequence: worker ``w`` runs on GPU ``worker_gpus[w]``, whose capacity
    (after headroom) is ``capacities[g]``; ``None``: unknown, memory is not planned there
    (the tests only share out by duration). ``order``: the priority order to plan in
    (default: largest need x duration first)."""
    workers = len(worker_gpus)
    sequences: list[list[int]] = [[] for _ in range(workers)]
    if workers == 0:
        return Packing(sequences, 0.0)
    gpus = len(capacities)
    needs = [t.need_bytes for t in tests]
    biggest = max((n for n in needs if n is not None), default=1)

    def size(index: int, gpu: int) -> int:
        need = needs[index]
        cap = capacities[gpu]
        return (cap if cap is not None else biggest) if need is None else need

    def fits_empty(index: int, gpu: int) -> bool:
        need, cap = needs[index], capacities[gpu]
        return need is None or cap is None or need <= cap

    if order is None:
        order = largest_first(tests, capacities)
    # A test that fits no GPU fails at once at admission: hand those out first.
    never = [i for i in order if not any(fits_empty(i, g) for g in range(gpus))]
    skipped = set(never)
    remaining = [i for i in order if i not in skipped]
    for k, index in enumerate(never):
        sequences[k % workers].append(index)
    used = [0] * gpus
    running = [0] * gpus
    alone = [False] * gpus  # an unknown need runs there
    draining: list[int | None] = [None] * gpus  # the worker waiting to run alone
    waiting_test: list[int | None] = [None] * workers
    idle = [True] * workers
    events: list[tuple[float, int, int, int]] = []  # (end, worker, test, size)
    now = 0.0

    def start(w: int, index: int) -> None:
        g = worker_gpus[w]
        sz = size(index, g)
        used[g] += sz
        running[g] += 1
        alone[g] = tests[index].need_bytes is None
        idle[w] = False
        sequences[w].append(index)
        heapq.heappush(events, (now + max(tests[index].duration_s, 0.0), w, index, sz))

    changed = set(range(gpus))  # GPUs where something ended: only there can a test start
    while True:
        for w in range(workers):
            g = worker_gpus[w]
            if not idle[w] or g not in changed:
                continue
            held = waiting_test[w]
            if held is not None:
                if running[g] == 0:
                    waiting_test[w] = None
                    draining[g] = None
                    start(w, held)
                continue
            if draining[g] is not None or alone[g]:
                continue
            cap = capacities[g]
            free = None if cap is None else cap - used[g]
            for position in range(min(lookahead, len(remaining))):
                index = remaining[position]
                need = needs[index]
                if need is None:
                    if running[g] == 0:
                        del remaining[position]
                        start(w, index)
                    elif position == 0:  # the most urgent test: drain the GPU for it
                        del remaining[position]
                        waiting_test[w] = index
                        draining[g] = w
                    else:
                        continue
                    break
                if free is None or need <= free:
                    del remaining[position]
                    start(w, index)
                    break
            else:
                changed.discard(g)  # nothing fits there: its other idle workers find none
        if not events:
            if not remaining:
                return Packing(sequences, now)
            # Nothing runs and nothing fits (only a GPU too small for what is left, which
            # admission fails at once): hand the rest out round-robin.
            for k, index in enumerate(remaining):
                sequences[k % workers].append(index)
            return Packing(sequences, now)
        now = events[0][0]
        changed = set()
        while events and events[0][0] <= now:
            _, w, _, sz = heapq.heappop(events)
            g = worker_gpus[w]
            used[g] -= sz
            running[g] -= 1
            alone[g] = False
            idle[w] = True
            changed.add(g)


def largest_first(tests: Sequence[PlanTest], capacities: Sequence[int | None]) -> list[int]:
    """Indices of ``tests``, largest need x duration first (an unknown need is the widest
    GPU, or the largest known need where no capacity is known); ties keep their order."""
    known = [t.need_bytes for t in tests if t.need_bytes is not None]
    whole = max((c for c in capacities if c is not None), default=max(known, default=1))

    def weight(index: int) -> float:
        need = tests[index].need_bytes
        return float(max(whole if need is None else need, 1)) * max(tests[index].duration_s, 0.0)

    return sorted(range(len(tests)), key=lambda i: -weight(i))


def best_pack(
    tests: Sequence[PlanTest],
    worker_gpus: Sequence[int],
    capacities: Sequence[int | None],
    *,
    work: int = SEARCH_WORK,
    budget_s: float = SEARCH_BUDGET_S,
) -> Packing:
    """``pack`` in largest-first order, then improved by a bounded hill climb over the
    order (swap two tests, keep the swap if the plan is faster), seeded so the same
    suite gets the same plan. ``work`` bounds the planned test starts in all, ``budget_s``
    the seconds (the controller plans before it hands out the first test)."""
    order = largest_first(tests, capacities)
    best = pack(tests, worker_gpus, capacities, order=order)
    tries = min(work // max(len(tests), 1), SEARCH_TRIES) if len(tests) > 1 else 0
    rng = random.Random(len(tests))
    deadline = time.monotonic() + budget_s
    floor = _floor_s(tests, worker_gpus, capacities)
    for _ in range(tries):
        if best.wall_s <= floor + 1e-9 or time.monotonic() > deadline:
            break
        a, b = rng.sample(range(len(order)), 2)
        order[a], order[b] = order[b], order[a]
        trial = pack(tests, worker_gpus, capacities, order=order)
        if trial.wall_s < best.wall_s - 1e-9:
            best = trial
        else:
            order[a], order[b] = order[b], order[a]
    return best


def _floor_s(
    tests: Sequence[PlanTest], worker_gpus: Sequence[int], capacities: Sequence[int | None]
) -> float:
    """No plan is faster: the longest test, the total time over the workers, and (all
    capacities known, every need known) the total need x time over the total capacity."""
    if not tests or not worker_gpus:
        return 0.0
    durations = [max(t.duration_s, 0.0) for t in tests]
    floor = max(max(durations), sum(durations) / len(worker_gpus))
    caps = [c for c in capacities if c is not None]
    if len(caps) == len(capacities) and all(t.need_bytes is not None for t in tests):
        area = sum(
            min(t.need_bytes or 0, max(caps)) * d for t, d in zip(tests, durations, strict=True)
        )
        floor = max(floor, area / sum(caps))
    return floor


def suggest_per_gpu(
    tests: Sequence[PlanTest], gpus: int, capacity_bytes: int, *, most: int = 16
) -> tuple[int, float]:
    """The fewest workers per GPU within 5% of the best predicted wall time, and that
    plan's wall time (the choice compares plans without the search, which is slower)."""
    runnable = [t for t in tests if t.need_bytes is None or t.need_bytes <= capacity_bytes]

    def quick(k: int) -> float:
        return pack(runnable, [w % gpus for w in range(gpus * k)], [capacity_bytes] * gpus).wall_s

    walls = [(k, quick(k)) for k in range(1, most + 1)]
    best = min(wall for _, wall in walls)
    chosen = next(k for k, wall in walls if wall <= best * 1.05 + 1e-9)
    return chosen, simulate_wall_s(runnable, gpus, chosen, capacity_bytes)
