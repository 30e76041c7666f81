"""The needs scheduler (largest need x duration first) and the packing model of hmn plan."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_hypomnesis.parallel.needs import RecordedNeed
from pytest_hypomnesis.parallel.plan import (
    PlanTest,
    lower_bound_s,
    simulate_wall_s,
    suggest_per_gpu,
)
from pytest_hypomnesis.parallel.scheduler import NeedsScheduling, priority_order
from tests.helpers.units import GIB


def test_priority_is_need_times_duration_largest_first() -> None:
    ids = ["small", "big-short", "big-long", "unknown", "new"]
    needs = {
        "small": RecordedNeed(GIB, 1.0),
        "big-short": RecordedNeed(8 * GIB, 0.1),
        "big-long": RecordedNeed(4 * GIB, 1.0),
        "unknown": RecordedNeed(None, 0.5),  # counts as the largest known need, 8 GiB
    }
    order = [ids[i] for i in priority_order(ids, needs)]
    # weights: big-long 4, unknown 4 (8 x 0.5), new 8 x median(0.1, 0.5, 1, 1) = 6, small 1
    assert order == ["new", "big-long", "unknown", "small", "big-short"]


class _Gateway:
    def __init__(self, name: str) -> None:
        self.id = name


class _Node:
    def __init__(self, name: str) -> None:
        self.gateway = _Gateway(name)
        self.sent: list[int] = []
        self.shutting_down = False

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent.extend(indices)

    def shutdown(self) -> None:
        self.shutting_down = True


@pytest.fixture
def two_workers(pytester: pytest.Pytester) -> Any:
    return pytester.parseconfig("--tx", "2*popen")


def test_scheduler_hands_out_largest_first_two_per_worker(two_workers: Any) -> None:
    ids = [f"t{i}" for i in range(6)]
    needs = {nodeid: RecordedNeed((i + 1) * GIB, 1.0) for i, nodeid in enumerate(ids)}
    sched = NeedsScheduling(two_workers, None, needs)
    a, b = _Node("gw0"), _Node("gw1")
    for node in (a, b):
        sched.add_node(node)
        sched.add_node_collection(node, ids)
    assert sched.collection_is_completed
    sched.schedule()
    # Round-robin: the two largest start at once on different workers.
    assert (a.sent, b.sent) == ([5, 3], [4, 2])
    assert not sched.tests_finished
    sched.mark_test_complete(a, 5)
    assert a.sent == [5, 3, 1]
    sched.mark_test_complete(b, 4)
    assert b.sent == [4, 2, 0]
    sched.mark_test_complete(a, 3)
    assert a.shutting_down  # nothing left to hand out
    for node, index in ((a, 1), (b, 2), (b, 0)):
        sched.mark_test_complete(node, index)
    assert sched.tests_finished and not sched.has_pending


def test_scheduler_requeues_a_crashed_workers_tests(two_workers: Any) -> None:
    ids = [f"t{i}" for i in range(6)]
    needs = {nodeid: RecordedNeed((i + 1) * GIB, 1.0) for i, nodeid in enumerate(ids)}
    sched = NeedsScheduling(two_workers, None, needs)
    a, b = _Node("gw0"), _Node("gw1")
    for node in (a, b):
        sched.add_node(node)
        sched.add_node_collection(node, ids)
    sched.schedule()
    assert sched.remove_node(a) == "t5"  # the one it was running
    assert b.sent == [4, 2]
    assert sched.pending == [3, 1, 0]  # t3 back at the front, by priority


def test_plan_lower_bound_and_packing() -> None:
    tests = [PlanTest(f"t{i}", 5 * GIB, 1.0) for i in range(4)]
    # 4 x 5 GiB x 1 s over 2 GPUs x 10 GiB = 1 s; the longest test is 1 s.
    assert lower_bound_s(tests, 2, 10 * GIB) == 1.0
    assert simulate_wall_s(tests, 2, 2, 10 * GIB) == 1.0
    assert simulate_wall_s(tests, 2, 1, 10 * GIB) == 2.0
    assert simulate_wall_s(tests, 1, 4, 10 * GIB) == 2.0  # two fit at a time
    assert suggest_per_gpu(tests, 2, 10 * GIB) == (2, 1.0)


def test_plan_unknown_need_runs_alone() -> None:
    tests = [PlanTest("alone", None, 1.0), PlanTest("a", GIB, 1.0), PlanTest("b", GIB, 1.0)]
    assert simulate_wall_s(tests, 1, 3, 10 * GIB) == 2.0
    assert lower_bound_s(tests, 1, 10 * GIB) == pytest.approx(1.2)
