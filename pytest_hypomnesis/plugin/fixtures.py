"""The plugin's fixtures: ``memory_snapshot``, ``memory_report``, ``gpu_device_info_builder``,
``fake_gpu``. They work with or without ``--hypomnesis``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import TracebackType

import pytest

from pytest_hypomnesis.model import Snapshot
from pytest_hypomnesis.plugin.engine import (
    DeviceFigures,
    Engine,
    Measurement,
    RamFigures,
    Span,
    sum_devices,
)
from pytest_hypomnesis.probe import chain
from pytest_hypomnesis.probe.fake import FakeGpu
from pytest_hypomnesis.testing import GpuDeviceInfoBuilder

__all__ = [
    "ENGINE_KEY",
    "MeasuredBlock",
    "fake_gpu",
    "gpu_device_info_builder",
    "memory_report",
    "memory_snapshot",
]

ENGINE_KEY = pytest.StashKey[Engine]()


class MeasuredBlock:
    """What ``with memory_report() as r:`` measured; read it after the block.

    ``r.ram`` (start/peak/end/increase bytes), ``r.vram`` (per device index), and the
    shortcuts ``r.ram_peak_bytes``, ``r.ram_increase_bytes``, ``r.vram_peak_bytes``,
    ``r.vram_increase_bytes`` (summed over devices; ``None`` without a GPU).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._span: Span | None = None
        self._result: Measurement | None = None

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
    def measurement(self) -> Measurement:
        if self._result is None:
            raise RuntimeError("memory_report(): read the result after the `with` block")
        return self._result

    @property
    def ram(self) -> RamFigures:
        return self.measurement.ram

    @property
    def vram(self) -> dict[int, DeviceFigures]:
        return self.measurement.vram

    @property
    def duration_s(self) -> float:
        return self.measurement.duration_s

    @property
    def ram_peak_bytes(self) -> int | None:
        return self.ram.peak_bytes

    @property
    def ram_increase_bytes(self) -> int | None:
        return self.ram.increase_bytes

    @property
    def vram_peak_bytes(self) -> int | None:
        return sum_devices(self.vram, "peak_bytes")

    @property
    def vram_increase_bytes(self) -> int | None:
        return sum_devices(self.vram, "increase_bytes")

    def __repr__(self) -> str:
        if self._result is None:
            return "<MeasuredBlock (not finished)>"
        return (
            f"<MeasuredBlock ram_increase_bytes={self.ram_increase_bytes} "
            f"vram_increase_bytes={self.vram_increase_bytes}>"
        )


@pytest.fixture
def memory_snapshot() -> Callable[..., Snapshot]:
    """A callable: ``memory_snapshot(index=0)`` returns a fresh ``Snapshot``."""

    def take(index: int = 0) -> Snapshot:
        return chain.snapshot_now(index)

    return take


@pytest.fixture
def memory_report(request: pytest.FixtureRequest) -> Callable[[], MeasuredBlock]:
    """A factory: ``with memory_report() as r:`` measures the block; ``r`` holds the result."""
    engine = request.config.stash[ENGINE_KEY]
    return lambda: MeasuredBlock(engine)


@pytest.fixture
def gpu_device_info_builder() -> GpuDeviceInfoBuilder:
    """A fresh ``GpuDeviceInfoBuilder`` (every field 0 or ``None`` until set)."""
    return GpuDeviceInfoBuilder()


@pytest.fixture
def fake_gpu() -> Iterator[FakeGpu]:
    """A ``FakeGpu`` (no devices yet) that the probe layer, the CLI functions and the
    budgets answer from for this test; the previous state comes back afterwards."""
    fake = FakeGpu()
    previous = chain.set_fake(fake)
    try:
        yield fake
    finally:
        chain.set_fake(previous)
