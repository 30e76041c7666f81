"""A fixture for the plugin's in-process pytester runs (loaded by the root conftest), and
``assert_usage_error``: what every run stopped by a bad option or ini value must show;
``assert_strict_fails``: a budget not checked fails its test under ``--hypomnesis-strict``."""

from __future__ import annotations

import fnmatch
import gc

import pytest


@pytest.fixture
def inner_pytester_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Options every inner run needs, and a clean heap.

    In-process runs find this package already imported (and rewritten) by the outer run,
    hence the rewrite warning is ignored. Earlier in-process runs leave garbage (a failed
    test's frame holding a big blob); if it were freed inside a measured block, the
    block's RSS would not rise at all, hence ``gc.collect()`` first.
    """
    gc.collect()
    monkeypatch.setenv(
        "PYTEST_ADDOPTS",
        "-p no:cacheprovider -p no:randomly -W default"
        " -W ignore::pytest.PytestAssertRewriteWarning",
    )


def assert_usage_error(result: pytest.RunResult, pattern: str) -> None:
    """The run stopped at a usage error: exit status 4 and one ``ERROR:`` line on stderr,
    matching ``pattern`` (fnmatch), never a traceback or an INTERNALERROR."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.errlines
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.errlines
    assert fnmatch.fnmatch(errors[0], pattern), (errors[0], pattern)
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output
    assert "Traceback" not in output


def assert_strict_fails(pytester: pytest.Pytester, reason: str) -> None:
    """The suite in ``pytester`` again under ``--hypomnesis-strict``: its one budget that
    could not be checked fails its test, saying ``reason`` (fnmatch)."""
    strict = pytester.runpytest("--hypomnesis", "--hypomnesis-strict")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines_random([reason])
