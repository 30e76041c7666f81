"""``MemoryReport``: a before/after pair of snapshots and the crate's report strings."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from pytest_hypomnesis import _format
from pytest_hypomnesis._records import Snapshot

__all__ = ["MemoryReport"]


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
    def from_dict(cls, data: dict[str, Any]) -> MemoryReport:
        if not isinstance(data, dict) or "before" not in data or "after" not in data:
            raise ValueError("MemoryReport: expected an object with 'before' and 'after'")
        return cls(Snapshot.from_dict(data["before"]), Snapshot.from_dict(data["after"]))
