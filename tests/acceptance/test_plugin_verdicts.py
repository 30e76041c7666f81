"""Acceptance: verdicts a user can trust beside other plugins (issue 12): no warnings inside
a test's phases, counts and labels that match pytest's, pytest-timeout, strict XPASS."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("inner_pytester_run")

STRICT_WARNINGS_INI = "[pytest]\nfilterwarnings =\n    error\n"


@pytest.fixture
def warnings_as_errors(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's own ``filterwarnings = error``, without the inner runs' ``-W default``
    (command-line filters would win over the ini)."""
    pytester.makeini(STRICT_WARNINGS_INI)
    monkeypatch.setenv(
        "PYTEST_ADDOPTS",
        "-p no:cacheprovider -p no:randomly -W ignore::pytest.PytestAssertRewriteWarning",
    )


NOT_CHECKED = """
import pytest

@pytest.mark.max_vram("1GiB")
def test_vram_budget():
    pass

def test_plain():
    pass

@pytest.mark.max_vram("1GiB")
def test_own_assertion():
    assert 1 == 2, "the test's own failure"
"""


@pytest.mark.usefixtures("warnings_as_errors")
def test_not_checked_is_no_warning_under_filterwarnings_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nc=NOT_CHECKED)
    result = pytester.runpytest("--hypomnesis")
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    # The test's own assertion is its failure, not chained below a plugin warning.
    assert "During handling of the above exception" not in out
    assert "HypomnesisWarning" not in out
    result.stdout.fnmatch_lines(["E       AssertionError: the test's own failure"])
    # Said once, in the header, with how many tests it concerns.
    notes = [line for line in result.outlines if "not checked" in line]
    assert len(notes) == 1, notes
    assert notes[0].startswith("hypomnesis: max_vram: not checked: ")
    assert notes[0].endswith("(2 tests; --hypomnesis-strict fails them)")


@pytest.mark.usefixtures("warnings_as_errors")
def test_suite_wide_vram_budget_fails_no_test_under_filterwarnings_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_a="def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    result = pytester.runpytest("--hypomnesis-max-vram=1GiB")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["hypomnesis: max_vram: not checked: * (2 tests; *)"])


@pytest.mark.usefixtures("warnings_as_errors")
def test_not_checked_is_no_warning_on_xdist_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_a="def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    result = pytester.runpytest("--hypomnesis-max-vram=1GiB", "-n", "2", "--hypomnesis")
    result.assert_outcomes(passed=2, warnings=0)
    result.stdout.fnmatch_lines(["hypomnesis: max_vram: not checked: * (2 tests; *)"])


@pytest.mark.usefixtures("warnings_as_errors")
def test_strict_not_checked_is_a_budget_failure_of_its_own(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nc=NOT_CHECKED)
    result = pytester.runpytest("--hypomnesis", "--hypomnesis-strict", "-v")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*::test_vram_budget BUDGET NOT CHECKED*",
            "*max_vram: could not be checked (*) and --hypomnesis-strict is set*",
        ]
    )
    out = result.stdout.str()
    assert "OVER BUDGET" not in out and " over budget" not in out
    assert "During handling of the above exception" not in out
    result.stdout.fnmatch_lines(["1 failed: budget not checked (--hypomnesis-strict)"])


OUTCOMES = """
import time
import pytest

BIG = 64 << 20

@pytest.mark.max_ram(1)
def test_over():
    blob = b"x" * BIG

@pytest.mark.max_ram(1)
def test_skipped_after_allocating():
    blob = b"x" * BIG
    pytest.skip("not today")

@pytest.mark.xfail(reason="known")
@pytest.mark.max_ram(1)
def test_xfailed():
    blob = b"x" * BIG
    assert False

@pytest.mark.xfail(reason="flaky")
@pytest.mark.max_ram(1)
def test_xpassed():
    blob = b"x" * BIG

@pytest.mark.xfail(reason="fixed?", strict=True)
@pytest.mark.max_ram(1)
def test_strict_xpass():
    blob = b"x" * BIG

@pytest.mark.timeout(0.3, method="signal")
@pytest.mark.max_ram(1)
def test_timed_out():
    blob = b"x" * BIG
    time.sleep(5)

@pytest.mark.max_ram(1)
def test_own_failure():
    blob = b"x" * BIG
    assert False, "own"
"""


def test_only_a_test_failed_by_its_budget_is_over_budget(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_outcomes=OUTCOMES)
    result = pytester.runpytest("--hypomnesis", "-p", "timeout", "-v", "-rA")
    result.assert_outcomes(passed=0, failed=4, skipped=1, xfailed=1, xpassed=1)
    result.stdout.fnmatch_lines_random(
        [
            "*::test_over OVER BUDGET*",
            "*::test_strict_xpass FAILED*",
            "FAILED *::test_timed_out - Failed: Timeout*",
            "*::test_own_failure FAILED*",
        ]
    )
    labelled = [line for line in result.outlines if "OVER BUDGET" in line]
    # The run line and the short-summary line, both for test_over only.
    assert labelled and all("test_over" in line for line in labelled), labelled
    result.stdout.fnmatch_lines(["1 over budget"])
    quiet = pytester.runpytest("--hypomnesis", "-p", "timeout", "-qq")
    quiet.stdout.fnmatch_lines(["hypomnesis: 7 tests measured, 1 over budget; *"])


def test_over_budget_record_says_the_budget_failed_it(pytester: pytest.Pytester) -> None:
    import json

    pytester.makepyfile(test_outcomes=OUTCOMES)
    pytester.runpytest("--hypomnesis-json=r.json", "-p", "timeout")
    tests = {
        t["nodeid"].split("::")[1]: t
        for t in json.loads((pytester.path / "r.json").read_text())["tests"]
    }
    flagged = sorted(name for name, t in tests.items() if t["budget_failed"])
    assert flagged == ["test_over"]
    # Every verdict is still in the record, whatever failed the test.
    assert all(t["budgets"][0]["passed"] is False for t in tests.values())


RERUN = """
import pytest

KEEP = []

@pytest.mark.max_ram("32MiB")
def test_flaky_budget():
    # The first attempt grows RSS by 64 MiB (above glibc's largest mmap threshold, so a
    # fresh mapping whatever earlier tests freed) and keeps it; a rerun finds it resident
    # and passes with an increase near 0 B.
    if not KEEP:
        KEEP.append(b"x" * (64 << 20))
"""


def test_reruns_keep_every_attempt_and_show_the_worst(pytester: pytest.Pytester) -> None:
    import json

    pytester.makepyfile(test_rerun=RERUN)
    result = pytester.runpytest(
        "-p", "rerunfailures", "--reruns", "1", "--hypomnesis", "--hypomnesis-json=r.json"
    )
    assert result.parseoutcomes() == {"passed": 1, "rerun": 1}
    (test,) = json.loads((pytester.path / "r.json").read_text())["tests"]
    first, second = test["attempts"]
    assert first["budget_failed"] is True and first["budgets"][0]["passed"] is False
    assert first["ram"]["increase_bytes"] >= 64 << 20
    assert second["budgets"][0]["passed"] is True
    # The record's own figures are the last attempt's; pytest's outcome is for it.
    assert test["outcome"] == "passed" and test["budget_failed"] is False
    assert test["ram"] == second["ram"]
    result.stdout.fnmatch_lines(
        [
            "test_rerun.py::test_flaky_budget (worst of 2 attempts) * ram 2??% (over) *",
            "1 rerun (figures: the worst attempt)",
        ]
    )


def test_rerun_except_max_ram_does_not_rerun_a_budget_failure(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_rerun=RERUN)
    result = pytester.runpytest(
        "-p", "rerunfailures", "--reruns", "1", "--rerun-except", "max_ram", "--hypomnesis", "-v"
    )
    assert result.parseoutcomes() == {"failed": 1}
    result.stdout.fnmatch_lines(["*::test_flaky_budget OVER BUDGET*", "1 over budget"])


def test_reruns_under_xdist_keep_every_attempt(pytester: pytest.Pytester) -> None:
    import json

    pytester.makepyfile(test_rerun=RERUN)
    result = pytester.runpytest(
        "-p", "rerunfailures", "--reruns", "1", "-n", "1", "--hypomnesis-json=r.json"
    )
    assert result.parseoutcomes() == {"passed": 1, "rerun": 1}
    (test,) = json.loads((pytester.path / "r.json").read_text())["tests"]
    assert [a["budget_failed"] for a in test["attempts"]] == [True, False]


DECIMAL = """
import pytest

@pytest.mark.max_ram("24 MB")
def test_decimal():
    pass

@pytest.mark.max_ram("24 MiB")
def test_binary():
    pass
"""


def test_a_decimal_unit_is_explained_once_in_the_header(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_units=DECIMAL)
    result = pytester.runpytest("--hypomnesis")
    result.assert_outcomes(passed=2)
    notes = [line for line in result.outlines if "decimal units" in line]
    assert notes == [
        "hypomnesis: sizes in decimal units are SI: '24 MB' is 24,000,000 bytes "
        "(1 MB = 1,000,000 B); write '24 MiB' for 25,165,824 bytes"
    ]
    # A suite-wide option is explained too; binary units need no note.
    pytester.makepyfile(test_units="def test_a():\n    pass\n")
    option = pytester.runpytest("--hypomnesis", "--hypomnesis-max-ram=2 GB")
    option.stdout.fnmatch_lines(["hypomnesis: sizes in decimal units are SI: '2 GB' is *"])
    binary = pytester.runpytest("--hypomnesis", "--hypomnesis-max-ram=2GiB")
    assert not any("decimal units" in line for line in binary.outlines)
