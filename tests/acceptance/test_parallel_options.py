"""The parallel-GPU options: one readable line for a bad value; off means not imported."""

from __future__ import annotations

import pytest

from tests.helpers.pluginrun import assert_usage_error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--hypomnesis-admit-headroom=5"],
            "--hypomnesis-admit-headroom=5: expected a percentage from 0% to 99%, e.g. 5% or 12.5%",
        ),
        (["--hypomnesis-admit-timeout=soon"], "--hypomnesis-admit-timeout=soon: "),
        (["--hypomnesis-ledger-dir=nowhere"], "nowhere: not a directory"),
        (["--hypomnesis-needs=missing.json"], "--hypomnesis-needs: "),
    ],
)
def test_bad_values_are_one_line(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest_subprocess("--hypomnesis-admit", *args)
    assert_usage_error(result, f"ERROR: *{message}*")


def test_ini_twins(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nhypomnesis_admit = true\nhypomnesis_admit_headroom = 150%\n")
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest_subprocess()
    assert_usage_error(result, "ERROR: ini hypomnesis_admit_headroom=150%: expected *")


def test_off_imports_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_nothing_parallel_imported():
            assert not [m for m in sys.modules if m.startswith("pytest_hypomnesis.parallel")]
        """
    )
    pytester.runpytest_subprocess("--hypomnesis").assert_outcomes(passed=1)


def test_pin_without_xdist_says_it_does_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest_subprocess("--hypomnesis-pin-gpus", "-p", "no:xdist")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["hypomnesis: --hypomnesis-pin-gpus: not under pytest-xdist, nothing pinned"]
    )
