"""The public records: ``Snapshot`` (one reading: RSS plus best-effort GPU figures),
``MemoryReport`` (two of them), and the GPU records they hold (defined in ``gpumodel``,
re-exported here). Frozen, keyword-only dataclasses with plain-JSON round trips.

``Snapshot.now()``/``Snapshot.all()`` take their reading through ``probe.chain``, which
answers in ``gpumodel``'s types: this module sits above ``probe``, the records below it.

Sizes are integers in bytes; a figure that is not known is ``None``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_hypomnesis import _format
from pytest_hypomnesis.gpumodel import (
    GpuDeviceInfo,
    GpuProcessEntry,
    GpuQuerySource,
    ProcessGpuInfo,
    SpillEpisode,
    SpillReport,
    _FieldsJson,
)

if TYPE_CHECKING:
    from pytest_hypomnesis.probe.readings import GpuReading

__all__ = [
    "GpuDeviceInfo",
    "GpuProcessEntry",
    "GpuQuerySource",
    "MemoryReport",
    "ProcessGpuInfo",
    "Snapshot",
    "SpillEpisode",
    "SpillReport",
]

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot(_FieldsJson):
    """One point-in-time reading for one device index.

    ``gpu_unavailable_reason`` is our addition: when ``gpu`` or ``gpu_device`` is
    ``None`` it says why (``"NVML: Driver Not Loaded; nvidia-smi: not found on PATH"``).
    """

    ram_bytes: int
    gpu: ProcessGpuInfo | None = None
    gpu_device: GpuDeviceInfo | None = None
    gpu_unavailable_reason: str | None = None

    @classmethod
    def now(cls, index: int = 0) -> Snapshot:
        """RSS (raises ``RamError`` on failure) plus best-effort GPU figures for ``index``."""
        from pytest_hypomnesis.probe import chain

        return _of(chain.process_rss(), chain.gpu_reading(index))

    @classmethod
    def all(cls) -> list[Snapshot]:
        """One snapshot per visible device, sharing one RSS reading; ``[]`` when none."""
        from pytest_hypomnesis.probe import chain

        ram = chain.process_rss()  # first: the crate's Snapshot::all fails on RSS before a GPU
        return [_of(ram, reading) for reading in chain.gpu_readings_all()]

    def ram_mb(self) -> float:
        """``ram_bytes`` in MiB."""
        return self.ram_bytes / MIB

    def vram_mb(self) -> float | None:
        """``gpu.used_bytes`` in MiB (device-wide when not per-process), ``None`` without gpu."""
        return None if self.gpu is None else self.gpu.used_bytes / MIB


def _of(ram_bytes: int, reading: GpuReading) -> Snapshot:
    return Snapshot(
        ram_bytes=ram_bytes,
        gpu=reading.gpu,
        gpu_device=reading.device,
        gpu_unavailable_reason=reading.reason,
    )


@dataclass(frozen=True, slots=True)
class MemoryReport:
    """Two snapshots; positive deltas mean growth. ``MemoryReport(before, after)``."""

    before: Snapshot
    after: Snapshot

    @classmethod
    def new(cls, before: Snapshot, after: Snapshot) -> MemoryReport:
        return cls(before, after)

    def ram_delta_mb(self) -> float:
        return self.after.ram_mb() - self.before.ram_mb()

    def vram_delta_mb(self) -> float | None:
        before, after = self.before.vram_mb(), self.after.vram_mb()
        if before is None or after is None:
            return None
        return after - before

    def _qualifier(self) -> str:
        gpu = self.after.gpu
        if gpu is None:
            return ""
        return " [per-process]" if gpu.is_per_process else " [device-wide]"

    def format_delta(self, label: str) -> str:
        """``"  alloc: RAM +100 MB  |  VRAM +500 MB [per-process]\\n"``."""
        line = f"  {label}: RAM {_format.signed_mb0(self.ram_delta_mb())} MB"
        vram = self.vram_delta_mb()
        if vram is not None:
            line += f"  |  VRAM {_format.signed_mb0(vram)} MB{self._qualifier()}"
        return line + "\n"

    def format_before_after(self, label: str) -> str:
        """``"  l: RAM 100 MB → 200 MB (+100 MB)\\n"`` and, with GPU on both sides, a VRAM line."""
        before, after = self.before, self.after
        text = (
            f"  {label}: RAM {before.ram_mb():.0f} MB → {after.ram_mb():.0f} MB "
            f"({_format.signed_mb0(self.ram_delta_mb())} MB)\n"
        )
        vram_before, vram_after = before.vram_mb(), after.vram_mb()
        if vram_before is not None and vram_after is not None:
            total = ""
            name = ""
            if after.gpu_device is not None:
                total = f" / {_format.mb0(after.gpu_device.total_bytes)} MB"
                if after.gpu_device.name is not None:
                    name = f" [{after.gpu_device.name}]"
            text += (
                f"  {label}: VRAM {vram_before:.0f} MB → {vram_after:.0f} MB "
                f"({_format.signed_mb0(vram_after - vram_before)} MB{total})"
                f"{self._qualifier()}{name}\n"
            )
        return text

    def print_delta(self, label: str) -> None:
        sys.stdout.write(self.format_delta(label))

    def print_before_after(self, label: str) -> None:
        sys.stdout.write(self.format_before_after(label))

    def to_dict(self) -> dict[str, Any]:
        return {"before": self.before.to_dict(), "after": self.after.to_dict()}

    @classmethod
    def from_dict(cls, data: object) -> MemoryReport:
        if not isinstance(data, dict) or "before" not in data or "after" not in data:
            raise ValueError("MemoryReport: expected an object with 'before' and 'after'")
        return cls(Snapshot.from_dict(data["before"]), Snapshot.from_dict(data["after"]))
