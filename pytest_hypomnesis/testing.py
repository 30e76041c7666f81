"""For tests of your own: chained builders for synthetic records (the crate's ``test-helpers``)
and ``FakeGpu``, a fake device the plugin and the probe chain read like a real one."""

from __future__ import annotations

from datetime import timedelta

from pytest_hypomnesis.model import (
    GpuDeviceInfo,
    GpuProcessEntry,
    GpuQuerySource,
    SpillEpisode,
    SpillReport,
)
from pytest_hypomnesis.probe.fake import FakeGpu

__all__ = ["FakeGpu", "GpuDeviceInfoBuilder", "GpuProcessEntryBuilder", "SpillReportBuilder"]


class GpuDeviceInfoBuilder:
    """Builds a ``GpuDeviceInfo``; every field defaults to 0 or ``None``."""

    def __init__(self) -> None:
        self._index = 0
        self._name: str | None = None
        self._total = 0
        self._free = 0
        self._used = 0
        self._reserved: int | None = None
        self._driver: str | None = None

    def index(self, value: int) -> GpuDeviceInfoBuilder:
        self._index = value
        return self

    def name(self, value: str | None) -> GpuDeviceInfoBuilder:
        self._name = value
        return self

    def total_bytes(self, value: int) -> GpuDeviceInfoBuilder:
        self._total = value
        return self

    def free_bytes(self, value: int) -> GpuDeviceInfoBuilder:
        self._free = value
        return self

    def used_bytes(self, value: int) -> GpuDeviceInfoBuilder:
        self._used = value
        return self

    def reserved_bytes(self, value: int | None) -> GpuDeviceInfoBuilder:
        self._reserved = value
        return self

    def driver_version(self, value: str | None) -> GpuDeviceInfoBuilder:
        self._driver = value
        return self

    def build(self) -> GpuDeviceInfo:
        return GpuDeviceInfo(
            index=self._index,
            name=self._name,
            total_bytes=self._total,
            free_bytes=self._free,
            used_bytes=self._used,
            reserved_bytes=self._reserved,
            driver_version=self._driver,
        )


class GpuProcessEntryBuilder:
    """Builds a ``GpuProcessEntry``; defaults pid 0, no name, 0 bytes, source ``PDH``."""

    def __init__(self) -> None:
        self._pid = 0
        self._name: str | None = None
        self._used = 0
        self._shared = 0
        self._source = GpuQuerySource.PDH

    def pid(self, value: int) -> GpuProcessEntryBuilder:
        self._pid = value
        return self

    def name(self, value: str | None) -> GpuProcessEntryBuilder:
        self._name = value
        return self

    def used_bytes(self, value: int) -> GpuProcessEntryBuilder:
        self._used = value
        return self

    def shared_used_bytes(self, value: int) -> GpuProcessEntryBuilder:
        self._shared = value
        return self

    def source(self, value: GpuQuerySource) -> GpuProcessEntryBuilder:
        self._source = value
        return self

    def build(self) -> GpuProcessEntry:
        return GpuProcessEntry(
            pid=self._pid,
            name=self._name,
            used_bytes=self._used,
            shared_used_bytes=self._shared,
            source=self._source,
        )


class SpillReportBuilder:
    """Builds a ``SpillReport``; defaults: no episodes, zeros, not measurable."""

    def __init__(self) -> None:
        self._episodes: list[SpillEpisode] = []
        self._peak_dedicated = 0
        self._limit = 0
        self._peak_shared = 0
        self._baseline = 0
        self._observations = 0
        self._measurable = False

    def peak_dedicated_bytes(self, value: int) -> SpillReportBuilder:
        self._peak_dedicated = value
        return self

    def dedicated_limit_bytes(self, value: int) -> SpillReportBuilder:
        self._limit = value
        return self

    def peak_shared_bytes(self, value: int) -> SpillReportBuilder:
        self._peak_shared = value
        return self

    def baseline_shared_bytes(self, value: int) -> SpillReportBuilder:
        self._baseline = value
        return self

    def observations(self, value: int) -> SpillReportBuilder:
        self._observations = value
        return self

    def measurable(self, value: bool) -> SpillReportBuilder:
        self._measurable = value
        return self

    def episode(
        self,
        start_label: str,
        end_label: str | None,
        peak_shared_bytes: int,
        observations: int,
        duration: timedelta,
    ) -> SpillReportBuilder:
        """Append one episode."""
        self._episodes.append(
            SpillEpisode(
                start_label=start_label,
                end_label=end_label,
                peak_shared_bytes=peak_shared_bytes,
                observations=observations,
                duration=duration,
            )
        )
        return self

    def build(self) -> SpillReport:
        return SpillReport(
            episodes=tuple(self._episodes),
            peak_dedicated_bytes=self._peak_dedicated,
            dedicated_limit_bytes=self._limit,
            peak_shared_bytes=self._peak_shared,
            baseline_shared_bytes=self._baseline,
            observations=self._observations,
            measurable=self._measurable,
        )
