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


# What pytest loads for this plugin in every run: the hooks and the modules they need to
# add options, register markers and define fixtures. Nothing that measures or reports.
OFF_MODULES = {
    "pytest_hypomnesis",
    "pytest_hypomnesis.plugin",
    "pytest_hypomnesis.plugin.hooks",
    "pytest_hypomnesis.plugin.fixtures",
    "pytest_hypomnesis.plugin.markers",
    "pytest_hypomnesis.plugin.options",
    "pytest_hypomnesis._units",
    "pytest_hypomnesis._iec",  # the IEC constants _units re-exports
}

IMPORTS_CONFTEST = """
import sys

def pytest_unconfigure(config):
    # After every session-end hook (terminal summary, sessionfinish) has run.
    ours = sorted(m for m in sys.modules if m.split(".")[0] == "pytest_hypomnesis")
    with open("imported.txt", "w") as fh:
        fh.write("\\n".join(ours))
"""


def test_a_session_without_the_flag_imports_only_the_hooks(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(IMPORTS_CONFTEST)
    pytester.makepyfile(test_off="def test_a():\n    pass\n\ndef test_b():\n    assert 0\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    imported = set((pytester.path / "imported.txt").read_text().split())
    assert imported == OFF_MODULES, sorted(imported - OFF_MODULES)


def test_the_flag_imports_no_gate_or_html_module_it_does_not_use(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(IMPORTS_CONFTEST)
    pytester.makepyfile(test_off="def test_a():\n    pass\n")
    result = pytester.runpytest_subprocess("--hypomnesis", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    imported = set((pytester.path / "imported.txt").read_text().split())
    assert "pytest_hypomnesis.plugin.engine" in imported
    assert not imported & {"pytest_hypomnesis.report.compare", "pytest_hypomnesis.report.html"}
