"""Framework allocators, read without side effects: PyTorch, CuPy, JAX.

A framework is read only when the user's code has already imported it (it is in
``sys.modules``) and, for torch and JAX, only once it has initialised its GPU backend:
importing a framework, or asking JAX for its devices before it has any, would create a
CUDA context (or JAX's preallocated pool) that the user never asked for. Nothing here
resets a counter; ``reset_torch_peaks`` is the one opt-in exception, and
``warm_up_cuda`` (``--hypomnesis-cuda-warmup``) the one place a framework is imported.

``read_allocators()`` is the reading API: one ``AllocatorReading`` per framework device,
``[]`` when no framework is loaded (one ``sys.modules`` probe per framework).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FRAMEWORK_MODULES",
    "AllocatorReading",
    "any_loaded",
    "jax_preallocation",
    "read_allocators",
    "reset_torch_peaks",
    "torch_cuda",
    "warm_up_cuda",
]

FRAMEWORK_MODULES = ("torch", "cupy", "jax")


@dataclass(frozen=True, slots=True)
class AllocatorReading:
    """One framework's figures on one device, as its allocator reports them.

    ``allocated_bytes``: memory in live tensors/arrays now (torch ``memory_allocated``,
    CuPy pool ``used_bytes``, JAX ``bytes_in_use``). ``peak_bytes``: the framework's own
    running peak (torch ``max_memory_allocated``, JAX ``peak_bytes_in_use``; ``None`` for
    CuPy, which keeps none) since the process started or the user last reset it.
    ``reserved_bytes``: what the allocator holds from the driver, cache included (torch
    ``memory_reserved``, CuPy ``total_bytes``, JAX ``bytes_reserved`` or ``None``).
    ``device`` is the framework's own device index (CUDA ordinal), not NVML's.
    """

    framework: str
    device: int
    allocated_bytes: int
    peak_bytes: int | None
    reserved_bytes: int | None


def any_loaded() -> bool:
    """Whether any framework is imported; the cheap test the hot path makes."""
    modules = sys.modules
    return "torch" in modules or "cupy" in modules or "jax" in modules


def torch_cuda() -> Any:
    """``torch.cuda`` when PyTorch is imported and has initialised CUDA; never imports."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        cuda = torch.cuda
        return cuda if cuda.is_initialized() else None
    except Exception:
        return None


def _torch() -> list[AllocatorReading]:
    cuda = torch_cuda()
    if cuda is None:
        return []
    out = []
    for device in range(int(cuda.device_count())):
        out.append(
            AllocatorReading(
                "torch",
                device,
                int(cuda.memory_allocated(device)),
                int(cuda.max_memory_allocated(device)),
                int(cuda.memory_reserved(device)),
            )
        )
    return out


def reset_torch_peaks() -> bool:
    """``torch.cuda.reset_peak_memory_stats`` on every device (``--hypomnesis-torch-reset-peak``
    only: it also resets the user's own ``max_memory_allocated``); ``False`` when torch has
    no CUDA or the reset failed."""
    cuda = torch_cuda()
    if cuda is None:
        return False
    try:
        for device in range(int(cuda.device_count())):
            cuda.reset_peak_memory_stats(device)
    except Exception:
        return False
    return True


def _cupy() -> list[AllocatorReading]:
    cupy = sys.modules.get("cupy")
    if cupy is None:
        return []
    pool = cupy.get_default_memory_pool()
    total = int(pool.total_bytes())
    if total == 0:
        # The pool has never held memory: nothing to report, and asking for the current
        # device is then avoidable runtime work.
        return []
    # The default pool answers for the current device (MemoryPool.used_bytes()).
    device = int(cupy.cuda.runtime.getDevice())
    return [AllocatorReading("cupy", device, int(pool.used_bytes()), None, total)]


def _jax_backends() -> list[Any]:
    """JAX's initialised backends, without initialising one (``jax.devices()`` would)."""
    bridge = sys.modules.get("jax._src.xla_bridge")
    backends = getattr(bridge, "_backends", None) if bridge is not None else None
    return list(backends.values()) if isinstance(backends, dict) else []


_JAX_GPU_PLATFORMS = frozenset({"gpu", "cuda", "rocm"})


def _jax() -> list[AllocatorReading]:
    if "jax" not in sys.modules:
        return []
    out = []
    for backend in _jax_backends():
        for device in backend.local_devices():
            if getattr(device, "platform", None) not in _JAX_GPU_PLATFORMS:
                continue
            stats = device.memory_stats()
            if not stats or "bytes_in_use" not in stats:
                continue  # None on backends that keep no statistics
            index = getattr(device, "local_hardware_id", None)
            index = device.id if index is None else index
            peak = stats.get("peak_bytes_in_use")
            reserved = stats.get("bytes_reserved")
            out.append(
                AllocatorReading(
                    "jax",
                    int(index),
                    int(stats["bytes_in_use"]),
                    None if peak is None else int(peak),
                    None if reserved is None else int(reserved),
                )
            )
    return out


_READERS: tuple[tuple[str, Callable[[], list[AllocatorReading]]], ...] = (
    ("torch", _torch),
    ("cupy", _cupy),
    ("jax", _jax),
)


def read_allocators() -> list[AllocatorReading]:
    """Every loaded framework's figures; a framework whose query fails is left out (its
    figures are then unknown, never 0)."""
    modules = sys.modules
    out: list[AllocatorReading] = []
    for name, reader in _READERS:
        if name in modules:
            try:
                out.extend(reader())
            except Exception:
                continue
    return out


def jax_preallocation(*, loaded: bool | None = None) -> str | None:
    """When JAX is loaded (``loaded``; default: in ``sys.modules``) with its GPU pool
    preallocated (its default: 75% of each GPU), the fraction as text (``"75%"``);
    ``None`` when it is not, or preallocation is off (``XLA_PYTHON_CLIENT_PREALLOCATE=false``
    or ``XLA_PYTHON_CLIENT_ALLOCATOR=platform``)."""
    if not (("jax" in sys.modules) if loaded is None else loaded):
        return None
    if os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "true").strip().lower() in (
        "false",
        "0",
    ):
        return None
    if os.environ.get("XLA_PYTHON_CLIENT_ALLOCATOR", "").strip().lower() == "platform":
        return None
    fraction = os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", "").strip()
    try:
        return f"{float(fraction) * 100:g}%" if fraction else "75%"
    except ValueError:
        return "75%"


def warm_up_cuda(devices: tuple[int, ...] | None) -> str:
    """Create the CUDA context on ``devices`` (``None``: every device the framework sees)
    through torch or else CuPy, importing the one that is installed: the user asked for
    this with ``--hypomnesis-cuda-warmup``. Returns one line saying what was done, or
    why nothing was."""
    import importlib
    import importlib.util

    for name in ("torch", "cupy"):
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            continue
        try:
            module = importlib.import_module(name)
            done = _warm_torch(module, devices) if name == "torch" else _warm_cupy(module, devices)
        except Exception as exc:
            return f"CUDA warm-up through {name} failed: {type(exc).__name__}: {exc}"
        if done is None:
            return f"CUDA warm-up: {name} sees no CUDA device"
        gpus = ", ".join(str(d) for d in done)
        return f"CUDA context created at session start through {name} on GPU {gpus}"
    return "CUDA warm-up: neither torch nor CuPy is installed"


def _warm_torch(torch: Any, devices: tuple[int, ...] | None) -> list[int] | None:
    cuda = torch.cuda
    if not cuda.is_available():
        return None
    count = int(cuda.device_count())
    chosen = [d for d in (devices if devices is not None else range(count)) if d < count]
    for device in chosen:
        # A one-element tensor: the smallest thing that makes torch create the context
        # on that device without changing the current device.
        torch.empty(1, device=f"cuda:{device}")
    return chosen or None


def _warm_cupy(cupy: Any, devices: tuple[int, ...] | None) -> list[int] | None:
    count = int(cupy.cuda.runtime.getDeviceCount())
    chosen = [d for d in (devices if devices is not None else range(count)) if d < count]
    for device in chosen:
        with cupy.cuda.Device(device):
            cupy.cuda.runtime.free(0)  # cudaFree(0): create the context, allocate nothing
    return chosen or None
