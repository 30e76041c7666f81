"""The admission rule: total less headroom, less what every other process reserved or holds
(whichever is larger), less memory no listed process accounts for; unknown needs run alone."""

from __future__ import annotations

import pytest

from pytest_hypomnesis.parallel.admission import DeviceNow, decide
from pytest_hypomnesis.parallel.ledger import Entry
from pytest_hypomnesis.parallel.needs import (
    Need,
    RecordedNeed,
    need_of,
    needs_from_report,
    record_need,
)
from pytest_hypomnesis.plugin.budgets import Budget
from tests.helpers.units import GIB

ME, OTHER, THIRD = 100, 200, 300


def _entry(pid: int, need: int | None, kind: str = "reserved", since: float = 1.0) -> Entry:
    return Entry(pid, 0.0, kind, need, f"t.py::{pid}", since)  # type: ignore[arg-type]


def _gpu(used: int = 0, **rows: int) -> DeviceNow:
    per_pid = {int(k[1:]): v for k, v in rows.items()}
    return DeviceNow(total_bytes=10 * GIB, used_bytes=used, process_bytes=per_pid)


def test_fits_beside_a_reservation() -> None:
    # 10 GiB less 5% headroom (0.5 GiB) less 4 GiB reserved leaves 5.5 GiB.
    entries = [_entry(OTHER, 4 * GIB)]
    assert decide(5 * GIB, ME, entries, _gpu(), 0.05).admit
    verdict = decide(6 * GIB, ME, entries, _gpu(), 0.05)
    assert not verdict.admit and verdict.never_fits is None
    assert verdict.free_bytes == int(5.5 * GIB)


def test_what_a_process_holds_counts_when_larger_than_its_reservation() -> None:
    # A caching allocator keeps 7 GiB after its 4 GiB reservation ended or was exceeded.
    entries = [_entry(OTHER, 4 * GIB)]
    gpu = _gpu(used=7 * GIB, p200=7 * GIB)
    assert not decide(3 * GIB, ME, entries, gpu, 0.05).admit
    assert decide(2 * GIB, ME, entries, gpu, 0.05).admit
    # Not in the ledger at all (another tool's process): its NVML figure counts.
    assert not decide(3 * GIB, ME, [], gpu, 0.05).admit


def test_memory_no_listed_process_accounts_for_counts() -> None:
    gpu = _gpu(used=6 * GIB, p200=2 * GIB)  # 4 GiB used by nobody NVML lists
    verdict = decide(4 * GIB, ME, [], gpu, 0.05)
    assert not verdict.admit
    assert verdict.free_bytes == int(3.5 * GIB)
    assert any("used by no listed process" in line for line in verdict.holders)


def test_own_memory_counts_but_cannot_deadlock_alone() -> None:
    gpu = _gpu(used=6 * GIB, p100=6 * GIB)
    # Nobody else holds anything: waiting frees nothing, so the test is let through.
    assert decide(5 * GIB, ME, [], gpu, 0.05).admit
    busy = _gpu(used=7 * GIB, p100=6 * GIB, p200=GIB)
    assert not decide(3 * GIB, ME, [], busy, 0.05).admit


def test_a_reservation_on_top_of_the_base_the_process_had() -> None:
    entry = Entry(OTHER, 0.0, "reserved", 2 * GIB, "t.py::x", 1.0, base_bytes=3 * GIB)
    gpu = _gpu(used=3 * GIB, p200=3 * GIB)
    assert decide(4 * GIB, ME, [entry], gpu, 0.05).admit
    assert not decide(5 * GIB, ME, [entry], gpu, 0.05).admit


def test_need_larger_than_the_gpu_never_fits() -> None:
    verdict = decide(10 * GIB, ME, [], _gpu(), 0.05)
    assert not verdict.admit
    assert verdict.never_fits == (
        "needs 10.00 GiB of VRAM but the GPU has 10.00 GiB (9.50 GiB after the 5% headroom)"
    )


def test_unknown_need_runs_alone() -> None:
    assert decide(None, ME, [], _gpu(used=GIB, p200=GIB), 0.05).admit
    verdict = decide(None, ME, [_entry(OTHER, GIB)], _gpu(), 0.05)
    assert not verdict.admit and verdict.queue
    # While it holds the GPU, nothing else is admitted, however small.
    assert not decide(1, OTHER, [_entry(ME, None)], _gpu(), 0.05).admit


def test_a_queued_exclusive_test_stops_new_admissions() -> None:
    waiting = [_entry(OTHER, None, "waiting", since=5.0), _entry(THIRD, GIB)]
    assert not decide(1, ME, waiting, _gpu(), 0.05).admit
    # Exclusive tests queue in order: an earlier one goes first.
    later = decide(None, ME, waiting[:1], _gpu(), 0.05, queued_since=9.0)
    assert not later.admit
    earlier = decide(None, ME, waiting[:1], _gpu(), 0.05, queued_since=2.0)
    assert earlier.admit


def test_a_later_test_yields_to_an_earlier_one_that_fits_now() -> None:
    # OTHER has waited for 6 GiB, which fits now (its neighbour just ended): ME, asking at
    # once for its next test, leaves it the memory instead of winning the race.
    waiting = [_entry(OTHER, 6 * GIB, "waiting")]
    verdict = decide(4 * GIB, ME, waiting, _gpu(), 0.05)
    assert not verdict.admit and verdict.queue
    assert decide(3 * GIB, ME, waiting, _gpu(), 0.05).admit  # fits beside it
    # The admitter stops yielding after a while: a stuck neighbour holds nobody up.
    assert decide(4 * GIB, ME, waiting, _gpu(), 0.05, yield_ahead=False).admit
    # Queued before OTHER, ME does not yield to it.
    assert decide(4 * GIB, ME, waiting, _gpu(), 0.05, queued_since=0.5).admit


def test_a_waiter_that_does_not_fit_now_holds_nobody_up() -> None:
    # OTHER's cache holds 5 GiB and it waits for 6 GiB more: that frees only when OTHER
    # frees it, so a small test of ME passes instead of both waiting until the timeout.
    waiting = [_entry(OTHER, 6 * GIB, "waiting")]
    assert decide(2 * GIB, ME, waiting, _gpu(used=5 * GIB, p200=5 * GIB), 0.05).admit


def test_an_exclusive_test_queued_later_does_not_block_an_earlier_one() -> None:
    exclusive = [_entry(OTHER, None, "waiting", since=5.0)]
    assert decide(GIB, ME, exclusive, _gpu(), 0.05, queued_since=2.0).admit
    assert not decide(GIB, ME, exclusive, _gpu(), 0.05, queued_since=9.0).admit
    # ... and the exclusive test waits for the earlier one: no deadlock either way.
    earlier = [_entry(ME, GIB, "waiting", since=2.0)]
    assert not decide(None, OTHER, earlier, _gpu(), 0.05, queued_since=5.0).admit


def test_own_entries_are_not_counted() -> None:
    assert decide(9 * GIB, ME, [_entry(ME, 9 * GIB)], _gpu(), 0.05).admit


def test_need_from_budget_then_report_then_unknown() -> None:
    budgets = [Budget("max_vram", 3 * GIB), Budget("max_vram", 2 * GIB, device=0)]
    assert need_of("t", budgets, None) == Need(2 * GIB, "max_vram")
    other_gpu = [Budget("max_vram", GIB, device=1)]
    report = {"t": RecordedNeed(1000, 0.5), "u": RecordedNeed(None, 0.5)}
    assert need_of("t", other_gpu, report) == Need(1000, "report")
    assert need_of("u", [], report).need_bytes is None
    assert need_of("v", [], report) == Need(None, "not in the --hypomnesis-needs report")
    assert need_of("t", [], None).need_bytes is None


@pytest.mark.parametrize(
    ("devices", "need"),
    [
        ({"0": {"increase_bytes": 1000}}, 1100),
        ({"0": {"increase_bytes": 1000}, "1": {"increase_bytes": 10}}, 1111),
        ({"0": {"increase_bytes": 0}}, 0),
        ({"0": {"increase_bytes": None}}, None),
        ({}, None),
    ],
)
def test_record_need_is_peak_increase_plus_ten_percent(
    devices: dict[str, dict[str, int | None]], need: int | None
) -> None:
    assert record_need({"vram": {"devices": devices}}) == need


def test_the_report_keeps_the_budget_the_scheduler_plans_with() -> None:
    def budget(limit: int, device: int | None = None, kind: str = "max_vram") -> dict[str, object]:
        return {"kind": kind, "limit_bytes": limit, "device": device}

    vram = {"devices": {"0": {"increase_bytes": 4 * GIB}}}
    report = {
        "tests": [
            {"nodeid": "a", "duration_s": 1.0, "vram": vram, "budgets": [budget(6 * GIB)]},
            {
                "nodeid": "b",
                "duration_s": 1.0,
                "vram": vram,
                # Another GPU's limit and a RAM limit are not this GPU's need.
                "budgets": [budget(GIB, device=1), budget(GIB, kind="max_ram")],
            },
            {
                "nodeid": "c",
                "duration_s": 1.0,
                "vram": vram,
                "budgets": [budget(6 * GIB), budget(5 * GIB, device=0)],
            },
        ]
    }
    needs = needs_from_report(report)
    assert needs["a"] == RecordedNeed(int(4.4 * GIB) + 1, 1.0, 6 * GIB)
    assert needs["a"].planned_bytes == 6 * GIB
    assert needs["b"].budget_bytes is None and needs["b"].planned_bytes == needs["b"].need_bytes
    assert needs["c"].planned_bytes == 5 * GIB
