"""The HTML report in a real browser: headless Chromium (Debian's ``chromium`` package).

The page builds its table rows (one page at a time) and its timeline charts with its own
script, from data embedded in the page. It carries a self-test run by the fragment
``#selftest``: it clicks column titles, checks the order of every row and of the page shown,
turns the page, types into the filter, opens a timeline, and collects script errors, console
errors and CSP-blocked loads into ``<pre id="hmn-selftest">``. ``--dump-dom`` hands back the
DOM after that ran, so the rows and charts the script built are checked against the data.
Chromium's own console log (stderr) is checked too. The screenshot is kept as an artifact:
its path is recorded as the ``screenshot`` property (JUnit XML) and, when
``HYPOMNESIS_ARTIFACT_DIR`` is set, the PNG is copied there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_hypomnesis.report.compare import compare, parse_fail_exprs
from pytest_hypomnesis.report.html import render_html, write_html_atomic
from tests.helpers.chromium import HEADLESS_FLAGS
from tests.helpers.htmlpage import NASTY, Page
from tests.helpers.reports import make_budget, make_report, make_test
from tests.helpers.units import GIB, MIB

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not found: install Debian's package (apt-get install -y chromium)",
)
TIMEOUT_S = 60
# Chromium's console log on stderr: the test checks it for errors.
FLAGS = (*HEADLESS_FLAGS, "--enable-logging=stderr", "--v=0")


def _chromium(tmp_path: Path, *args: str) -> tuple[str, str]:
    """Run Chromium once (fresh profile); kill its whole process group on timeout."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,  # its own group, so the renderers die with it
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish within {TIMEOUT_S} s: {' '.join(args)}")
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {err[-2000:]}"
    return out, err


def _selftest(tmp_path: Path, page: Path) -> tuple[dict[str, Any], str, str]:
    dom, log = _chromium(
        tmp_path, "--virtual-time-budget=5000", "--dump-dom", page.as_uri() + "#selftest"
    )
    start = dom.index('<pre id="hmn-selftest">') + len('<pre id="hmn-selftest">')
    text = dom[start : dom.index("</pre>", start)]
    result: dict[str, Any] = json.loads(
        text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    )
    return result, dom, log


def _selftest_names(*, paged: bool) -> list[str]:
    names = ["ram_peak descending", "ram_peak ascending", "test ascending"]
    names += ["page shows the first rows in order"] + (["next page"] if paged else [])
    return [*names, "filter", "filter cleared", "timeline drawn"]


def _rich_report() -> tuple[dict[str, Any], dict[str, Any]]:
    tests = [
        make_test(
            f"tests/test_m.py::test_case[{i}]",
            ram_increase=(i * 37 % 23) * MIB if i % 5 else None,
            vram={"0": ((i * 13 % 7) * 100 * MIB, GIB + i * MIB)} if i % 3 else None,
            budgets=[make_budget("max_ram", 16 * MIB, (i * 37 % 23) * MIB, i * 37 % 23 <= 16)],
            timeline={
                "t_s": [k * 0.01 for k in range(120)],
                "rss_bytes": [100 * MIB + (k % 40) * i * MIB // 8 for k in range(120)],
                # A gap in every VRAM series: the drawn line must restart there.
                "vram_bytes": {"0": [None if k == 60 else GIB + k * MIB for k in range(120)]},
            },
        )
        for i in range(25)
    ]
    tests.append(make_test(NASTY, ram_increase=3 * MIB))
    base = make_report([make_test(t["nodeid"], ram_increase=2 * MIB) for t in tests[::2]])
    return make_report(tests), base


def test_report_renders_without_errors_and_sorts(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    report, base = _rich_report()
    page = tmp_path / "report.html"
    comparison = compare(base, report, parse_fail_exprs("ram:10%"))
    write_html_atomic(page, render_html(report, baseline=base, comparison=comparison))

    result, dom, log = _selftest(tmp_path, page)
    assert result["errors"] == []
    assert result["checks"] == [{"name": n, "ok": True} for n in _selftest_names(paged=False)]
    assert result["ok"] is True
    assert result["rows"] == result["shown"] == len(report["tests"])
    # Our page logs nothing; any console line is a script error, a blocked load or a warning.
    assert [line for line in log.splitlines() if ":CONSOLE" in line] == []
    # The last click sorted by node id: the DOM Chromium hands back must be in that order,
    # and every cell the script built must say what the data says.
    built, served = Page(dom), Page(page.read_text(encoding="utf-8"))
    assert [r["nodeid"] for r in built.dom_rows] == sorted(t["nodeid"] for t in report["tests"])
    assert sorted(built.dom_rows, key=lambda r: r["nodeid"]) == sorted(
        ({"nodeid": r["nodeid"], "cells": r["cells"]} for r in served.rows),
        key=lambda r: r["nodeid"],
    )
    assert built.cell(NASTY, "test", dom=True)["text"] == NASTY  # escaped, not interpreted
    # The self-test opened the first timeline: one chart, its gap restarting the line.
    assert built.svgs.count("timeline-chart") == 1
    assert "tl-0" in built.ids
    assert sorted(d.count("M") for d in built.paths) == [1, 2]

    shot = tmp_path / "report.png"
    _chromium(
        tmp_path,
        "--window-size=1280,2200",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        page.as_uri(),
    )
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1280, 2200)
    assert len(png) > 20_000  # a blank page compresses to a few KiB
    record_property("screenshot", str(shot))
    artifacts = os.environ.get("HYPOMNESIS_ARTIFACT_DIR")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, Path(artifacts) / "html-report.png")
        shutil.copy2(page, Path(artifacts) / "html-report.html")


def test_selftest_catches_script_errors_and_blocked_loads(tmp_path: Path) -> None:
    # The harness must be able to fail: a page with a broken script and a remote image.
    text = render_html(make_report([make_test("t::a")]))
    broken = text.replace(
        "</body>",
        '<script>nosuch();</script><img src="https://example.invalid/x.png"></body>',
    )
    page = tmp_path / "broken.html"
    page.write_text(broken, encoding="utf-8")
    result, _, log = _selftest(tmp_path, page)
    assert result["ok"] is False
    assert any("nosuch is not defined" in e for e in result["errors"])
    assert any(e.startswith("blocked by CSP: img-src") for e in result["errors"])
    assert any(":CONSOLE" in line for line in log.splitlines())


def test_issue_page_in_chromium_failures_first_counts_and_exact_peak(tmp_path: Path) -> None:
    """The page a CPU-only suite gets: pytest's counts, failures first, file names kept in
    the chart, no VRAM legend, the exact peak marked where the samples missed it."""
    timeline = {
        "t_s": [k * 0.05 for k in range(8)],
        "rss_bytes": [
            40 * MIB,
            44 * MIB,
            46 * MIB,
            45 * MIB,
            41 * MIB,
            40 * MIB,
            40 * MIB,
            40 * MIB,
        ],
        "vram_bytes": {},
    }
    tests = [
        make_test(
            "tests/integration/models/test_transformer.py::TestTraining::test_step[bf16-64]",
            ram_increase=56 * MIB,
            ram_start=40 * MIB,
            timeline=timeline,
        ),
        make_test(
            "tests/unit/test_tokenizer.py::test_over_budget",
            ram_increase=64 * MIB,
            outcome="failed",
            budgets=[make_budget("max_ram", 10 * MIB, 64 * MIB, False)],
        ),
        make_test("tests/unit/test_tokenizer.py::test_small", ram_increase=2 * MIB),
    ]
    tests[1]["budget_failed"] = True
    report = make_report(tests)
    report["outcomes"] = {"passed": 2, "failed": 1, "error": 1, "skipped": 1}
    page = tmp_path / "issue.html"
    write_html_atomic(page, render_html(report))
    result, dom, _ = _selftest(tmp_path, page)
    assert result["errors"] == [] and result["ok"] is True
    assert "1 failed, 2 passed, 1 skipped, 1 error; 3 measured; 1 over budget" in dom
    # Failures first as served (the self-test's clicks re-sort the DOM afterwards).
    assert Page(page.read_text(encoding="utf-8")).rows[0]["nodeid"].endswith("test_over_budget")
    # The chart the self-test opened marks the exact peak the samples missed.
    assert re.search(r'<text class="small exact-peak"[^>]*>exact peak 96\.00 MiB', dom)
    assert "RSS (sampled peak 46.00 MiB)</text>" in dom
    shot = tmp_path / "issue.png"
    _chromium(
        tmp_path,
        "--window-size=1280,1400",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        page.as_uri(),
    )
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    artifacts = os.environ.get("HYPOMNESIS_ARTIFACT_DIR")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, Path(artifacts) / "html-issue-page.png")


def test_many_tests_page_by_page_and_a_timeline_link(tmp_path: Path) -> None:
    """1,200 tests: one page of 100 rows in the DOM; sorting, the filter and the next page
    work over all of them; ``#tl-N`` opens that test's chart on its page."""
    timeline = {"t_s": [0.0, 0.01, 0.02], "rss_bytes": [MIB, 3 * MIB, 2 * MIB], "vram_bytes": {}}
    tests = [
        make_test(
            f"tests/test_big_{i % 7}.py::test_{i}",
            ram_increase=(i * 7919 % 1000) * MIB if i % 11 else None,
            outcome="failed" if i % 97 == 0 else "passed",
            timeline=timeline if i % 50 == 0 else None,
        )
        for i in range(1200)
    ]
    report = make_report(tests)
    page = tmp_path / "big.html"
    write_html_atomic(page, render_html(report))
    result, dom, _ = _selftest(tmp_path, page)
    assert result["errors"] == []
    assert result["checks"] == [{"name": n, "ok": True} for n in _selftest_names(paged=True)]
    assert (result["rows"], result["shown"]) == (1200, 100)
    assert "tests 1\u2013100 of 1200" in dom

    served = Page(page.read_text(encoding="utf-8"))
    last = served.rows[-1]  # the lightest test: on the last page as served
    assert last["timeline"] < 0
    linked = next(r for r in reversed(served.rows) if r["timeline"] >= 0)
    assert served.rows.index(linked) >= 100
    dom, _ = _chromium(
        tmp_path,
        "--virtual-time-budget=5000",
        "--dump-dom",
        f"{page.as_uri()}#tl-{linked['index']}",
    )
    opened = Page(dom)
    assert f"tl-{linked['index']}" in opened.ids
    assert opened.svgs.count("timeline-chart") == 1
    assert linked["nodeid"] in [r["nodeid"] for r in opened.dom_rows]
    assert len(opened.dom_rows) == 100
