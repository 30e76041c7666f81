"""The summary table shared by the plugin and ``hmn report``."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_hypomnesis.record import MeasuredTestRecord, over_budget
from pytest_hypomnesis.report.table import budget_cell, format_interval, header_line, summary_lines
from tests.helpers.typedrecords import make_record, make_report
from tests.helpers.units import MIB


def _rec(nodeid: str, ram_mib: int, vram_mib: int | None = None) -> MeasuredTestRecord:
    record = make_record(nodeid, budgets=[])
    record["ram"]["increase_bytes"] = ram_mib * MIB
    if vram_mib is None:
        record["vram"]["devices"] = {}
    else:
        record["vram"]["devices"]["0"]["increase_bytes"] = vram_mib * MIB
        record["vram"]["devices"]["0"]["peak_bytes"] = vram_mib * MIB
    return record


def test_heaviest_first_vram_then_ram() -> None:
    tests = [_rec("a", 500), _rec("b", 10, 100), _rec("c", 20, 100), _rec("d", 900)]
    lines = summary_lines(tests, top=0)
    names = [line.split()[0] for line in lines[1:]]
    assert names == ["c", "b", "d", "a"]


def test_table_is_aligned_and_stable() -> None:
    tests = [_rec("t.py::test_small", 1), _rec("t.py::test_big", 1536, 2048)]
    assert summary_lines(tests, top=10) == [
        "test                RAM peak  RAM increase  VRAM peak  VRAM increase  budget  duration",
        "t.py::test_big    150.00 MiB      1.50 GiB   2.00 GiB       2.00 GiB  -          0.25s",
        "t.py::test_small  150.00 MiB      1.00 MiB          -              -  -          0.25s",
    ]


def test_top_limits_rows_and_says_how_many_are_hidden() -> None:
    tests = [_rec(f"t{i}", i) for i in range(5)]
    lines = summary_lines(tests, top=2)
    assert len(lines) == 4
    assert lines[-1] == "3 more not shown (top 2 of 5; top 0 shows all)"
    assert len(summary_lines(tests, top=0)) == 6


def test_budget_failures_are_marked_and_counted() -> None:
    failing = make_record("t.py::test_over")
    passing = _rec("t.py::test_ok", 1)
    lines = summary_lines([failing, passing], top=10)
    assert "vram 200% OVER" in lines[1]
    assert lines[-1] == "1 over budget"


def test_verbose_adds_columns() -> None:
    lines = summary_lines([_rec("a", 1)], top=10, verbose=True)
    for title in ("RAM start", "RAM end", "outcome", "worker"):
        assert title in lines[0]
    assert "master" in lines[1]


def test_source_column_for_merged_reports() -> None:
    lines = summary_lines([_rec("a", 1), _rec("b", 2)], top=10, sources=["s1.json", "s2.json"])
    assert lines[0].split()[:2] == ["test", "source"]
    assert lines[1].split()[:2] == ["b", "s2.json"]
    with pytest.raises(ValueError, match="one report per test"):
        summary_lines([_rec("a", 1)], top=1, sources=[])


def test_no_tests_no_lines() -> None:
    assert summary_lines([], top=10) == []


@pytest.mark.parametrize(
    ("budgets", "expected"),
    [
        ([], "-"),
        ([("max_ram", 100, 45, True, None)], "ram 45%"),
        ([("max_vram", 100, 130, False, 0)], "vram[0] 130% OVER"),
        ([("max_vram", 100, None, None, None)], "vram n/c"),
        ([("max_vram", 100, None, False, None)], "vram n/c FAIL"),
        ([("max_ram", 0, 0, True, None), ("max_vram", 10, 5, True, None)], "ram, vram 50%"),
    ],
)
def test_budget_cell(
    budgets: list[tuple[str, int, int | None, bool | None, int | None]], expected: str
) -> None:
    record: Any = {
        "outcome": "failed",
        "budgets": [
            {"kind": k, "limit_bytes": lim, "measured_bytes": m, "passed": p, "device": d}
            for k, lim, m, p, d in budgets
        ],
    }
    assert budget_cell(record) == expected


@pytest.mark.parametrize("outcome", ["skipped", "xfailed", "xpassed", "failed"])
def test_a_budget_that_did_not_fail_the_test_is_not_counted(outcome: str) -> None:
    """Issue 11: a skipped (xfailed, xpassed, failed-on-its-own) test that was over budget
    is not in "N over budget", and its cell does not say OVER."""
    record = make_record("t.py::test_x", outcome=outcome, budget_failed=False)
    assert not over_budget(record)
    assert budget_cell(record) == "vram 200% (over)"
    assert not any("over budget" in line for line in summary_lines([record], top=10))


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.01, "10ms"), (0.0005, "500us"), (2.0, "2s"), (0.005, "5ms")]
)
def test_format_interval(seconds: float, text: str) -> None:
    assert format_interval(seconds) == text


def test_header_line_names_methods_devices_and_driver() -> None:
    report = make_report()
    report["devices"] = [
        {
            "index": 0,
            "name": "NVIDIA Fake",
            "total_bytes": 16 * 1024 * MIB,
            "driver_version": "555.42.06",
        }
    ]
    assert header_line(report) == (
        "hypomnesis: scope call; RAM peak: kernel high-water mark (exact); "
        "VRAM: NVML per-process every 10ms; GPU 0 NVIDIA Fake (16.00 GiB); driver 555.42.06"
    )


def test_header_line_without_gpu_says_why() -> None:
    report = make_report([_rec("a", 1)])
    report["devices"] = []
    report["tests"][0]["ram"]["method"] = "sampled"
    report["tests"][0]["vram"]["source"] = None
    report["machine"]["gpu_unavailable_reason"] = "NVML: Driver Not Loaded"
    assert header_line(report) == (
        "hypomnesis: scope call; RAM peak: sampled every 10ms; no GPU (NVML: Driver Not Loaded)"
    )


def test_long_nodeids_are_cut_in_the_middle_unless_verbose() -> None:
    from pytest_hypomnesis.report.table import MAX_NODEID_CHARS, shorten_nodeid

    long_id = "tests/test_" + "x" * 200 + ".py::test_" + "y" * 100 + "[case]"
    short = shorten_nodeid(long_id)
    assert len(short) == MAX_NODEID_CHARS
    assert short.startswith("tests/test_") and short.endswith("[case]")
    assert "…" in short
    assert shorten_nodeid("tests/a.py::t") == "tests/a.py::t"
