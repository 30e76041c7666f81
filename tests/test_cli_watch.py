"""``hmn watch``: the pure state machine and formatters, and the loop on a fake clock."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import timedelta

import pytest

from pytest_hypomnesis._errors import DeviceIndexOutOfRangeError, NoGpuSourceError
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
from pytest_hypomnesis.cli.watch import WatchConfig, WatchIO, watch
from pytest_hypomnesis.model import GpuProcessEntry, SpillEpisode, SpillReport
from tests.helpers.units import GIB, MIB


def entry(pid: int, name: str | None, used: int, shared: int = 0) -> GpuProcessEntry:
    return GpuProcessEntry(pid=pid, name=name, used_bytes=used, shared_used_bytes=shared)


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


# --- the loop, on a fake clock ----------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.ns = 0
        self.sleeps: list[float] = []

    def clock_ns(self) -> int:
        return self.ns

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.ns += round(seconds * 1e9)


class Script:
    """Listings in call order; an exception instance is raised; the last one repeats.
    ``cost_s[i]`` is how long call ``i`` takes on ``clock`` (set by ``run_watch``)."""

    def __init__(
        self, *listings: list[GpuProcessEntry] | Exception, cost_s: Sequence[float] = ()
    ) -> None:
        self.listings = list(listings)
        self.calls = 0
        self.cost_s = list(cost_s)
        self.clock: FakeTime | None = None

    def __call__(self, device: int) -> list[GpuProcessEntry]:
        item = self.listings[min(self.calls, len(self.listings) - 1)]
        if self.clock is not None and self.calls < len(self.cost_s):
            self.clock.ns += round(self.cost_s[self.calls] * 1e9)
        self.calls += 1
        if isinstance(item, Exception):
            raise item
        return item


class FakeTracker:
    def __init__(self, spilling: Sequence[bool] = ()) -> None:
        self.labels: list[str] = []
        self.spilling = list(spilling)

    def observe(self, label: str) -> None:
        self.labels.append(label)

    def is_spilling(self) -> bool:
        i = len(self.labels) - 1
        return self.spilling[i] if i < len(self.spilling) else False

    def is_measurable(self) -> bool:
        return True

    def into_report(self) -> SpillReport:
        spilled = any(self.spilling[: len(self.labels)])
        episodes: tuple[SpillEpisode, ...] = ()
        if spilled:
            episodes = (
                SpillEpisode(
                    start_label="+1.0s",
                    end_label=None,
                    peak_shared_bytes=0,
                    observations=1,
                    duration=timedelta(0),
                ),
            )
        return SpillReport(episodes=episodes, observations=len(self.labels), measurable=True)


def run_watch(
    script: Script,
    *,
    pids: Sequence[int] = (),
    top: int = 5,
    follow_new: bool = False,
    interval_ms: int = 1000,
    duration_ms: int | None = 2500,
    json: bool = False,
    tracker: FakeTracker | Exception | None = None,
    interrupt_after_sleeps: int | None = None,
) -> tuple[int, str, str, FakeTime]:
    clock = FakeTime()
    script.clock = clock
    out, err = io.StringIO(), io.StringIO()

    def make_tracker(device: int) -> FakeTracker:
        if isinstance(tracker, Exception):
            raise tracker
        return tracker if tracker is not None else FakeTracker()

    def interrupted() -> bool:
        return interrupt_after_sleeps is not None and len(clock.sleeps) >= interrupt_after_sleeps

    watch_io = WatchIO(
        sample=script,
        device_name=lambda i: "Fake GPU",
        tracker_factory=make_tracker,
        clock_ns=clock.clock_ns,
        sleep=clock.sleep,
        interrupted=interrupted,
        out=out,
        err=err,
    )
    config = WatchConfig(Selection(pids, top, follow_new), interval_ms, duration_ms, 0, json)
    code = watch(config, watch_io)
    return code, out.getvalue(), err.getvalue(), clock


def test_loop_text_output_byte_exact() -> None:
    script = Script(
        [entry(7, "train", GIB)],
        [entry(7, "train", GIB + GIB // 2), entry(9, "café", 100 * MIB)],
        [entry(7, "train", GIB + GIB // 4)],
    )
    code, out, err, clock = run_watch(script, pids=[7, 9])
    assert code == 0
    assert script.calls == 3  # t=0, 1s, 2s; the 3s wake-up is past --duration 2.5s
    assert err == "hmn watch: device 0 [Fake GPU], interval 1.0s, watching 2 PID(s)\n"
    assert out == (
        HEADER_LINE + "\n"
        "+0.0s     7    train  1.0 GiB    +0 B      0 MiB   +0 B      no   \n"
        "+0.0s     9    ?      0 MiB      +0 B      0 MiB   +0 B      no   \n"
        "+1.0s     7    train  1.5 GiB    +512 MiB  0 MiB   +0 B      no   \n"
        "+1.0s     9    café   100 MiB    +100 MiB  0 MiB   +0 B      no   \n"
        "+2.0s     7    train  1.2 GiB    -256 MiB  0 MiB   +0 B      no   \n"
        "+2.0s     9    ?      0 MiB      -100 MiB  0 MiB   +0 B      no   \n"
        "hmn watch: peak dedicated 0 MiB\n"
        "           peak shared    0 MiB (baseline 0 MiB)\n"
        "           episodes       0 — no spill observed\n"
        "hmn watch: per-PID  PID  NAME   BASELINE COMMIT  PEAK COMMIT  BASELINE SHARED  "
        "PEAK SHARED\n"
        "                    7    train  1.0 GiB          1.5 GiB      0 MiB            "
        "0 MiB      \n"
        "                    9    café   0 MiB            100 MiB      0 MiB            "
        "0 MiB      \n"
    )
    # Sleeps come in chunks of at most 200 ms so Ctrl-C is noticed promptly.
    assert max(clock.sleeps) == 0.2


def test_clock_starts_after_a_slow_first_listing() -> None:
    # An nvidia-smi fallback can take seconds to list; the crate starts its clock after
    # it, so the samples still fall at 1 s and 2 s of a 2.5 s --duration.
    script = Script([entry(7, "a", 10)], cost_s=[2.0])
    tracker = FakeTracker()
    code, out, _, _ = run_watch(script, pids=[7], json=True, tracker=tracker)
    assert code == 0
    assert script.calls == 3
    assert tracker.labels == ["+0.0s", "+1.0s", "+2.0s"]
    assert [line[:30] for line in out.splitlines()[:3]] == [
        '{"kind":"sample","t_ms":0,"pid',
        '{"kind":"sample","t_ms":1000,"',
        '{"kind":"sample","t_ms":2000,"',
    ]


def test_a_duration_shorter_than_the_interval_waits_one_interval() -> None:
    # `--duration 1ms --interval 3s`: the crate checks the duration after the first sleep.
    script = Script([entry(7, "a", 10)], cost_s=[0.5])
    code, _, _, clock = run_watch(script, pids=[7], interval_ms=3000, duration_ms=1)
    assert code == 0
    assert script.calls == 1
    assert sum(clock.sleeps) == pytest.approx(3.0)


def test_loop_json_lines_and_spill_exit_code() -> None:
    script = Script([entry(7, "a", 10)], [entry(7, "a", 30)])
    tracker = FakeTracker([False, True])
    code, out, _, _ = run_watch(
        script, pids=[7], interval_ms=1500, duration_ms=2000, json=True, tracker=tracker
    )
    assert code == 1
    assert tracker.labels == ["+0.0s", "+1.5s"]
    lines = out.splitlines()
    assert lines[0] == (
        '{"kind":"sample","t_ms":0,"pid":7,"name":"a","used_bytes":10,"used_delta_bytes":0,'
        '"shared_used_bytes":0,"shared_delta_bytes":0,"spilling":false}'
    )
    assert lines[1] == (
        '{"kind":"sample","t_ms":1500,"pid":7,"name":"a","used_bytes":30,"used_delta_bytes":20,'
        '"shared_used_bytes":0,"shared_delta_bytes":0,"spilling":true}'
    )
    assert lines[2].startswith('{"kind":"summary","measurable":true,"spilled":true,')
    assert lines[2].endswith(
        '"per_pid":[{"pid":7,"name":"a","baseline_used_bytes":10,"peak_used_bytes":30,'
        '"baseline_shared_bytes":0,"peak_shared_bytes":0}]}'
    )
    assert len(lines) == 3


def test_interrupt_ends_with_the_summary() -> None:
    script = Script([entry(7, "a", 10)])
    code, out, _, clock = run_watch(
        script, pids=[7], interval_ms=5000, duration_ms=None, interrupt_after_sleeps=3
    )
    assert code == 0
    assert script.calls == 1
    assert clock.ns == 600_000_000  # noticed within one 200 ms chunk, not after 5 s
    assert "hmn watch: per-PID" in out


def test_first_query_failure_is_exit_2() -> None:
    code, out, err, _ = run_watch(Script(DeviceIndexOutOfRangeError(0, 0)), pids=[7])
    assert (code, out) == (2, "")
    assert (
        err == "hmn: watch failed to query device 0: device index 0 out of range (have 0 devices)\n"
    )


def test_empty_auto_selection_is_exit_2() -> None:
    code, out, err, _ = run_watch(Script([]), top=3)
    assert (code, out) == (2, "")
    assert err == (
        "hmn: watch found no GPU processes on device 0 to auto-select (top 3); re-run with an "
        "explicit PID once a workload is running\n"
    )


def test_follow_new_waits_then_follows() -> None:
    script = Script([], [entry(10640, "spillforge.exe", GIB)], [])
    code, out, err, _ = run_watch(script, top=3, follow_new=True)
    assert code == 0
    assert err.splitlines() == [
        "hmn: watch found no GPU processes on device 0 yet (top 3 by committed); waiting for "
        "work to appear",
        "hmn watch: device 0 [Fake GPU], interval 1.0s, following top 3 by committed "
        "(re-selected every interval), 0 initially",
        "hmn watch: +1.0s followed set changed: entered pid=10640 (spillforge.exe)",
        "hmn watch: +2.0s followed set changed: left pid=10640 (spillforge.exe)",
    ]
    assert out.splitlines()[1].startswith("+1.0s     10640  spillforge.exe  1.0 GiB")
    assert "10640  spillforge.exe  1.0 GiB          1.0 GiB" in out


def test_sample_failure_skips_the_interval_without_observing() -> None:
    tracker = FakeTracker()
    script = Script([entry(7, "a", 1)], NoGpuSourceError(), [entry(7, "a", 2)])
    code, out, err, _ = run_watch(script, pids=[7], tracker=tracker)
    assert code == 0
    assert tracker.labels == ["+0.0s", "+2.0s"]
    assert err.splitlines()[1] == (
        "hmn watch: sample failed at +1.0s (no GPU measurement source available (NVML, DXGI, "
        "PDH, and nvidia-smi all failed or are disabled)); skipping interval"
    )
    assert "+1.0s" not in out


def test_tracker_failure_watches_without_spill() -> None:
    from pytest_hypomnesis._errors import PdhError

    code, out, err, _ = run_watch(
        Script([entry(7, "a", 1)]), pids=[7], tracker=PdhError("PdhOpenQueryW failed: 0x00000001")
    )
    assert code == 0
    assert err.splitlines()[0] == (
        "hmn: watch spill tracking unavailable (PDH error: PdhOpenQueryW failed: 0x00000001); "
        "showing per-PID VRAM only"
    )
    assert "hmn watch: spill tracking unavailable for this run; per-PID VRAM below\n" in out


def test_notes_go_to_stderr_during_the_loop() -> None:
    script = Script([entry(7, "old", 0)], [entry(7, "new", 0)])
    _, _, err, _ = run_watch(script, pids=[7], duration_ms=1500)
    assert "hmn watch: pid=7 name changed (old → new)" in err
