"""The HTML report (``_html``): parsed back with the standard library's HTML parser."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_hypomnesis.report.compare import CompareError, compare, parse_fail_exprs
from pytest_hypomnesis.report.html import render_html, write_html_atomic
from tests.helpers.htmlpage import NASTY, Page
from tests.helpers.reports import make_budget, make_report, make_test
from tests.helpers.units import GIB, MIB


def _timeline(peak: int, n: int = 50) -> dict[str, Any]:
    return {
        "t_s": [i * 0.01 for i in range(n)],
        "rss_bytes": [100 * MIB + (peak if i == n // 2 else 0) for i in range(n)],
        "vram_bytes": {"0": [None if i == 3 else 2 * MIB * i for i in range(n)]},
    }


def _report() -> dict[str, Any]:
    return make_report(
        [
            make_test("tests/a.py::test_light", ram_increase=MIB),
            make_test(
                "tests/a.py::test_gpu",
                ram_increase=10 * MIB,
                vram={"0": (2 * GIB, 3 * GIB)},
                timeline=_timeline(50 * MIB),
                budgets=[make_budget("max_vram", GIB, 2 * GIB, False)],
                outcome="failed",
            ),
            make_test(
                NASTY,
                ram_increase=300 * MIB,
                timeline=_timeline(MIB),
                budgets=[make_budget("max_ram", GIB, 300 * MIB, True)],
            ),
            make_test("tests/a.py::test_skipped", ram_increase=None, outcome="skipped"),
        ]
    )


def test_table_has_one_row_per_test_heaviest_first() -> None:
    page = Page(render_html(_report()))
    assert [r["nodeid"] for r in page.rows] == [
        "tests/a.py::test_gpu",
        NASTY,
        "tests/a.py::test_light",
        "tests/a.py::test_skipped",
    ]
    assert page.headers == [
        "test", "outcome", "worker", "duration", "ram_peak", "ram", "vram_peak", "vram", "budget"
    ]  # fmt: skip
    gpu = "tests/a.py::test_gpu"
    assert page.cell(gpu, "vram")["text"] == "2.00 GiB"
    assert page.cell(gpu, "vram")["sort"] == str(2 * GIB)
    assert page.cell(gpu, "ram_peak")["text"] == "110.00 MiB"
    assert page.cell(gpu, "budget")["text"] == "vram 200% OVER"
    assert "over" in page.cell(gpu, "budget")["class"]
    assert page.cell(NASTY, "budget")["text"] == "ram 29%"
    assert page.cell("tests/a.py::test_light", "vram")["text"] == "-"
    assert page.cell("tests/a.py::test_light", "vram")["sort"] == ""
    assert page.cell("tests/a.py::test_skipped", "ram")["sort"] == ""
    assert page.cell("tests/a.py::test_light", "budget")["text"] == "-"


def test_one_timeline_chart_per_timeline() -> None:
    # The charts are drawn by the page's script from this data when a row is opened
    # (tests/acceptance/test_html_chromium.py draws them); the data must be exact.
    page = Page(render_html(_report()))
    assert page.svgs == ["heavy-chart"]
    assert sorted(t["id"] for t in page.timelines) == ["tl-1", "tl-2"]
    assert sorted(r["index"] for r in page.rows if r["timeline"] >= 0) == [1, 2]
    gpu = next(t for t in page.timelines if t["nodeid"] == "tests/a.py::test_gpu")
    assert gpu["t_s"] == pytest.approx([i * 0.01 for i in range(50)])
    (label, legend, rss), (gpu_label, gpu_legend, vram) = gpu["series"]
    assert (label, legend) == ("RSS", "RSS (peak 150.00 MiB)")
    assert rss == [100 * MIB + (50 * MIB if i == 25 else 0) for i in range(50)]
    assert (gpu_label, gpu_legend) == ("VRAM GPU 0", "VRAM GPU 0 (peak 98.00 MiB)")
    assert vram == [None if i == 3 else 2 * MIB * i for i in range(50)]  # the gap kept
    assert gpu["t_max"] == "0.49 s"
    assert gpu["ticks"][0] == "0 B" and gpu["ticks"][4] == "157.50 MiB"
    assert "exact" not in gpu  # the samples caught the peak


def test_every_string_is_escaped() -> None:
    text = render_html(_report(), title="<b>my & report</b>")
    assert "<script>alert(1)" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#x27;ü€ 😀" in text
    assert "<b>my" not in text
    page = Page(text)
    assert NASTY in [r["nodeid"] for r in page.rows]  # round-trips through the parser
    assert page.cell(NASTY, "test")["sort"] == NASTY


def test_page_is_self_contained() -> None:
    report = _report()
    report["tests"].append(make_test("tests/u.py::test_url[https://example.com/x]"))
    text = render_html(report, baseline=_report())
    page = Page(text)
    assert page.scripts_with_src == 0
    assert all(url.startswith("#") for _, _, url in page.urls), page.urls
    assert "default-src 'none'" in page.meta_csp
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text)
    assert "@import" not in text
    assert "url(" not in text
    # The only absolute URL in the page is the node id that contains one.
    assert set(re.findall(r"https?://[^\s\"'<&\]]+", text)) == {"https://example.com/x"}


def test_baseline_figures_sit_beside_the_new_ones() -> None:
    new = _report()
    base = make_report(
        [
            make_test("tests/a.py::test_gpu", ram_increase=10 * MIB, vram={"0": (GIB, 3 * GIB)}),
            make_test("tests/a.py::test_light", ram_increase=MIB),
            make_test("tests/a.py::test_removed"),
        ],
        scope="test",
    )
    comparison = compare(base, new, parse_fail_exprs("vram:10%"))
    page = Page(render_html(new, baseline=base, comparison=comparison))
    assert page.headers[4:7] == ["ram_peak", "ram_peak_base", "ram_peak_change"]
    assert len(page.headers) == 4 + 4 * 3 + 1
    gpu = "tests/a.py::test_gpu"
    assert page.cell(gpu, "vram_base")["text"] == "1.00 GiB"
    assert page.cell(gpu, "vram_change")["text"] == "+1.00 GiB (+100.0%)"
    assert page.cell(gpu, "vram_change")["class"] == "regressed"
    assert page.cell(gpu, "ram_change")["class"] == "change"
    assert page.cell(NASTY, "ram_base")["text"] == "-"  # only in this run
    assert "comparison" in page.ids
    text = render_html(new, baseline=base, comparison=comparison)
    assert "1 regression" in text
    assert "warning: settings differ: scope" in text
    assert "tests/a.py::test_removed" in text


def test_baseline_alone_computes_the_comparison() -> None:
    page = Page(render_html(_report(), baseline=_report()))
    assert page.cell("tests/a.py::test_gpu", "vram_change")["text"] == "+0 B (+0.0%)"


def test_report_without_gpu_or_timelines() -> None:
    record = make_test("t::a", ram_increase=5 * MIB)
    record["vram"] = None
    text = render_html(make_report([record], gpu_names=()))
    page = Page(text)
    assert page.svgs == ["heavy-chart"]
    assert "no timelines recorded" in text
    assert "no GPU" in text
    assert page.cell("t::a", "vram_peak")["text"] == "-"


def test_empty_report_renders() -> None:
    page = Page(render_html(make_report([])))
    assert page.rows == []
    assert page.svgs == ["heavy-chart"]


def test_heavy_chart_shows_the_top_tests_only() -> None:
    report = make_report([make_test(f"t::n{i}", ram_increase=(i + 1) * MIB) for i in range(40)])
    text = render_html(report, heavy_top=5)
    chart = text[text.index('<svg class="heavy-chart"') : text.index("</svg>")]
    assert chart.count("<rect") == 1 + 5  # the RAM legend swatch (no GPU), one bar per test
    assert "t::n39" in chart
    assert "t::n34" not in chart


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda r: r["tests"][1]["timeline"].update(rss_bytes=[1]), "tests[1].timeline.rss_bytes"),
        (lambda r: r["tests"][0].pop("nodeid"), "tests[0] has no string 'nodeid'"),
        (lambda r: r.update(tests=None), "'tests' must be a list"),
    ],
)
def test_malformed_input_names_the_field(mutate: Any, needle: str) -> None:
    report = _report()
    mutate(report)
    with pytest.raises(CompareError) as info:
        render_html(report)
    assert needle in str(info.value)


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.html"
    old_umask = os.umask(0o022)  # the written file gets the mode any new file would
    try:
        write_html_atomic(target, "<p>old ü</p>")
    finally:
        os.umask(old_umask)
    assert target.read_text(encoding="utf-8") == "<p>old ü</p>"
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_html_atomic(target, "<p>new</p>")
    assert target.read_text(encoding="utf-8") == "<p>old ü</p>"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    monkeypatch.undo()
    write_html_atomic(target, render_html(_report()))
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_without_javascript_the_first_rows_stand_in() -> None:
    tests = [make_test(f"t.py::t{i}", ram_increase=i * MIB) for i in range(150)]
    tests.append(make_test(NASTY, outcome="failed"))
    text = render_html(make_report(tests))
    assert '<div id="hmn-live" hidden>' in text  # the script's controls and table
    fallback = text[text.index("<noscript>") : text.index("</noscript>")]
    assert "the first 100 of 151 tests as served (failures first, then heaviest)" in fallback
    rows = [html.unescape(r) for r in re.findall(r"<tr><td>(.*?)</td>", fallback)]
    assert rows[:3] == [NASTY, "t.py::t149", "t.py::t148"]
    assert len(rows) == 100
    assert "<script>alert" not in fallback
    assert '<td class="outcome-failed">' not in fallback  # classes only where the data has one
    small = render_html(_report())
    assert "all 4 tests as served" in small
    assert '<td class="budget over">vram 200% OVER</td>' in small
