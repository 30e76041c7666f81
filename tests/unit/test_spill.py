"""Spill detection: the fold on synthetic sequences, the tracker around a fake source, and
the platform behaviour off Windows (parity §3.4, checklist 6, 26-30)."""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest

import pytest_hypomnesis as hmn
from pytest_hypomnesis.probe.spill import SpillFold, SpillSample, SpillTracker
from tests.helpers.units import GIB, MIB

LIMIT = 16052 * MIB  # DXGI capacity of the reference card
THRESHOLD = LIMIT // 100 * 85
BASE = 163 * MIB
GROW = hmn.DEFAULT_SHARED_GROWTH_BYTES


class Script:
    """A sample source that plays a list: a ``SpillSample`` or ``None`` (failed read)."""

    def __init__(self, samples: list[SpillSample | None]) -> None:
        self.samples = list(samples)
        self.closed = 0

    def sample(self) -> SpillSample | None:
        return self.samples.pop(0)

    def close(self) -> None:
        self.closed += 1


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        value = self.now
        self.now += 1.0
        return value


def _tracker(samples: list[SpillSample | None]) -> tuple[SpillTracker, Script]:
    source = Script(samples)
    return SpillTracker(0, source=source, clock=Clock()), source


def _run(samples: list[SpillSample | None]) -> hmn.SpillReport:
    tracker, _ = _tracker(samples)
    for i in range(len(samples)):
        tracker.observe(f"+{i}.0s")
    return tracker.into_report()


HOT = SpillSample(THRESHOLD, BASE + GROW, LIMIT)
COOL = SpillSample(THRESHOLD - 1, BASE + GROW, LIMIT)
IDLE = SpillSample(2 * GIB, BASE, LIMIT)


def test_constants() -> None:
    assert hmn.DEFAULT_DEDICATED_THRESHOLD_PCT == 85
    assert GROW == 268435456


def test_threshold_rule() -> None:
    fold = SpillFold()
    assert fold.threshold_bytes(LIMIT) == LIMIT // 100 * 85
    assert fold.threshold_bytes(199) == 85
    assert fold.threshold_bytes(100) == 85
    assert fold.threshold_bytes(99) is None
    assert fold.threshold_bytes(0) is None
    fold.dedicated_threshold_bytes = 7
    assert fold.threshold_bytes(0) == 7


def test_flicker_gives_three_episodes() -> None:
    report = _run([IDLE, HOT, COOL, HOT, HOT, COOL, HOT, COOL])
    assert report.spilled()
    assert [(e.start_label, e.end_label, e.observations) for e in report.episodes] == [
        ("+1.0s", "+2.0s", 1),
        ("+3.0s", "+5.0s", 2),
        ("+6.0s", "+7.0s", 1),
    ]
    assert [e.duration for e in report.episodes] == [
        timedelta(0),
        timedelta(seconds=1),
        timedelta(0),
    ]
    assert report.first_spill_label() == "+1.0s"
    assert report.total_spill_duration() == timedelta(seconds=1)
    assert report.longest_episode() == report.episodes[1]


def test_benign_baseline_and_commit_gap_never_spill() -> None:
    # Dedicated saturated but shared only at its idle baseline (+ less than the margin).
    samples = [SpillSample(LIMIT, BASE, LIMIT), SpillSample(LIMIT, BASE + GROW - 1, LIMIT)]
    report = _run([*samples, *samples])
    assert not report.spilled()
    assert report.baseline_shared_bytes == BASE
    assert report.observations == 4
    assert report.measurable


def test_growth_exactly_at_margin_fires() -> None:
    report = _run([IDLE, SpillSample(THRESHOLD, BASE + GROW, LIMIT)])
    assert len(report.episodes) == 1


def test_dedicated_exactly_at_threshold_fires_and_one_below_does_not() -> None:
    assert _run([IDLE, HOT]).spilled()
    assert not _run([IDLE, COOL]).spilled()


@pytest.mark.parametrize("limit", [0, 1, 99])
def test_unknown_or_tiny_limit_never_spills(limit: int) -> None:
    report = _run([SpillSample(0, 0, limit), SpillSample(10**12, 10**12, limit)])
    assert not report.spilled()
    assert report.dedicated_limit_bytes == limit


def test_overrides() -> None:
    tracker, _ = _tracker([SpillSample(0, 0, 0), SpillSample(10, 5, 0)])
    same = tracker.with_dedicated_threshold(10).with_shared_growth_threshold(5)
    assert same is tracker
    tracker.observe("a")
    tracker.observe("b")
    assert tracker.is_spilling()
    report = tracker.into_report()
    assert report.episodes[0].start_label == "b"


def test_growth_margin_saturates() -> None:
    tracker, _ = _tracker([SpillSample(10, 2**64 - 10, 100), SpillSample(10, 2**64 - 1, 100)])
    tracker.with_dedicated_threshold(1).with_shared_growth_threshold(2**64 - 1)
    tracker.observe("a")
    tracker.observe("b")
    assert tracker.has_spilled()


def test_single_open_episode_is_zero_duration_without_end() -> None:
    report = _run([IDLE, HOT])
    (episode,) = report.episodes
    assert episode.end_label is None
    assert episode.duration == timedelta(0)
    assert episode.observations == 1


def test_open_episode_sealed_with_none_after_long_run() -> None:
    report = _run([IDLE, HOT, HOT, HOT])
    (episode,) = report.episodes
    assert (episode.start_label, episode.end_label) == ("+1.0s", None)
    assert episode.duration == timedelta(seconds=2)


def test_peaks_and_baseline() -> None:
    report = _run(
        [
            SpillSample(GIB, 100 * MIB, LIMIT),
            SpillSample(THRESHOLD, 900 * MIB, LIMIT),
            SpillSample(LIMIT, 2 * GIB, LIMIT),
            SpillSample(GIB, 3 * GIB, LIMIT),
        ]
    )
    assert report.baseline_shared_bytes == 100 * MIB
    assert report.peak_shared_bytes == 3 * GIB
    assert report.peak_dedicated_bytes == LIMIT
    assert report.episodes[0].peak_shared_bytes == 2 * GIB
    assert report.episodes[0].end_label == "+3.0s"


def test_flags_flicker_and_latch() -> None:
    tracker, _ = _tracker([IDLE, HOT, COOL])
    seen = []
    for label in ("a", "b", "c"):
        tracker.observe(label)
        seen.append((tracker.is_spilling(), tracker.has_spilled()))
    assert seen == [(False, False), (True, True), (False, True)]


def test_failed_sample_is_skipped_not_zero() -> None:
    def broken() -> SpillSample | None:
        raise OSError("TDR")

    tracker, source = _tracker([IDLE, None, HOT, None, HOT])
    tracker.observe("0")
    tracker.observe("1")  # failed read
    tracker.observe("2")
    source.sample = broken  # type: ignore[method-assign]
    tracker.observe("3")  # raising read
    report = tracker.into_report()
    assert report.observations == 2
    assert report.baseline_shared_bytes == BASE  # not 0 from the failed read
    assert report.episodes[0].start_label == "2"


def test_into_report_closes_source_once() -> None:
    tracker, source = _tracker([IDLE, IDLE])
    tracker.observe("a")
    tracker.into_report()
    tracker.observe("b")  # after the report: ignored
    report = tracker.into_report()
    assert source.closed == 1
    assert report.observations == 1


def test_unmeasurable_tracker_is_a_no_op() -> None:
    if sys.platform == "win32":
        pytest.skip("Windows may have a live source")
    tracker = SpillTracker()
    assert tracker.device_index == 0
    for label in ("a", "b"):
        tracker.observe(label)
    assert not tracker.is_measurable()
    assert not tracker.is_spilling() and not tracker.has_spilled()
    report = tracker.into_report()
    assert report == hmn.SpillReport()
    assert report.observations == 0 and not report.measurable


def test_probe_is_false_off_windows() -> None:
    if sys.platform == "win32":
        pytest.skip("off-Windows behaviour")
    assert hmn.is_spill_measurable() is False
    assert SpillTracker(3).is_measurable() is False


def test_windows_tracker_uses_pdh(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_hypomnesis.probe import chain, pdh

    opened: list[int] = []

    def fake_open(index: int) -> Script:
        opened.append(index)
        return Script([HOT])

    monkeypatch.setattr(chain, "platform", lambda: "win32")
    monkeypatch.setattr(pdh, "open_adapter_query", fake_open)
    monkeypatch.setattr(pdh, "adapter_counter_set_available", lambda: True)
    tracker = SpillTracker(2)
    assert opened == [2]
    assert tracker.is_measurable()
    assert hmn.is_spill_measurable()

    def boom() -> bool:
        raise OSError("pdh.dll missing")

    monkeypatch.setattr(pdh, "adapter_counter_set_available", boom)
    assert hmn.is_spill_measurable() is False


def test_windows_tracker_hard_error_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_hypomnesis.probe import chain, pdh

    def fail(index: int) -> None:
        raise hmn.PdhError(f"no NVIDIA adapter at device_index {index} via DXGI walk")

    monkeypatch.setattr(chain, "platform", lambda: "win32")
    monkeypatch.setattr(pdh, "open_adapter_query", fail)
    with pytest.raises(hmn.PdhError, match="device_index 4"):
        SpillTracker(4)
