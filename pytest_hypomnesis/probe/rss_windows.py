"""Windows working set: ``K32GetProcessMemoryInfo(GetCurrentProcess())`` →
``WorkingSetSize`` (parity doc §3.1). Unverified on Windows here; the structure and the
error path are tested on Linux with a fake function."""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable

from pytest_hypomnesis._errors import RamError

__all__ = ["PROCESS_MEMORY_COUNTERS", "process_rss", "working_set_from"]


class PROCESS_MEMORY_COUNTERS(ctypes.Structure):
    _fields_ = [
        ("cb", ctypes.c_uint32),
        ("PageFaultCount", ctypes.c_uint32),
        ("PeakWorkingSetSize", ctypes.c_size_t),
        ("WorkingSetSize", ctypes.c_size_t),
        ("QuotaPeakPagedPoolUsage", ctypes.c_size_t),
        ("QuotaPagedPoolUsage", ctypes.c_size_t),
        ("QuotaPeakNonPagedPoolUsage", ctypes.c_size_t),
        ("QuotaNonPagedPoolUsage", ctypes.c_size_t),
        ("PagefileUsage", ctypes.c_size_t),
        ("PeakPagefileUsage", ctypes.c_size_t),
    ]


def working_set_from(
    get_memory_info: Callable[[object, object, int], int],
    process: object,
    last_error: Callable[[], int],
) -> int:
    """Call ``K32GetProcessMemoryInfo``; ``RamError`` with the crate's text on failure."""
    counters = PROCESS_MEMORY_COUNTERS()
    counters.cb = ctypes.sizeof(PROCESS_MEMORY_COUNTERS)
    if not get_memory_info(process, ctypes.byref(counters), counters.cb):
        raise RamError(f"K32GetProcessMemoryInfo failed (GetLastError = {last_error()})")
    return int(counters.WorkingSetSize)


@functools.lru_cache(maxsize=1)
def _bound() -> tuple[Callable[[object, object, int], int], object, Callable[[], int]]:
    if sys.platform != "win32":
        raise OSError("K32GetProcessMemoryInfo exists only on Windows")
    k32 = ctypes.WinDLL("kernel32", use_last_error=True)
    current = k32.GetCurrentProcess
    current.restype = ctypes.c_void_p
    current.argtypes = []
    get_info = k32.K32GetProcessMemoryInfo
    get_info.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32]
    get_info.restype = ctypes.c_int
    return get_info, current(), ctypes.get_last_error


def process_rss() -> int:
    """``WorkingSetSize`` of this process. ``OSError``/``AttributeError`` mean ctypes could
    not reach kernel32 (the caller falls back to psutil); ``RamError`` is a failed call."""
    get_info, process, last_error = _bound()
    return working_set_from(get_info, process, last_error)
