"""A session that measures nothing registers no per-test hooks (it pays nothing per test)."""

from __future__ import annotations

import pytest

CONFTEST = """
import pytest

seen = []

def pytest_runtestloop(session):
    seen.append(session.config.pluginmanager.get_plugin("hypomnesis-runtest") is not None)

def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"runtest hooks registered: {seen}")
"""


@pytest.mark.parametrize(
    ("source", "args", "registered"),
    [
        ("def test_a():\n    pass\n", [], False),
        ("def test_a():\n    pass\n", ["--hypomnesis"], True),
        ("def test_a():\n    pass\n", ["--hypomnesis-max-ram=1GiB"], True),
        (
            "import pytest\n\n@pytest.mark.max_ram('1GiB')\ndef test_a():\n    pass\n",
            [],
            True,
        ),
    ],
)
def test_runtest_hooks_only_when_something_is_measured(
    pytester: pytest.Pytester, source: str, args: list[str], registered: bool
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_off=source)
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"runtest hooks registered: [[]{registered}[]]"])


def test_marker_on_a_deselected_test_only_does_not_register(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_off="import pytest\n\n@pytest.mark.max_ram('1GiB')\ndef test_heavy():\n    pass\n\n"
        "def test_light():\n    pass\n"
    )
    result = pytester.runpytest_subprocess("-k", "light")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["runtest hooks registered: [[]False[]]"])
