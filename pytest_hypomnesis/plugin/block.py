"""What a ``memory_report()`` block measured: ``MeasuredBlock`` and its attribute views.

Its own module, loaded by the ``memory_report`` fixture on first use: the fixtures module
is imported in every pytest run and must not build these classes."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from pytest_hypomnesis.record import SpanRecord, vram_increase_bytes, vram_peak_bytes

if TYPE_CHECKING:
    from pytest_hypomnesis.plugin.engine import Engine, Span

__all__ = ["DeviceFigures", "MeasuredBlock", "RamFigures"]


@dataclass(frozen=True, slots=True)
class RamFigures:
    """``r.ram`` of a ``memory_report()`` block: attribute access to the record's ``ram``."""

    start_bytes: int | None
    peak_bytes: int | None
    end_bytes: int | None
    increase_bytes: int | None
    method: str


@dataclass(frozen=True, slots=True)
class DeviceFigures:
    """``r.vram[i]`` of a ``memory_report()`` block: one device of the record's ``vram``."""

    start_bytes: int | None
    peak_bytes: int | None
    end_bytes: int | None
    increase_bytes: int | None
    device_used_peak_bytes: int | None
    samples: int
    failed_samples: int = 0
    """Readings that failed; with any, every figure above is ``None``."""
    unavailable_reason: str | None = None
    cuda_context_bytes: int | None = None
    """A CUDA context created in the block, left out of ``increase_bytes``."""
    gross_increase_bytes: int | None = None
    """The increase with that context in."""
    uuid: str | None = None
    """Which GPU (``GPU-``/``MIG-`` UUID), its NVML index, PCI bus id and name, and for a
    MIG device its GPU's UUID; ``None`` where unknown."""
    nvml_index: int | None = None
    pci_bus_id: str | None = None
    name: str | None = None
    parent_uuid: str | None = None


class MeasuredBlock:
    """What ``with memory_report() as r:`` measured; read it after the block.

    ``r.ram`` (start/peak/end/increase bytes), ``r.vram`` (per device index), and the
    shortcuts ``r.ram_peak_bytes``, ``r.ram_increase_bytes``, ``r.vram_peak_bytes``,
    ``r.vram_increase_bytes`` (over the devices together, the peak being the highest
    per-reading sum; ``None`` without a GPU).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._span: Span | None = None
        self._result: SpanRecord | None = None

    def __enter__(self) -> MeasuredBlock:
        if self._span is not None:
            raise RuntimeError("a memory_report() block can be entered only once")
        self._span = self._engine.begin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._span is not None
        self._result = self._engine.end(self._span)

    @property
    def record(self) -> SpanRecord:
        """The block's figures as a test record holds them (``ram``, ``vram``, ...)."""
        if self._result is None:
            raise RuntimeError("memory_report(): read the result after the `with` block")
        return self._result

    @property
    def ram(self) -> RamFigures:
        ram = self.record["ram"]
        return RamFigures(
            start_bytes=ram["start_bytes"],
            peak_bytes=ram["peak_bytes"],
            end_bytes=ram["end_bytes"],
            increase_bytes=ram["increase_bytes"],
            method=ram["method"],
        )

    @property
    def vram(self) -> dict[int, DeviceFigures]:
        return {int(i): DeviceFigures(**d) for i, d in self.record["vram"]["devices"].items()}

    @property
    def duration_s(self) -> float:
        return self.record["duration_s"]

    @property
    def ram_peak_bytes(self) -> int | None:
        return self.record["ram"]["peak_bytes"]

    @property
    def ram_increase_bytes(self) -> int | None:
        return self.record["ram"]["increase_bytes"]

    @property
    def vram_peak_bytes(self) -> int | None:
        return vram_peak_bytes(self.record)

    @property
    def vram_increase_bytes(self) -> int | None:
        return vram_increase_bytes(self.record)

    def __repr__(self) -> str:
        if self._result is None:
            return "<MeasuredBlock (not finished)>"
        return (
            f"<MeasuredBlock ram_increase_bytes={self.ram_increase_bytes} "
            f"vram_increase_bytes={self.vram_increase_bytes}>"
        )
