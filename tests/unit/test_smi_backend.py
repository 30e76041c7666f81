"""The nvidia-smi backend: parsers on canned text, and the real subprocess path against the
``fake_smi`` executable (parity §4.6, checklist 12, 15, 19, 23, 25)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis.probe import smi
from tests.helpers.fakesmi import FakeSmi, posix_only
from tests.helpers.units import MIB

# --- device query parser ---------------------------------------------------------------


def test_device_parse_full_line() -> None:
    reading = smi.parse_device_output("1024, 16311, 610.88\n")
    assert reading.used_bytes == 1024 * MIB
    assert reading.total_bytes == 16311 * MIB
    assert reading.driver_version == "610.88"


@pytest.mark.parametrize("text", ["1024, 16311\n", "1024, 16311, \n", "1024,16311,"])
def test_device_parse_driver_missing_or_empty_is_none(text: str) -> None:
    reading = smi.parse_device_output(text)
    assert reading.driver_version is None
    assert reading.total_bytes == 16311 * MIB


def test_device_parse_first_line_only() -> None:
    reading = smi.parse_device_output("1, 2, a\n3, 4, b\n")
    assert (reading.used_bytes, reading.driver_version) == (MIB, "a")


def test_device_parse_mib_to_bytes_saturates() -> None:
    huge = 2**64 // MIB + 5
    assert smi.parse_device_output(f"{huge}, {huge}, x").total_bytes == 2**64 - 1


@pytest.mark.parametrize(
    "text",
    [
        "[N/A], 16311, 610.88",
        "1024, [N/A], 610.88",
        "1024",
        "1_024, 16311, 610.88",
        "-1, 16311, 610.88",
        "1.5, 16311, 610.88",
        "\n1024, 16311, 610.88",
        "\x00\xff\xfe garbage",
    ],
)
def test_device_parse_rejects_bad_fields(text: str) -> None:
    with pytest.raises(BackendFailure) as info:
        smi.parse_device_output(text)
    assert info.value.backend == "nvidia-smi"
    assert info.value.reason.startswith("unparsable output: ")


@pytest.mark.parametrize("text", ["", "  \n\n"])
def test_device_parse_empty_output(text: str) -> None:
    with pytest.raises(BackendFailure, match="empty output"):
        smi.parse_device_output(text)


def test_device_parse_accepts_plus_sign_like_rust() -> None:
    assert smi.parse_device_output("+5, 10").used_bytes == 5 * MIB


def test_unparsable_reason_is_truncated() -> None:
    with pytest.raises(BackendFailure) as info:
        smi.parse_device_output("x" * 500)
    assert len(info.value.reason) < 120


# --- listing parser ---------------------------------------------------------------------


def test_listing_parse_names_with_commas_and_question_mark() -> None:
    rows = smi.parse_listing_output(
        "42, weird,name.exe, 8\n7, ?, 100\n9, , 1\n\n  \n3, python, 0\n"
    )
    assert rows == [
        (42, "weird,name.exe", 8 * MIB),
        (7, "?", 100 * MIB),
        (9, None, MIB),
        (3, "python", 0),
    ]


@pytest.mark.parametrize(
    "line",
    ["42, python, [N/A]", "abc, python, 5", "42 python 5", "-1, x, 5", "4294967296, x, 5"],
)
def test_listing_parse_drops_bad_lines(line: str) -> None:
    assert smi.parse_listing_output(f"{line}\n11, ok, 2\n") == [(11, "ok", 2 * MIB)]


def test_listing_parse_drops_a_line_with_too_few_fields() -> None:
    # "pid, used" has no name column: the crate's first-comma split finds nothing, so the
    # line is dropped (parity §8 "too few fields"); an empty name between commas is kept.
    assert smi.parse_listing_output("12, 3\n13, , 4") == [(13, None, 4 * MIB)]


def test_listing_parse_empty_is_empty_list() -> None:
    assert smi.parse_listing_output("") == []


def test_commands_are_the_crates() -> None:
    assert smi.device_command(3) == [
        "--query-gpu=memory.used,memory.total,driver_version",
        "--format=csv,noheader,nounits",
        "--id=3",
    ]
    assert smi.listing_command(0) == [
        "--query-compute-apps=pid,process_name,used_memory",
        "--format=csv,noheader,nounits",
        "--id=0",
    ]


# --- timeout setting ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", 5.0), ("2.5", 2.5), ("0", 5.0), ("-3", 5.0), ("soon", 5.0), ("nan", 5.0), ("inf", 5.0)],
)
def test_timeout_from_env(monkeypatch: pytest.MonkeyPatch, raw: str, expected: float) -> None:
    monkeypatch.setenv("HYPOMNESIS_SMI_TIMEOUT", raw)
    assert smi.timeout_s() == expected


# --- real subprocess against the fake executable -----------------------------------------


@posix_only
def test_device_query_runs_exact_command(fake_smi: FakeSmi) -> None:
    reading = smi.device_query(2)
    assert reading.used_bytes == 1024 * MIB
    assert fake_smi.calls() == [smi.device_command(2)]


@posix_only
def test_listing_runs_exact_command(fake_smi: FakeSmi) -> None:
    fake_smi.set_apps("42, weird,name.exe, 8\n7, ?, 1\n")
    assert smi.list_processes(1) == [(42, "weird,name.exe", 8 * MIB), (7, "?", MIB)]
    assert fake_smi.calls() == [smi.listing_command(1)]


@posix_only
def test_fake_answers_per_device_index(fake_smi: FakeSmi) -> None:
    fake_smi.set_gpu("1, 2, a\n", index=1)
    assert smi.device_query(1).driver_version == "a"
    assert smi.device_query(0).driver_version == "610.88"


@posix_only
def test_listing_empty_output_is_empty_list(fake_smi: FakeSmi) -> None:
    assert smi.list_processes(0) == []


@posix_only
def test_path_resolved_once(fake_smi: FakeSmi, monkeypatch: pytest.MonkeyPatch) -> None:
    smi.device_query(0)
    monkeypatch.setenv("PATH", "")
    smi.device_query(0)  # still the cached absolute path
    assert len(fake_smi.calls()) == 2


def test_not_found_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    smi._reset_for_tests()
    try:
        with pytest.raises(BackendFailure, match="not found on PATH"):
            smi.device_query(0)
    finally:
        smi._reset_for_tests()


@posix_only
def test_nonzero_exit_reports_first_stderr_line(fake_smi: FakeSmi) -> None:
    fake_smi.set_gpu("", exit_code=9, stderr="\nNo devices were found\nmore\n")
    with pytest.raises(BackendFailure) as info:
        smi.device_query(0)
    assert info.value.reason == "exited with status 9: No devices were found"


@posix_only
def test_nonzero_exit_without_stderr_carries_the_first_stdout_line(fake_smi: FakeSmi) -> None:
    # The real nvidia-smi prints "NVIDIA-SMI has failed because ..." on stdout.
    fake_smi.set_apps("1, x, 2", exit_code=3)
    with pytest.raises(BackendFailure) as info:
        smi.list_processes(0)
    assert info.value.reason == "exited with status 3: 1, x, 2"


def test_nonzero_exit_without_any_output(fake_smi: FakeSmi) -> None:
    fake_smi.set_apps("", exit_code=3)
    with pytest.raises(BackendFailure) as info:
        smi.list_processes(0)
    assert info.value.reason == "exited with status 3"


@posix_only
def test_spawn_failure(fake_smi: FakeSmi) -> None:
    smi.device_query(0)  # resolve and cache the path
    fake_smi.remove()
    with pytest.raises(BackendFailure, match="could not start"):
        smi.device_query(0)


@posix_only
def test_binary_garbage_output(fake_smi: FakeSmi) -> None:
    fake_smi.set_gpu(b"\xff\xfe\x00\x81garbage\n", stderr=b"\xff")
    with pytest.raises(BackendFailure, match="unparsable output"):
        smi.device_query(0)
    fake_smi.set_apps(b"\xff\xfe\x00\n12, caf\xe9, 3\n")
    assert smi.list_processes(0) == [(12, "caf\ufffd", 3 * MIB)]


@posix_only
def test_empty_stdout(fake_smi: FakeSmi) -> None:
    fake_smi.set_gpu("")
    with pytest.raises(BackendFailure, match="empty output"):
        smi.device_query(0)


@posix_only
@pytest.mark.parametrize("grandchild", [None, "same-group", "escaped"])
def test_hang_is_killed_within_timeout(
    fake_smi: FakeSmi, monkeypatch: pytest.MonkeyPatch, grandchild: str | None
) -> None:
    monkeypatch.setenv("HYPOMNESIS_SMI_TIMEOUT", "0.5")
    fake_smi.set_gpu("1, 2, 3", hang_s=60, grandchild=grandchild)
    start = time.monotonic()
    with pytest.raises(BackendFailure) as info:
        smi.device_query(0)
    elapsed = time.monotonic() - start
    assert info.value.reason == "timed out after 0.5 s"
    # Generous slack for a loaded CI box; the fake would otherwise hang for 60 s.
    assert elapsed < 0.5 + 3.0


@posix_only
def test_hung_child_is_dead_afterwards(fake_smi: FakeSmi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPOMNESIS_SMI_TIMEOUT", "2")
    fake_smi.set_gpu("1, 2, 3", hang_s=60, grandchild="same-group")
    with pytest.raises(BackendFailure):
        smi.device_query(0)
    pid_file = fake_smi.bin_dir / "grandchildren.txt"
    if not pid_file.exists():
        pytest.skip("the fake did not start within 2 s (machine overloaded)")
    grandchild = int(pid_file.read_text().split()[0])
    deadline = time.monotonic() + 2
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@posix_only
def test_a_timeout_is_retried_after_the_back_off(
    fake_smi: FakeSmi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYPOMNESIS_SMI_TIMEOUT", "0.3")
    fake_smi.set_gpu("1, 2, 3", hang_s=60)
    with pytest.raises(BackendFailure, match=r"timed out after 0\.3 s"):
        smi.device_query(0)
    fake_smi.set_gpu("1, 2, 610.88")
    with pytest.raises(BackendFailure, match="not retried"):
        smi.device_query(0)
    monkeypatch.setattr(smi, "_hung_until", 0.0)
    assert smi.device_query(0).driver_version == "610.88"


def test_debug_prints_raw_lines(
    fake_smi: FakeSmi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if sys.platform == "win32":
        pytest.skip("fake_smi is a POSIX script")
    from pytest_hypomnesis import _platform

    monkeypatch.setenv("HYPOMNESIS_DEBUG", "1")
    # The switch is read once at import; flip the cached copy for this test only.
    monkeypatch.setattr(_platform, "_debug_on", True, raising=False)
    smi.device_query(0)
    err = capsys.readouterr().err
    assert "[nvidia-smi debug] raw: '1024, 16311, 610.88'" in err


def test_env_puts_fake_first_on_path(fake_smi: FakeSmi) -> None:
    assert fake_smi.env["PATH"].split(os.pathsep)[0] == str(fake_smi.bin_dir)
