"""How often pytest calls into the plugin per measured test (issue 14: at most 7).

Each call is pluggy dispatching to one of our hook implementations; counted with pluggy's
own hook-call monitoring in a real pytester run, over tests that pass."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

TESTS = 6


class _Counter:
    """Counts, per hook name, the calls that reached a hook implementation of ours."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def pytest_configure(self, config: pytest.Config) -> None:
        def before(name: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
            for impl in impls:
                owner = impl.plugin
                module = getattr(owner, "__name__", None) or type(owner).__module__
                if str(module).startswith("pytest_hypomnesis"):
                    self.calls[name] += 1

        def after(outcome: object, name: str, impls: object, kwargs: object) -> None:
            pass

        config.add_cleanup(config.pluginmanager.add_hookcall_monitoring(before, after))


def _per_test(pytester: pytest.Pytester, source: str, *args: str) -> dict[str, float]:
    body = "".join(source.format(i=i) for i in range(TESTS))
    pytester.makepyfile(test_many="import pytest\n\n" + body)
    counter = _Counter()
    result = pytester.runpytest_inprocess("-p", "no:randomly", *args, plugins=[counter])
    result.assert_outcomes(passed=TESTS)
    # The hooks called once or a few times per session fall out: fewer calls than tests.
    return {name: n / TESTS for name, n in counter.calls.items() if n >= TESTS}


PLAIN = "def test_{i}():\n    pass\n\n"
MARKED = "@pytest.mark.max_ram('1GiB')\ndef test_{i}():\n    pass\n\n"


@pytest.mark.parametrize(
    ("source", "args"),
    [
        (PLAIN, ["--hypomnesis"]),
        (MARKED, ["--hypomnesis"]),
        (PLAIN, ["--hypomnesis", "--hypomnesis-max-ram=1GiB"]),
        (MARKED, []),  # measured for its budget only, the flag off
        (PLAIN, ["--hypomnesis-json=r.json", "--junitxml=j.xml"]),
    ],
    ids=["flag", "marker", "default-budget", "marker-only", "reports"],
)
def test_at_most_seven_calls_per_measured_test(
    pytester: pytest.Pytester, source: str, args: list[str]
) -> None:
    calls = _per_test(pytester, source, *args)
    # The call wrapper once; the makereport wrapper and the controller's logreport once
    # per phase. No setup hook (budgets are read at collection), no teststatus hook
    # (registered at the first budget failure only).
    assert calls == {
        "pytest_runtest_call": 1,
        "pytest_runtest_makereport": 3,
        "pytest_runtest_logreport": 3,
    }
    assert sum(calls.values()) <= 7


def test_a_bad_marker_adds_the_setup_hook_and_still_fails_only_its_test(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.max_ram("lots")
        def test_bad():
            pass

        def test_good():
            pass
        """
    )
    counter = _Counter()
    result = pytester.runpytest_inprocess("-p", "no:randomly", "--hypomnesis", plugins=[counter])
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*max_ram('lots') on test_bad.py::test_bad*valid forms*"])
    assert counter.calls["pytest_runtest_setup"] == 2


def test_status_hook_only_from_the_first_budget_failure_on(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_over="""
        import mmap

        import pytest

        def test_a_first():
            pass

        @pytest.mark.max_ram("1MiB")
        def test_b_over():
            block = mmap.mmap(-1, 64 * 2**20)
            for offset in range(0, len(block), mmap.PAGESIZE):
                block[offset] = 1
            block.close()

        def test_c_after():
            pass
        """
    )
    counter = _Counter()
    result = pytester.runpytest_inprocess(
        "-p", "no:randomly", "--hypomnesis", "-v", plugins=[counter]
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_b_over OVER BUDGET*"])
    # Asked for the failing test's call report (where the letter comes from) and every
    # report after it: 1 + 1 (its teardown) + 3 (the next test), then the short summary.
    assert 5 <= counter.calls["pytest_report_teststatus"] <= 6


def test_scope_test_keeps_its_setup_and_teardown_hooks(pytester: pytest.Pytester) -> None:
    calls = _per_test(pytester, PLAIN, "--hypomnesis", "--hypomnesis-scope=test")
    # The span begins before the fixtures and ends after their teardown, in hooks whose
    # failure is the test's error: two more than scope=call.
    assert calls == {
        "pytest_runtest_setup": 1,
        "pytest_runtest_call": 1,
        "pytest_runtest_teardown": 1,
        "pytest_runtest_makereport": 3,
        "pytest_runtest_logreport": 3,
    }
