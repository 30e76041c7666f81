"""``hmn report --compare BASE.json --fail EXPR --html PATH``: the gate and the HTML page
from saved reports. Exit 1 on a regression, 2 on bad input (one line, nothing else), else 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import hmn
from tests.helpers.htmlpage import Page
from tests.helpers.reports import make_report, make_test, write_report
from tests.helpers.units import GIB, MIB

HMN = Path(sys.executable).parent / ("hmn.exe" if sys.platform == "win32" else "hmn")


def _run_report(path: Path, model_ram: int, data_ram: int, third: str) -> Path:
    """A run of test_model (with VRAM), test_data and ``third``, written to ``path``."""
    tests = [
        make_test("t.py::test_model", ram_increase=model_ram, vram={"0": (GIB, 2 * GIB)}),
        make_test("t.py::test_data", ram_increase=data_ram),
        make_test(third, ram_increase=MIB),
    ]
    return write_report(path, make_report(tests))


@pytest.fixture
def reports(tmp_path: Path) -> tuple[Path, Path]:
    """A baseline and a new run: test_model grew by 52 MiB, test_data by 1 MiB, one test was
    removed and one added."""
    base = _run_report(tmp_path / "base.json", 10 * MIB, 100 * MIB, "t.py::test_removed")
    new = _run_report(tmp_path / "new.json", 62 * MIB, 101 * MIB, "t.py::test_added")
    return base, new


def test_regression_exits_1_with_a_readable_line(
    capsys: pytest.CaptureFixture[str], reports: tuple[Path, Path]
) -> None:
    base, new = reports
    code, out, err = hmn(capsys, "report", str(new), "--compare", str(base), "--fail", "ram:10MiB")
    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert lines[0].startswith("hypomnesis: scope call")  # the table comes first
    start = lines.index("compared 2 tests with the baseline (ram:10MiB): 1 regression")
    assert lines[start + 1 :] == [
        "t.py::test_model  ram +52.00 MiB: 10.00 MiB → 62.00 MiB (+520.0%) > ram:10MiB",
        "only in the baseline (1):",
        "  t.py::test_removed",
        "only in this run (1):",
        "  t.py::test_added",
    ]


def test_within_the_threshold_exits_0(
    capsys: pytest.CaptureFixture[str], reports: tuple[Path, Path]
) -> None:
    base, new = reports
    code, out, err = hmn(
        capsys, "report", str(new), "--compare", str(base), "--fail", "ram:100MiB,vram:1%"
    )
    assert (code, err) == (0, "")
    assert "compared 2 tests with the baseline (ram:100MiB, vram:1%): no regression" in out


def test_compare_without_fail_never_fails(
    capsys: pytest.CaptureFixture[str], reports: tuple[Path, Path]
) -> None:
    base, new = reports
    code, out, _ = hmn(capsys, "report", str(new), "--compare", str(base))
    assert code == 0
    assert "compared 2 tests with the baseline (no thresholds): no regression" in out


def test_shards_merge_before_the_comparison(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, reports: tuple[Path, Path]
) -> None:
    base, _ = reports
    shard1 = write_report(
        tmp_path / "s1.json", make_report([make_test("t.py::test_model", ram_increase=11 * MIB)])
    )
    shard2 = write_report(
        tmp_path / "s2.json", make_report([make_test("t.py::test_data", ram_increase=300 * MIB)])
    )
    code, out, _ = hmn(
        capsys, "report", str(shard1), str(shard2), "--compare", str(base), "--fail", "ram:10%"
    )
    assert code == 1
    assert "compared 2 tests with the baseline (ram:10%): 1 regression" in out
    assert "t.py::test_data  ram +200.00 MiB: 100.00 MiB → 300.00 MiB (+200.0%) > ram:10%" in out
    assert "source" in out  # the table still names each shard


def test_settings_mismatch_warns(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    base = write_report(tmp_path / "b.json", make_report([make_test("t::a")], scope="test"))
    new = write_report(tmp_path / "n.json", make_report([make_test("t::a")], watched=None))
    code, out, _ = hmn(capsys, "report", str(new), "--compare", str(base), "--fail", "ram:1%")
    assert code == 0
    assert (
        "warning: settings differ: scope 'test' in the baseline, 'call' in this run; "
        "figures may not be comparable"
    ) in out
    assert "warning: settings differ: watched devices [0] in the baseline, all visible" in out


def test_html_with_the_baseline(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, reports: tuple[Path, Path]
) -> None:
    base, new = reports
    page_path = tmp_path / "page.html"
    code, _, err = hmn(
        capsys,
        "report",
        str(new),
        "--compare",
        str(base),
        "--fail",
        "ram:10MiB",
        "--html",
        str(page_path),
    )
    assert (code, err) == (1, "")  # the page is written even when the gate fails
    page = Page(page_path.read_text(encoding="utf-8"))
    assert {r["nodeid"] for r in page.rows} == {
        "t.py::test_model",
        "t.py::test_data",
        "t.py::test_added",
    }
    assert page.svgs.count("heavy-chart") == 1


def test_html_without_a_baseline(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, reports: tuple[Path, Path]
) -> None:
    _, new = reports
    timeline = {"t_s": [0.0, 0.1, 0.2], "rss_bytes": [1, 2 * MIB, 1], "vram_bytes": {}}
    with_timeline = write_report(
        tmp_path / "tl.json", make_report([make_test("t.py::test_tl", timeline=timeline)])
    )
    page_path = tmp_path / "page.html"
    code, out, _ = hmn(capsys, "report", str(new), str(with_timeline), "--html", str(page_path))
    assert code == 0
    assert "compared" not in out
    page = Page(page_path.read_text(encoding="utf-8"))
    assert len(page.rows) == 4
    assert [t["nodeid"] for t in page.timelines] == ["t.py::test_tl"]


def _truncated(path: Path) -> None:
    text = json.dumps(make_report([make_test("t::a")]))
    path.write_text(text[:-20], encoding="utf-8")


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (None, "no such file"),
        (lambda p: p.write_text("", encoding="utf-8"), "empty file"),
        (_truncated, "not valid JSON (truncated or corrupt?)"),
        (
            lambda p: p.write_text('{"schema": "junit/2", "tests": []}', encoding="utf-8"),
            "schema: 'junit/2' is not 'pytest-hypomnesis/2' or 'pytest-hypomnesis/1'",
        ),
    ],
    ids=["missing", "empty", "truncated", "foreign"],
)
def test_bad_baseline_is_exit_2_and_one_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    reports: tuple[Path, Path],
    make: object,
    needle: str,
) -> None:
    _, new = reports
    bad = tmp_path / "bad.json"
    if callable(make):
        make(bad)
    code, out, err = hmn(capsys, "report", str(new), "--compare", str(bad), "--fail", "ram:1%")
    assert (code, out) == (2, "")
    assert err.startswith(f"hmn: cannot use baseline {bad}: ")
    assert needle in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fail", "ram:10%"], "hmn: --fail needs --compare BASE.json"),
        (["--compare", "BASE", "--fail", "rss:10%"], "hmn: --fail: invalid threshold 'rss:10%'"),
        (["--compare", "BASE", "--fail", "ram:10G"], "hmn: --fail: invalid threshold 'ram:10G'"),
        (["--compare", "BASE", "--fail", ""], "hmn: --fail: invalid threshold ''"),
        (["--html", "no/such/dir/page.html"], "hmn: --html no/such/dir/page.html: directory"),
    ],
)
def test_bad_arguments_are_exit_2(
    capsys: pytest.CaptureFixture[str],
    reports: tuple[Path, Path],
    args: list[str],
    message: str,
) -> None:
    base, new = reports
    args = [str(base) if a == "BASE" else a for a in args]
    code, out, err = hmn(capsys, "report", str(new), *args)
    assert (code, out) == (2, "")
    assert err.startswith(message), err
    assert err.count("\n") == 1


def test_bad_new_report_is_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, reports: tuple[Path, Path]
) -> None:
    base, _ = reports
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    code, out, err = hmn(capsys, "report", str(broken), "--compare", str(base))
    assert (code, out) == (2, "")
    assert err.startswith(f"hmn: {broken}: not valid JSON")


@pytest.mark.skipif(not HMN.exists(), reason="hmn console script not installed")
def test_real_executable_exit_codes(reports: tuple[Path, Path], tmp_path: Path) -> None:
    base, new = reports

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(HMN), "report", str(new), *args],
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=60,
            check=False,
        )

    failed = run("--compare", str(base), "--fail", "ram:10MiB")
    assert failed.returncode == 1, failed.stderr
    assert "t.py::test_model  ram +52.00 MiB: 10.00 MiB → 62.00 MiB" in failed.stdout
    assert failed.stderr == ""
    assert run("--compare", str(base), "--fail", "ram:100MiB").returncode == 0
    usage = run("--compare", str(tmp_path / "missing.json"))
    assert usage.returncode == 2
    assert usage.stdout == ""
    assert "Traceback" not in usage.stderr
    assert usage.stderr.startswith("hmn: cannot use baseline ")
