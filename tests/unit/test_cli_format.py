"""Byte-exact tests of every ``hmn`` formatter, comparator and parser (no GPU, no I/O)."""

from __future__ import annotations

import argparse
from datetime import timedelta

import pytest

from pytest_hypomnesis.cli import _args
from pytest_hypomnesis.cli._durations import DurationError, parse_duration_ms
from pytest_hypomnesis.cli.devices import (
    format_device_line,
    format_summary_json,
    format_summary_lines,
)
from pytest_hypomnesis.cli.ps import (
    PsRow,
    format_ps_json,
    format_ps_summary,
    format_ps_table,
    sort_rows,
)
from pytest_hypomnesis.cli.spill import exit_code_for, format_spill_report, spawn_error_message
from pytest_hypomnesis.model import (
    GpuDeviceInfo,
    GpuProcessEntry,
    Snapshot,
    SpillEpisode,
    SpillReport,
)
from tests.helpers.units import GIB, MIB


def _dev(index: int = 0, **kw: object) -> GpuDeviceInfo:
    fields: dict[str, object] = {
        "name": "NVIDIA GeForce RTX 5060 Ti",
        "total_bytes": 16311 * MIB,
        "free_bytes": 13284 * MIB + 5,
        "used_bytes": 2768 * MIB,
        "reserved_bytes": 259 * MIB,
        "driver_version": "610.88",
    }
    fields.update(kw)
    return GpuDeviceInfo(index=index, **fields)  # type: ignore[arg-type]


# --- checklist 39/40: the device summary ------------------------------------------------


def test_summary_line_matches_the_crate_example() -> None:
    assert format_device_line(_dev()) == (
        "GPU 0 [NVIDIA GeForce RTX 5060 Ti]: free 13284 MiB / 16311 MiB "
        "(259 MiB reserved), driver 610.88"
    )


def test_summary_line_without_name_reserved_or_driver_floors_mib() -> None:
    dev = _dev(1, name=None, reserved_bytes=None, driver_version=None, free_bytes=MIB - 1)
    assert format_device_line(dev) == "GPU 1: free 0 MiB / 16311 MiB"


def test_summary_no_devices_and_none_readable() -> None:
    assert format_summary_lines([]) == ["hmn: no visible GPUs."]
    unreadable = [Snapshot(ram_bytes=1), Snapshot(ram_bytes=1)]
    assert format_summary_lines(unreadable) == ["hmn: 2 GPU(s) enumerated but none readable."]
    assert format_summary_json(unreadable) == (
        "[]",
        "hmn: 2 GPU(s) enumerated but none readable.",
    )
    assert format_summary_json([]) == ("[]", None)


def test_summary_skips_snapshots_without_a_device() -> None:
    snaps = [Snapshot(ram_bytes=1), Snapshot(ram_bytes=1, gpu_device=_dev(1, name="B"))]
    assert format_summary_lines(snaps) == [
        "GPU 1 [B]: free 13284 MiB / 16311 MiB (259 MiB reserved), driver 610.88"
    ]


def test_summary_json_shape_and_escaping() -> None:
    snaps = [
        Snapshot(ram_bytes=1, gpu_device=_dev(0, name='Q"\\\n\x01\x7f\x85é', driver_version=None))
    ]
    text, note = format_summary_json(snaps)
    assert note is None
    assert text == (
        '[{"index":0,"name":"Q\\"\\\\\\n\\u0001\\u007f\\u0085é","total_bytes":17103323136,'
        '"free_bytes":13929283589,"used_bytes":2902458368,"reserved_bytes":271581184,'
        '"driver_version":null}]'
    )


# --- checklist 41-43: ps ----------------------------------------------------------------


def _row(pid: int, name: str | None, used: int, shared: int = 0, dev: int = 0) -> PsRow:
    return PsRow(pid, name, used, shared, dev, "RTX 5060 Ti" if dev == 0 else None)


def test_ps_table_matches_the_crate_example() -> None:
    assert format_ps_table([_row(12345, "python.exe", 8 * GIB)]) == [
        "PID    NAME        VRAM     SHARED  DEVICE     ",
        "12345  python.exe  8.0 GiB  0 MiB   RTX 5060 Ti",
    ]


def test_ps_table_empty_is_header_only() -> None:
    assert format_ps_table([]) == ["PID  NAME  VRAM  SHARED  DEVICE"]


def test_ps_table_placeholders_and_byte_widths() -> None:
    # "café" is 5 bytes, so NAME is 5 wide in bytes and the padding counts characters.
    lines = format_ps_table([_row(7, None, 512 * MIB, dev=2), _row(8, "café", 0, dev=2)])
    assert lines == [
        "PID  NAME   VRAM     SHARED  DEVICE",
        "7    ?      512 MiB  0 MiB   GPU 2 ",
        "8    café   0 MiB    0 MiB   GPU 2 ",
    ]


def test_ps_json_shape_and_empty() -> None:
    assert format_ps_json([]) == "[]"
    assert format_ps_json([_row(42, "weird,name.exe", 8 * MIB, 3), _row(43, None, 0, dev=1)]) == (
        '[{"pid":42,"name":"weird,name.exe","used_bytes":8388608,"shared_used_bytes":3,'
        '"device_index":0,"device_name":"RTX 5060 Ti"},'
        '{"pid":43,"name":null,"used_bytes":0,"shared_used_bytes":0,"device_index":1,'
        '"device_name":null}]'
    )


def test_ps_sort_keys_and_tie_breaks() -> None:
    rows = [
        _row(5, "b", 10, 1),
        _row(4, "a", 10, 5),
        _row(3, None, 10, 0),
        _row(2, "a", 10, 0),
        _row(1, "z", 1, 100),
    ]
    pids = [r.pid for r in sort_rows(rows, "dedicated")]
    assert pids == [3, 2, 4, 5, 1]  # used desc, None name first, then name, then pid
    assert [r.pid for r in sort_rows(rows, "vram")] == pids
    assert [r.pid for r in sort_rows(rows, "committed")] == pids
    assert [r.pid for r in sort_rows(rows, "shared")] == [1, 4, 5, 3, 2]
    assert [r.pid for r in sort_rows(rows, "total")] == [1, 4, 5, 3, 2]


@pytest.mark.parametrize(
    ("rows", "pid", "device", "expected"),
    [
        ([], None, None, "0 GPU processes found."),
        ([_row(1, "a", 0)], None, None, "1 GPU process found (0 MiB committed total)."),
        (
            [_row(42, "?", 0), _row(42, "[exited]", 0), _row(42, "[kernel]", 0)],
            42,
            0,
            "3 GPU processes found matching pid=42 device=0 "
            "(0 MiB committed total; 1 protected — re-run elevated for names).",
        ),
        (
            [_row(1, None, GIB), _row(2, "[protected]", GIB // 2)],
            None,
            3,
            "2 GPU processes found matching device=3 "
            "(1.5 GiB committed total; 2 protected — re-run elevated for names).",
        ),
        ([], 9, None, "0 GPU processes found matching pid=9."),
    ],
)
def test_ps_summary_line(
    rows: list[PsRow], pid: int | None, device: int | None, expected: str
) -> None:
    assert format_ps_summary(rows, pid, device) == expected


# --- checklist 38: format_vram through the tables ---------------------------------------


def test_format_vram_boundaries_in_a_table() -> None:
    cells = [
        _row(1, "a", 0),
        _row(2, "a", GIB - 1),
        _row(3, "a", GIB),
        _row(4, "a", 8 * GIB + 200 * MIB),
    ]
    vram = [line[11:19].strip() for line in format_ps_table(cells)[1:]]
    assert vram == ["0 MiB", "1023 MiB", "1.0 GiB", "8.2 GiB"]


# --- checklist 44-46: spill -------------------------------------------------------------


def test_spill_block_matches_the_crate_example() -> None:
    report = SpillReport(
        episodes=(
            SpillEpisode(
                start_label="+2.0s",
                end_label=None,
                peak_shared_bytes=int(3.1 * GIB),
                observations=131,
                duration=timedelta(seconds=13.1),
            ),
        ),
        peak_dedicated_bytes=int(14.3 * GIB),
        dedicated_limit_bytes=16052 * MIB,
        peak_shared_bytes=int(3.1 * GIB),
        baseline_shared_bytes=163 * MIB,
        observations=200,
        measurable=True,
    )
    assert format_spill_report("hmn spill", report) == [
        "hmn spill: peak dedicated 14.3 GiB / 15.7 GiB",
        "           peak shared    3.1 GiB (baseline 163 MiB)",
        "           episodes       1 — total 13.1s, longest 13.1s, first +2.0s into run",
    ]


def test_spill_block_without_limit_or_spill() -> None:
    assert format_spill_report("hmn watch", SpillReport(measurable=True)) == [
        "hmn watch: peak dedicated 0 MiB",
        "           peak shared    0 MiB (baseline 0 MiB)",
        "           episodes       0 — no spill observed",
    ]


def test_spill_block_totals_and_longest_over_several_episodes() -> None:
    def ep(label: str, secs: float) -> SpillEpisode:
        return SpillEpisode(
            start_label=label,
            end_label="+9.9s",
            peak_shared_bytes=0,
            observations=1,
            duration=timedelta(seconds=secs),
        )

    report = SpillReport(episodes=(ep("+1.0s", 0.5), ep("+3.0s", 2.25)), measurable=True)
    assert format_spill_report("hmn spill", report)[2] == (
        "           episodes       2 — total 2.8s, longest 2.2s, first +1.0s into run"
    )


@pytest.mark.parametrize(
    ("code", "expected"), [(0, 0), (7, 7), (255, 255), (256, 1), (-9, 1), (None, 1)]
)
def test_spill_exit_code_pass_through(code: int | None, expected: int) -> None:
    assert exit_code_for(code) == expected


def test_spawn_error_reads_like_rust_io_error() -> None:
    exc = FileNotFoundError(2, "No such file or directory")
    assert spawn_error_message("nope", exc) == (
        'hmn: failed to spawn "nope": No such file or directory (os error 2)'
    )


# --- checklist 48: durations ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "millis"),
    [("5", 5000), ("5s", 5000), ("250ms", 250), ("2m", 120_000), ("1h", 3_600_000), (" 3s ", 3000)],
)
def test_durations(text: str, millis: int) -> None:
    assert parse_duration_ms(text) == millis


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", 'invalid duration "0": must be greater than zero'),
        ("0ms", 'invalid duration "0ms": must be greater than zero'),
        ("", 'invalid duration "": expected digits followed by an optional unit (ms, s, m, h)'),
        ("s", 'invalid duration "s": expected digits followed by an optional unit (ms, s, m, h)'),
        (
            "-5s",
            'invalid duration "-5s": expected digits followed by an optional unit (ms, s, m, h)',
        ),
        ("1.5s", 'invalid duration "1.5s": unknown unit ".5s" (expected ms, s, m, or h)'),
        ("5d", 'invalid duration "5d": unknown unit "d" (expected ms, s, m, or h)'),
        (
            "99999999999999999999",
            'invalid duration "99999999999999999999": "99999999999999999999" is not a whole number',
        ),
    ],
)
def test_bad_durations(text: str, message: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration_ms(text)
    assert str(info.value) == message


# --- checklist 37: argument types and the spill split -----------------------------------


@pytest.mark.parametrize("text", ["abc", "-1", "1.5", "", "4294967296", "٣"])
def test_pid_rejects_non_numbers(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        _args.pid_arg(text)


def test_counts_and_intervals_reject_zero() -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        _args.positive_int_arg("0")
    with pytest.raises(argparse.ArgumentTypeError):
        _args.interval_ms_arg("0")
    assert _args.interval_ms_arg("1") == 1
    assert _args.pid_arg("4294967295") == 2**32 - 1


@pytest.mark.parametrize(
    ("argv", "own", "command"),
    [
        (["spill", "--", "x", "-h"], ["spill"], ["x", "-h"]),
        (
            ["--json", "spill", "--json", "--", "a", "--", "b"],
            ["--json", "spill", "--json"],
            ["a", "--", "b"],
        ),
        (["ps", "--", "x"], ["ps", "--", "x"], None),
        (["spill", "x"], ["spill", "x"], None),
        ([], [], None),
    ],
)
def test_split_spill_command(argv: list[str], own: list[str], command: list[str] | None) -> None:
    assert _args.split_spill_command(argv) == (own, command)


def test_entries_and_rows_share_the_comparator() -> None:
    from pytest_hypomnesis.cli.ps import sort_key

    entries = [GpuProcessEntry(pid=2, name="b", used_bytes=1), GpuProcessEntry(pid=1, name="a")]
    assert [e.pid for e in sorted(entries, key=sort_key("dedicated"))] == [2, 1]
    with pytest.raises(ValueError, match="unknown sort key"):
        sort_key("bogus")
