"""Bad input found in review: each gives one readable line, never a traceback."""

from __future__ import annotations

import json
import math
import os
import stat

import pytest

from pytest_hypomnesis import SizeError, parse_size
from pytest_hypomnesis._units import parse_duration_s
from pytest_hypomnesis.report.schema import ReportError, validate_test_record
from tests.helpers.pluginrun import assert_usage_error

pytestmark = pytest.mark.usefixtures("inner_pytester_run")

PASSING = "def test_ok():\n    pass\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hypomnesis-top=²"], "--hypomnesis-top=²: expected a whole number of rows*"),
        (["--hypomnesis-device=²"], "--hypomnesis-device=²: expected a GPU index*"),
        (["--hypomnesis-interval=2h"], "--hypomnesis-interval=2h: must be at most 60s"),
        (["--hypomnesis-max-ram=٣MiB"], "--hypomnesis-max-ram=٣MiB: invalid size*"),
    ],
)
def test_bad_option_values_are_one_usage_line(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.makepyfile(test_a=PASSING)
    result = pytester.runpytest_subprocess("--hypomnesis", *args)
    assert_usage_error(result, f"ERROR: {message}")


def test_bad_verbosity_ini_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nverbosity_hypomnesis = foo\n")
    pytester.makepyfile(test_a=PASSING)
    result = pytester.runpytest_subprocess("--hypomnesis")
    assert_usage_error(result, "ERROR: ini verbosity_hypomnesis=foo: expected 'auto'*")


def test_bad_marker_message_is_printed_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_a="import pytest\n\n@pytest.mark.max_ram('2G')\ndef test_bad():\n    pass\n\n"
        "def test_good():\n    pass\n"
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    out = result.stdout.str()
    assert "During handling of the above exception" not in out
    # Once in the error section; the short summary (after it) repeats it whole on CI
    # (CI=true: pytest does not truncate those lines) and cut short elsewhere.
    errors_section = out.split("short test summary info")[0]
    assert errors_section.count("('G' is ambiguous") == 1


def test_json_report_is_readable_by_others(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_a=PASSING)
    old = os.umask(0o022)
    try:
        result = pytester.runpytest("--hypomnesis-json=out.json")
    finally:
        os.umask(old)
    result.assert_outcomes(passed=1)
    mode = stat.S_IMODE(os.stat(pytester.path / "out.json").st_mode)
    assert mode == 0o644
    json.loads((pytester.path / "out.json").read_text())


def test_a_report_that_cannot_be_written_fails_the_run(pytester: pytest.Pytester) -> None:
    # A directory that appears where the file should go after the options were checked
    # (one there from the start is a usage error before any test runs).
    pytester.makepyfile(test_a="import os\n\ndef test_ok():\n    os.mkdir('taken.json')\n")
    result = pytester.runpytest("--hypomnesis-json=taken.json")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*could not write the JSON report*"])


@pytest.mark.parametrize("text", ["١٠MiB", "2\u00a0GiB", "2\tGiB"])
def test_sizes_are_ascii_only(text: str) -> None:
    with pytest.raises(SizeError):
        parse_size(text)
    with pytest.raises(SizeError):
        parse_duration_s(text.replace("GiB", "ms").replace("MiB", "ms"))


@pytest.mark.parametrize("duration", [math.nan, math.inf, -1.0])
def test_report_rejects_non_finite_durations(duration: float) -> None:
    record = {
        "nodeid": "t.py::t",
        "outcome": "passed",
        "worker": "master",
        "scope": "call",
        "duration_s": duration,
        "ram": {},
        "vram": {},
        "budgets": [],
    }
    with pytest.raises(ReportError, match="duration_s"):
        validate_test_record(record)
