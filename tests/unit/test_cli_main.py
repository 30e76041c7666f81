"""``hmn`` run in-process through ``main()`` against a fake GPU in the probe layer."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_hypomnesis import FakeGpu, __version__
from pytest_hypomnesis.probe import chain
from tests.helpers.cli import cli_record, hmn, write_cli_report
from tests.helpers.units import GIB, MIB


@pytest.fixture
def fake() -> Iterator[FakeGpu]:
    gpu = FakeGpu()
    previous = chain.set_fake(gpu)
    yield gpu
    chain.set_fake(previous)


# --- checklist 39/40: summary -----------------------------------------------------------


def test_summary_no_devices(fake: FakeGpu, capsys: pytest.CaptureFixture[str]) -> None:
    assert hmn(capsys) == (0, "hmn: no visible GPUs.\n", "")
    assert hmn(capsys, "--json") == (0, "[]\n", "")


def test_summary_several_devices(fake: FakeGpu, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_device(name="NVIDIA Fake A", total="16GiB", used="1GiB", reserved="259MiB")
    fake.add_device(name=None, total="8GiB", used=0, driver_version=None)
    code, out, err = hmn(capsys)
    assert (code, err) == (0, "")
    assert out == (
        "GPU 0 [NVIDIA Fake A]: free 15101 MiB / 16384 MiB (259 MiB reserved), driver 555.42.06\n"
        "GPU 1: free 8192 MiB / 8192 MiB\n"
    )
    code, out, err = hmn(capsys, "--json")
    assert json.loads(out) == [
        {
            "index": 0,
            "name": "NVIDIA Fake A",
            "total_bytes": 16 * GIB,
            "free_bytes": 15101 * MIB,
            "used_bytes": GIB,
            "reserved_bytes": 259 * MIB,
            "driver_version": "555.42.06",
        },
        {
            "index": 1,
            "name": None,
            "total_bytes": 8 * GIB,
            "free_bytes": 8 * GIB,
            "used_bytes": 0,
            "reserved_bytes": None,
            "driver_version": None,
        },
    ]
    assert out.startswith('[{"index":0,"name":"NVIDIA Fake A","total_bytes":17179869184,')


def test_json_before_a_subcommand(fake: FakeGpu, capsys: pytest.CaptureFixture[str]) -> None:
    assert hmn(capsys, "--json", "ps") == (
        2,
        "",
        "hmn: --json before a subcommand is ignored, not applied — each subcommand has its "
        "own --json (e.g. `hmn ps --json`, not `hmn --json ps`)\n",
    )


# --- checklist 41-43: ps ----------------------------------------------------------------


def test_ps_rows_across_devices(fake: FakeGpu, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_device(name="Dev A")
    fake.add_device(name=None)
    fake.set_process_vram(0, "2GiB", pid=300, name="weird,name.exe")
    fake.set_process_vram(0, "2GiB", pid=100, name="?")
    fake.set_process_vram(1, "10MiB", pid=200, name="日本語")
    fake.set_process_vram(1, "3GiB", pid=400, name=None)
    code, out, err = hmn(capsys, "ps")
    assert code == 0
    assert out == (
        "PID  NAME            VRAM     SHARED  DEVICE\n"
        "400  ?               3.0 GiB  0 MiB   GPU 1 \n"
        "100  ?               2.0 GiB  0 MiB   Dev A \n"
        "300  weird,name.exe  2.0 GiB  0 MiB   Dev A \n"
        "200  日本語             10 MiB   0 MiB   GPU 1 \n"
    )
    assert err == (
        "hmn: 4 GPU processes found (7.0 GiB committed total; 2 protected — re-run elevated "
        "for names).\n"
    )
    code, out, err = hmn(capsys, "ps", "--json", "--device", "1", "--pid", "200")
    assert code == 0
    assert out == (
        '[{"pid":200,"name":"日本語","used_bytes":10485760,"shared_used_bytes":0,'
        '"device_index":1,"device_name":null}]\n'
    )
    assert err == "hmn: 1 GPU process found matching pid=200 device=1 (10 MiB committed total).\n"


def test_ps_empty(fake: FakeGpu, capsys: pytest.CaptureFixture[str]) -> None:
    assert hmn(capsys, "ps") == (
        0,
        "PID  NAME  VRAM  SHARED  DEVICE\n",
        "hmn: 0 GPU processes found.\n",
    )
    fake.add_device()
    assert hmn(capsys, "ps", "--json") == (0, "[]\n", "hmn: 0 GPU processes found.\n")


def test_ps_device_that_does_not_exist(fake: FakeGpu, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_device()
    assert hmn(capsys, "ps", "--device", "3") == (
        2,
        "",
        "hmn: device index 3 out of range (have 1 device)\n",
    )


# --- checklist 37: usage errors, help, version ------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bogus"], "unrecognized option --bogus"),
        (["ps", "--pid", "abc"], "argument --pid: invalid PID 'abc': not a whole number"),
        (["ps", "--pid", "-3"], "argument --pid: invalid PID '-3': must not be negative"),
        (["ps", "--sort", "size"], "argument --sort: invalid choice: 'size'"),
        (["ps", "--device", "x"], "argument --device: invalid device index 'x'"),
        (["watch", "--interval", "0"], 'argument --interval: invalid duration "0": must be'),
        (["watch", "--interval", "-1s"], 'argument --interval: invalid duration "-1s"'),
        (
            ["spill", "--interval", "-5", "--", "true"],
            "argument --interval: invalid interval '-5': must not be negative",
        ),
        (["watch", "--top", "-2"], "argument --top: invalid count '-2': must not be negative"),
        (["watch", "--duration", "5d"], 'argument --duration: invalid duration "5d": unknown'),
        (["watch", "12x"], "argument PID: invalid PID '12x': not a whole number"),
        (["watch", "--top", "0"], "argument --top: invalid count '0': must be at least 1"),
        (["watch", "1", "--follow-new"], "watch --follow-new only applies to auto-selection"),
        (["spill", "--interval", "0", "--", "true"], "argument --interval: invalid interval"),
        (["spill"], "spill needs a command to run"),
        (["spill", "--"], "spill needs a command to run"),
        (["report"], "the following arguments are required: FILE.json"),
        (["nope"], "argument COMMAND: invalid choice: 'nope'"),
        # The crate's parser takes options only spelled out, and each at most once.
        (["ps", "--dev", "0"], "unrecognized option --dev (did you mean --device? options"),
        (["--js"], "unrecognized option --js (did you mean --json?"),
        (["ps", "--so", "total"], "unrecognized option --so (did you mean --sort?"),
        (["watch", "--int", "1s", "--duration", "1s"], "unrecognized option --int (did you"),
        (["watch", "--dur", "1s"], "unrecognized option --dur (did you mean --duration?"),
        (["spill", "--int", "5", "--", "true"], "unrecognized option --int (did you mean"),
        (["report", "--comp", "b.json", "a.json"], "unrecognized option --comp (did you"),
        (["ps", "--pid", "1", "--pid", "2"], "argument --pid: given more than once"),
        (["ps", "--pid=1", "--pid=1"], "argument --pid: given more than once"),
        (["ps", "--json", "--json"], "argument --json: given more than once"),
        (["watch", "--interval", "1s", "--interval", "2s"], "argument --interval: given more"),
        (["--json", "--json"], "argument --json: given more than once"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    fake: FakeGpu, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = hmn(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("hmn: " + message)
    assert err.count("\n") == 1


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert hmn(capsys, "--version") == (0, f"hmn {__version__}\n", "")
    assert hmn(capsys, "-V") == (0, f"hmn {__version__}\n", "")
    code, out, _ = hmn(capsys, "--help")
    assert code == 0
    for word in ("ps", "watch", "spill", "report", "--json", "--version"):
        assert word in out
    code, out, _ = hmn(capsys, "help", "watch")
    assert code == 0
    for flag in ("--interval", "--duration", "--top", "--follow-new", "--device", "--json"):
        assert flag in out
    code, out, _ = hmn(capsys, "help")
    assert (code, out.startswith("usage: hmn")) == (0, True)


def test_every_flag_has_help() -> None:
    import argparse

    from pytest_hypomnesis.cli import build_parser

    parser = build_parser()
    parsers = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers.extend(action.choices.values())
    for p in parsers:
        for action in p._actions:
            assert action.help, f"{p.prog}: {action.dest} has no help"


# --- watch and spill in-process ----------------------------------------------------------


def test_watch_in_process_with_duration(fake: FakeGpu, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_device(name="Fake")
    fake.set_process_vram(0, "1GiB", pid=4242, name="trainer")
    code, out, err = hmn(capsys, "watch", "--interval", "50ms", "--duration", "120ms", "--json")
    assert code == 0
    assert err == (
        "hmn watch: device 0 [Fake], interval 0.1s, watching 1 PID(s) (top 5 by committed)\n"
    )
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["kind"] for r in records] == ["sample"] * (len(records) - 1) + ["summary"]
    assert len(records) >= 3
    assert records[-1]["per_pid"] == [
        {
            "pid": 4242,
            "name": "trainer",
            "baseline_used_bytes": GIB,
            "peak_used_bytes": GIB,
            "baseline_shared_bytes": 0,
            "peak_shared_bytes": 0,
        }
    ]
    assert records[-1]["measurable"] is False


def test_watch_bad_device_is_exit_2(fake: FakeGpu, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_device()
    assert hmn(capsys, "watch", "1", "--device", "2") == (
        2,
        "",
        "hmn: watch failed to query device 2: device index 2 out of range (have 1 devices)\n",
    )


def test_spill_in_process(fake: FakeGpu, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    fake.add_device()
    code, out, err = hmn(
        capsys,
        "spill",
        "--json",
        "--interval",
        "5",
        "--",
        sys.executable,
        "-c",
        "raise SystemExit(3)",
    )
    assert code == 3
    assert json.loads(out)["measurable"] is False
    assert err == "hmn spill: spill not measurable on this platform\n"
    assert hmn(capsys, "spill", "--device", "4", "--", "true") == (
        2,
        "",
        "hmn: device index 4 out of range (have 1 device)\n",
    )


# --- hmn report ---------------------------------------------------------------------------


def test_report_one_file_is_the_plugin_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_hypomnesis.report.schema import load_report
    from pytest_hypomnesis.report.table import header_line, summary_lines

    path = write_cli_report(
        tmp_path / "r.json", [cli_record("t.py::a", MIB, GIB), cli_record("t.py::b", 5 * MIB, None)]
    )
    code, out, err = hmn(capsys, "report", str(path), "--top", "1")
    data = load_report(path)
    assert (code, err) == (0, "")
    assert out.splitlines() == [header_line(data), *summary_lines(data["tests"], top=1)]
    assert "t.py::a" in out
    assert "1 more not shown" in out


def test_report_merges_shards_with_a_source_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_hypomnesis.report.table import summary_lines

    one = write_cli_report(tmp_path / "shard1.json", [cli_record("t.py::a", MIB, GIB)])
    two = write_cli_report(
        tmp_path / "shard2.json",
        [cli_record("t.py::a", 2 * MIB, 2 * GIB), cli_record("t.py::c", 0, 0)],
    )
    code, out, _ = hmn(capsys, "report", str(one), str(two), "--top", "0")
    assert code == 0
    lines = out.splitlines()
    tests: list[Any] = [
        cli_record("t.py::a", MIB, GIB),
        cli_record("t.py::a", 2 * MIB, 2 * GIB),
        cli_record("t.py::c", 0, 0),
    ]
    assert lines[1:] == summary_lines(tests, top=0, sources=[str(one), str(two), str(two)])
    assert "source" in lines[1]
    rows_a = [line for line in lines if "t.py::a" in line]
    assert len(rows_a) == 2
    assert str(one) in rows_a[1]
    assert str(two) in rows_a[0]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "no such file"),
        ("", "empty file"),
        ('{"schema": "pytest-hypomnesis/1", "tests": [', "not valid JSON"),
        ('{"schema": "other/2"}', "not a pytest-hypomnesis report"),
        ("[1, 2]", "expected an object"),
    ],
)
def test_report_bad_files_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, fragment: str
) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    code, out, err = hmn(capsys, "report", str(path))
    assert (code, out) == (2, "")
    assert err.startswith(f"hmn: {os.fspath(path)}: ")
    assert fragment in err
    assert err.count("\n") == 1


def test_report_without_tests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_cli_report(tmp_path / "r.json", [])
    code, out, _ = hmn(capsys, "report", str(path))
    assert code == 0
    assert out.splitlines()[-1] == f"hypomnesis: no measured tests in {path}"


@pytest.mark.parametrize("argv", [["--help"], ["help"], ["ps", "--help"], ["help", "watch"]])
def test_long_help_has_the_platform_limits_and_the_security_note(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, _ = hmn(capsys, *argv)
    assert code == 0
    for platform in ("Linux", "Windows", "macOS"):
        assert f"  {platform}  " in out
    assert "compute processes only" in out  # Linux NVML listing limit
    assert "Apple Silicon only" in out
    assert "security:" in out
    assert "`[protected]` or `?`" in out
    assert "Running elevated" in out
    if argv in (["--help"], ["help"]):
        assert "exit status:" in out


def test_help_of_a_command_without_its_arguments_built_still_lists_every_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `hmn` builds only the running command's arguments; the command list is complete.
    code, out, _ = hmn(capsys, "--help")
    assert code == 0
    for command in ("ps", "watch", "spill", "report", "help"):
        assert f"\n    {command} " in out


def test_report_prints_each_runs_ram_peak(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_hypomnesis.report.schema import RunRecord, load_report
    from pytest_hypomnesis.report.table import header_line

    run: RunRecord = {"ram_peak_bytes": 3 * GIB, "ram_peak_bytes_by_worker": {"master": 3 * GIB}}
    one = write_cli_report(tmp_path / "one.json", [cli_record("t.py::a", MIB, GIB)], run=run)
    code, out, _ = hmn(capsys, "report", str(one))
    assert code == 0
    lines = out.splitlines()
    assert lines[:2] == [header_line(load_report(one)), "hypomnesis: run RAM peak 3.00 GiB"]
    # Shards are separate runs: each file's own peak, named; a file without one adds none.
    old = write_cli_report(tmp_path / "old.json", [cli_record("t.py::b", MIB, GIB)])
    code, out, _ = hmn(capsys, "report", str(one), str(old))
    assert code == 0
    peaks = [line for line in out.splitlines() if "run RAM peak" in line]
    assert peaks == [f"hypomnesis: run RAM peak 3.00 GiB [{one}]"]
