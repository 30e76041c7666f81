"""The session report (``report/session.py``) is built once and owns what session end
produced; the terminal section (``report/terminal.py``) only prints it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, cast

import pytest

from pytest_hypomnesis.gpumodel import GpuDeviceInfo
from pytest_hypomnesis.plugin.options import Settings
from pytest_hypomnesis.record import MeasuredTestRecord
from pytest_hypomnesis.report import terminal
from pytest_hypomnesis.report.compare import parse_fail_exprs
from pytest_hypomnesis.report.schema import SCHEMA, load_report
from pytest_hypomnesis.report.session import SessionReport, build_session_report
from pytest_hypomnesis.testing import FakeGpu
from tests.helpers.reports import make_report, make_test
from tests.helpers.units import MIB


class _Terminal:
    """What the terminal section writes, line by line."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_sep(self, sep: str, title: str, **_: Any) -> None:
        self.lines.append(f"== {title} ==")

    def write_line(self, line: str, **_: Any) -> None:
        self.lines.append(line)


def _tests() -> list[MeasuredTestRecord]:
    return [
        cast(MeasuredTestRecord, make_test("t.py::light", ram_increase=MIB)),
        cast(MeasuredTestRecord, make_test("t.py::heavy", ram_increase=50 * MIB)),
    ]


def _build(settings: Settings, baseline: Any = None) -> SessionReport:
    return build_session_report(
        settings,
        _tests(),
        baseline=baseline,
        gpu_reason=lambda: "no GPU here",
        pytest_version=pytest.__version__,
    )


def test_built_once_writes_the_json_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "mem.json"
    report = _build(Settings(enabled=True, json_path=str(path)))
    assert report.json_error is None and not report.failed and report.problems == ()
    assert report.data["schema"] == SCHEMA
    assert report.data["machine"]["gpu_unavailable_reason"] == "no GPU here"
    assert load_report(path) == json.loads(json.dumps(report.data))
    assert [t["nodeid"] for t in report.tests] == ["t.py::light", "t.py::heavy"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.failed = True  # type: ignore[misc]


def test_a_report_not_written_fails_the_run_and_says_why(tmp_path: Path) -> None:
    report = _build(Settings(enabled=True, json_path=str(tmp_path), html_path=str(tmp_path)))
    assert report.failed
    assert report.json_error is not None and str(tmp_path) in report.json_error
    assert len(report.problems) == 1 and "HTML report" in report.problems[0]


def test_gate_failure_is_in_the_report() -> None:
    base = make_report([make_test("t.py::heavy", ram_increase=MIB)])
    report = _build(
        Settings(compare_path="base.json", thresholds=tuple(parse_fail_exprs("ram:10%"))), base
    )
    assert report.comparison is not None and report.comparison.failed
    assert report.failed


def test_terminal_prints_the_report_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "mem.json"
    settings = Settings(enabled=True, json_path=str(path))
    report = _build(settings)
    before = json.dumps(report.data)
    outputs = []
    for _ in range(2):
        tr = _Terminal()
        terminal.summary(report, settings, cast(pytest.TerminalReporter, tr), 0)
        outputs.append(tr.lines)
    assert outputs[0] == outputs[1]
    assert json.dumps(report.data) == before
    lines = outputs[0]
    assert lines[0] == "== hypomnesis =="
    assert lines[1].startswith("hypomnesis: scope call")
    assert "t.py::heavy" in lines[3]  # heaviest first, under the table header
    assert lines[-1] == f"JSON report: {path}"
    quiet = _Terminal()
    terminal.summary(report, settings, cast(pytest.TerminalReporter, quiet), -2)
    assert quiet.lines == [
        "hypomnesis: 2 tests measured, 0 over budget; heaviest t.py::heavy (RAM +50.00 MiB)"
    ]


def test_session_end_state_leaves_the_config(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest
        from pytest_hypomnesis.plugin.hooks import PLUGIN_KEY

        seen = {}

        @pytest.hookimpl(trylast=True)
        def pytest_unconfigure(config):
            seen["plugin"] = config.stash.get(PLUGIN_KEY, None)
        """
    )
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.inline_run("--hypomnesis", "-p", "no:cacheprovider")
    result.assertoutcome(passed=1)
    conftest = next(
        m for m in result.getcalls("pytest_plugin_registered") if "conftest" in str(m.plugin)
    ).plugin
    # The conftest's unconfigure ran after the plugin's: the stash is clean again.
    assert conftest.seen == {"plugin": None}


def test_a_device_entry_is_the_backends_figures_then_which_gpu(fake_gpu: FakeGpu) -> None:
    """Every ``GpuDeviceInfo`` field, in its order, under the CUDA ordinal, then the
    identity: what the entry was when it was ``to_dict()`` updated with the identity."""
    fake_gpu.add_device(
        name="NVIDIA Fake", total="8GiB", used="1GiB", uuid="GPU-1", pci_bus_id="0:1"
    )
    fake_gpu.add_device(name=None, reserved="1MiB")
    devices = _build(Settings(enabled=True)).data["devices"]
    fields = [f.name for f in dataclasses.fields(GpuDeviceInfo)]
    assert [list(d) for d in devices] == [
        [*fields, "uuid", "nvml_index", "pci_bus_id", "parent_uuid"]
    ] * 2
    assert devices[0] == {
        **fake_gpu.device_info(0).to_dict(),
        "uuid": "GPU-1",
        "nvml_index": 0,
        "pci_bus_id": "0:1",
        "parent_uuid": None,
    }
    assert devices[1]["name"] is None and devices[1]["reserved_bytes"] == MIB
