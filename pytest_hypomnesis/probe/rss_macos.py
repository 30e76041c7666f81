"""macOS process footprint: ``task_info(TASK_VM_INFO_PURGEABLE)`` → ``phys_footprint``,
the figure Activity Monitor shows as "Memory" (parity doc §3.1). Unverified on a Mac here;
the buffer handling is tested on Linux with a fake ``task_info``. The RAM sidecar reads the
same ledger from outside the task through ``proc_pid_rusage`` (``probe/footprint.py``)."""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable

from pytest_hypomnesis._errors import RamError

__all__ = ["PHYS_FOOTPRINT_OFFSET", "TASK_VM_INFO_PURGEABLE", "phys_footprint_from", "process_rss"]

TASK_VM_INFO_PURGEABLE = 22
# task_vm_info (packed to 4): 3 x 8-byte + 2 x 4-byte fields precede 15 more u64s, then
# phys_footprint, the first field of revision 1.
PHYS_FOOTPRINT_OFFSET = 144
REV1_WORDS = (PHYS_FOOTPRINT_OFFSET + 8) // 4
# Room for later revisions; the kernel clamps the count to its own structure size.
_BUFFER_WORDS = 128

TaskInfoFn = Callable[[object, int, object, object], int]


def phys_footprint_from(task_info: TaskInfoFn, task: object) -> int:
    """Call ``task_info`` and read ``phys_footprint``; ``RamError`` with the crate's text."""
    buf = (ctypes.c_uint32 * _BUFFER_WORDS)()
    count = ctypes.c_uint32(_BUFFER_WORDS)
    kern_return = int(task_info(task, TASK_VM_INFO_PURGEABLE, buf, ctypes.byref(count)))
    if kern_return != 0:
        raise RamError(f"task_info(TASK_VM_INFO_PURGEABLE) failed (kern_return = {kern_return})")
    if count.value < REV1_WORDS:
        raise RamError(
            f"task_info(TASK_VM_INFO_PURGEABLE) returned {count.value} words, "
            "too few for phys_footprint"
        )
    return int(ctypes.c_uint64.from_buffer(buf, PHYS_FOOTPRINT_OFFSET).value)


@functools.lru_cache(maxsize=1)
def _bound() -> tuple[TaskInfoFn, int]:
    if sys.platform != "darwin":
        raise OSError("task_info exists only on macOS")
    lib = ctypes.CDLL("/usr/lib/libSystem.B.dylib")
    task = ctypes.c_uint32.in_dll(lib, "mach_task_self_")
    task_info = lib.task_info
    task_info.argtypes = [
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_uint32),
    ]
    task_info.restype = ctypes.c_int
    return task_info, int(task.value)


def process_rss() -> int:
    """``phys_footprint`` of this process. ``OSError``/``AttributeError`` mean ctypes could
    not reach libSystem (the caller falls back to psutil); ``RamError`` is a failed call."""
    task_info, task = _bound()
    return phys_footprint_from(task_info, task)
