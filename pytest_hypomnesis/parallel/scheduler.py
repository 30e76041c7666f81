"""A pytest-xdist scheduler that hands out tests by VRAM need x duration, largest first.

With ``--hypomnesis-needs`` the controller knows each test's need and duration from an
earlier run. Handing the big, long tests out first (the longest-processing-time rule) stops
them queueing behind each other at the end, where one worker would run them alone while
the others idle. Each worker holds two tests (the one running and the next, which the
xdist worker protocol needs before it runs the first) and gets one more per finished test.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from pytest_hypomnesis.parallel.needs import RecordedNeed

__all__ = ["NeedsScheduling", "priority_order"]

_PER_NODE = 2


def priority_order(nodeids: Sequence[str], needs: Mapping[str, RecordedNeed]) -> list[int]:
    """Indices of ``nodeids``, largest need x duration first. An unknown need counts as the
    largest known one (it will run alone on its GPU); a test missing from the report
    counts with the median duration; ties keep collection order."""
    known_needs = [n.need_bytes for n in needs.values() if n.need_bytes is not None]
    durations = [n.duration_s for n in needs.values()]
    biggest = max(known_needs, default=1)
    median = statistics.median(durations) if durations else 1.0

    def weight(index: int) -> float:
        need = needs.get(nodeids[index])
        if need is None:
            return float(biggest) * median
        size = biggest if need.need_bytes is None else need.need_bytes
        return float(max(size, 1)) * max(need.duration_s, 1e-6)

    return sorted(range(len(nodeids)), key=lambda i: -weight(i))


class NeedsScheduling:
    """Implements xdist's ``Scheduling`` protocol (see ``xdist/scheduler/protocol.py``)."""

    def __init__(self, config: pytest.Config, log: Any, needs: Mapping[str, RecordedNeed]) -> None:
        from xdist.remote import Producer
        from xdist.workermanage import parse_tx_spec_config

        self.numnodes = len(parse_tx_spec_config(config))
        self.node2collection: dict[Any, list[str]] = {}
        self.node2pending: dict[Any, list[int]] = {}
        self.pending: list[int] = []
        self.collection: list[str] | None = None
        self.log = Producer("needsched") if log is None else log.needsched
        self.config = config
        self.needs = needs
        self._rank: dict[int, int] = {}

    @property
    def nodes(self) -> list[Any]:
        return list(self.node2pending)

    @property
    def collection_is_completed(self) -> bool:
        return len(self.node2collection) >= self.numnodes

    @property
    def tests_finished(self) -> bool:
        if not self.collection_is_completed or self.pending:
            return False
        return all(len(p) < 2 for p in self.node2pending.values())

    @property
    def has_pending(self) -> bool:
        return bool(self.pending) or any(self.node2pending.values())

    def add_node(self, node: Any) -> None:
        assert node not in self.node2pending
        self.node2pending[node] = []

    def add_node_collection(self, node: Any, collection: Sequence[str]) -> None:
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

    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        self.node2pending[node].remove(item_index)
        self.check_schedule(node, duration=duration)

    def mark_test_pending(self, item: str) -> None:
        assert self.collection is not None
        self.pending.insert(0, self.collection.index(item))
        for node in self.node2pending:
            self.check_schedule(node)

    def remove_pending_tests_from_node(self, node: Any, indices: Sequence[int]) -> None:
        raise NotImplementedError()

    def check_schedule(self, node: Any, duration: float = 0) -> None:
        if node.shutting_down:
            return
        if self.pending:
            self._send(node, _PER_NODE - len(self.node2pending[node]))
        else:
            node.shutdown()

    def remove_node(self, node: Any) -> str | None:
        pending = self.node2pending.pop(node)
        if not pending:
            return None
        assert self.collection is not None
        crashed = self.collection[pending.pop(0)]
        self.pending.extend(pending)
        self.pending.sort(key=self._rank.__getitem__)
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
        order = priority_order(self.collection, self.needs)
        self._rank = {index: rank for rank, index in enumerate(order)}
        self.pending[:] = order
        if not self.collection:
            return
        # Round-robin, so the largest tests start at once on different workers.
        for _ in range(_PER_NODE):
            for node in self.nodes:
                self._send(node, 1)
        if not self.pending:
            for node in self.nodes:
                node.shutdown()

    def _send(self, node: Any, count: int) -> None:
        chosen = self.pending[: max(count, 0)]
        if chosen:
            del self.pending[: len(chosen)]
            self.node2pending[node].extend(chosen)
            node.send_runtest_some(chosen)

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
