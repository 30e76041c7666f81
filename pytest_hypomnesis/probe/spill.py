"""WDDM spill detection (parity doc §3.4): ``SpillTracker`` and ``is_spill_measurable``.

A *spill* is the Windows video-memory manager paging a GPU's working set out to shared
system memory once dedicated memory is saturated. It shows as adapter-wide *Shared Usage*
growing while *Dedicated Usage* sits near capacity; commit figures never spill on their own.

The decision logic lives in ``SpillFold``, a pure class fed ``(dedicated, shared, limit)``
samples and timestamps, so it is tested with synthetic sequences. ``SpillTracker`` pairs it
with a sample source (the PDH ``GPU Adapter Memory`` query on Windows) and a clock. On Linux
(CUDA raises out-of-memory instead of paging) and macOS (unified memory) no source exists:
the tracker constructs and is never measurable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from pytest_hypomnesis._platform import debug
from pytest_hypomnesis.gpumodel import SpillEpisode, SpillReport
from pytest_hypomnesis.probe import chain
from pytest_hypomnesis.probe.readings import SpillSample, SpillSource

__all__ = [
    "DEFAULT_DEDICATED_THRESHOLD_PCT",
    "DEFAULT_SHARED_GROWTH_BYTES",
    "SpillFold",
    "SpillSample",
    "SpillSource",
    "SpillTracker",
    "is_spill_measurable",
]

DEFAULT_DEDICATED_THRESHOLD_PCT = 85
"""Default dedicated-resident threshold, percent of the adapter's DXGI capacity. The video
memory manager's resident ceiling sits at about 88.6-91.3 % of it, so 95 % never fired."""
DEFAULT_SHARED_GROWTH_BYTES = 268435456
"""Default growth of adapter Shared Usage over its first reading (256 MiB) that counts as a
spill; shared memory has a benign idle baseline of roughly 100-163 MiB of staging heaps."""

U64_MAX = 2**64 - 1


class _OpenEpisode:
    __slots__ = ("last_s", "observations", "peak_shared_bytes", "start_label", "start_s")

    def __init__(self, label: str, now_s: float, shared_bytes: int) -> None:
        self.start_label = label
        self.start_s = now_s
        self.last_s = now_s
        self.peak_shared_bytes = shared_bytes
        self.observations = 1

    def seal(self, end_label: str | None) -> SpillEpisode:
        return SpillEpisode(
            start_label=self.start_label,
            end_label=end_label,
            peak_shared_bytes=self.peak_shared_bytes,
            observations=self.observations,
            duration=timedelta(seconds=max(self.last_s - self.start_s, 0.0)),
        )


class SpillFold:
    """The crate's fold over successful samples; no I/O, no clock of its own."""

    def __init__(
        self,
        *,
        dedicated_threshold_bytes: int | None = None,
        shared_growth_bytes: int = DEFAULT_SHARED_GROWTH_BYTES,
    ) -> None:
        self.dedicated_threshold_bytes = dedicated_threshold_bytes
        self.shared_growth_bytes = shared_growth_bytes
        self.observations = 0
        self.peak_dedicated_bytes = 0
        self.peak_shared_bytes = 0
        self.limit_bytes = 0
        self.baseline_shared_bytes: int | None = None
        self.spilling = False
        self.has_spilled = False
        self.episodes: list[SpillEpisode] = []
        self._open: _OpenEpisode | None = None

    def threshold_bytes(self, limit_bytes: int) -> int | None:
        """The override, else 85 % of the capacity in whole hundredths; ``None`` (never
        spills) when the capacity is unknown or below 100 bytes."""
        if self.dedicated_threshold_bytes is not None:
            return self.dedicated_threshold_bytes
        if limit_bytes >= 100:
            return limit_bytes // 100 * DEFAULT_DEDICATED_THRESHOLD_PCT
        return None

    def fold(self, label: str, sample: SpillSample, now_s: float) -> None:
        dedicated, shared, limit = sample
        self.observations += 1
        self.peak_dedicated_bytes = max(self.peak_dedicated_bytes, dedicated)
        self.peak_shared_bytes = max(self.peak_shared_bytes, shared)
        self.limit_bytes = limit
        if self.baseline_shared_bytes is None:
            self.baseline_shared_bytes = shared
        threshold = self.threshold_bytes(limit)
        shared_floor = min(self.baseline_shared_bytes + self.shared_growth_bytes, U64_MAX)
        spilling = threshold is not None and dedicated >= threshold and shared >= shared_floor
        if spilling:
            if self._open is None:
                self._open = _OpenEpisode(label, now_s, shared)
            else:
                self._open.last_s = now_s
                self._open.peak_shared_bytes = max(self._open.peak_shared_bytes, shared)
                self._open.observations += 1
            self.has_spilled = True
        elif self._open is not None:
            self.episodes.append(self._open.seal(label))
            self._open = None
        self.spilling = spilling

    def report(self, *, measurable: bool) -> SpillReport:
        """The summary so far; an episode still open is reported with ``end_label=None``."""
        episodes = list(self.episodes)
        if self._open is not None:
            episodes.append(self._open.seal(None))
        return SpillReport(
            episodes=tuple(episodes),
            peak_dedicated_bytes=self.peak_dedicated_bytes,
            dedicated_limit_bytes=self.limit_bytes,
            peak_shared_bytes=self.peak_shared_bytes,
            baseline_shared_bytes=self.baseline_shared_bytes or 0,
            observations=self.observations,
            measurable=measurable,
        )


def is_spill_measurable() -> bool:
    """Whether spill can be measured here: Windows with the ``GPU Adapter Memory`` counter
    set enumerating at least one instance. Always false on Linux and macOS."""
    try:
        return chain.spill_counters_available()
    except Exception as exc:  # a probe answers yes or no, never raises
        debug("spill", f"probe failed: {exc}")
        return False


class SpillTracker:
    """Watches one adapter for WDDM spill across ``observe()`` calls.

    ``SpillTracker(device_index)`` raises ``PdhError`` on Windows only when the NVIDIA
    adapter at ``device_index`` cannot be found through DXGI, the PDH query cannot be
    opened, or the counter set cannot be enumerated. Where the counters are missing, or on
    other platforms, it constructs non-measurable: ``observe()`` is a no-op.

    ``source`` and ``clock`` replace the platform sample source and ``time.monotonic``
    (tests, custom sources). Not thread-safe, like the crate's (raw PDH handles).
    """

    def __init__(
        self,
        device_index: int = 0,
        *,
        source: SpillSource | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.device_index = device_index
        self._clock = clock
        self._fold = SpillFold()
        if source is None:
            source = chain.spill_source(device_index)
        self._source = source
        self._closed = False

    def with_dedicated_threshold(self, dedicated_bytes: int) -> SpillTracker:
        """Use an absolute dedicated-resident threshold instead of 85 % of capacity."""
        self._fold.dedicated_threshold_bytes = dedicated_bytes
        return self

    def with_shared_growth_threshold(self, growth_bytes: int) -> SpillTracker:
        """Use this growth over the first shared reading instead of 256 MiB."""
        self._fold.shared_growth_bytes = growth_bytes
        return self

    def observe(self, label: str) -> None:
        """Take one sample and fold it. A failed sample is skipped, never read as zeros."""
        if self._source is None or self._closed:
            return
        try:
            sample = self._source.sample()
        except Exception as exc:  # observe is infallible, as in the crate
            debug("spill", f"sample failed at {label}: {exc}")
            sample = None
        if sample is None:
            debug("spill", f"skipped observation {label}")
            return
        debug(
            "spill",
            f"{label}: dedicated={sample.dedicated_bytes} shared={sample.shared_bytes} "
            f"limit={sample.limit_bytes}",
        )
        self._fold.fold(label, sample, self._clock())

    def is_spilling(self) -> bool:
        """Whether the latest folded observation spilled (may flicker)."""
        return self._fold.spilling

    def has_spilled(self) -> bool:
        """Whether any observation has spilled so far (latched)."""
        return self._fold.has_spilled

    def is_measurable(self) -> bool:
        """Whether this tracker has a live sample source."""
        return self._source is not None

    def into_report(self) -> SpillReport:
        """The end-of-run report; also releases the sample source."""
        report = self._fold.report(measurable=self.is_measurable())
        if self._source is not None and not self._closed:
            self._closed = True
            try:
                self._source.close()
            except Exception as exc:  # releasing a handle must not lose the report
                debug("spill", f"close failed: {exc}")
        return report
