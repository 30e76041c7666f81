"""Can NVML see this process? Inside a container it often cannot.

NVML's process list holds host-namespace PIDs on drivers before 535.113, and its
per-process queries fail to match a container's PIDs before 565 (NVIDIA/nvidia-docker#1483,
#179; NVIDIA/open-gpu-kernel-modules PR #614; nvidia-container-toolkit#1013). A process
absent from such a listing is not "0 bytes": the driver lists it under a PID this process
cannot see. Two signs, checked once per session:

- the listing holds PIDs that do not exist here (``/proc/<pid>`` absent, seen twice so a
  process that just exited is not mistaken for one): another PID namespace;
- this PID is absent while a framework in this process (torch or CuPy, only when already
  imported: never imported here) holds GPU memory.

Device-wide growth alone is no sign: another worker may be growing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from pytest_hypomnesis import _platform

__all__ = ["FIXES", "blind_reason"]

FIXES = (
    "run the container with --pid=host (Kubernetes: hostPID: true) or use a driver >= 565, "
    "or, where this job owns the GPU, --hypomnesis-vram-source=device (the device-wide "
    "used increase)"
)


def _absent(pids: Sequence[int]) -> list[int]:
    if not _platform.IS_LINUX:
        return []
    return [pid for pid in pids if pid > 0 and not os.path.exists(f"/proc/{pid}")]


def _framework_holds_memory() -> str | None:
    """The framework in this process that reports GPU memory held, if any (never imports)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_initialized() and int(torch.cuda.memory_reserved()) > 0:
                return "torch"
        except Exception:
            pass
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        try:
            if int(cupy.get_default_memory_pool().total_bytes()) > 0:
                return "cupy"
        except Exception:
            pass
    return None


def blind_reason(list_pids: Callable[[], Sequence[int]], label: str) -> str | None:
    """Why this process's per-process figure on GPU ``label`` cannot be trusted, or
    ``None``. ``list_pids`` is one NVML process listing (it may raise: then ``None``,
    the reader's own failure says why)."""
    try:
        pids = list(list_pids())
    except Exception:
        return None
    me = os.getpid()
    if me in pids:
        return None
    foreign = _absent(pids)
    if foreign:
        try:
            again = set(list_pids())
        except Exception:
            again = set(pids)
        foreign = [pid for pid in _absent(sorted(again)) if pid in foreign]
    if foreign:
        shown = ", ".join(str(p) for p in foreign[:3])
        return (
            f"NVML cannot see this process on GPU {label}: it lists PIDs of another PID "
            f"namespace ({shown}) and not this one's ({me}), so this process's VRAM reads as "
            f"absent (a container without the host's PID namespace); {FIXES}"
        )
    framework = _framework_holds_memory()
    if framework is not None:
        return (
            f"NVML cannot see this process on GPU {label}: {framework} in it holds GPU memory "
            f"but NVML lists no row for PID {me}; {FIXES}"
        )
    return None
