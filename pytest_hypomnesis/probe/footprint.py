"""macOS ``phys_footprint`` of any same-user process: ``proc_pid_rusage(pid, RUSAGE_INFO_V0)``.

The RAM sidecar reads this process (and, with ``children``, each descendant) from outside,
where ``task_info`` would need ``task_for_pid`` and its privileges; ``proc_pid_rusage`` only
asks that the target have the caller's uid. The kernel fills ``ri_phys_footprint`` from the
task's ``phys_footprint`` ledger, the one ``task_info(TASK_VM_INFO_PURGEABLE)`` reads for
``rss_macos`` (xnu: ``gather_rusage_info`` and ``task_info`` both call
``get_task_phys_footprint``), so the sidecar's figure is Activity Monitor's "Memory" too.

Stdlib only, with nothing imported from the package: the sidecar
(``python -I -S``) runs this very file by path, so it and this process read one figure
through one piece of code. Unverified on a Mac here; tested on Linux with a fake
``proc_pid_rusage`` built from the same struct layout (tests/fake_libproc/).
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable

__all__ = [
    "LIBRARY",
    "PHYS_FOOTPRINT_OFFSET",
    "RUSAGE_INFO_V0",
    "RUSAGE_INFO_V0_SIZE",
    "footprint_reader",
]

LIBRARY = "/usr/lib/libSystem.B.dylib"
"""Where ``proc_pid_rusage`` lives (libproc, re-exported by libSystem)."""
RUSAGE_INFO_V0 = 0
"""The lowest flavour with ``ri_phys_footprint`` (macOS 10.9+); later ones only append."""
# struct rusage_info_v0 (<sys/resource.h>): uint8_t ri_uuid[16], then uint64_t user_time,
# system_time, pkg_idle_wkups, interrupt_wkups, pageins, wired_size, resident_size,
# phys_footprint, proc_start_abstime, proc_exit_abstime. The kernel copies out exactly
# sizeof(struct) for the flavour asked.
PHYS_FOOTPRINT_OFFSET = 16 + 7 * 8
RUSAGE_INFO_V0_SIZE = 16 + 10 * 8


def footprint_reader(library: str = LIBRARY) -> Callable[[int], int]:
    """``read(pid) -> bytes`` through ``library``'s ``proc_pid_rusage``. Loading raises
    ``OSError`` (no library) or ``AttributeError`` (no such symbol); a read raises
    ``OSError`` with the call's errno: ``ESRCH`` no such process, ``EPERM`` another
    user's (or a sandbox's refusal). A zombie reads 0: its task, and footprint, are gone."""
    call = ctypes.CDLL(library, use_errno=True).proc_pid_rusage
    call.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    call.restype = ctypes.c_int
    words = RUSAGE_INFO_V0_SIZE // 8

    def read(pid: int) -> int:
        # A buffer per call: the engine's sampler thread and the test's thread both read.
        buf = (ctypes.c_uint64 * words)()
        if call(pid, RUSAGE_INFO_V0, buf) != 0:
            code = ctypes.get_errno()
            name = errno.errorcode.get(code, f"errno {code}")
            raise OSError(
                code,
                f"proc_pid_rusage({pid}, RUSAGE_INFO_V0) failed: {name} ({os.strerror(code)})",
            )
        return int(ctypes.c_uint64.from_buffer(buf, PHYS_FOOTPRINT_OFFSET).value)

    return read
