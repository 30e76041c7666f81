"""``hmn plan``: suggested workers per GPU and predicted wall time from a report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_hypomnesis.cli import main
from tests.helpers.reports import make_report, make_test, write_report
from tests.helpers.units import GIB


def _report(tmp_path: Path) -> Path:
    tests = [
        make_test(f"t.py::t{i}", vram={"0": (4 * GIB, 5 * GIB)}, duration_s=1.0) for i in range(8)
    ]
    tests.append(make_test("t.py::huge", vram={"0": (20 * GIB, 21 * GIB)}, duration_s=1.0))
    tests.append(make_test("t.py::cpu", vram=None, duration_s=0.5))
    return write_report(tmp_path / "r.json", make_report(tests))


def test_plan_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _report(tmp_path)
    assert main(["plan", str(path), "--gpus", "2", "--gpu-memory", "10GiB", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    # 4 GiB + 10% = 4.4 GiB per test: two fit in 9.5 GiB, so 2 per GPU; 8 tests of 1 s on
    # 4 slots take 2 s, then the unknown-need test runs alone: 0.5 s more at worst.
    assert plan["per_gpu"] == 2 and plan["workers"] == 4
    assert plan["never_fit"] == ["t.py::huge"]
    assert plan["unknown_needs"] == 1
    assert plan["serial_s"] == 9.5
    assert plan["packed_s"] == 2.5
    assert plan["capacity_bytes"] == int(9.5 * GIB)


def test_plan_text_uses_the_reports_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(_report(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "1 GPU(s) of 80.00 GiB" in out
    assert "suggested: -n " in out and "--hypomnesis-needs=" in out
    assert "never fits" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpus", "0"], "invalid GPU count '0'"),
        (["--gpu-memory", "lots"], "invalid size 'lots'"),
        (["--headroom", "150%"], "invalid headroom '150%'"),
    ],
)
def test_plan_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["plan", str(_report(tmp_path)), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hmn: ") and message in err and err.count("\n") == 1


def test_plan_report_without_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_report(tmp_path / "r.json", make_report([make_test("a")], gpu_names=()))
    assert main(["plan", str(path)]) == 2
    assert "lists no GPU; give --gpus N --gpu-memory SIZE" in capsys.readouterr().err
    assert main(["plan", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err
