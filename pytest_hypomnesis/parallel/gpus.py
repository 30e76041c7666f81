"""Which GPUs this process may use (by CUDA ordinal, with NVML index and UUID), and one
GPU's figures now.

The mapping of ``CUDA_VISIBLE_DEVICES`` (every form) and ``CUDA_DEVICE_ORDER`` to NVML
GPUs is ``probe.cuda_devices``; here it is narrowed to what can be pinned and admitted:
devices with a UUID, whole GPUs or MIG devices.

MIG: CUDA enumerates at most one MIG device per process, so a process started with
``CUDA_VISIBLE_DEVICES=MIG-a,MIG-b`` sees only ``MIG-a``. For pinning that list is still a
pool of two: each worker is started with one of its entries to itself, which CUDA allows.
So when the variable names a MIG device, every entry is resolved on its own, as the
worker given it alone will see it. A GPU in MIG mode named by index or ``GPU-`` UUID is
what CUDA shows for it: its first MIG device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pytest_hypomnesis.parallel.admission import DeviceNow
from pytest_hypomnesis.probe import cuda_devices, nvml

__all__ = ["VISIBLE_ENV", "Gpu", "GpuPoolError", "read_device", "visible_gpus"]

VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"


class GpuPoolError(Exception):
    """The GPUs cannot be worked out or shared out; the message says why."""


@dataclass(frozen=True, slots=True)
class Gpu:
    nvml_index: int
    """The physical GPU's NVML index (a MIG device's parent)."""
    uuid: str
    """``GPU-`` or ``MIG-``: what ``CUDA_VISIBLE_DEVICES`` is set to, and the ledger key."""
    mig: bool = False

    @property
    def handle_uuid(self) -> str | None:
        """The UUID NVML reaches this device by, where the index alone is the wrong one."""
        return self.uuid if self.mig else None


def _gpu(device: cuda_devices.CudaDevice) -> Gpu:
    if device.uuid is None:
        raise GpuPoolError(f"GPU {device.nvml_index} (NVML) reports no UUID")
    return Gpu(device.nvml_index, device.uuid, device.is_mig)


def _mig_pool(value: str) -> list[Gpu] | None:
    """Each entry of a ``CUDA_VISIBLE_DEVICES`` that names a MIG device, resolved as a
    worker given that entry alone sees it; ``None`` when no entry names a MIG device."""
    parsed = cuda_devices.parse_cuda_visible_devices(value)
    if parsed is None or not any(e.kind in ("mig_uuid", "mig_legacy") for e in parsed.entries):
        return None
    raw = [part.strip() for part in value.split(",")][: len(parsed.entries)]
    pool: list[Gpu] = []
    for entry in raw:
        alone = cuda_devices.visible_devices({**os.environ, VISIBLE_ENV: entry})
        if not alone.mapped:
            raise GpuPoolError(f"no GPU list ({alone.reason})")
        if not alone.devices:
            raise GpuPoolError(f"{VISIBLE_ENV} entry {entry!r} names no GPU or MIG device here")
        gpu = _gpu(alone.devices[0])
        if any(g.uuid == gpu.uuid for g in pool):
            raise GpuPoolError(
                f"{VISIBLE_ENV} names {gpu.uuid} twice (CUDA itself would then see no GPU)"
            )
        pool.append(gpu)
    return pool


def visible_gpus() -> list[Gpu]:
    """The pool, in CUDA order (``cuda:0`` first). Raises ``GpuPoolError``."""
    value = os.environ.get(VISIBLE_ENV)
    if value is not None:
        pool = _mig_pool(value)
        if pool is not None:
            return pool
    visible = cuda_devices.visible_devices()
    if not visible.mapped:
        raise GpuPoolError(f"no GPU list ({visible.reason})")
    return [_gpu(device) for device in visible.devices]


def read_device(index: int, uuid: str | None = None) -> DeviceNow:
    """Total and used bytes and the attributable per-process rows of NVML device ``index``
    (of the MIG device ``uuid`` when given: its slice alone), under one NVML lock. Raises
    ``BackendFailure``."""
    with nvml._lock:
        nv = nvml._ensure()
        handle = nvml._handle(nv, index, uuid)
        memory = nvml._memory(nv, handle, index)
        rows = nvml._raw_processes(nv, handle)
    total = int(memory.total)
    per_pid: dict[int, int] = {}
    for pid, used in rows:
        if used is not None and nvml._usable(used, total):
            per_pid[pid] = per_pid.get(pid, 0) + used
    return DeviceNow(total_bytes=total, used_bytes=int(memory.used), process_bytes=per_pid)
