"""Hostile report files and report paths (issue 11): one clear line for a bad baseline or
report, every field read is validated, writes never replace what is not a regular file."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_hypomnesis.plugin import engine as engine_module
from pytest_hypomnesis.plugin.engine import Engine
from pytest_hypomnesis.report.atomicfile import STALE_TMP_AGE_S, write_text_atomic
from pytest_hypomnesis.report.printable import printable
from pytest_hypomnesis.report.schema import ReportError, load_report
from tests.helpers.cli import hmn
from tests.helpers.pluginrun import assert_usage_error
from tests.helpers.reports import make_report, make_test, write_report
from tests.helpers.units import MIB

PASSING = "def test_ok():\n    pass\n"


def _good_report() -> dict[str, Any]:
    return make_report([make_test("t.py::test_a", ram_increase=MIB)])


def _hostile_texts() -> dict[str, str]:
    five_thousand = "7" * 5000
    good = json.dumps(_good_report())
    return {
        "bomb": "[" * 100000,
        "object-bomb": '{"a":' * 100000,
        "digits-top": five_thousand,
        "digits-inside": good.replace('"index": 0', f'"index": {five_thousand}'),
    }


# --- loading: nesting bombs, huge integers ------------------------------------------------


@pytest.mark.parametrize("case", sorted(_hostile_texts()))
def test_hostile_json_is_one_report_error(tmp_path: Path, case: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(_hostile_texts()[case], encoding="utf-8")
    with pytest.raises(ReportError) as info:
        load_report(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    assert len(message) < 300


@pytest.mark.parametrize("case", sorted(_hostile_texts()))
def test_hmn_report_on_hostile_json_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    path = tmp_path / "r.json"
    path.write_text(_hostile_texts()[case], encoding="utf-8")
    code, out, err = hmn(capsys, "report", str(path))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    base = tmp_path / "base.json"
    base.write_text(_hostile_texts()[case], encoding="utf-8")
    good = write_report(tmp_path / "good.json", _good_report())
    code, out, err = hmn(capsys, "report", str(good), "--compare", str(base))
    assert code == 2
    assert len(err.strip().splitlines()) == 1


@pytest.mark.usefixtures("inner_pytester_run")
@pytest.mark.parametrize("case", ["bomb", "digits-inside"])
def test_hostile_baseline_is_a_usage_error_before_any_test(
    pytester: pytest.Pytester, case: str
) -> None:
    (pytester.path / "base.json").write_text(_hostile_texts()[case], encoding="utf-8")
    pytester.makepyfile(test_a=PASSING)
    result = pytester.runpytest_subprocess("--hypomnesis-compare=base.json")
    assert_usage_error(result, "ERROR: *base.json: *")


# --- every field read is validated ----------------------------------------------------------

_BAD_DEVICES: list[tuple[Any, str]] = [
    ([5], "devices[0]: expected an object"),
    ([{"index": "0", "name": "GPU"}], "devices[0].index: expected an integer"),
    ([{"index": 0, "name": 5}], "devices[0].name: expected a string or null"),
    ([{"index": 0, "total_bytes": "80GiB"}], "devices[0].total_bytes: expected an integer"),
    ([{"index": 0, "total_bytes": 2**64}], "devices[0].total_bytes: expected an integer"),
    ([{"index": 0, "driver_version": ["580"]}], "devices[0].driver_version: expected a string"),
    ([{"index": 0, "used_bytes": {"x": 1}}], "devices[0].used_bytes: expected an integer"),
]


@pytest.mark.parametrize(("devices", "message"), _BAD_DEVICES)
def test_wrong_type_devices_are_rejected_at_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], devices: Any, message: str
) -> None:
    report = _good_report()
    report["devices"] = devices
    path = write_report(tmp_path / "r.json", report)
    with pytest.raises(ReportError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_report(path)
    code, _out, err = hmn(capsys, "report", str(path), "--html", str(tmp_path / "r.html"))
    assert code == 2
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"machine": {"gpu_unavailable_reason": 7}}, "machine.gpu_unavailable_reason"),
        ({"settings": {"scope": ["call"]}}, "settings.scope"),
        ({"settings": {"interval_s": "10ms"}}, "settings.interval_s"),
        ({"settings": {"devices": "0"}}, "settings.devices"),
        ({"settings": {"devices": [0, "1"]}}, "settings.devices[1]"),
    ],
)
def test_fields_the_header_and_gate_read_are_validated(
    tmp_path: Path, patch: dict[str, Any], message: str
) -> None:
    report = _good_report()
    for key, value in patch.items():
        report[key] = {**report[key], **value}
    path = write_report(tmp_path / "r.json", report)
    with pytest.raises(ReportError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_report(path)


def test_unicode_digit_device_keys_are_rejected(tmp_path: Path) -> None:
    report = make_report([make_test("t.py::test_a", vram={"²": (MIB, MIB)})])
    path = write_report(tmp_path / "r.json", report)
    with pytest.raises(ReportError, match="is not a device index"):
        load_report(path)


@pytest.mark.usefixtures("inner_pytester_run")
def test_wrong_type_devices_in_a_baseline_stop_the_run_before_the_tests(
    pytester: pytest.Pytester,
) -> None:
    report = _good_report()
    report["devices"] = [{"index": 0, "name": {"evil": True}}]
    write_report(pytester.path / "base.json", report)
    pytester.makepyfile(test_a=PASSING)
    result = pytester.runpytest_subprocess(
        "--hypomnesis-compare=base.json", "--hypomnesis-compare-fail=ram:10%"
    )
    assert_usage_error(result, "ERROR: *devices[[]0[]].name: expected a string or null*")


# --- node ids and names are escaped for the terminal ----------------------------------------


def test_node_ids_and_names_from_a_report_are_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = "t.py::test_\x1b[2J\x1b]0;pwned\x07\u202e\nx"
    report = make_report([make_test(evil, ram_increase=MIB)], gpu_names=("GPU\x1b[31m red",))
    report["tests"][0]["worker"] = "gw\x1b[1m0"
    path = write_report(tmp_path / "r.json", report)
    base = write_report(tmp_path / "base.json", make_report([make_test(evil, ram_increase=0)]))
    code, out, err = hmn(
        capsys, "report", str(path), "-v", "--compare", str(base), "--fail", "ram:1000"
    )
    assert code == 1, err
    for control in ("\x1b", "\x07", "\u202e"):
        assert control not in out
    assert r"test_\x1b[2J\x1b]0;pwned\x07\u202e\nx" in out
    assert r"GPU\x1b[31m red" in out
    assert r"gw\x1b[1m0" in out


def test_printable_keeps_letters_and_escapes_controls() -> None:
    assert printable("tëst_ü[名]") == "tëst_ü[名]"
    assert printable("a\tb\x9bc\x7f") == r"a\tb\x9bc\x7f"


# --- negative durations from a mocked clock -------------------------------------------------


def test_a_clock_going_backwards_gives_no_negative_duration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ticks = iter([100.0, 50.0, 40.0, 30.0, 20.0, 10.0])
    monkeypatch.setattr(engine_module, "_clock", lambda: next(ticks))
    engine = Engine(interval_s=0.01)
    try:
        span = engine.begin()
        record = engine.end(span)
    finally:
        engine.close()
    assert record["duration_s"] == 0.0


@pytest.mark.usefixtures("inner_pytester_run")
def test_a_test_that_mocks_perf_counter_writes_a_report_hmn_accepts(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(
        test_a="import time\n\n"
        "def test_frozen(monkeypatch):\n"
        "    monkeypatch.setattr(time, 'perf_counter', lambda: -1e9)\n"
        "    monkeypatch.setattr(time, 'monotonic', lambda: -1e9)\n"
    )
    result = pytester.runpytest_subprocess("--hypomnesis-json=out.json")
    assert result.ret == 0
    data = json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))
    assert data["tests"][0]["duration_s"] >= 0
    code, _out, err = hmn(capsys, "report", str(pytester.path / "out.json"))
    assert code == 0, err


# --- writing: regular files atomically, devices and FIFOs directly, symlinks followed -------


def test_a_fifo_is_written_into_not_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as fh:
            got.append(fh.read())

    reader = threading.Thread(target=read)
    reader.start()
    write_text_atomic(fifo, "report\n")
    reader.join(timeout=10)
    assert got == [b"report\n"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_a_character_device_is_written_into_not_replaced(tmp_path: Path) -> None:
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null twin
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    try:
        write_text_atomic(node, "report\n")
    except PermissionError as exc:  # a container may forbid opening device nodes
        pytest.skip(f"cannot open the device node: {exc}")
    assert stat.S_ISCHR(os.lstat(node).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


@pytest.mark.usefixtures("inner_pytester_run")
def test_json_report_into_a_fifo_end_to_end(pytester: pytest.Pytester) -> None:
    fifo = pytester.path / "report.pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as fh:
            got.append(fh.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    pytester.makepyfile(test_a=PASSING)
    result = pytester.runpytest_subprocess(f"--hypomnesis-json={fifo}")
    reader.join(timeout=30)
    assert result.ret == 0, result.stdout.str()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert json.loads(got[0])["schema"] == "pytest-hypomnesis/2"


def test_a_symlink_stays_a_link_and_its_target_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    target.write_text("old", encoding="utf-8")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_text_atomic(link, "new")
    assert link.is_symlink()
    assert os.readlink(link) == str(target)
    assert target.read_text(encoding="utf-8") == "new"
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "made.json")
    write_text_atomic(dangling, "made")
    assert dangling.is_symlink()
    assert (tmp_path / "made.json").read_text(encoding="utf-8") == "made"


def test_a_directory_is_an_error_and_left_alone(tmp_path: Path) -> None:
    taken = tmp_path / "taken.json"
    taken.mkdir()
    (taken / "inside").write_text("keep", encoding="utf-8")
    with pytest.raises(IsADirectoryError):
        write_text_atomic(taken, "x")
    assert (taken / "inside").read_text(encoding="utf-8") == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.json"]


def test_stale_temp_files_of_our_pattern_are_cleaned_at_the_next_write(tmp_path: Path) -> None:
    old = time.time() - STALE_TMP_AGE_S - 60
    stale = tmp_path / ".r.json.ab_12xyz.tmp"
    fresh = tmp_path / ".r.json.cd34efgh.tmp"  # a live writer's: too young to touch
    foreign = tmp_path / ".r.json.user-file.tmp"  # not our pattern
    other = tmp_path / ".other.json.abcdefgh.tmp"  # another report's
    stale_dir = tmp_path / ".r.json.zzzzzzzz.tmp"  # not a regular file
    stale_dir.mkdir()
    for path in (stale, fresh, foreign, other):
        path.write_text("x", encoding="utf-8")
    for path in (stale, foreign, other, stale_dir):
        os.utime(path, (old, old))
    write_text_atomic(tmp_path / "r.json", "{}")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert ".r.json.ab_12xyz.tmp" not in names
    assert {
        ".r.json.cd34efgh.tmp",
        ".r.json.user-file.tmp",
        ".other.json.abcdefgh.tmp",
        ".r.json.zzzzzzzz.tmp",
        "r.json",
    } <= set(names)
