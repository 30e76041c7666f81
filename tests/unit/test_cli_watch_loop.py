"""``hmn watch``'s loop on a fake clock: output, timing, exits, failures."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import timedelta

import pytest

from pytest_hypomnesis._errors import DeviceIndexOutOfRangeError, NoGpuSourceError
from pytest_hypomnesis.cli._watchstate import (
    HEADER_LINE,
    Selection,
)
from pytest_hypomnesis.cli.watch import WatchConfig, WatchIO, watch
from pytest_hypomnesis.model import GpuProcessEntry, SpillEpisode, SpillReport
from tests.helpers.units import GIB, MIB
from tests.helpers.watchrows import (
    entry,
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
