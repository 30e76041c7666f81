"""The handout under ``--hypomnesis-admit`` without a report: by need alone, decided as
the run goes.

Without ``--hypomnesis-needs`` the controller knows each test's need (what a worker found
at collection: its ``max_vram`` limit, else unknown) but not how long it runs, so a plan
made ahead on a simulated clock would be a guess. Instead, each time a worker has room
for one more test, it gets the largest test that fits on its GPU beside the largest test
each other worker on that GPU holds (running or queued); failing that, beside the test
each of them will run last; failing that, the smallest, which waits least. What a
worker holds is what it will run next, so a test chosen to fit beside it starts without
waiting for the neighbour to drain: xdist's own handout gives tests out in collection
order, and two large tests dealt to one GPU's two workers run one after the other.

Decisions are made as tests end, which is when the controller learns anything; the test
chosen starts a few tests later (an xdist worker holds ``AHEAD`` tests), which is why the
rule looks at everything the neighbours hold rather than at what runs now. Admission
still guards every start. An unknown need counts as the whole GPU.
"""

from __future__ import annotations

import bisect

from pytest_hypomnesis.parallel.plan import PlanTest
from pytest_hypomnesis.parallel.scheduler import AHEAD, NeedsScheduling, WorkerNode

__all__ = ["FitScheduling"]


class FitScheduling(NeedsScheduling):
    """Implements xdist's ``Scheduling`` protocol; the crash and re-run handling is the
    needs scheduler's (its ``pool``, kept here by size: largest first)."""

    def _hand_out(self, tests: list[PlanTest]) -> None:
        known = [c for c in self._capacities if c is not None]
        whole = max(known, default=0)
        self._sizes = [t.need_bytes if t.need_bytes is not None else whole for t in tests]
        self._unknown = {i for i, t in enumerate(tests) if t.need_bytes is None}
        # A test that fits no GPU is failed by admission at once: handed out first, and it
        # holds nothing while a neighbour's test runs.
        every_known = bool(known) and len(known) == len(self._capacities)
        self._held = [0 if every_known and size > whole else size for size in self._sizes]
        # The pool stays in this order (largest first, then collection order), so that a
        # bisection finds the largest test that fits; the crash handling sorts by _rank.
        order = sorted(range(len(tests)), key=lambda i: (-self._sizes[i], i))
        self._rank = {index: rank for rank, index in enumerate(order)}
        self.pool = order
        # One test each, round by round: every worker starts at once, each choice made
        # knowing what its neighbours already hold.
        nodes = list(self._node_gpu)
        for _ in range(AHEAD):
            for node in nodes:
                if not node.shutting_down and len(self.node2pending[node]) < AHEAD:
                    index = self._fit_for(node)
                    if index is not None:
                        self.node2pending[node].append(index)
                        node.send_runtest_some([index])
        for node in nodes:
            self.check_schedule(node)

    def mark_test_pending(self, item: str) -> None:
        assert self.collection is not None
        bisect.insort(self.pool, self.collection.index(item), key=self._rank.__getitem__)
        for node in self.node2pending:
            self.check_schedule(node)

    def check_schedule(self, node: WorkerNode, duration: float = 0) -> None:
        if node.shutting_down:
            return
        chosen: list[int] = []
        while len(self.node2pending[node]) + len(chosen) < AHEAD:
            index = self._fit_for(node)
            if index is None:
                break
            self.node2pending[node].append(index)
            chosen.append(index)
        if chosen:
            node.send_runtest_some(chosen)
        if not self.pool:
            # Every worker, not only this one: one that holds a single test runs it only
            # once it holds a second or is told there is none.
            for other in self.node2pending:
                if not other.shutting_down:
                    other.shutdown()

    def _gpu_of(self, node: WorkerNode) -> int:
        gpu = self._node_gpu.get(node)
        if gpu is None:  # a worker that replaced a crashed one
            key, capacity = self.placement(str(node.gateway.id))
            if key not in self._gpu_index:
                self._gpu_index[key] = len(self._capacities)
                self._capacities.append(capacity)
            gpu = self._node_gpu[node] = self._gpu_index[key]
        return gpu

    def _fit_for(self, node: WorkerNode) -> int | None:
        pool = self.pool
        if not pool:
            return None
        gpu = self._gpu_of(node)
        capacity = self._capacities[gpu]
        if capacity is None:
            return pool.pop(0)  # nothing to fit against: largest first
        sizes = self._sizes
        if all(c is not None and sizes[pool[0]] > c for c in self._capacities):
            return pool.pop(0)  # fits no GPU: admission fails it at once
        neighbours = [
            held
            for other, held in self.node2pending.items()
            if other is not node and self._gpu_of(other) == gpu
        ]
        holds = self._held
        beside_all = capacity - sum(max((holds[i] for i in held), default=0) for held in neighbours)
        beside_last = capacity - sum(holds[held[-1]] for held in neighbours if held)
        unknown = self._first_unknown() if capacity < sizes[pool[0]] else None
        if unknown is not None and beside_all >= capacity:
            return pool.pop(unknown)  # the whole of this (smaller) GPU: nothing beside it
        for free_bytes in (beside_all, beside_last):
            position = self._largest_within(free_bytes)
            if position is not None:
                return pool.pop(position)
        if sizes[pool[-1]] > capacity:
            if unknown is not None:
                return pool.pop(unknown)  # an unknown need runs alone on any GPU
            return None  # only tests for a larger GPU are left: its workers take them
        # Nothing fits beside them: the smallest waits least (the first of them, so that
        # a worker still runs tests in collection order).
        smallest = bisect.bisect_left(pool, -sizes[pool[-1]], key=lambda i: -sizes[i])
        return pool.pop(smallest)

    def _first_unknown(self) -> int | None:
        """The position of the first unknown-need test: they sort as the largest GPU."""
        sizes, pool = self._sizes, self.pool
        whole = sizes[pool[0]]
        end = bisect.bisect_right(pool, -whole, key=lambda i: -sizes[i])
        return next((k for k in range(end) if pool[k] in self._unknown), None)

    def _largest_within(self, free_bytes: int) -> int | None:
        """The position in the pool of its largest test of at most ``free_bytes``."""
        sizes = self._sizes
        position = bisect.bisect_left(self.pool, -free_bytes, key=lambda i: -sizes[i])
        return position if position < len(self.pool) else None
