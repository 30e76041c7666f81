"""A pytest-xdist scheduler that hands out a planned packing of the tests onto the GPUs.

With ``--hypomnesis-needs`` the controller knows each test's need and duration from an
earlier run, and (with ``--hypomnesis-pin-gpus``) which GPU each worker runs on and how
much memory it has. Before it hands out the first test it plans the whole run
(``plan.best_pack``: list scheduling on a simulated clock, largest need x duration first,
a free worker taking the first test that fits beside what already runs on its GPU), and
then sends each worker its own planned sequence, a few tests ahead.

Planning ahead is what makes the packing real: an xdist worker starts a test only once it
holds the next one, so a choice made when a test ends (what fits now?) lands one test
late, when what runs on the GPU has changed. Admission still guards every start at run
time, so a plan that timing spoils costs waiting, never an out-of-memory failure. A
worker that runs out of its plan takes from the tail of the longest remaining plan; tests
of a crashed worker go to whoever is free first.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import pytest

from pytest_hypomnesis.parallel.needs import RecordedNeed
from pytest_hypomnesis.parallel.plan import PlanTest, best_pack, largest_first

__all__ = [
    "AHEAD",
    "NeedsScheduling",
    "Placement",
    "WorkerNode",
    "plan_tests",
    "priority_order",
]

AHEAD = 3
"""Tests a worker holds: the running one, the next (which the xdist worker needs before it
starts one) and one more, so its next start never waits for the controller."""


class _Gateway(Protocol):
    @property
    def id(self) -> str: ...


class WorkerNode(Protocol):
    """An xdist worker as a scheduler sees it (``xdist.workermanage.WorkerController``)."""

    @property
    def gateway(self) -> _Gateway: ...

    @property
    def shutting_down(self) -> bool: ...

    def send_runtest_some(self, indices: Sequence[int]) -> None: ...

    def shutdown(self) -> None: ...


Placement = Callable[[str], tuple[str, int | None]]
"""Worker id (``gw0``) -> (its GPU, that GPU's capacity after headroom or ``None``)."""

LiveNeeds = Callable[[], Mapping[str, int | None] | None]
"""The needs a worker found at collection (``needs.write_worker_needs``), read once the
collections are in; ``None``: none came."""


def plan_tests(
    nodeids: Sequence[str],
    needs: Mapping[str, RecordedNeed],
    live: Mapping[str, int | None] | None = None,
) -> list[PlanTest]:
    """What the plan knows of each collected test. Its need: what a worker found it will
    ask admission for (``live``: its ``max_vram`` limit now, else the report's figure),
    else the report's ``max_vram`` limit, else its measured need, else unknown (the whole
    GPU). Its duration: the report's, else the report's median (1 s without a report)."""
    durations = [n.duration_s for n in needs.values()]
    median = statistics.median(durations) if durations else 1.0
    tests: list[PlanTest] = []
    for nodeid in nodeids:
        known = needs.get(nodeid)
        need = known.planned_bytes if known is not None else None
        if live is not None and nodeid in live:
            need = live[nodeid]
        tests.append(PlanTest(nodeid, need, median if known is None else known.duration_s))
    return tests


def priority_order(nodeids: Sequence[str], needs: Mapping[str, RecordedNeed]) -> list[int]:
    """Indices of ``nodeids``, largest need x duration first (an unknown need counts as the
    largest known one); ties keep collection order."""
    return largest_first(plan_tests(nodeids, needs), [])


def _whole_gpu(worker: str) -> tuple[str, int | None]:
    return ("", None)


def _no_live_needs() -> None:
    return None


class NeedsScheduling:
    """Implements xdist's ``Scheduling`` protocol (see ``xdist/scheduler/protocol.py``)."""

    def __init__(
        self,
        config: pytest.Config,
        log: Any,
        needs: Mapping[str, RecordedNeed],
        placement: Placement = _whole_gpu,
        live_needs: LiveNeeds = _no_live_needs,
    ) -> None:
        from xdist.remote import Producer
        from xdist.workermanage import parse_tx_spec_config

        self.numnodes = len(parse_tx_spec_config(config))
        self.node2collection: dict[WorkerNode, list[str]] = {}
        self.node2pending: dict[WorkerNode, list[int]] = {}
        self.planned: dict[WorkerNode, deque[int]] = {}
        """Per worker, its planned tests not yet sent."""
        self.pool: list[int] = []
        """Tests for whoever is free first (a crashed worker's, a re-run), by priority."""
        self.collection: list[str] | None = None
        self.log = Producer("needsched") if log is None else log.needsched
        self.config = config
        self.needs = needs
        self.placement = placement
        self.live_needs = live_needs
        self.known_needs: int | None = None
        """Tests whose need the plan knows (for the header); ``None`` before the plan."""
        self.plan_wall_s: float | None = None
        self._rank: dict[int, int] = {}

    @property
    def nodes(self) -> list[WorkerNode]:
        return list(self.node2pending)

    @property
    def pending(self) -> list[int]:
        """The tests not yet sent to any worker."""
        return [*self.pool, *(i for queue in self.planned.values() for i in queue)]

    @property
    def collection_is_completed(self) -> bool:
        return len(self.node2collection) >= self.numnodes

    @property
    def tests_finished(self) -> bool:
        if not self.collection_is_completed or self._unsent():
            return False
        return all(len(p) < 2 for p in self.node2pending.values())

    @property
    def has_pending(self) -> bool:
        return self._unsent() or any(self.node2pending.values())

    def _unsent(self) -> bool:
        return bool(self.pool) or any(self.planned.values())

    def add_node(self, node: WorkerNode) -> None:
        assert node not in self.node2pending
        self.node2pending[node] = []
        self.planned[node] = deque()

    def add_node_collection(self, node: WorkerNode, collection: Sequence[str]) -> None:
        assert node in self.node2pending
        # A replacement for a crashed worker must have collected the same tests.
        completed = self.collection_is_completed and self.collection is not None
        if completed and list(collection) != self.collection:
            from xdist.report import report_collection_diff

            first = next(iter(self.node2collection))
            self.log(
                report_collection_diff(
                    self.collection, collection, first.gateway.id, node.gateway.id
                )
            )
            return
        self.node2collection[node] = list(collection)

    def mark_test_complete(self, node: WorkerNode, item_index: int, duration: float = 0) -> None:
        self.node2pending[node].remove(item_index)
        self.check_schedule(node, duration=duration)

    def mark_test_pending(self, item: str) -> None:
        assert self.collection is not None
        self.pool.insert(0, self.collection.index(item))
        for node in self.node2pending:
            self.check_schedule(node)

    def remove_pending_tests_from_node(self, node: WorkerNode, indices: Sequence[int]) -> None:
        raise NotImplementedError()

    def check_schedule(self, node: WorkerNode, duration: float = 0) -> None:
        if node.shutting_down:
            return
        chosen: list[int] = []
        while (holding := len(self.node2pending[node]) + len(chosen)) < AHEAD:
            index = self._next_for(node, holding)
            if index is None:
                break
            chosen.append(index)
        if chosen:
            self.node2pending[node].extend(chosen)
            node.send_runtest_some(chosen)
        if not self._unsent():
            node.shutdown()

    def _next_for(self, node: WorkerNode, holding: int) -> int | None:
        if self.pool:  # a crashed worker's tests first: they were due already
            return self.pool.pop(0)
        own = self.planned.get(node)
        if own:
            return own.popleft()
        if holding >= 2:
            return None  # it has work until its next test ends; the plans stay as they are
        # Out of plan, and a worker holding one test waits for a second before it runs
        # it: the last test (the smallest) of the longest remaining plan.
        victim = max(self.planned.values(), key=len, default=None)
        return victim.pop() if victim else None

    def remove_node(self, node: WorkerNode) -> str | None:
        if self.collection is None:  # died before the handout: nothing to give back
            self.node2pending.pop(node)
            self.planned.pop(node, None)
            return None
        pending = self.node2pending.pop(node)
        self.pool.extend(self.planned.pop(node, ()))
        crashed: str | None = None
        if pending:
            assert self.collection is not None
            crashed = self.collection[pending.pop(0)]
            self.pool.extend(pending)
        self.pool.sort(key=self._rank.__getitem__)
        for other in self.node2pending:
            self.check_schedule(other)
        return crashed

    def schedule(self) -> None:
        assert self.collection_is_completed
        if self.collection is not None:
            for node in self.nodes:
                self.check_schedule(node)
            return
        if not self._same_collections():
            self.log("**Different tests collected, aborting run**")
            return
        self.collection = next(iter(self.node2collection.values()))
        if not self.collection:
            return
        nodes = self.nodes
        gpu_of: dict[str, int] = {}
        capacities: list[int | None] = []
        worker_gpus: list[int] = []
        for node in nodes:
            key, capacity = self.placement(str(node.gateway.id))
            if key not in gpu_of:
                gpu_of[key] = len(capacities)
                capacities.append(capacity)
            worker_gpus.append(gpu_of[key])
        tests = plan_tests(self.collection, self.needs, self.live_needs())
        self.known_needs = sum(t.need_bytes is not None for t in tests)
        self._rank = {i: r for r, i in enumerate(largest_first(tests, capacities))}
        self._gpu_index = gpu_of
        self._capacities = capacities
        self._node_gpu = dict(zip(nodes, worker_gpus, strict=True))
        self._hand_out(tests)

    def _hand_out(self, tests: list[PlanTest]) -> None:
        """Send the first tests, from the placements ``schedule`` found: ``_node_gpu``
        (worker -> GPU index), ``_capacities`` (per GPU index) and ``_gpu_index`` (GPU key
        -> index)."""
        nodes = list(self._node_gpu)
        worker_gpus = list(self._node_gpu.values())
        packing = best_pack(tests, worker_gpus, self._capacities)
        self.plan_wall_s = packing.wall_s
        for node, sequence in zip(nodes, packing.sequences, strict=True):
            self.planned[node] = deque(sequence)
        # A few rounds, one test each: every worker starts at once.
        for _ in range(AHEAD):
            for node in nodes:
                own = self.planned[node]
                if own and not node.shutting_down:
                    index = own.popleft()
                    self.node2pending[node].append(index)
                    node.send_runtest_some([index])
        for node in nodes:
            self.check_schedule(node)

    def _same_collections(self) -> bool:
        from xdist.report import report_collection_diff

        items = list(self.node2collection.items())
        first_node, first = items[0]
        same = True
        for node, collection in items[1:]:
            message = report_collection_diff(
                first, collection, first_node.gateway.id, node.gateway.id
            )
            if message:
                same = False
                self.log(message)
                report = pytest.CollectReport(
                    nodeid=node.gateway.id, outcome="failed", longrepr=message, result=[]
                )
                self.config.hook.pytest_collectreport(report=report)
        return same
