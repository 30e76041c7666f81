"""The regression gate never says "no regression" for checks it could not make: a threshold
on a figure unknown on one side (no GPU in the baseline or in this run) is listed as not
compared, and fails the run under ``--hypomnesis-strict``."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_hypomnesis.cli import main as hmn_main
from pytest_hypomnesis.report.compare import compare, format_comparison, parse_fail_exprs
from tests.helpers.reports import make_report, make_test, write_report
from tests.helpers.units import GIB


def test_unknown_on_either_side_is_listed_as_not_compared() -> None:
    base = make_report([make_test("t.py::a", vram={"0": (GIB, GIB)}), make_test("t.py::b")])
    new = make_report([make_test("t.py::a"), make_test("t.py::b")])
    comparison = compare(base, new, parse_fail_exprs("vram:0B"))
    assert comparison.regressions == ()
    assert [(n, side) for _t, n, side in comparison.not_compared] == [
        ("t.py::a", "this run"),
        ("t.py::b", "both reports"),
    ]
    lines = format_comparison(comparison)
    assert "not compared: vram:0B for 1 test (unknown in this run)" in lines
    assert "not compared: vram:0B for 1 test (unknown in both reports)" in lines


def test_known_on_both_sides_lists_nothing_as_not_compared() -> None:
    report = make_report([make_test("t.py::a", vram={"0": (GIB, GIB)})])
    comparison = compare(report, report, parse_fail_exprs("vram:0B,ram:10%"))
    assert comparison.not_compared == ()
    assert not any(line.startswith("not compared") for line in format_comparison(comparison))


SUITE = """
def test_one():
    pass

def test_two():
    pass
"""


@pytest.mark.usefixtures("inner_pytester_run")
@pytest.mark.parametrize(("strict", "exit_code"), [(False, 0), (True, 1)])
def test_gate_on_vram_without_a_gpu(
    pytester: pytest.Pytester, strict: bool, exit_code: int
) -> None:
    pytester.makepyfile(test_gate=SUITE)
    pytester.runpytest("--hypomnesis-json=base.json").assert_outcomes(passed=2)
    args = ["--hypomnesis", "--hypomnesis-compare=base.json", "--hypomnesis-compare-fail=vram:0B"]
    result = pytester.runpytest(*args, *(["--hypomnesis-strict"] if strict else []))
    result.stdout.fnmatch_lines(["*not compared: vram:0B for 2 tests (unknown in both reports)*"])
    if strict:
        result.stdout.fnmatch_lines(["*--hypomnesis-strict: the baseline gate could not compare*"])
    assert result.ret == exit_code


# --- report paths checked before any test runs ------------------------------------------


@pytest.mark.usefixtures("inner_pytester_run")
def test_json_and_html_on_one_path_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=SUITE)
    result = pytester.runpytest("--hypomnesis-json=same.out", "--hypomnesis-html=same.out")
    result.stderr.fnmatch_lines(["*--hypomnesis-json and --hypomnesis-html name the same file*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert not (pytester.path / "same.out").exists()


@pytest.mark.usefixtures("inner_pytester_run")
@pytest.mark.parametrize("option", ["--hypomnesis-json", "--hypomnesis-html"])
def test_report_path_that_is_a_directory_is_rejected_up_front(
    pytester: pytest.Pytester, option: str
) -> None:
    pytester.makepyfile(test_gate=SUITE)
    (pytester.path / "out.json").mkdir()
    result = pytester.runpytest(f"{option}=out.json")
    result.stderr.fnmatch_lines([f"*{option}=out.json: *out.json is a directory*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "test_one" not in result.stdout.str()


def test_hmn_report_html_to_a_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = write_report(tmp_path / "r.json", make_report([make_test("t.py::a")]))
    (tmp_path / "page").mkdir()
    assert hmn_main(["report", str(report), "--html", str(tmp_path / "page")]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert "t.py::a" not in capsys.readouterr().out  # rejected before the table is printed


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("boom")


def test_marker_argument_whose_repr_raises_gets_the_one_line_error() -> None:
    from pytest_hypomnesis._units import SizeError, parse_size

    with pytest.raises(SizeError, match=r"<_BadRepr object \(repr failed: RuntimeError\)>"):
        parse_size(_BadRepr())
