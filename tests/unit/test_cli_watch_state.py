"""``hmn watch``: row and summary formats, the state machine, the selection."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pytest_hypomnesis.cli._args import UsageError
from pytest_hypomnesis.cli._watchstate import (
    HEADER_LINE,
    PidSummary,
    SampleRow,
    Selection,
    WatchState,
    format_delta,
    format_rows_json,
    format_rows_text,
    format_summary_json,
    format_summary_text,
)
from pytest_hypomnesis.model import SpillEpisode, SpillReport
from tests.helpers.units import GIB, MIB
from tests.helpers.watchrows import (
    entry,
)

# --- checklist 50/51: row formats --------------------------------------------------------


def test_header_line_is_the_crates() -> None:
    assert HEADER_LINE == (
        "TIME      PID     NAME          COMMITTED  ΔCOMMIT    SHARED     ΔSHARED    SPILL"
    )


def test_row_text_matches_the_crate_example() -> None:
    row = SampleRow(15884, "spillforge.exe", 10_000_000_000, 0, 86 * MIB, 0, False)
    assert format_rows_text(0.0, [row]) == [
        "+0.0s     15884  spillforge.exe  9.3 GiB    +0 B      86 MiB  +0 B      no   "
    ]


def test_rows_share_widths_within_an_interval() -> None:
    rows = [
        SampleRow(7, None, 3 * GIB, -GIB, 0, 5, True),
        SampleRow(123456, "café", 512 * MIB, 512 * MIB, 2 * GIB, -MIB // 2, True),
    ]
    assert format_rows_text(12.345, rows) == [
        "+12.3s    7       ?      3.0 GiB    -1.0 GiB  0 MiB    +0 MiB    SPILL",
        "+12.3s    123456  café   512 MiB    +512 MiB  2.0 GiB  -0 MiB    SPILL",
    ]


@pytest.mark.parametrize(
    ("delta", "text"),
    [(0, "+0 B"), (1, "+0 MiB"), (-1, "-0 MiB"), (5 * MIB, "+5 MiB"), (-3 * GIB, "-3.0 GiB")],
)
def test_delta_cell(delta: int, text: str) -> None:
    assert format_delta(delta) == text


def test_rows_json_shape() -> None:
    rows = [
        SampleRow(7, "py.exe", 100, -50, 3, 0, True),
        SampleRow(8, None, 0, 0, 0, 0, False),
    ]
    assert format_rows_json(3500, rows) == [
        '{"kind":"sample","t_ms":3500,"pid":7,"name":"py.exe","used_bytes":100,'
        '"used_delta_bytes":-50,"shared_used_bytes":3,"shared_delta_bytes":0,"spilling":true}',
        '{"kind":"sample","t_ms":3500,"pid":8,"name":null,"used_bytes":0,'
        '"used_delta_bytes":0,"shared_used_bytes":0,"shared_delta_bytes":0,"spilling":false}',
    ]


# --- checklist 57: closing summary ------------------------------------------------------


def test_summary_text_matches_the_crate_example() -> None:
    per_pid = [PidSummary(2624, None, 964 * MIB, 996 * MIB, 0, 2 * MIB)]
    assert format_summary_text(None, per_pid) == [
        "hmn watch: spill tracking unavailable for this run; per-PID VRAM below",
        "hmn watch: per-PID  PID   NAME  BASELINE COMMIT  PEAK COMMIT  BASELINE SHARED  "
        "PEAK SHARED",
        "                    2624  ?     964 MiB          996 MiB      0 MiB            "
        "2 MiB      ",
    ]


def test_summary_text_unmeasurable_prints_the_all_zero_block() -> None:
    lines = format_summary_text(SpillReport(), [])
    assert lines == [
        "hmn watch: peak dedicated 0 MiB",
        "           peak shared    0 MiB (baseline 0 MiB)",
        "           episodes       0 — no spill observed",
    ]


def test_summary_json_shape() -> None:
    report = SpillReport(
        episodes=(
            SpillEpisode(
                start_label="+1.0s",
                end_label=None,
                peak_shared_bytes=9,
                observations=2,
                duration=timedelta(milliseconds=1999.9),
            ),
        ),
        peak_dedicated_bytes=10,
        dedicated_limit_bytes=11,
        peak_shared_bytes=9,
        baseline_shared_bytes=1,
        observations=4,
        measurable=True,
    )
    per_pid = [PidSummary(1, "a,b", 1, 2, 3, 4), PidSummary(2, None, 0, 0, 0, 0)]
    assert format_summary_json(report, per_pid) == (
        '{"kind":"summary","measurable":true,"spilled":true,"observations":4,'
        '"baseline_shared_bytes":1,"peak_shared_bytes":9,"peak_dedicated_bytes":10,'
        '"dedicated_limit_bytes":11,"total_spill_duration_ms":1999,"episodes":['
        '{"start_label":"+1.0s","end_label":null,"peak_shared_bytes":9,"observations":2,'
        '"duration_ms":1999}],"per_pid":[{"pid":1,"name":"a,b","baseline_used_bytes":1,'
        '"peak_used_bytes":2,"baseline_shared_bytes":3,"peak_shared_bytes":4},'
        '{"pid":2,"name":null,"baseline_used_bytes":0,"peak_used_bytes":0,'
        '"baseline_shared_bytes":0,"peak_shared_bytes":0}]}'
    )
    assert format_summary_json(None, []) == (
        '{"kind":"summary","measurable":false,"spilled":false,"observations":0,'
        '"baseline_shared_bytes":0,"peak_shared_bytes":0,"peak_dedicated_bytes":0,'
        '"dedicated_limit_bytes":0,"total_spill_duration_ms":0,"episodes":[],"per_pid":[]}'
    )


# --- checklist 52-55: the state machine -------------------------------------------------


def test_deltas_baseline_and_peaks() -> None:
    state = WatchState()
    seen = []
    for used, shared in [(100 * MIB, 0), (300 * MIB, 5), (200 * MIB, 2)]:
        rows, notes = state.fold([entry(7, "train", used, shared)], [7], False)
        assert notes == []
        seen.append((rows[0].used_delta_bytes, rows[0].shared_delta_bytes))
    assert seen == [(0, 0), (200 * MIB, 5), (-100 * MIB, -3)]
    assert state.summary() == [PidSummary(7, "train", 100 * MIB, 300 * MIB, 0, 5)]


def test_missing_pid_reads_zero_and_first_sighting_is_the_baseline() -> None:
    state = WatchState()
    rows, _ = state.fold([], [9], False)
    assert rows == [SampleRow(9, None, 0, 0, 0, 0, False)]
    rows, _ = state.fold([entry(9, "late", 50 * MIB)], [9], True)
    assert rows == [SampleRow(9, "late", 50 * MIB, 50 * MIB, 0, 0, True)]
    rows, _ = state.fold([], [9], False)
    assert rows[0].used_delta_bytes == -50 * MIB
    assert rows[0].name is None
    assert state.summary() == [PidSummary(9, "late", 0, 50 * MIB, 0, 0)]


def test_reentry_resumes_history_and_summary_keeps_first_seen_order() -> None:
    state = WatchState()
    state.fold([entry(5, "b", 10), entry(4, "a", 20)], [5, 4], False)
    state.fold([entry(4, "a", 30)], [4], False)  # 5 left the followed set
    rows, _ = state.fold([entry(5, "b", 70)], [5], False)  # and came back
    assert rows[0].used_delta_bytes == 60  # against its last sample, not a fresh start
    assert [p.pid for p in state.summary()] == [5, 4]
    assert state.summary()[0].baseline_used_bytes == 10


def test_pid_reuse_resets_on_a_resolved_name_change() -> None:
    state = WatchState()
    state.fold([entry(7, "firefox", 2 * GIB)], [7], False)
    rows, notes = state.fold([entry(7, "python", GIB)], [7], False)
    assert notes == [
        "hmn watch: pid=7 name changed (firefox → python) — likely PID reuse by the OS; "
        "baseline reset"
    ]
    assert rows[0].used_delta_bytes == 0
    assert state.summary() == [PidSummary(7, "python", GIB, GIB, 0, 0)]


@pytest.mark.parametrize("flicker", [None, "[protected]", "[exited]"])
def test_unresolved_flicker_is_not_reuse(flicker: str | None) -> None:
    state = WatchState()
    state.fold([entry(7, "a", 100)], [7], False)
    _, notes = state.fold([entry(7, flicker, 100)], [7], False)
    assert notes == []
    _, notes = state.fold([entry(7, "a", 100)], [7], False)
    assert notes == []
    assert state.summary()[0].name == "a"  # sticky through the flicker


def test_kernel_counts_as_a_resolved_name() -> None:
    state = WatchState()
    state.fold([entry(4, "[kernel]", 1)], [4], False)
    _, notes = state.fold([entry(4, "System", 1)], [4], False)
    assert len(notes) == 1
    assert "([kernel] → System)" in notes[0]


def test_unresolved_growth_hint_fires_once_and_rearms_on_reset() -> None:
    state = WatchState()
    state.fold([entry(3, None, 0)], [3], False)
    _, notes = state.fold([entry(3, None, 255 * MIB)], [3], False)
    assert notes == []
    _, notes = state.fold([entry(3, "[protected]", 0, 256 * MIB)], [3], False)
    assert notes == [
        "hmn watch: unresolved pid=3 grew +256 MiB since attach — re-run elevated to identify"
    ]
    _, notes = state.fold([entry(3, None, 2 * GIB)], [3], False)
    assert notes == []
    # A resolved name never hints.
    state.fold([entry(8, "named", 0)], [8], False)
    _, notes = state.fold([entry(8, "named", 4 * GIB)], [8], False)
    assert notes == []


def test_hint_rearms_after_pid_reuse() -> None:
    state = WatchState()
    state.fold([entry(3, "old", 0)], [3], False)
    state.fold([entry(3, None, GIB)], [3], False)  # resolved names never hint
    _, notes = state.fold([entry(3, "new", GIB)], [3], False)
    assert len(notes) == 1
    _, notes = state.fold([entry(3, None, 2 * GIB)], [3], False)
    assert notes == [
        "hmn watch: unresolved pid=3 grew +1.0 GiB since attach — re-run elevated to identify"
    ]


def test_followed_set_breadcrumb() -> None:
    state = WatchState()
    state.fold([entry(21716, "Code.exe", 5)], [21716], False)
    rows = [entry(10640, "spillforge.exe", 9), entry(11, None, 1)]
    assert state.followed_change([21716], [10640, 11], rows, 3.04) == (
        "hmn watch: +3.0s followed set changed: entered pid=10640 (spillforge.exe), pid=11; "
        "left pid=21716 (Code.exe)"
    )
    assert state.followed_change([1, 2], [2, 1], [], 1.0) is None
    assert state.followed_change([], [5], [entry(5, "x", 1)], 0.25) == (
        "hmn watch: +0.2s followed set changed: entered pid=5 (x)"
    )


# --- checklist 47: selection ------------------------------------------------------------


def test_selection_explicit_dedups_in_order() -> None:
    sel = Selection([9, 3, 9, 1, 3], 5, False)
    assert sel.select([entry(1, "x", 99)]) == [9, 3, 1]
    assert sel.describe(3) == "watching 3 PID(s)"


def test_selection_top_n_uses_the_ps_comparator() -> None:
    rows = [entry(1, "b", 5), entry(2, "a", 5), entry(3, None, 5), entry(4, "z", 50)]
    assert Selection([], 3, False).select(rows) == [4, 3, 2]
    assert Selection([], 3, False).describe(3) == "watching 3 PID(s) (top 3 by committed)"
    assert Selection([], 3, True).describe(2) == (
        "following top 3 by committed (re-selected every interval), 2 initially"
    )


def test_follow_new_with_pids_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        Selection([1], 5, True)
    assert info.value.message == (
        "watch --follow-new only applies to auto-selection; drop --follow-new or the explicit "
        "PID list"
    )
