"""The regression gate (``_compare``): EXPR parsing, thresholds, missing tests, settings
mismatches, bad baselines and the readable lines."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pytest_hypomnesis.report.compare import (
    BaselineError,
    CompareError,
    ThresholdError,
    compare,
    format_comparison,
    load_baseline,
    parse_fail_exprs,
)
from pytest_hypomnesis.report.schema import validate_report
from tests.helpers.reports import load_error, make_report, make_test, write_report
from tests.helpers.units import GIB, KIB, MIB


def _one(before: dict[str, Any], after: dict[str, Any], expr: str) -> list[str]:
    """Regressed metrics of one test measured twice, under ``expr``."""
    result = compare(make_report([before]), make_report([after]), parse_fail_exprs(expr))
    return [r.change.metric for r in result.regressions]


# --- EXPR parsing -------------------------------------------------------------------------


def test_parse_percent_and_size_exprs() -> None:
    thresholds = parse_fail_exprs("ram:10%, vram_peak:64MiB,ram_peak:2.5%,vram:1.5GB,ram:0")
    assert [(t.metric, t.percent, t.size_bytes) for t in thresholds] == [
        ("ram", Decimal(10), None),
        ("vram_peak", None, 64 * MIB),
        ("ram_peak", Decimal("2.5"), None),
        ("vram", None, 1_500_000_000),
        ("ram", None, 0),
    ]
    assert [t.text for t in thresholds][:2] == ["ram:10%", "vram_peak:64MiB"]


@pytest.mark.parametrize(
    "text",
    ["", "  ", "ram", "ram:", ":10%", "rss:10%", "RAM:10%", "ram:-5%", "ram:10%%", "ram:x%",
     "ram:10G", "ram:ten", "ram:10%,", "ram:1e3MB", "ram_increase:5MiB"],
)  # fmt: skip
def test_bad_exprs_give_one_line_naming_the_expression(text: str) -> None:
    with pytest.raises(ThresholdError) as info:
        parse_fail_exprs(text)
    message = str(info.value)
    assert "\n" not in message
    assert "METRIC:N% or METRIC:SIZE" in message
    assert "ram, ram_peak, vram, vram_peak" in message
    part = text.split(",")[-1].strip() if text.strip() else text
    assert repr(part) in message


def test_bad_expr_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown metric 'rss'"):
        parse_fail_exprs("ram:10%,rss:1MiB")


# --- thresholds: over and under each kind -------------------------------------------------


@pytest.mark.parametrize(
    ("after_increase", "regressed"),
    [(10 * MIB + 1, True), (10 * MIB, False), (9 * MIB, False), (0, False)],
)
def test_size_threshold_fires_only_above_the_size(after_increase: int, regressed: bool) -> None:
    before = make_test("t::a", ram_increase=0)
    after = make_test("t::a", ram_increase=after_increase)
    assert _one(before, after, "ram:10MiB") == (["ram"] if regressed else [])


@pytest.mark.parametrize(
    ("after_increase", "regressed"),
    [(111 * MIB, True), (110 * MIB, False), (105 * MIB, False), (50 * MIB, False)],
)
def test_percent_threshold_fires_only_above_the_share(after_increase: int, regressed: bool) -> None:
    before = make_test("t::a", ram_increase=100 * MIB)
    after = make_test("t::a", ram_increase=after_increase)
    assert _one(before, after, "ram:10%") == (["ram"] if regressed else [])


def test_percent_threshold_ignores_growth_under_the_noise_floor() -> None:
    before = make_test("t::a", ram_increase=64 * KIB)
    after = make_test("t::a", ram_increase=MIB)  # +1500 %, but only 960 KiB
    assert _one(before, after, "ram:10%") == []
    # The same growth trips a size threshold: the floor applies to percentages only.
    assert _one(before, after, "ram:512KiB") == ["ram"]


@pytest.mark.parametrize(
    ("after_increase", "regressed"), [(2 * MIB, True), (MIB, False), (512 * KIB, False)]
)
def test_percent_of_a_zero_baseline_means_growth_above_the_floor(
    after_increase: int, regressed: bool
) -> None:
    before = make_test("t::a", ram_increase=0)
    after = make_test("t::a", ram_increase=after_increase)
    assert _one(before, after, "ram:10%") == (["ram"] if regressed else [])


def test_zero_size_threshold_fails_on_any_growth() -> None:
    assert _one(make_test("t::a"), make_test("t::a", ram_increase=4096), "ram:0") == ["ram"]


def test_peak_and_vram_metrics_sum_devices() -> None:
    before = make_test("t::g", ram_peak=500 * MIB, vram={"0": (GIB, 2 * GIB), "1": (0, GIB)})
    after = make_test(
        "t::g", ram_peak=600 * MIB, vram={"0": (GIB, 2 * GIB), "1": (200 * MIB, GIB + 200 * MIB)}
    )
    # vram 1 GiB -> 1.2 GiB (+19.5 %), vram_peak 3 GiB -> 3.2 GiB (+6.5 %), ram_peak +20 %.
    assert _one(before, after, "vram:10%") == ["vram"]
    assert _one(before, after, "vram_peak:10%") == []
    assert _one(before, after, "vram_peak:100MiB") == ["vram_peak"]
    assert _one(before, after, "ram_peak:15%,ram:1MiB") == ["ram_peak"]


def test_shrinking_is_never_a_regression() -> None:
    before = make_test("t::a", ram_increase=500 * MIB, vram={"0": (GIB, GIB)})
    after = make_test("t::a", ram_increase=MIB, vram={"0": (0, 0)})
    assert _one(before, after, "ram:0,vram:0,ram_peak:0,vram_peak:0") == []


def test_every_expression_is_checked_on_its_own() -> None:
    before = make_test("t::a", ram_increase=100 * MIB)
    after = make_test("t::a", ram_increase=130 * MIB)
    result = compare(
        make_report([before]), make_report([after]), parse_fail_exprs("ram:10%,ram:20MiB,ram:1GiB")
    )
    assert [r.threshold.text for r in result.regressions] == ["ram:10%", "ram:20MiB"]
    assert result.failed


def test_a_figure_missing_on_either_side_is_not_compared() -> None:
    gpu = make_test("t::a", vram={"0": (GIB, GIB)})
    no_gpu = make_test("t::a")  # vram.devices == {}
    null_vram = {**make_test("t::a"), "vram": None}
    for before, after in ((no_gpu, gpu), (gpu, no_gpu), (null_vram, gpu), (gpu, null_vram)):
        result = compare(make_report([before]), make_report([after]), parse_fail_exprs("vram:0"))
        assert not result.failed
        change = result.rows[0].changes["vram"]
        assert change.change_bytes is None
        assert change.change_percent is None


# --- test sets -----------------------------------------------------------------------------


def test_tests_on_one_side_are_listed_not_failed() -> None:
    base = make_report([make_test("t::kept"), make_test("t::gone"), make_test("t::gone2")])
    new = make_report([make_test("t::added", ram_increase=GIB), make_test("t::kept")])
    result = compare(base, new, parse_fail_exprs("ram:1MiB"))
    assert not result.failed
    assert [r.nodeid for r in result.rows] == ["t::kept"]
    assert result.only_in_base == ("t::gone", "t::gone2")
    assert result.only_in_new == ("t::added",)
    lines = format_comparison(result)
    assert lines[0] == "compared 1 test with the baseline (ram:1MiB): no regression"
    assert lines[1:] == [
        "only in the baseline (2):",
        "  t::gone",
        "  t::gone2",
        "only in this run (1):",
        "  t::added",
    ]


def test_long_listings_are_cut_unless_asked() -> None:
    base = make_report([make_test(f"t::old{i}") for i in range(30)])
    result = compare(base, make_report([]), [])
    assert format_comparison(result)[-1] == "  ... and 10 more"
    assert len(format_comparison(result, max_listed=None)) == 1 + 1 + 30


def test_duplicate_nodeids_count_with_their_largest_figure() -> None:
    base = make_report([make_test("t::a", ram_increase=10 * MIB)])
    new = make_report(
        [
            make_test("t::a", ram_increase=50 * MIB, vram={"0": (None, None)}),
            make_test("t::a", ram_increase=5 * MIB, vram={"0": (MIB, MIB)}),
        ]
    )
    result = compare(base, new, parse_fail_exprs("ram:20MiB"))
    assert len(result.rows) == 1
    assert result.rows[0].changes["ram"].after_bytes == 50 * MIB
    assert result.rows[0].changes["vram"].after_bytes == MIB
    assert [r.nodeid for r in result.regressions] == ["t::a"]


# --- settings ------------------------------------------------------------------------------


def test_same_settings_give_no_warning() -> None:
    assert compare(make_report([]), make_report([]), []).warnings == ()
    older = make_report([])
    del older["settings"]["interval_s"], older["settings"]["devices"]
    assert compare(older, make_report([], watched=(1,), interval_s=1.0), []).warnings == ()


@pytest.mark.parametrize(
    ("new_kwargs", "needle"),
    [
        ({"scope": "test"}, "scope 'call' in the baseline, 'test' in this run"),
        ({"watched": (0, 1)}, "watched devices [0] in the baseline, [0, 1] in this run"),
        ({"interval_s": 0.005}, "sampling interval 0.01 in the baseline, 0.005 in this run"),
        ({"gpu_names": ("NVIDIA A100",)}, "GPU 0 differs: 'NVIDIA H100 80GB HBM3'"),
        ({"watched": None}, "watched devices [0] in the baseline, all visible in this run"),
    ],
)
def test_mismatched_settings_warn(new_kwargs: dict[str, Any], needle: str) -> None:
    base = make_report([make_test("t::a")])
    new = make_report([make_test("t::a")], **new_kwargs)
    result = compare(base, new, parse_fail_exprs("ram:10%"))
    assert len(result.warnings) == 1
    assert needle in result.warnings[0]
    assert not result.failed
    assert format_comparison(result)[1] == f"warning: {result.warnings[0]}"


# --- formatting ----------------------------------------------------------------------------


def test_regression_line_shows_before_after_and_change() -> None:
    before = make_test("tests/test_a.py::test_x", ram_increase=10 * MIB)
    after = make_test("tests/test_a.py::test_x", ram_increase=62 * MIB)
    result = compare(make_report([before]), make_report([after]), parse_fail_exprs("ram:10MiB"))
    assert format_comparison(result) == [
        "compared 1 test with the baseline (ram:10MiB): 1 regression",
        "tests/test_a.py::test_x  ram +52.00 MiB: 10.00 MiB → 62.00 MiB (+520.0%) > ram:10MiB",
    ]


def test_regression_from_zero_says_so() -> None:
    before = make_test("t::g", vram={"0": (0, 0)})
    after = make_test("t::g", vram={"0": (3 * GIB, 3 * GIB)})
    result = compare(make_report([before]), make_report([after]), parse_fail_exprs("vram:5%"))
    assert format_comparison(result)[1] == (
        "t::g  vram +3.00 GiB: 0 B → 3.00 GiB (from 0) > vram:5%"
    )


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (
            lambda r: r.update(schema="other/2"),
            "schema 'other/2' is not 'pytest-hypomnesis/2' or 'pytest-hypomnesis/1'",
        ),
        (lambda r: r.update(tests={}), "'tests' must be a list"),
        (lambda r: r["tests"][0].pop("nodeid"), "tests[0] has no string 'nodeid'"),
        (lambda r: r["tests"][0]["ram"].update(peak_bytes="1GiB"), "tests[0].ram.peak_bytes"),
        (lambda r: r["tests"][0].update(ram=[1]), "tests[0].ram: expected an object"),
        (lambda r: r["tests"][0]["vram"].update(devices=[]), "tests[0].vram.devices"),
    ],
)
def test_malformed_reports_name_the_field(mutate: Any, needle: str) -> None:
    broken = make_report([make_test("t::a")])
    mutate(broken)
    with pytest.raises(CompareError) as info:
        compare(broken, make_report([make_test("t::a")]), [])
    assert needle in str(info.value)
    assert str(info.value).startswith("baseline: ")


def test_unknown_fields_are_tolerated() -> None:
    record = {**make_test("t::a"), "future_field": {"x": 1}, "timeline": {"t_s": []}}
    report = {**make_report([record]), "extra": True}
    assert compare(report, report, parse_fail_exprs("ram:0")).failed is False


def test_factory_reports_validate() -> None:
    # Guards the shared factory against drift from the plugin's JSON validator.
    validate_report(make_report([make_test("t::a", vram={"0": (MIB, 2 * MIB)})]))


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "no such file"),
        ("", "empty file"),
        ("{not json", "not valid JSON"),
        (
            '{"schema": "pytest-benchmark/4"}',
            "is not 'pytest-hypomnesis/2' or 'pytest-hypomnesis/1'",
        ),
        ("[1, 2]", "expected an object"),
    ],
)
def test_bad_baseline_files_give_one_clear_error(
    tmp_path: Path, content: str | None, needle: str
) -> None:
    path = tmp_path / "base.json"
    message = load_error(path, content, load_baseline, BaselineError)
    assert message.startswith(f"cannot use baseline {path}")
    assert needle in message


def test_baseline_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="is a directory"):
        load_baseline(tmp_path)


def test_good_baseline_loads(tmp_path: Path) -> None:
    report = make_report([make_test("t::a", ram_increase=MIB)])
    loaded = load_baseline(write_report(tmp_path / "base.json", report))
    assert compare(loaded, report, parse_fail_exprs("ram:0")).rows[0].nodeid == "t::a"
