"""Which GPUs this process may use (by CUDA ordinal, with NVML index and UUID), and one
GPU's figures now.

The mapping of ``CUDA_VISIBLE_DEVICES`` (every form) and ``CUDA_DEVICE_ORDER`` to NVML
GPUs is ``probe.cuda_devices``; here it is narrowed to what can be pinned and admitted:
whole GPUs with a UUID. A MIG device cannot be shared out one per worker.
"""

from __future__ import annotations

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
    uuid: str


def visible_gpus() -> list[Gpu]:
    """This process's GPUs in CUDA order (``cuda:0`` first). Raises ``GpuPoolError``."""
    visible = cuda_devices.visible_devices()
    if not visible.mapped:
        raise GpuPoolError(f"no GPU list ({visible.reason})")
    gpus: list[Gpu] = []
    for device in visible.devices:
        if device.is_mig:
            raise GpuPoolError(
                f"cuda:{device.cuda_ordinal} is MIG device {device.uuid}, which cannot be "
                "shared out by GPU; give each job its MIG device instead"
            )
        if device.uuid is None:
            raise GpuPoolError(f"GPU {device.nvml_index} (NVML) reports no UUID")
        gpus.append(Gpu(device.nvml_index, device.uuid))
    return gpus


def read_device(index: int) -> DeviceNow:
    """Total and used bytes and the attributable per-process rows of NVML device ``index``,
    under one NVML lock. Raises ``BackendFailure``."""
    with nvml._lock:
        nv = nvml._ensure()
        handle = nvml._handle(nv, index)
        memory = nvml._memory(nv, handle, index)
        rows = nvml._raw_processes(nv, handle)
    total = int(memory.total)
    per_pid: dict[int, int] = {}
    for pid, used in rows:
        if used is not None and nvml._usable(used, total):
            per_pid[pid] = per_pid.get(pid, 0) + used
    return DeviceNow(total_bytes=total, used_bytes=int(memory.used), process_bytes=per_pid)
