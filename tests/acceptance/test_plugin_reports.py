"""Acceptance: the plugin's regression gate, timelines, HTML report and JUnit properties.

Each test runs an inner pytest session (pytester, in process; ``-n 2`` where the
controller/worker split matters) and checks what a user sees: the exit status, the
summary lines, the files written.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_hypomnesis.cli import main as hmn_main
from pytest_hypomnesis.plugin.timeline import MAX_POINTS
from pytest_hypomnesis.report.schema import ReportError, load_report, validate_report
from tests.helpers.htmlpage import Page
from tests.helpers.pluginrun import assert_usage_error
from tests.helpers.reports import make_report, make_test
from tests.helpers.units import MIB

pytestmark = pytest.mark.usefixtures("inner_pytester_run")

# test_heavy grows by EXTRA_MIB between two runs: the "made heavier" change of the issue.
SUITE = """
import os
import time

def test_light():
    pass

def test_heavy():
    blob = b"x" * ((8 + int(os.environ.get("EXTRA_MIB", "0"))) << 20)
    time.sleep(0.03)
"""


def _baseline(pytester: pytest.Pytester, *args: str) -> Path:
    pytester.makepyfile(test_gate=SUITE)
    result = pytester.runpytest("--hypomnesis-json=base.json", *args)
    result.assert_outcomes(passed=2)
    return pytester.path / "base.json"


def _gate(pytester: pytest.Pytester, limit: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "--hypomnesis-json=new.json",
        "--hypomnesis-compare=base.json",
        f"--hypomnesis-compare-fail={limit}",
        *args,
    )


def _last_line(result: pytest.RunResult) -> str:
    return [line for line in result.outlines if line.strip()][-1]


# ---------------------------------------------------------------------------------------
# The regression gate.


def test_fifty_mib_heavier_fails_10mib_and_passes_100mib(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _baseline(pytester)
    monkeypatch.setenv("EXTRA_MIB", "50")

    failed = _gate(pytester, "ram:10MiB")
    assert failed.ret == pytest.ExitCode.TESTS_FAILED
    failed.assert_outcomes(passed=2)
    failed.stdout.fnmatch_lines(
        [
            "*= hypomnesis =*",
            "compared 2 tests with the baseline (ram:10MiB): 1 regression",
            "test_gate.py::test_heavy  ram +*MiB: *MiB → *MiB (+*%) > ram:10MiB",
        ]
    )
    failed.stdout.no_fnmatch_line("test_gate.py::test_light  ram*")
    # The final "N passed" line still prints, last, and nothing was raised.
    assert "2 passed" in _last_line(failed)
    assert "INTERNALERROR" not in failed.stdout.str() + failed.stderr.str()
    regression = next(line for line in failed.outlines if line.startswith("test_gate.py::"))
    growth_mib = float(regression.split("ram +")[1].split(" MiB")[0])
    assert 45 <= growth_mib <= 60, regression

    passed = _gate(pytester, "ram:100MiB")
    assert passed.ret == pytest.ExitCode.OK
    passed.stdout.fnmatch_lines(["compared 2 tests with the baseline (ram:100MiB): no regression"])
    assert "2 passed" in _last_line(passed)


def test_the_same_gate_in_hmn_report(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _baseline(pytester)
    monkeypatch.setenv("EXTRA_MIB", "50")
    pytester.runpytest("--hypomnesis-json=new.json").assert_outcomes(passed=2)
    new = pytester.path / "new.json"
    capsys.readouterr()

    assert hmn_main(["report", str(new), "--compare", str(base), "--fail", "ram:10MiB"]) == 1
    out = capsys.readouterr().out
    assert "compared 2 tests with the baseline (ram:10MiB): 1 regression" in out
    assert any(
        line.startswith("test_gate.py::test_heavy  ram +") and line.endswith("> ram:10MiB")
        for line in out.splitlines()
    ), out
    assert hmn_main(["report", str(new), "--compare", str(base), "--fail", "ram:100MiB"]) == 0
    assert "no regression" in capsys.readouterr().out


def test_gate_under_xdist_compares_once_on_the_controller(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _baseline(pytester, "-n", "2")
    monkeypatch.setenv("EXTRA_MIB", "50")
    result = _gate(pytester, "ram:10MiB", "-n", "2")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=2)
    assert sum(1 for line in result.outlines if line.startswith("compared 2 tests")) == 1
    result.stdout.fnmatch_lines(["test_gate.py::test_heavy  ram +*MiB: * > ram:10MiB"])
    assert "2 passed" in _last_line(result)


def test_a_regression_keeps_a_failed_run_failed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _baseline(pytester)
    pytester.makepyfile(test_other="def test_broken():\n    assert False\n")
    monkeypatch.setenv("EXTRA_MIB", "50")
    result = _gate(pytester, "ram:10MiB")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*1 regression", "only in this run (1):", "  test_other.py::*"])


def test_compare_without_fail_only_reports(pytester: pytest.Pytester) -> None:
    _baseline(pytester)
    result = pytester.runpytest("--hypomnesis-compare=base.json")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["*= hypomnesis =*", "compared 2 tests with the baseline (no thresholds): no regression"]
    )


def test_missing_tests_are_listed_not_failed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_kept():\n    pass\n\ndef test_gone():\n    pass\n")
    pytester.runpytest("--hypomnesis-json=base.json").assert_outcomes(passed=2)
    pytester.makepyfile(test_x="def test_kept():\n    pass\n\ndef test_new():\n    pass\n")
    result = pytester.runpytest(
        "--hypomnesis-compare=base.json", "--hypomnesis-compare-fail=ram:0%"
    )
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "compared 1 test with the baseline (ram:0%): no regression",
            "only in the baseline (1):",
            "  test_x.py::test_gone",
            "only in this run (1):",
            "  test_x.py::test_new",
        ]
    )


def test_different_settings_warn(pytester: pytest.Pytester) -> None:
    _baseline(pytester, "--hypomnesis-scope=test", "--hypomnesis-interval=5ms")
    result = pytester.runpytest("--hypomnesis-compare=base.json")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "warning: settings differ: scope 'test' in the baseline, 'call' in this run; *",
            "warning: settings differ: sampling interval 0.005 in the baseline, 0.01 *",
        ]
    )


def _foreign(path: Path) -> None:
    path.write_text(json.dumps({"schema": "other-tool/3", "tests": []}), encoding="utf-8")


def _truncated(path: Path) -> None:
    text = json.dumps(make_report([make_test("t.py::a")]))
    path.write_text(text[: len(text) // 2], encoding="utf-8")


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (None, "no such file"),
        (lambda p: p.write_text("", encoding="utf-8"), "empty file*"),
        (_truncated, "not valid JSON (truncated or corrupt?)*"),
        (_foreign, "schema: 'other-tool/3' is not 'pytest-hypomnesis/2' or 'pytest-hypomnesis/1'*"),
        (lambda p: p.mkdir(), "is a directory*"),
    ],
    ids=["missing", "empty", "truncated", "foreign", "directory"],
)
def test_bad_baseline_is_one_usage_error(
    pytester: pytest.Pytester, make: object, needle: str
) -> None:
    pytester.makepyfile("def test_a():\n    pass\n")
    if callable(make):
        make(pytester.path / "base.json")
    result = pytester.runpytest(
        "--hypomnesis-compare=base.json", "--hypomnesis-compare-fail=ram:10%"
    )
    assert_usage_error(result, f"ERROR: cannot use baseline */base.json: {needle}")
    result.stdout.no_fnmatch_line("*passed*")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--hypomnesis-compare-fail=ram:10%"],
            "--hypomnesis-compare-fail=ram:10%: needs --hypomnesis-compare=BASE.json*",
        ),
        (
            ["--hypomnesis-compare=base.json", "--hypomnesis-compare-fail=rss:10%"],
            "--hypomnesis-compare-fail=rss:10%: invalid threshold 'rss:10%': unknown metric*",
        ),
        (
            ["--hypomnesis-compare=base.json", "--hypomnesis-compare-fail=ram:10G"],
            "--hypomnesis-compare-fail=ram:10G: invalid threshold 'ram:10G'*",
        ),
        (["--hypomnesis-html=no/such/dir/r.html"], "--hypomnesis-html=no/such/dir/r.html: dir*"),
    ],
)
def test_bad_gate_options_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.makepyfile("def test_a():\n    pass\n")
    (pytester.path / "base.json").write_text(json.dumps(make_report([])), encoding="utf-8")
    result = pytester.runpytest(*args)
    assert_usage_error(result, f"ERROR: {message}")


def test_help_lists_the_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "*--hypomnesis-compare=BASE.json*",
            "*--hypomnesis-compare-fail=EXPR*",
            "*METRIC:N% or METRIC:SIZE*",
            "*--hypomnesis-html=PATH*",
            "*--hypomnesis-timeline*",
            "*hypomnesis_compare_fail (string)*",
            "*hypomnesis_timeline (bool)*",
        ]
    )


def test_ini_twins(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    _baseline(pytester)
    pytester.makeini(
        "[pytest]\n"
        "hypomnesis_compare = base.json\n"
        "hypomnesis_compare_fail = ram:10MiB\n"
        "hypomnesis_html = page.html\n"
        "hypomnesis_timeline = true\n"
        "hypomnesis_json = new.json\n"
    )
    monkeypatch.setenv("EXTRA_MIB", "50")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*(ram:10MiB): 1 regression"])
    assert (pytester.path / "page.html").is_file()
    report = load_report(pytester.path / "new.json")
    assert all("timeline" in t for t in report["tests"])
    assert report["settings"]["timeline"] is True


# ---------------------------------------------------------------------------------------
# Timelines.

STEP_SUITE = """
import time

def test_step():
    time.sleep(0.1)
    blob = b"x" * (64 << 20)
    time.sleep(0.1)

def test_quick():
    pass
"""


def test_timeline_shows_a_ram_step(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(STEP_SUITE)
    result = pytester.runpytest("--hypomnesis-json=r.json", "--hypomnesis-timeline")
    result.assert_outcomes(passed=2)
    report = load_report(pytester.path / "r.json")  # the validator accepts timelines
    tests = {t["nodeid"].split("::")[1]: t for t in report["tests"]}
    series = tests["test_step"]["timeline"]
    rss = [v for v in series["rss_bytes"] if v is not None]  # checked below: none is unknown
    assert len(series["t_s"]) == len(rss) <= MAX_POINTS
    assert len(rss) >= 5  # the sampler ran without a GPU
    assert series["t_s"] == sorted(series["t_s"])
    assert series["vram_bytes"] == {}
    assert None not in series["rss_bytes"]
    # The step: 0.1 s flat, then 64 MiB more held for 0.1 s (the last point, after the
    # test returned, is back down).
    high = [i for i, v in enumerate(rss) if v >= rss[0] + 60 * MIB]
    assert len(high) >= 3, rss
    assert series["t_s"][high[0]] >= 0.09
    assert all(v < rss[0] + 8 * MIB for v in rss[: high[0]])
    # Even a test shorter than one sampling period has its start and end points.
    assert len(tests["test_quick"]["timeline"]["t_s"]) >= 2


def test_long_timeline_is_downsampled_to_200_points(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("import time\n\ndef test_long():\n    time.sleep(0.6)\n")
    pytester.runpytest(
        "--hypomnesis-json=r.json", "--hypomnesis-timeline", "--hypomnesis-interval=1ms"
    ).assert_outcomes(passed=1)
    series = load_report(pytester.path / "r.json")["tests"][0]["timeline"]
    # Hundreds of samples (one per ms) come back as at most 200, spread over the test.
    assert 50 <= len(series["t_s"]) <= MAX_POINTS
    assert series["t_s"][-1] >= 0.55
    assert series["t_s"][len(series["t_s"]) // 2] < 0.45


def test_timeline_with_a_fake_gpu_has_a_vram_series(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time

        def test_gpu(fake_gpu):
            fake_gpu.add_device(name="NVIDIA Fake", total="16GiB")
            fake_gpu.set_process_vram(0, "1GiB")
            time.sleep(0.05)
        """
    )
    pytester.runpytest(
        "--hypomnesis-json=r.json", "--hypomnesis-timeline", "--hypomnesis-scope=test", "-n", "2"
    ).assert_outcomes(passed=1)
    series = load_report(pytester.path / "r.json")["tests"][0]["timeline"]
    assert set(series["vram_bytes"]) == {"0"}
    assert max(v for v in series["vram_bytes"]["0"] if v is not None) == 1024 * MIB


def test_no_timeline_without_the_flag(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(STEP_SUITE)
    pytester.runpytest("--hypomnesis-json=r.json").assert_outcomes(passed=2)
    report = load_report(pytester.path / "r.json")
    assert all("timeline" not in t for t in report["tests"])
    assert report["settings"]["timeline"] is False


def test_validator_rejects_a_malformed_timeline() -> None:
    test = make_test("t.py::a", timeline={"t_s": [0.0, 0.1], "rss_bytes": [1]})
    with pytest.raises(ReportError, match=r"tests\[0\]\.timeline\.rss_bytes"):
        validate_report(make_report([test]))


# ---------------------------------------------------------------------------------------
# The HTML report.


def test_html_alone_measures_every_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(STEP_SUITE)
    (pytester.path / "out").mkdir()
    result = pytester.runpytest("--hypomnesis-html=out/page.html", "-n", "2")
    result.assert_outcomes(passed=2)
    result.stdout.no_fnmatch_line("*= hypomnesis =*")
    page = Page((pytester.path / "out" / "page.html").read_text(encoding="utf-8"))
    assert sorted(r["nodeid"] for r in page.rows) == [
        "test_html_alone_measures_every_test.py::test_quick",
        "test_html_alone_measures_every_test.py::test_step",
    ]
    assert page.timelines == []
    assert page.scripts_with_src == 0


def test_html_with_timelines_and_a_baseline(pytester: pytest.Pytester) -> None:
    _baseline(pytester)
    result = pytester.runpytest(
        "--hypomnesis",
        "--hypomnesis-timeline",
        "--hypomnesis-compare=base.json",
        "--hypomnesis-html=page.html",
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["HTML report: */page.html"])
    text = (pytester.path / "page.html").read_text(encoding="utf-8")
    page = Page(text)
    assert {r["nodeid"] for r in page.rows} == {
        "test_gate.py::test_light",
        "test_gate.py::test_heavy",
    }
    assert len(page.timelines) == 2 and all(len(t["t_s"]) >= 2 for t in page.timelines)
    assert page.svgs.count("heavy-chart") == 1
    assert any("base" in header for header in page.headers), page.headers
    assert "2 tests compared (no thresholds): no regression" in text
    assert not list(pytester.path.glob(".page.html.*"))  # no temp file left behind


# ---------------------------------------------------------------------------------------
# JUnit XML.

JUNIT_SUITE = """
import pytest

def test_plain():
    pass

@pytest.mark.max_ram("1GiB")
def test_budget():
    blob = b"x" * (16 << 20)
"""


def _properties(path: Path) -> dict[str, dict[str, str]]:
    root = ET.parse(path).getroot()
    return {
        case.get("name", ""): {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        for case in root.iter("testcase")
    }


@pytest.mark.parametrize("extra", [[], ["-n", "2"], ["--hypomnesis-scope=test"]])
def test_junit_properties_for_measured_tests(pytester: pytest.Pytester, extra: list[str]) -> None:
    pytester.makepyfile(JUNIT_SUITE)
    result = pytester.runpytest("--hypomnesis", "--junitxml=j.xml", *extra)
    result.assert_outcomes(passed=2)
    props = _properties(pytester.path / "j.xml")
    for name in ("test_plain", "test_budget"):
        assert int(props[name]["hypomnesis_ram_peak_bytes"]) > 0
        assert int(props[name]["hypomnesis_ram_increase_bytes"]) >= 0
        assert "hypomnesis_vram_peak_bytes" not in props[name]  # no GPU: left out
    assert props["test_budget"]["hypomnesis_max_ram_status"] == "passed"
    assert props["test_budget"]["hypomnesis_max_ram_limit_bytes"] == str(1 << 30)
    # With scope=test the budget is judged before teardown; the figures include it.
    measured = int(props["test_budget"]["hypomnesis_max_ram_measured_bytes"])
    assert measured <= int(props["test_budget"]["hypomnesis_ram_increase_bytes"])
    # One set per test: not duplicated between the call and teardown reports.
    text = (pytester.path / "j.xml").read_text(encoding="utf-8")
    assert text.count('name="hypomnesis_ram_peak_bytes"') == 2


def test_junit_unmeasured_tests_have_no_properties(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(JUNIT_SUITE)
    pytester.runpytest("--junitxml=j.xml").assert_outcomes(passed=2)
    props = _properties(pytester.path / "j.xml")
    assert props["test_plain"] == {}
    assert props["test_budget"]["hypomnesis_max_ram_status"] == "passed"
