"""Acceptance: RAM budgets that do not depend on test order (issue 12). Under
pytest-randomly an RSS budget's verdict depends on which test grew the heap first;
``max_ram(..., source="python")`` judges traced Python allocations, the same every time."""

from __future__ import annotations

import json
import sys

import pytest

pytestmark = pytest.mark.usefixtures("inner_pytester_run")

MIB = 1 << 20

THREE = """
import pytest

@pytest.mark.max_ram("10MiB", source="python")
@pytest.mark.parametrize("n", [1, 2, 3])
def test_blob(n):
    # Above glibc's largest mmap threshold (32 MiB), so freeing it does not raise the
    # thresholds for the rest of this process (the inner run shares it with later tests).
    blob = b"x" * (40 << 20)
    del blob
"""


@pytest.mark.parametrize("seed", ["1", "2", "3"])
def test_python_source_verdict_does_not_depend_on_the_order(
    pytester: pytest.Pytester, seed: str
) -> None:
    pytester.makepyfile(test_three=THREE)
    result = pytester.runpytest(
        "-p", "randomly", f"--randomly-seed={seed}", "--hypomnesis-json=r.json"
    )
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*(peak increase, traced Python allocations) > limit 10.00 MiB"])
    tests = json.loads((pytester.path / "r.json").read_text())["tests"]
    for test in tests:
        ram = test["ram"]
        assert ram["python_increase_bytes"] >= 40 * MIB
        assert ram["python_peak_bytes"] >= ram["python_increase_bytes"]
        assert ram["increase_bytes"] is not None  # RSS is measured beside it
        assert test["budgets"][0]["source"] == "python"


# The heap is made to keep what it grows (no trimming, no mmap for big blocks), so the
# fixture's freed 40 MiB serve the test's 20 MiB: RSS does not rise.
REUSE = """
import ctypes
import pytest

libc = ctypes.CDLL(None)
libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD

@pytest.fixture
def warm_heap():
    blob = b"x" * (40 << 20)
    del blob

@pytest.mark.max_ram("10MiB")
@pytest.mark.max_ram("10MiB", source="python")
def test_reuse(warm_heap):
    blob = b"x" * (20 << 20)
    del blob
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_heap_reuse_is_said_when_rss_passes_on_near_zero(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_reuse=REUSE)
    # A subprocess: mallopt changes the allocator for the rest of the process's life.
    result = pytester.runpytest_subprocess("--hypomnesis", "--hypomnesis-json=r.json")
    result.assert_outcomes(failed=1)
    (test,) = json.loads((pytester.path / "r.json").read_text())["tests"]
    by_source = {b["source"]: b for b in test["budgets"]}
    assert by_source["rss"]["passed"] is True
    assert by_source["python"]["passed"] is False
    assert test["ram"]["increase_bytes"] < MIB <= 20 * MIB <= test["ram"]["python_increase_bytes"]
    result.stdout.fnmatch_lines(
        [
            "*RAM increase  Python increase*",
            "*1 RSS budget passed on an increase near 0 B while traced Python allocations "
            "exceeded the limit*",
        ]
    )


TRACING = """
import tracemalloc
import pytest

@pytest.mark.max_ram("1GiB")
def test_1_rss():
    assert not tracemalloc.is_tracing()

@pytest.mark.max_ram("1GiB", source="python")
def test_2_python():
    assert tracemalloc.is_tracing()

def test_3_after():
    assert not tracemalloc.is_tracing()
"""


def test_tracing_runs_only_for_tests_that_ask(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_tracing=TRACING)
    pytester.runpytest("--hypomnesis").assert_outcomes(passed=3)


def test_the_option_sets_the_default_source(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_a="def test_a():\n    blob = b'x' * (40 << 20)\n")
    result = pytester.runpytest(
        "--hypomnesis-max-ram=10MiB", "--hypomnesis-ram-budget-source=python"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*traced Python allocations) > limit 10.00 MiB"])
    bad = pytester.runpytest("--hypomnesis-ram-budget-source=heap")
    bad.stderr.fnmatch_lines(["*--hypomnesis-ram-budget-source=heap: expected 'rss' or 'python'*"])
    source = "import pytest\n\n@pytest.mark.max_ram('1MiB', source='heap')\ndef test_a():\n"
    pytester.makepyfile(test_a=source + "    pass\n")
    wrong = pytester.runpytest()
    wrong.stdout.fnmatch_lines(["*source must be 'rss' or 'python', not 'heap'*"])
