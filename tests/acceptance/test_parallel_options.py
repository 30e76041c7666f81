"""The parallel-GPU options: one readable line for a bad value; off means not imported."""

from __future__ import annotations

import pytest


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
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1 and message in errors[0], result.errlines
    assert "Traceback" not in result.stderr.str()


def test_ini_twins(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nhypomnesis_admit = true\nhypomnesis_admit_headroom = 150%\n")
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: ini hypomnesis_admit_headroom=150%: expected *"])


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
