"""The needs scheduler (largest need x duration first) and the packing model of hmn plan."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_hypomnesis.parallel.needs import RecordedNeed
from pytest_hypomnesis.parallel.plan import (
    PlanTest,
    lower_bound_s,
    pack,
    simulate_wall_s,
    suggest_per_gpu,
)
from pytest_hypomnesis.parallel.scheduler import NeedsScheduling, priority_order
from tests.helpers.units import GIB
from tests.helpers.xdistnodes import Node


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


@pytest.fixture
def two_workers(pytester: pytest.Pytester) -> Any:
    return pytester.parseconfig("--tx", "2*popen")


def _scheduled(
    config: Any, needs: dict[str, RecordedNeed], workers: int, placement: Any = None
) -> tuple[NeedsScheduling, list[Node]]:
    ids = list(needs)
    sched = (
        NeedsScheduling(config, None, needs)
        if placement is None
        else NeedsScheduling(config, None, needs, placement)
    )
    nodes = [Node(f"gw{w}") for w in range(workers)]
    for node in nodes:
        sched.add_node(node)
        sched.add_node_collection(node, ids)
    assert sched.collection_is_completed
    sched.schedule()
    return sched, nodes


def test_scheduler_sends_each_worker_its_plan_three_ahead(two_workers: Any) -> None:
    needs = {f"t{i}": RecordedNeed((i + 1) * GIB, 1.0) for i in range(8)}
    sched, (a, b) = _scheduled(two_workers, needs, 2)
    # No GPU known: planned by duration, largest first, alternating; three tests ahead.
    assert (a.sent, b.sent) == ([7, 5, 3], [6, 4, 2])
    assert sched.pending == [1, 0] and sched.plan_wall_s == 4.0
    sched.mark_test_complete(a, 7)
    assert a.sent == [7, 5, 3, 1] and not a.shutting_down  # b's plan is not sent yet
    sched.mark_test_complete(b, 6)
    assert b.sent == [6, 4, 2, 0] and b.shutting_down  # nothing left to hand out
    sched.mark_test_complete(a, 5)
    assert a.shutting_down
    assert not sched.tests_finished
    for node, index in ((a, 3), (a, 1), (b, 4), (b, 2), (b, 0)):
        sched.mark_test_complete(node, index)
    assert sched.tests_finished and not sched.has_pending


@pytest.fixture
def four_workers(pytester: pytest.Pytester) -> Any:
    return pytester.parseconfig("--tx", "4*popen")


def test_scheduler_packs_big_and_small_side_by_side(four_workers: Any) -> None:
    # Two GPUs of 10 GiB, two workers each; four 8 GiB tests and eight 2 GiB ones of 1 s.
    needs = {f"big{i}": RecordedNeed(8 * GIB, 1.0) for i in range(4)}
    needs |= {f"small{i}": RecordedNeed(2 * GIB, 0.5) for i in range(8)}
    ids = list(needs)
    gpu = {"gw0": "A", "gw1": "B", "gw2": "A", "gw3": "B"}
    sched, nodes = _scheduled(four_workers, needs, 4, lambda w: (gpu[w], 10 * GIB))
    planned = [
        [ids[i] for i in node.sent] + [ids[i] for i in sched.planned[node]] for node in nodes
    ]
    # Each GPU: one worker runs its big tests, the other the small ones beside them.
    for first, second in ((planned[0], planned[2]), (planned[1], planned[3])):
        assert {n[:3] for n in first} == {"big"} and len(first) == 2
        assert {n[:3] for n in second} == {"sma"} and len(second) == 4
    assert sched.plan_wall_s == 2.0  # the lower bound: no big test waits for another GPU


def test_scheduler_plans_with_the_reports_budget(four_workers: Any) -> None:
    # Measured 4 GiB (+10% = 4.4 GiB) but declared max_vram 5 GiB: admission will use
    # 5 GiB, so two of them do not fit a 9.5 GiB GPU side by side in the plan either.
    needs = {f"t{i}": RecordedNeed(int(4.4 * GIB), 1.0, 5 * GIB) for i in range(4)}
    sched, _ = _scheduled(four_workers, needs, 4, lambda w: ("A", int(9.5 * GIB)))
    assert sched.plan_wall_s == 4.0
    needs = {f"t{i}": RecordedNeed(int(4.4 * GIB), 1.0) for i in range(4)}
    sched, _ = _scheduled(four_workers, needs, 4, lambda w: ("A", int(9.5 * GIB)))
    assert sched.plan_wall_s == 2.0


def test_scheduler_worker_out_of_plan_takes_from_the_longest(two_workers: Any) -> None:
    needs = {f"t{i}": RecordedNeed(GIB, 1.0) for i in range(10)}
    sched, (a, b) = _scheduled(two_workers, needs, 2)
    plan_b = list(sched.planned[b])
    sched.planned[a].clear()  # a ran faster than planned
    first, second, _ = a.sent
    sched.mark_test_complete(a, first)
    assert len(a.sent) == 3  # it still holds two: nothing taken from b yet
    sched.mark_test_complete(a, second)
    # Holding one test, a needs a second to start it: b's last planned one.
    assert a.sent[-1] == plan_b[-1] and not a.shutting_down
    assert list(sched.planned[b]) == plan_b[:-1]


def test_scheduler_requeues_a_crashed_workers_tests(two_workers: Any) -> None:
    needs = {f"t{i}": RecordedNeed((i + 1) * GIB, 1.0) for i in range(8)}
    sched, (a, b) = _scheduled(two_workers, needs, 2)
    assert sched.remove_node(a) == "t7"  # the one it was running
    # Its other tests (sent and planned) go to the pool, by priority, for b.
    assert sched.pending == [5, 3, 1, 0]
    sched.mark_test_complete(b, 6)
    assert b.sent == [6, 4, 2, 5]


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


def test_pack_drains_a_gpu_for_an_unknown_need_and_hands_out_what_never_fits() -> None:
    tests = [
        PlanTest("huge", 12 * GIB, 1.0),  # fits no 10 GiB GPU: admission fails it at once
        PlanTest("alone", None, 1.0),
        PlanTest("a", 2 * GIB, 1.0),
        PlanTest("b", 2 * GIB, 1.0),
    ]
    packing = pack(tests, [0, 0], [10 * GIB])
    first, second = packing.sequences
    assert first[0] == 0  # "huge" first, as the plan's zero-time start
    # "alone" (an unknown need is the whole GPU: the largest) runs by itself, then a + b.
    assert packing.wall_s == 2.0
    assert sorted(first[1:] + second) == [1, 2, 3]
    assert 1 in (first[1], second[0])


def test_pack_prefers_a_test_that_fits_over_one_that_waits() -> None:
    # One GPU of 10 GiB, two workers: 6, 6, 3, 3 GiB of 1 s. Largest-first with waiting
    # would run 6 alone, then 6 + 3, then 3: 3 s; fitting what fits takes 2 s.
    tests = [PlanTest(f"t{i}", n * GIB, 1.0) for i, n in enumerate([6, 6, 3, 3])]
    packing = pack(tests, [0, 0], [10 * GIB])
    assert packing.wall_s == 2.0
    assert packing.sequences == [[0, 1], [2, 3]]


def test_pack_without_a_capacity_shares_out_by_duration() -> None:
    tests = [PlanTest(f"t{i}", 8 * GIB, d) for i, d in enumerate([3.0, 2.0, 1.0, 1.0, 1.0])]
    packing = pack(tests, [0, 0], [None])
    assert packing.wall_s == 4.0
    assert packing.sequences == [[0, 3], [1, 2, 4]]
