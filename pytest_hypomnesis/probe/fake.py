"""A synthetic GPU the probe layer answers from, for tests on machines without one.

Installed by the ``fake_gpu`` fixture through ``_probe.set_fake``; the library functions,
the CLI's functions and the plugin's sampler and budgets all read it. Its figures can be
changed while a test runs, to simulate a VRAM spike.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from pytest_hypomnesis._errors import DeviceIndexOutOfRangeError, NoGpuSourceError
from pytest_hypomnesis._units import parse_size
from pytest_hypomnesis.gpumodel import (
    GpuDeviceInfo,
    GpuProcessEntry,
    GpuQuerySource,
    ProcessGpuInfo,
)
from pytest_hypomnesis.probe.readings import GpuReading, VramReading

__all__ = ["FakeDevice", "FakeGpu"]

GIB = 1024**3


@dataclass
class FakeDevice:
    """One synthetic device. ``base_used_bytes`` is memory held by nobody we list
    (driver, other users); the device's used figure adds every process's usage to it."""

    index: int
    name: str | None
    total_bytes: int
    base_used_bytes: int
    reserved_bytes: int | None
    driver_version: str | None
    processes: dict[int, tuple[str | None, int]] = field(default_factory=dict)
    uuid: str | None = None
    """Its ``GPU-`` UUID when the test gave one (records carry it); ``None`` otherwise."""
    pci_bus_id: str | None = None

    @property
    def used_bytes(self) -> int:
        return min(
            self.base_used_bytes + sum(used for _, used in self.processes.values()),
            self.total_bytes,
        )


class FakeGpu:
    """Synthetic devices and per-process usage.

    >>> fake = FakeGpu()
    >>> dev = fake.add_device(name="NVIDIA Fake", total="16GiB")
    >>> fake.set_process_vram(0, "1GiB")   # this process now holds 1 GiB on GPU 0
    """

    def __init__(self, *, source: GpuQuerySource = GpuQuerySource.NVML) -> None:
        self.source = source
        self._devices: list[FakeDevice] = []
        self._lock = threading.Lock()

    @property
    def devices(self) -> list[FakeDevice]:
        return list(self._devices)

    def add_device(
        self,
        *,
        name: str | None = "NVIDIA Fake GPU",
        total: int | str = 16 * GIB,
        used: int | str = 0,
        reserved: int | str | None = None,
        driver_version: str | None = "555.42.06",
        uuid: str | None = None,
        pci_bus_id: str | None = None,
    ) -> FakeDevice:
        """Add a device at the next index; sizes are bytes or size strings (``"16GiB"``).
        ``uuid`` and ``pci_bus_id`` are the identity records give it (``None``: unknown)."""
        with self._lock:
            device = FakeDevice(
                index=len(self._devices),
                name=name,
                total_bytes=parse_size(total),
                base_used_bytes=parse_size(used),
                reserved_bytes=None if reserved is None else parse_size(reserved),
                driver_version=driver_version,
                uuid=uuid,
                pci_bus_id=pci_bus_id,
            )
            self._devices.append(device)
            return device

    def set_process_vram(
        self, index: int, used: int | str, *, pid: int | None = None, name: str | None = None
    ) -> None:
        """Set the VRAM ``pid`` (default: this process) holds on device ``index``;
        ``0`` removes it from the listing."""
        used_bytes = parse_size(used)
        target = os.getpid() if pid is None else pid
        with self._lock:
            device = self._device(index)
            if used_bytes == 0:
                device.processes.pop(target, None)
            else:
                if name is None and target == os.getpid():
                    name = "python"
                device.processes[target] = (name, used_bytes)

    def process_vram(self, index: int, pid: int | None = None) -> int:
        target = os.getpid() if pid is None else pid
        with self._lock:
            return self._device(index).processes.get(target, (None, 0))[1]

    def _device(self, index: int) -> FakeDevice:
        if not 0 <= index < len(self._devices):
            if not self._devices:
                raise NoGpuSourceError(("fake GPU: no devices added",))
            raise DeviceIndexOutOfRangeError(index, len(self._devices))
        return self._devices[index]

    # The probe-layer answers.
    def device_count(self) -> int:
        return len(self._devices)

    def device_info(self, index: int) -> GpuDeviceInfo:
        with self._lock:
            d = self._device(index)
            used = d.used_bytes
            return GpuDeviceInfo(
                index=d.index,
                name=d.name,
                total_bytes=d.total_bytes,
                free_bytes=max(d.total_bytes - used - (d.reserved_bytes or 0), 0),
                used_bytes=used,
                reserved_bytes=d.reserved_bytes,
                driver_version=d.driver_version,
            )

    def process_gpu_info(self, index: int, pid: int | None) -> ProcessGpuInfo:
        used = self.process_vram(index, pid)
        return ProcessGpuInfo(used_bytes=used, is_per_process=True, source=self.source)

    def gpu_processes(self, index: int) -> list[GpuProcessEntry]:
        with self._lock:
            d = self._device(index)
            return [
                GpuProcessEntry(
                    pid=pid, name=name, used_bytes=used, shared_used_bytes=0, source=self.source
                )
                for pid, (name, used) in sorted(d.processes.items())
            ]

    def gpu_reading(self, index: int) -> GpuReading:
        try:
            return GpuReading(self.process_gpu_info(index, None), self.device_info(index))
        except (NoGpuSourceError, DeviceIndexOutOfRangeError) as exc:
            return GpuReading(None, None, f"fake GPU: {exc}")

    def vram_reader(self, index: int) -> Callable[[], VramReading] | None:
        if not 0 <= index < len(self._devices):
            return None

        def read() -> VramReading:
            with self._lock:
                device = self._devices[index]
                mine = device.processes.get(os.getpid(), (None, 0))[1]
                return VramReading(mine, device.used_bytes, self.source)

        return read
