"""Internal reading types shared by the backends, the probe chain and the sampler."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol

from pytest_hypomnesis.gpumodel import GpuQuerySource

if TYPE_CHECKING:
    from pytest_hypomnesis.gpumodel import GpuDeviceInfo, ProcessGpuInfo

__all__ = [
    "GpuReading",
    "NvmlDeviceReading",
    "NvmlGpu",
    "NvmlMigDevice",
    "SmiDeviceReading",
    "SpillSample",
    "SpillSource",
    "VramReading",
]


class GpuReading(NamedTuple):
    """What a ``Snapshot`` holds beside RSS, for one device: best-effort figures and, when
    either is ``None``, why (``model.Snapshot.now``/``all`` add the RSS reading)."""

    gpu: ProcessGpuInfo | None
    device: GpuDeviceInfo | None
    reason: str | None = None


class SpillSample(NamedTuple):
    """One adapter reading: dedicated-resident, shared-resident and capacity (0 = unknown)."""

    dedicated_bytes: int
    shared_bytes: int
    limit_bytes: int


class SpillSource(Protocol):
    """Where a spill tracker's samples come from. ``sample()`` returns ``None`` for a
    failed read."""

    def sample(self) -> SpillSample | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class NvmlDeviceReading:
    """What one NVML device query yields (parity doc §4.4)."""

    name: str | None
    total_bytes: int
    free_bytes: int
    used_bytes: int
    reserved_bytes: int | None
    driver_version: str | None


@dataclass(frozen=True, slots=True)
class SmiDeviceReading:
    """The first line of ``nvidia-smi --query-gpu=memory.used,memory.total,driver_version``."""

    used_bytes: int
    total_bytes: int
    driver_version: str | None


@dataclass(frozen=True, slots=True)
class VramReading:
    """One sampler reading: this process's VRAM on one device, and the device-wide used figure.

    ``process_used_bytes`` is ``None`` when no per-process figure could be read this time;
    ``failure`` then says why (the backend's own reason: ``GPU is lost``, ``Not Supported``,
    ``per-process figure not available (2^64-1)``...).
    """

    process_used_bytes: int | None
    device_used_bytes: int | None
    source: GpuQuerySource | None
    # Not part of equality: two readings with the same figures are the same reading.
    failure: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class NvmlMigDevice:
    """One MIG device of a GPU in MIG mode, as NVML lists it."""

    uuid: str
    mig_index: int  # for nvmlDeviceGetMigDeviceHandleByIndex(parent, mig_index)
    gpu_instance_id: int | None
    compute_instance_id: int | None
    name: str | None


@dataclass(frozen=True, slots=True)
class NvmlGpu:
    """One physical GPU: its NVML index and what identifies it across APIs."""

    nvml_index: int
    uuid: str | None
    pci_bus_id: str | None  # NVML's busId, e.g. ``00000000:01:00.0``
    name: str | None
    mig_enabled: bool
    mig_devices: tuple[NvmlMigDevice, ...] = ()
