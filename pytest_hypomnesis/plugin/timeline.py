"""Per-test memory timelines: a recorder the sampler feeds, and peak-keeping downsampling.

A timeline in the JSON report (``test["timeline"]``, only with ``--hypomnesis-timeline``) is::

    {"t_s": [0.0, 0.01, ...],               # seconds since the measured span began
     "rss_bytes": [123, 456, ...],          # process RSS, null where a reading failed
     "vram_bytes": {"0": [789, ...]}}       # per-process VRAM per device index, null gaps

All lists have the same length, at most ``MAX_POINTS`` (200). Downsampling keeps, in every
bucket, the sample holding each series' minimum and maximum, plus the first and last
samples, so a one-sample spike always survives (a plain stride would drop it).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_hypomnesis.record import TimelineRecord

__all__ = [
    "MAX_POINTS",
    "Timeline",
    "TimelineRecorder",
    "downsample",
    "parse_timeline",
]

MAX_POINTS = 200

# A sampler at 10 ms fills 360 000 points an hour; compacting at this size bounds the
# recorder's memory while keeping far more detail than the final 200 points need.
_COMPACT_AT = 4096
_COMPACT_TO = 1024

Point = Sequence[float | int | None]
"""``(t_s, value_1, value_2, ...)``: one sample of every series, ``None`` for a gap."""


def _extreme_indices(points: Sequence[Point], lo: int, hi: int, series: int) -> set[int]:
    """Indices in ``[lo, hi)`` holding the minimum and maximum of each series."""
    kept: set[int] = set()
    for s in range(1, series + 1):
        best_min: tuple[float, int] | None = None
        best_max: tuple[float, int] | None = None
        for i in range(lo, hi):
            value = points[i][s]
            if value is None:
                continue
            if best_min is None or value < best_min[0]:
                best_min = (value, i)
            if best_max is None or value > best_max[0]:
                best_max = (value, i)
        if best_min is not None and best_max is not None:
            kept.update((best_min[1], best_max[1]))
    return kept


def _bucket_maxima(points: Sequence[Point], lo: int, hi: int, series: int) -> set[int]:
    kept: set[int] = set()
    for s in range(1, series + 1):
        best: tuple[float, int] | None = None
        for i in range(lo, hi):
            value = points[i][s]
            if value is not None and (best is None or value > best[0]):
                best = (value, i)
        if best is not None:
            kept.add(best[1])
    return kept


def downsample(points: Sequence[Point], max_points: int = MAX_POINTS) -> list[Point]:
    """At most ``max_points`` of ``points`` (a subset, in order), keeping the peaks.

    Each point is ``(t_s, v1, v2, ...)`` with the same number of values. The first and last
    points are always kept; the rest are split into equal buckets and each bucket keeps the
    points holding each series' minimum and maximum. With so many series that even one
    min/max pair each would not fit, buckets keep maxima only (peaks matter most here).
    """
    if max_points < 3:
        raise ValueError(f"max_points must be at least 3, got {max_points}")
    n = len(points)
    if n <= max_points:
        return list(points)
    widths = {len(p) for p in points}
    if len(widths) != 1:
        raise ValueError("every point must hold the same number of values")
    series = widths.pop() - 1
    room = max_points - 2
    per_bucket, pick = 2 * series, _extreme_indices
    if per_bucket > room:
        per_bucket, pick = series, _bucket_maxima
    kept: set[int] = {0, n - 1}
    if series == 0 or per_bucket > room:
        # Nothing (or too much) to preserve: evenly spaced samples.
        step = (n - 1) / (max_points - 1)
        kept.update(round(k * step) for k in range(max_points))
    else:
        # Buckets span equal time, not equal counts: a recorder's compacted buffer is
        # dense at the end and sparse at the start, and the chart's x axis is time.
        buckets = room // per_bucket
        t_first, t_last = float(points[0][0] or 0.0), float(points[-1][0] or 0.0)
        span_s = (t_last - t_first) or 1.0
        times = [float(p[0] or 0.0) for p in points]
        lo = 1
        for b in range(1, buckets + 1):
            edge_s = t_first + span_s * b / buckets
            hi = n - 1 if b == buckets else max(lo, bisect.bisect_right(times, edge_s, lo, n - 1))
            if hi > lo:
                kept.update(pick(points, lo, hi, series))
            lo = hi
    return [points[i] for i in sorted(kept)]


class TimelineRecorder:
    """Collects one test's samples; safe for one writer thread (the sampler) and one reader.

    ``start(t0_s)`` begins a timeline (discarding any previous one); ``add(t_s, ...)`` takes
    times on the same clock as ``t0_s`` (e.g. ``time.monotonic()``); ``finish()`` returns the
    JSON-ready dict, downsampled to ``max_points``. Memory stays bounded however long the
    test runs, because the buffer is compacted (peaks kept) whenever it grows large.
    """

    def __init__(self, max_points: int = MAX_POINTS) -> None:
        if max_points < 3:
            raise ValueError(f"max_points must be at least 3, got {max_points}")
        self._max_points = max_points
        self._lock = threading.Lock()
        self._t0_s = 0.0
        self._devices: list[str] = []
        self._rows: list[list[float | int | None]] = []

    def start(self, t0_s: float) -> None:
        with self._lock:
            self._t0_s = t0_s
            self._devices = []
            self._rows = []

    def add(
        self,
        t_s: float,
        rss_bytes: int | None,
        vram_bytes_by_device: Mapping[int | str, int | None] | None = None,
    ) -> None:
        """One sample. A device seen for the first time gets ``None`` for earlier samples."""
        with self._lock:
            by_device = vram_bytes_by_device or {}
            for key in by_device:
                name = str(key)
                if name not in self._devices:
                    self._devices.append(name)
                    for earlier in self._rows:
                        earlier.append(None)
            values = {str(k): v for k, v in by_device.items()}
            row: list[float | int | None] = [t_s - self._t0_s, rss_bytes]
            row.extend(values.get(name) for name in self._devices)
            self._rows.append(row)
            if len(self._rows) >= _COMPACT_AT:
                self._rows = [list(p) for p in downsample(self._rows, _COMPACT_TO)]

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)

    def finish(self) -> TimelineRecord:
        """The timeline as plain JSON data (see the module docstring); the recorder keeps
        its samples, so calling it twice gives the same answer."""
        with self._lock:
            # Copy under the lock, downsample outside it: the sampler must not wait.
            snapshot = [tuple(r) for r in self._rows]
            devices = list(self._devices)
        rows = downsample(snapshot, self._max_points)
        return {
            "t_s": [round(float(r[0] or 0.0), 6) for r in rows],
            "rss_bytes": [_as_int(r[1]) for r in rows],
            "vram_bytes": {
                name: [_as_int(r[2 + j]) for r in rows] for j, name in enumerate(devices)
            },
        }


def _as_int(value: float | int | None) -> int | None:
    return None if value is None else int(value)


class Timeline:
    """A validated timeline read back from a report (see ``parse_timeline``)."""

    __slots__ = ("rss_bytes", "t_s", "vram_bytes")

    def __init__(
        self,
        t_s: list[float],
        rss_bytes: list[int | None],
        vram_bytes: dict[str, list[int | None]],
    ) -> None:
        self.t_s = t_s
        self.rss_bytes = rss_bytes
        self.vram_bytes = vram_bytes

    def max_bytes(self) -> int | None:
        values = [v for v in self.rss_bytes if v is not None]
        for series in self.vram_bytes.values():
            values.extend(v for v in series if v is not None)
        return max(values) if values else None


_INTEGER_TYPES = frozenset((int, type(None)))
_NUMBER_TYPES = frozenset((int, float))


def _number_list(value: object, where: str, *, integers: bool) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list")
    # The common case checked at C speed (a report can hold millions of samples); anything
    # else (a bool, a subclass, NaN) goes through the loop, which names the first bad item.
    types = set(map(type, value))
    if integers and types <= _INTEGER_TYPES:
        return value
    if not integers and types <= _NUMBER_TYPES and all(map(math.isfinite, value)):
        return value
    for i, item in enumerate(value):
        if item is None and integers:
            continue
        ok = isinstance(item, int) if integers else isinstance(item, (int, float))
        if isinstance(item, bool) or not ok or (not integers and not math.isfinite(item)):
            kind = "integers or null" if integers else "numbers"
            raise ValueError(f"{where}[{i}]: expected {kind}, got {item!r}")
    return value


def parse_timeline(data: object, where: str = "timeline") -> Timeline:
    """Check a report's ``timeline`` object; raises ``ValueError`` naming the bad field."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object")
    for key in ("t_s", "rss_bytes"):
        if key not in data:
            raise ValueError(f"{where}: missing field {key!r}")
    t_s = _number_list(data["t_s"], f"{where}.t_s", integers=False)
    rss = _number_list(data["rss_bytes"], f"{where}.rss_bytes", integers=True)
    vram_raw = data.get("vram_bytes")
    if vram_raw is None:
        vram_raw = {}
    if not isinstance(vram_raw, dict):
        raise ValueError(f"{where}.vram_bytes: expected an object")
    vram = {
        str(k): _number_list(v, f"{where}.vram_bytes[{k!r}]", integers=True)
        for k, v in vram_raw.items()
    }
    for name, series in [("rss_bytes", rss), *((f"vram_bytes[{k!r}]", v) for k, v in vram.items())]:
        if len(series) != len(t_s):
            raise ValueError(
                f"{where}.{name}: {len(series)} values for {len(t_s)} times (must be equal)"
            )
    return Timeline([float(t) for t in t_s], rss, vram)
