"""The HTML report a user can trust (issue 12): pytest's counts in the heading (errors
included), failures first, chart labels that keep the file name, no VRAM legend without a
GPU, and the exact RAM peak marked on a timeline whose samples missed it."""

from __future__ import annotations

import json
import re

import pytest

from pytest_hypomnesis.report.html import chart_label, heading_counts, render_html
from tests.helpers.htmlpage import Page
from tests.helpers.reports import make_budget, make_report, make_test
from tests.helpers.units import GIB, MIB

PLUGIN_RUN = """
import time
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("setup fails")

def test_error(broken):
    pass

def test_fails():
    assert False

@pytest.mark.skip(reason="no")
def test_skipped():
    pass

@pytest.mark.max_ram("10MiB")
def test_over():
    blob = b"x" * (64 << 20)

def test_spike():
    time.sleep(0.12)
    blob = b"x" * (96 << 20)  # resident for well under one 50 ms sampling interval
    del blob
    time.sleep(0.12)

def test_ok():
    pass
"""


@pytest.mark.usefixtures("inner_pytester_run")
def test_plugin_report_counts_equal_pytests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_page=PLUGIN_RUN)
    result = pytester.runpytest(
        "--hypomnesis-json=r.json",
        "--hypomnesis-html=r.html",
        "--hypomnesis-timeline",
        "--hypomnesis-interval=50ms",
    )
    counts = result.parseoutcomes()
    assert counts == {"failed": 2, "passed": 2, "skipped": 1, "errors": 1}
    data = json.loads((pytester.path / "r.json").read_text())
    assert data["outcomes"] == {"error": 1, "failed": 2, "skipped": 1, "passed": 2}
    page = (pytester.path / "r.html").read_text()
    heading = re.search(r'<p class="counts">(.*?)</p>', page)
    assert heading is not None
    assert heading.group(1) == ("2 failed, 2 passed, 1 skipped, 1 error; 4 measured; 1 over budget")
    # Failures first in the table.
    rows = [r["nodeid"] for r in Page(page).rows]
    assert {r.split("::")[1] for r in rows[:2]} == {"test_over", "test_fails"}
    assert "VRAM increase</text>" not in page  # no GPU: no VRAM legend
    spike = next(t for t in data["tests"] if t["nodeid"].endswith("test_spike"))
    sampled = max(v for v in spike["timeline"]["rss_bytes"] if v is not None)
    if spike["ram"]["method"] in ("rusage", "hwm") and spike["ram"]["peak_bytes"] > sampled:
        assert "exact peak" in page and "sampled peak" in page


def test_heading_without_pytests_counts_falls_back() -> None:
    tests = [make_test("a.py::t1", outcome="failed"), make_test("a.py::t2")]
    assert heading_counts(make_report(tests), tests) == "2 tests; 1 failed; 0 over budget"


def test_chart_labels_keep_the_file_name() -> None:
    nodeid = "tests/integration/models/test_transformer.py::TestTraining::test_step[bf16-64]"
    label = chart_label(nodeid)
    assert len(label) <= 52
    assert label.startswith("test_transformer.py::")
    assert label.endswith("test_step[bf16-64]")
    assert chart_label("a.py::t") == "a.py::t"


def test_failures_first_and_vram_legend_only_with_a_gpu() -> None:
    over = make_test(
        "a.py::test_over",
        ram_increase=5 * MIB,
        outcome="failed",
        budgets=[make_budget("max_ram", MIB, 5 * MIB, False)],
    )
    heavy = make_test("a.py::test_heavy", ram_increase=900 * MIB)
    page = render_html(make_report([heavy, over]))
    assert [r["nodeid"] for r in Page(page).rows] == ["a.py::test_over", "a.py::test_heavy"]
    assert "VRAM increase</text>" not in page
    gpu = make_test("a.py::test_gpu", vram={"0": (GIB, 2 * GIB)})
    assert "VRAM increase</text>" in render_html(make_report([gpu]))


def test_timeline_marks_the_exact_peak_the_samples_missed() -> None:
    timeline = {
        "t_s": [0.0, 0.05, 0.1],
        "rss_bytes": [40 * MIB, 46 * MIB, 41 * MIB],
        "vram_bytes": {},
    }
    test = make_test("a.py::test_spike", ram_peak=96 * MIB, timeline=timeline)
    page = render_html(make_report([test]))
    assert "exact peak 96.00 MiB" in page
    assert "RSS (sampled peak 46.00 MiB)" in page
    caught = make_test("a.py::test_caught", ram_peak=46 * MIB, timeline=timeline)
    assert "exact peak" not in render_html(make_report([caught]))
