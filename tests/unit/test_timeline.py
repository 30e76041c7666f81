"""Memory timelines (``_timeline``): peak-keeping downsampling, the recorder, the format."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from pytest_hypomnesis.plugin.timeline import (
    _COMPACT_AT,
    MAX_POINTS,
    Point,
    TimelineRecorder,
    downsample,
    parse_timeline,
)
from tests.helpers.units import MIB


def _flat(n: int, level: int = 100 * MIB) -> list[Point]:
    return [(i * 0.01, level) for i in range(n)]


def test_short_series_are_kept_whole() -> None:
    points = _flat(MAX_POINTS)
    assert downsample(points) == points


@pytest.mark.parametrize("spike_at", [1, 4321, 9998])
def test_a_single_sample_spike_and_dip_survive(spike_at: int) -> None:
    points = _flat(10_000)
    points[spike_at] = (points[spike_at][0], 900 * MIB)
    dip_at = (spike_at + 5000) % 9990 + 1
    points[dip_at] = (points[dip_at][0], 1 * MIB)
    out = downsample(points)
    assert len(out) <= MAX_POINTS
    values = [p[1] for p in out]
    assert max(v for v in values if v is not None) == 900 * MIB
    assert min(v for v in values if v is not None) == 1 * MIB
    assert out[0] == points[0]
    assert out[-1] == points[-1]
    times = [float(p[0] or 0.0) for p in out]
    assert times == sorted(times)
    assert set(out) <= set(points)


def test_each_series_keeps_its_own_peak() -> None:
    points: list[Point] = [(i * 0.001, 50 * MIB, 2 * MIB, None) for i in range(5000)]
    points[1234] = (1.234, 50 * MIB, 3000 * MIB, None)  # VRAM spike, RSS flat
    points[4000] = (4.0, 70 * MIB, 2 * MIB, 7)  # RSS spike; third series has one sample
    out = downsample(points, 100)
    assert len(out) <= 100
    assert points[1234] in out
    assert points[4000] in out


def test_many_series_fall_back_to_maxima() -> None:
    series = 120  # a min/max pair each would need 240 points
    points: list[Point] = [(float(i), *([0] * series)) for i in range(1000)]
    spikes = {}
    for s in range(series):
        at = 1 + (s * 7) % 997
        row = list(points[at])
        row[1 + s] = 10 + s
        points[at] = tuple(row)
        spikes[s] = 10 + s
    out = downsample(points)
    assert len(out) <= MAX_POINTS
    for s, peak in spikes.items():
        assert max(p[1 + s] or 0 for p in out) == peak


def test_time_only_points_are_evenly_thinned() -> None:
    out = downsample([(float(i),) for i in range(1000)], 10)
    assert len(out) == 10
    assert out[0] == (0.0,)
    assert out[-1] == (999.0,)


def test_downsample_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        downsample(_flat(10), 2)
    with pytest.raises(ValueError, match="same number of values"):
        downsample([(0.0, 1), (1.0, 1, 2)] * 200)


def test_recorder_gives_the_json_shape() -> None:
    rec = TimelineRecorder()
    rec.start(1000.0)
    rec.add(1000.0, 10 * MIB, {0: 5 * MIB})
    rec.add(1000.25, 12 * MIB, {0: None, 1: 7 * MIB})  # GPU 1 first seen here
    rec.add(1000.5, None, {"1": 8 * MIB})
    data = rec.finish()
    assert data == {
        "t_s": [0.0, 0.25, 0.5],
        "rss_bytes": [10 * MIB, 12 * MIB, None],
        "vram_bytes": {"0": [5 * MIB, None, None], "1": [None, 7 * MIB, 8 * MIB]},
    }
    assert json.loads(json.dumps(data)) == data
    timeline = parse_timeline(data)
    assert timeline.max_bytes() == 12 * MIB
    assert rec.finish() == data  # finish does not consume


def test_recorder_without_gpu_and_restart() -> None:
    rec = TimelineRecorder(max_points=50)
    rec.start(0.0)
    for i in range(500):
        rec.add(i * 0.01, MIB * (i % 7))
    rec.start(5.0)
    rec.add(5.5, 3)
    assert rec.finish() == {"t_s": [0.5], "rss_bytes": [3], "vram_bytes": {}}


def test_recorder_is_bounded_and_keeps_a_spike() -> None:
    rec = TimelineRecorder()
    rec.start(0.0)
    n = 3 * _COMPACT_AT + 17
    for i in range(n):
        rec.add(i * 0.005, 100 * MIB + (900 * MIB if i == 777 else 0), {0: MIB})
        assert len(rec) < _COMPACT_AT
    data = rec.finish()
    assert len(data["t_s"]) <= MAX_POINTS
    assert max(v for v in data["rss_bytes"] if v is not None) == 1000 * MIB
    assert data["t_s"][-1] == round((n - 1) * 0.005, 6)


def test_one_writer_one_reader_threads() -> None:
    rec = TimelineRecorder()
    rec.start(0.0)
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            for i in range(6000):
                rec.add(i * 0.001, i, {0: 6000 - i})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    reads = 0
    while not done.is_set() or reads == 0:
        snapshot = rec.finish()
        assert (
            len(snapshot["t_s"])
            == len(snapshot["rss_bytes"])
            == len(snapshot["vram_bytes"].get("0", snapshot["t_s"]))
        )
        reads += 1
    writer.join()
    assert errors == []
    final = rec.finish()
    assert max(v for v in final["rss_bytes"] if v is not None) == 5999
    assert max(v for v in final["vram_bytes"]["0"] if v is not None) == 6000


def test_recorder_rejects_tiny_max_points() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        TimelineRecorder(max_points=1)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ([], "expected an object"),
        ({"rss_bytes": []}, "missing field 't_s'"),
        ({"t_s": [0.0], "rss_bytes": [1, 2]}, "2 values for 1 times"),
        ({"t_s": [0.0], "rss_bytes": [True]}, "rss_bytes[0]: expected integers or null"),
        ({"t_s": [None], "rss_bytes": [1]}, "t_s[0]: expected numbers"),
        ({"t_s": [0.0], "rss_bytes": [1], "vram_bytes": []}, "vram_bytes: expected an object"),
        ({"t_s": [0.0], "rss_bytes": [1], "vram_bytes": {"0": [1, 2]}}, "vram_bytes['0']"),
        ({"t_s": "0", "rss_bytes": []}, "t_s: expected a list"),
        # The whole-list fast path must still name these (found by the item loop).
        ({"t_s": [0.0, 1.0], "rss_bytes": [1, False]}, "rss_bytes[1]: expected integers"),
        ({"t_s": [0.0, float("nan")], "rss_bytes": [1, 2]}, "t_s[1]: expected numbers"),
        ({"t_s": [0.0, float("inf")], "rss_bytes": [1, 2]}, "t_s[1]: expected numbers"),
        ({"t_s": [0.0, True], "rss_bytes": [1, 2]}, "t_s[1]: expected numbers"),
        ({"t_s": [0.0], "rss_bytes": [1.5]}, "rss_bytes[0]: expected integers"),
    ],
)
def test_parse_timeline_names_the_bad_field(data: Any, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_timeline(data, "tests[3].timeline")
    assert needle in str(info.value)
    assert str(info.value).startswith("tests[3].timeline")
