"""The test record (``pytest_hypomnesis.record``): the builder, and one rule for a total
over devices, seen the same way by every consumer."""

from __future__ import annotations

import re
from typing import Any, cast

import pytest

from pytest_hypomnesis._units import format_bytes_iec
from pytest_hypomnesis.plugin.budgets import Budget, judge
from pytest_hypomnesis.plugin.engine import Engine
from pytest_hypomnesis.plugin.fixtures import MeasuredBlock
from pytest_hypomnesis.record import (
    MeasuredTestRecord,
    SpanRecord,
    budget_status,
    heaviness,
    measured_test_record,
    over_budget,
    ram_record,
    vram_device_record,
    vram_record,
    vram_total_bytes,
)
from pytest_hypomnesis.report.compare import compare, metric_bytes, parse_fail_exprs
from pytest_hypomnesis.report.html import render_html
from pytest_hypomnesis.report.junit import junit_properties
from pytest_hypomnesis.report.schema import validate_test_record
from pytest_hypomnesis.report.table import summary_lines
from tests.helpers.htmlpage import Page
from tests.helpers.reports import make_report
from tests.helpers.units import GIB, MIB


def _half_known_span(gpu0_increase: int = GIB) -> SpanRecord:
    """GPU 0 measured (``gpu0_increase`` over 1 GiB), GPU 1 unknown (no reading)."""
    return {
        "duration_s": 0.25,
        "ram": ram_record(100 * MIB, 110 * MIB, 105 * MIB, "hwm"),
        "vram": vram_record(
            "nvml",
            {
                "0": vram_device_record(GIB, GIB + gpu0_increase, GIB, 3 * GIB, 5),
                "1": vram_device_record(None, None, None, 2 * GIB, 0),
            },
            None,
            None,
        ),
        "timeline": None,
    }


def _record(span: SpanRecord, nodeid: str = "t.py::test_two_gpus") -> MeasuredTestRecord:
    return measured_test_record(
        span, nodeid=nodeid, outcome="passed", worker="master", scope="call", budgets=[]
    )


def test_builder_gives_a_valid_record_with_the_documented_key_order() -> None:
    record = _record(_half_known_span())
    assert validate_test_record(record) is record
    assert list(record) == [
        "nodeid",
        "outcome",
        "worker",
        "scope",
        "duration_s",
        "ram",
        "vram",
        "budgets",
        "budget_failed",
    ]
    assert record["ram"]["increase_bytes"] == 10 * MIB
    assert record["vram"]["devices"]["0"]["increase_bytes"] == GIB
    assert record["vram"]["devices"]["1"]["increase_bytes"] is None
    timed = _record(
        {**_half_known_span(), "timeline": {"t_s": [], "rss_bytes": [], "vram_bytes": {}}}
    )
    assert list(timed)[-1] == "timeline"


def test_increase_is_never_negative_and_unknown_stays_unknown() -> None:
    assert ram_record(10, 5, 5, "hwm")["increase_bytes"] == 0
    assert ram_record(None, 5, 5, "hwm")["increase_bytes"] is None
    assert vram_device_record(3, None, None, None, 0)["increase_bytes"] is None


def test_total_over_devices_unknown_anywhere_is_unknown() -> None:
    span = _half_known_span()
    assert vram_total_bytes(span["vram"], "peak_bytes") is None
    assert vram_total_bytes(span["vram"], "increase_bytes") is None
    both = vram_record(
        "nvml",
        {
            "0": vram_device_record(GIB, 2 * GIB, GIB, None, 2),
            "1": vram_device_record(0, MIB, 0, None, 2),
        },
        None,
        None,
    )
    assert vram_total_bytes(both, "peak_bytes") == 2 * GIB + MIB
    assert vram_total_bytes(vram_record(None, {}, None, "no GPU"), "peak_bytes") is None


def test_one_record_half_unknown_is_unknown_in_all_five_consumers() -> None:
    """GPU0 = 1 GiB, GPU1 = unknown: budgets, summary table, HTML, gate and JUnit all say
    the total is unknown (before, three of them summed what was known: 1 GiB)."""
    span = _half_known_span()
    record = _record(span)

    # Budgets: not checked, never a pass on a partial sum.
    (verdict,) = judge([Budget("max_vram", 2 * GIB)], span, scope="call", strict=False)
    assert verdict["measured_bytes"] is None and verdict["passed"] is None
    assert verdict["message"] is not None and "not checked" in verdict["message"]
    # ... and on the measured device alone, checked.
    (on_gpu0,) = judge([Budget("max_vram", 2 * GIB, device=0)], span, scope="call", strict=False)
    assert on_gpu0["measured_bytes"] == GIB and on_gpu0["passed"] is True

    # Summary table: the VRAM columns are "-".
    header, row = summary_lines([record], top=0)
    cells = dict(zip(re.split(r"\s{2,}", header), re.split(r"\s{2,}", row), strict=True))
    assert cells["RAM increase"] == format_bytes_iec(10 * MIB)
    assert cells["VRAM peak"] == cells["VRAM increase"] == "-"

    # HTML: the VRAM cells are empty-sorted and "-".
    page = Page(render_html(make_report([cast(Any, record)])))
    for key in ("vram_peak", "vram"):
        cell = page.cell(record["nodeid"], key)
        assert cell["sort"] == "" and cell["text"] == "-"

    # Gate: no figure, so growth on GPU 0 alone is no regression.
    assert metric_bytes(record, "vram") is None
    assert metric_bytes(record, "vram_peak") is None
    grown = _record(_half_known_span(gpu0_increase=2 * GIB))
    comparison = compare(
        make_report([cast(Any, record)]),
        make_report([cast(Any, grown)]),
        parse_fail_exprs("vram:0,vram_peak:0"),
    )
    assert not comparison.failed

    # JUnit: the totals are left out, the per-device figures stay.
    props = dict(junit_properties(record))
    assert "hypomnesis_vram_peak_bytes" not in props
    assert "hypomnesis_vram_increase_bytes" not in props
    assert props["hypomnesis_gpu0_vram_increase_bytes"] == str(GIB)
    assert "hypomnesis_gpu1_vram_increase_bytes" not in props


def test_memory_report_block_reads_the_same_total() -> None:
    span = _half_known_span()

    class _OneSpanEngine:
        def begin(self) -> object:
            return object()

        def end(self, _span: object) -> SpanRecord:
            return span

    block = MeasuredBlock(cast(Engine, _OneSpanEngine()))
    with block as r:
        pass
    assert r.vram_peak_bytes is None and r.vram_increase_bytes is None
    assert r.vram[0].increase_bytes == GIB and r.vram[1].peak_bytes is None
    assert r.ram.increase_bytes == r.ram_increase_bytes == 10 * MIB


def test_heaviness_orders_by_vram_then_ram_then_nodeid() -> None:
    light = _record(
        {**_half_known_span(), "vram": vram_record(None, {}, None, "no GPU")}, "t.py::light"
    )
    gpu = _record(
        {
            **_half_known_span(),
            "vram": vram_record("nvml", {"0": vram_device_record(0, MIB, 0, None, 1)}, None, None),
        },
        "t.py::gpu",
    )
    assert sorted([light, gpu], key=heaviness) == [gpu, light]
    assert heaviness(light) < heaviness({**light, "nodeid": "t.py::m"})


@pytest.mark.parametrize(
    ("passed", "status", "over"),
    [(True, "passed", False), (False, "failed", True), (None, "not_checked", False)],
)
def test_budget_status_and_over_budget(passed: bool | None, status: str, over: bool) -> None:
    (verdict,) = judge([Budget("max_ram", GIB)], _half_known_span(), scope="call", strict=False)
    verdict["passed"] = passed
    assert budget_status(verdict) == status
    record = _record(_half_known_span())
    record["budgets"] = [verdict]
    # Over budget only when the budget is what failed the test.
    assert over_budget(record) is False
    record["budget_failed"] = passed is False
    assert over_budget(record) is over
    assert over_budget({"budgets": None}) is False
    # A report written before the flag: a failed test with a failing budget.
    legacy: Any = {k: v for k, v in record.items() if k != "budget_failed"}
    assert over_budget({**legacy, "outcome": "failed"}) is over
    assert over_budget({**legacy, "outcome": "skipped"}) is False
