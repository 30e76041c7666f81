"""The handout by fit (``--hypomnesis-admit`` without a report) and the needs a worker
passes to the controller."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_hypomnesis.parallel.fitting import FitScheduling
from pytest_hypomnesis.parallel.needs import RecordedNeed, read_worker_needs, write_worker_needs
from pytest_hypomnesis.parallel.scheduler import NeedsScheduling, plan_tests
from tests.helpers.units import GIB
from tests.helpers.xdistnodes import Node

CAPACITY = int(9.5 * GIB)
TWO_GPUS = {"gw0": "A", "gw1": "B", "gw2": "A", "gw3": "B"}


@pytest.fixture
def four_workers(pytester: pytest.Pytester) -> Any:
    return pytester.parseconfig("--tx", "4*popen")


@pytest.fixture
def two_workers(pytester: pytest.Pytester) -> Any:
    return pytester.parseconfig("--tx", "2*popen")


def _fit(
    config: Any, needs: dict[str, int | None], gpus: dict[str, str], capacity: int | None
) -> tuple[FitScheduling, list[Node]]:
    sched = FitScheduling(config, None, {}, lambda w: (gpus[w], capacity), lambda: needs)
    nodes = [Node(w) for w in gpus]
    assert sched.numnodes == len(nodes)
    for node in nodes:
        sched.add_node(node)
        sched.add_node_collection(node, list(needs))
    sched.schedule()
    return sched, nodes


def _names(needs: dict[str, int | None], node: Node) -> list[str]:
    ids = list(needs)
    return [ids[i] for i in node.sent]


def test_fit_deals_big_and_small_to_one_gpus_two_workers(four_workers: Any) -> None:
    # Collection order would give each GPU's two workers an 8 GiB test at once.
    needs: dict[str, int | None] = {f"big{i}": 8 * GIB for i in range(4)}
    needs |= {f"small{i}": GIB for i in range(8)}
    sched, nodes = _fit(four_workers, needs, TWO_GPUS, CAPACITY)
    by_worker = {node.gateway.id: _names(needs, node) for node in nodes}
    # The first worker of each GPU takes big tests; its neighbour, finding 8 GiB held
    # beside it, takes 1 GiB tests that fit at once (xdist would deal big0 and big2 to
    # GPU A's two workers together).
    assert by_worker == {
        "gw0": ["big0", "big2", "small4"],
        "gw1": ["big1", "big3", "small5"],
        "gw2": ["small0", "small2", "small6"],
        "gw3": ["small1", "small3", "small7"],
    }
    assert sched.known_needs == 12


def test_fit_rule_order_beside_all_then_beside_last_then_smallest(two_workers: Any) -> None:
    needs: dict[str, int | None] = {"a6": 6 * GIB, "b4": 4 * GIB, "c3": 3 * GIB, "d2": 2 * GIB}
    one_gpu = dict.fromkeys(("gw0", "gw1"), "A")
    _, (gw0, gw1) = _fit(two_workers, needs, one_gpu, CAPACITY)
    # Round 1: gw0 takes the largest (6); gw1 finds 6 held: 3.5 GiB free, takes 3.
    # Round 2: gw0 beside gw1's 3: 6.5 free, takes 4; gw1 beside gw0's 6 and 4 (largest
    # 6): 3.5 free, takes 2. Nothing is left.
    assert _names(needs, gw0) == ["a6", "b4"]
    assert _names(needs, gw1) == ["c3", "d2"]
    assert gw0.shutting_down and gw1.shutting_down


def test_fit_takes_the_smallest_when_nothing_fits_beside(two_workers: Any) -> None:
    needs: dict[str, int | None] = {"t0": 7 * GIB, "t1": 7 * GIB, "t2": 7 * GIB, "s": 5 * GIB}
    one_gpu = {"gw0": "A", "gw1": "A"}
    _, (gw0, gw1) = _fit(two_workers, needs, one_gpu, CAPACITY)
    # gw0 holds 7 GiB tests; nothing fits beside them for gw1: it gets the smallest (5)
    # first, which waits least; the rest is dealt as it comes.
    assert _names(needs, gw0)[0] == "t0" and _names(needs, gw1)[0] == "s"


def test_fit_unknown_need_is_the_whole_gpu_and_too_big_goes_first(two_workers: Any) -> None:
    needs: dict[str, int | None] = {"small": GIB, "unknown": None, "huge": 20 * GIB}
    sched, (gw0, gw1) = _fit(two_workers, needs, {"gw0": "A", "gw1": "A"}, CAPACITY)
    # The 20 GiB test fits no GPU (admission fails it at once); the unknown one counts as
    # the whole GPU, so the neighbour's next (1 GiB) is not planned beside it.
    assert _names(needs, gw0) == ["huge", "small"]
    assert _names(needs, gw1) == ["unknown"]
    assert sched.known_needs == 2


def test_fit_a_test_for_a_larger_gpu_waits_for_its_workers(two_workers: Any) -> None:
    needs: dict[str, int | None] = {"big": 12 * GIB}
    capacities = {"gw0": ("small", 8 * GIB), "gw1": ("large", 16 * GIB)}
    sched = FitScheduling(two_workers, None, {}, capacities.__getitem__, lambda: needs)
    gw0, gw1 = Node("gw0"), Node("gw1")
    for node in (gw0, gw1):
        sched.add_node(node)
        sched.add_node_collection(node, list(needs))
    sched.schedule()
    assert gw0.sent == [] and gw1.sent == [0]
    assert gw0.shutting_down  # told there is nothing more, so it does not wait


def test_fit_requeues_a_crashed_workers_tests_by_size(two_workers: Any) -> None:
    needs: dict[str, int | None] = {f"t{i}": (i + 1) * GIB for i in range(8)}
    sched, (gw0, gw1) = _fit(two_workers, needs, {"gw0": "A", "gw1": "B"}, CAPACITY)
    running, *held = gw0.sent
    assert sched.remove_node(gw0) == f"t{running}"
    # Its other tests are back in the pool, which stays largest first for the bisection.
    assert set(held) <= set(sched.pending)
    assert sched.pending == sorted(sched.pending, reverse=True)
    sched.mark_test_complete(gw1, gw1.sent[0])
    assert gw1.sent[-1] == max(held)  # the largest that fits beside nothing


def test_fit_without_a_capacity_hands_out_largest_first(two_workers: Any) -> None:
    needs: dict[str, int | None] = {"a": GIB, "b": 3 * GIB, "c": 2 * GIB}
    _, (gw0, gw1) = _fit(two_workers, needs, {"gw0": "A", "gw1": "A"}, None)
    assert _names(needs, gw0) == ["b", "a"] and _names(needs, gw1) == ["c"]


def test_live_needs_win_over_the_report_in_the_plan() -> None:
    report = {"t": RecordedNeed(GIB, 2.0, 3 * GIB), "u": RecordedNeed(GIB, 1.0)}
    tests = plan_tests(["t", "u", "v"], report, {"t": 5 * GIB, "u": None})
    assert [(t.need_bytes, t.duration_s) for t in tests] == [
        (5 * GIB, 2.0),  # the marker now says 5 GiB: admission will take that
        (None, 1.0),  # the worker found no need now: unknown, whatever the report said
        (None, 1.5),  # not in either: unknown, for the report's median duration
    ]


def test_needs_scheduler_plans_with_the_workers_needs(four_workers: Any) -> None:
    report = {f"t{i}": RecordedNeed(GIB, 1.0) for i in range(4)}
    live: dict[str, int | None] = {f"t{i}": 8 * GIB for i in range(4)}
    sched = NeedsScheduling(four_workers, None, report, lambda w: ("A", CAPACITY), lambda: live)
    nodes = [Node(f"gw{w}") for w in range(4)]
    for node in nodes:
        sched.add_node(node)
        sched.add_node_collection(node, list(report))
    sched.schedule()
    assert sched.plan_wall_s == 4.0  # 8 GiB each: one at a time on one 9.5 GiB GPU


def test_worker_needs_file_round_trip_and_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "needs.json"
    write_worker_needs(path, {"a": GIB, "b": None})
    assert read_worker_needs(path) == {"a": GIB, "b": None}
    assert read_worker_needs(tmp_path / "missing.json") is None
    for text in (
        "not json",
        "[]",
        '{"needs": []}',
        '{"needs": {"a": "1GiB"}}',
        '{"needs": {"a": true}}',
    ):
        path.write_text(text, encoding="utf-8")
        assert read_worker_needs(path) is None, text
