"""Which GPUs this process may use, by NVML index and UUID, and one GPU's figures now.

The pool is what ``CUDA_VISIBLE_DEVICES`` names (unset: every GPU NVML lists); the
entries are matched to NVML devices by index or by (prefix of) ``GPU-`` UUID. MIG device
UUIDs cannot be pinned one per worker here: they are refused with a reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis.parallel.admission import DeviceNow
from pytest_hypomnesis.probe import nvml

__all__ = ["Gpu", "GpuPoolError", "all_gpus", "read_device", "visible_gpus"]

VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"


class GpuPoolError(Exception):
    """The GPUs cannot be worked out; the message says why."""


@dataclass(frozen=True, slots=True)
class Gpu:
    nvml_index: int
    uuid: str
    total_bytes: int


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def all_gpus() -> list[Gpu]:
    """Every GPU NVML lists, in NVML order. Raises ``BackendFailure`` without NVML."""
    gpus = []
    for index in range(nvml.device_count()):
        with nvml._lock:
            nv = nvml._ensure()
            handle = nvml._handle(nv, index)
            try:
                uuid = _text(nv.nvmlDeviceGetUUID(handle))
            except nv.NVMLError as exc:
                raise nvml._failure(exc, "nvmlDeviceGetUUID") from exc
            total = int(nvml._memory(nv, handle, index).total)
        gpus.append(Gpu(index, uuid, total))
    return gpus


def visible_gpus(value: str | None = None, *, gpus: list[Gpu] | None = None) -> list[Gpu]:
    """The GPUs ``CUDA_VISIBLE_DEVICES`` (or ``value``) names, in its order. Like CUDA,
    an entry that names no GPU ends the list. Raises ``GpuPoolError``."""
    if value is None:
        value = os.environ.get(VISIBLE_ENV)
    try:
        known = all_gpus() if gpus is None else gpus
    except BackendFailure as failure:
        raise GpuPoolError(f"no GPU through NVML ({failure.reason})") from None
    if value is None:
        return known
    chosen: list[Gpu] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            break
        if entry.upper().startswith("MIG-"):
            raise GpuPoolError(
                f"{VISIBLE_ENV}={value}: MIG device {entry} cannot be shared out by GPU; "
                "give each job its MIG device instead"
            )
        match: Gpu | None = None
        if entry.isascii() and entry.isdigit():
            index = int(entry)
            match = next((g for g in known if g.nvml_index == index), None)
        else:
            wanted = entry if entry.upper().startswith("GPU-") else f"GPU-{entry}"
            found = [g for g in known if g.uuid.lower().startswith(wanted.lower())]
            if len(found) > 1:
                raise GpuPoolError(f"{VISIBLE_ENV}={value}: {entry} matches several GPUs")
            match = found[0] if found else None
        if match is None or match in chosen:
            break
        chosen.append(match)
    return chosen


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
