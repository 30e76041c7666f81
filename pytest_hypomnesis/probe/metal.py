"""macOS Apple Silicon through ctypes to libSystem (parity doc §4.7).

- ``is_apple_silicon()``: ``sysctl machdep.cpu.brand_string`` contains ``Apple``.
- ``device_info()``: name = CPU brand (``Apple GPU`` if unreadable), total = ``hw.memsize``,
  free = Metal's ``recommendedMaxWorkingSetSize``. We do not depend on pyobjc: the property
  is read through the Objective-C runtime (``MTLCreateSystemDefaultDevice`` +
  ``objc_msgSend`` called through a fixed prototype); where that fails, free = total, the
  crate's own fallback. used = total - free.
- ``process_footprint(pid)``: the ``graphics_footprint`` entry of the kernel ledger
  (``ledger(LEDGER_ENTRY_INFO_V2)``), its index looked up once by name through
  ``LEDGER_TEMPLATE_INFO``, never hard-coded. Resident bytes.
- ``list_processes()``: ``proc_listpids(PROC_ALL_PIDS)``, every pid's footprint (denied,
  exited, failed and 0-byte pids skipped), name = basename of ``proc_pidpath``.

The raw calls live in ``_DarwinApi`` (defined only on macOS); the buffer decoding, the
index lookup and the listing logic take any object with the ``LibSystemApi`` methods and
are tested on Linux with fakes. None of it has run on a Mac in this project.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
from typing import Protocol

from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis._platform import debug
from pytest_hypomnesis.gpumodel import GpuDeviceInfo, GpuProcessEntry, GpuQuerySource

__all__ = [
    "LibSystemApi",
    "decode_balances",
    "decode_template_names",
    "device_info",
    "find_entry_index",
    "is_apple_silicon",
    "list_processes",
    "process_footprint",
]

BACKEND = "Metal"
EPERM = 1
ESRCH = 3
GRAPHICS_FOOTPRINT = "graphics_footprint"
LEDGER_TEMPLATE_INFO = 2
LEDGER_ENTRY_INFO_V2 = 4
LEDGER_BUF_ENTRIES = 128  # XNU has about 70 entries; room for kernels to add more
TEMPLATE_ROW_BYTES = 96  # lti_name[32], lti_group[32], lti_units[32]
ENTRY_V2_ROW_BYTES = 88  # 7 x 64-bit fields + 4 x u64 reserved
PROC_ALL_PIDS = 1
FALLBACK_NAME = "Apple GPU"


def decode_template_names(raw: bytes, count: int) -> list[str]:
    """``lti_name`` of the first ``count`` ``ledger_template_info`` rows."""
    names: list[str] = []
    for i in range(max(0, min(count, len(raw) // TEMPLATE_ROW_BYTES))):
        field = raw[i * TEMPLATE_ROW_BYTES : i * TEMPLATE_ROW_BYTES + 32]
        names.append(field.split(b"\0", 1)[0].decode("ascii", "replace"))
    return names


def decode_balances(raw: bytes, count: int) -> list[int]:
    """``lei_balance`` (signed 64-bit) of the first ``count`` ``ledger_entry_info_v2`` rows."""
    rows = max(0, min(count, len(raw) // ENTRY_V2_ROW_BYTES))
    return [struct.unpack_from("=q", raw, i * ENTRY_V2_ROW_BYTES)[0] for i in range(rows)]


def find_entry_index(names: list[str], wanted: str = GRAPHICS_FOOTPRINT) -> int | None:
    for i, name in enumerate(names):
        if name == wanted:
            return i
    return None


class LibSystemApi(Protocol):
    def sysctl_string(self, name: str) -> str | None: ...

    def sysctl_u64(self, name: str) -> int | None: ...

    def ledger_template(self) -> list[str] | None:
        """Every ledger entry name in index order; ``None`` when the call fails."""
        ...

    def ledger_balances(self, pid: int) -> tuple[list[int] | None, int]:
        """``(balances, errno)``; balances ``None`` when the call failed."""
        ...

    def list_pids(self) -> list[int] | None: ...

    def pid_path(self, pid: int) -> str | None: ...

    def recommended_max_working_set(self) -> int | None: ...


_UNRESOLVED = -2
_index = _UNRESOLVED
_index_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _index_lock
    _index_lock = threading.Lock()  # the parent may have forked while a thread held it


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
_api: LibSystemApi | None = None


def _reset_for_tests() -> None:
    global _index, _api
    with _index_lock:
        _index = _UNRESOLVED
    _api = None


def _default_api() -> LibSystemApi:
    global _api
    if sys.platform == "darwin":
        if _api is None:
            try:
                _api = _DarwinApi()
            except (OSError, AttributeError) as exc:
                raise BackendFailure(BACKEND, f"cannot load libSystem: {exc}") from None
        return _api
    raise BackendFailure(BACKEND, "Metal exists only on macOS")


def _resolve(api: LibSystemApi | None) -> LibSystemApi:
    return api if api is not None else _default_api()


def is_apple_silicon(api: LibSystemApi | None = None) -> bool:
    try:
        brand = _resolve(api).sysctl_string("machdep.cpu.brand_string")
    except BackendFailure:
        return False
    return brand is not None and "Apple" in brand


def device_info(api: LibSystemApi | None = None) -> GpuDeviceInfo:
    """Device 0 of an Apple Silicon Mac (unified memory)."""
    lib = _resolve(api)
    if not is_apple_silicon(lib):
        raise BackendFailure(BACKEND, "not an Apple Silicon Mac")
    total = lib.sysctl_u64("hw.memsize")
    if total is None:
        raise BackendFailure(BACKEND, "sysctl hw.memsize failed")
    name = lib.sysctl_string("machdep.cpu.brand_string") or FALLBACK_NAME
    free = lib.recommended_max_working_set()
    if free is None:
        free = total
    free = min(free, total)
    debug(BACKEND, f"name={name!r} total={total} recommended_max_working_set={free}")
    return GpuDeviceInfo(
        index=0,
        name=name,
        total_bytes=total,
        free_bytes=free,
        used_bytes=total - free,
        reserved_bytes=None,
        driver_version=None,
    )


def _footprint_index(lib: LibSystemApi) -> int | None:
    global _index
    with _index_lock:
        if _index == _UNRESOLVED:
            names = lib.ledger_template()
            if names is None:
                # A transient failure: try again next time rather than caching "absent".
                debug(BACKEND, "ledger template unreadable")
                return None
            found = find_entry_index(names)
            _index = -1 if found is None else found
            debug(BACKEND, f"{GRAPHICS_FOOTPRINT} ledger index: {found}")
        return None if _index < 0 else _index


def _read_footprint(pid: int, lib: LibSystemApi) -> int | str:
    """Bytes, or a reason why not (``denied``, ``exited``, ...)."""
    index = _footprint_index(lib)
    if index is None:
        return f"no {GRAPHICS_FOOTPRINT} entry in the kernel ledger"
    balances, errno = lib.ledger_balances(pid)
    if balances is None:
        if errno == EPERM:
            return f"ledger read of pid {pid} denied (EPERM)"
        if errno == ESRCH:
            return f"pid {pid} exited (ESRCH)"
        return f"ledger read of pid {pid} failed (errno {errno})"
    if index >= len(balances):
        return f"ledger of pid {pid} has {len(balances)} entries, none at {index}"
    if balances[index] < 0:
        return f"negative {GRAPHICS_FOOTPRINT} for pid {pid}"
    return balances[index]


def process_footprint(pid: int, api: LibSystemApi | None = None) -> int:
    """Resident graphics bytes of ``pid``. Raises ``BackendFailure`` with the reason."""
    lib = _resolve(api)
    if not is_apple_silicon(lib):
        raise BackendFailure(BACKEND, "not an Apple Silicon Mac")
    found = _read_footprint(pid, lib)
    if isinstance(found, str):
        raise BackendFailure(BACKEND, found)
    return found


def _basename(path: str | None) -> str | None:
    if not path:
        return None
    return os.path.basename(path) or None


def list_processes(api: LibSystemApi | None = None) -> list[GpuProcessEntry]:
    """Processes with a non-zero footprint that this user may read, sorted by pid."""
    lib = _resolve(api)
    if not is_apple_silicon(lib):
        raise BackendFailure(BACKEND, "not an Apple Silicon Mac")
    if _footprint_index(lib) is None:
        raise BackendFailure(BACKEND, f"no {GRAPHICS_FOOTPRINT} entry in the kernel ledger")
    pids = lib.list_pids()
    if pids is None:
        raise BackendFailure(BACKEND, "proc_listpids failed")
    rows: list[GpuProcessEntry] = []
    for pid in sorted(set(pids)):
        if pid <= 0:
            continue
        used = _read_footprint(pid, lib)
        if isinstance(used, str) or used == 0:
            continue
        rows.append(
            GpuProcessEntry(
                pid=pid,
                name=_basename(lib.pid_path(pid)),
                used_bytes=used,
                shared_used_bytes=0,
                source=GpuQuerySource.METAL,
            )
        )
    return rows


if sys.platform == "darwin":
    import ctypes

    PROC_PIDPATHINFO_MAXSIZE = 4096

    class _DarwinApi:
        def __init__(self) -> None:
            lib = ctypes.CDLL("/usr/lib/libSystem.B.dylib", use_errno=True)
            self._sysctlbyname = lib.sysctlbyname
            self._sysctlbyname.argtypes = [
                ctypes.c_char_p,
                ctypes.c_void_p,
                ctypes.POINTER(ctypes.c_size_t),
                ctypes.c_void_p,
                ctypes.c_size_t,
            ]
            self._sysctlbyname.restype = ctypes.c_int
            self._ledger = lib.ledger
            self._ledger.argtypes = [
                ctypes.c_int,
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.c_void_p,
            ]
            self._ledger.restype = ctypes.c_int
            self._listpids = lib.proc_listpids
            self._listpids.argtypes = [
                ctypes.c_uint32,
                ctypes.c_uint32,
                ctypes.c_void_p,
                ctypes.c_int,
            ]
            self._listpids.restype = ctypes.c_int
            self._pidpath = lib.proc_pidpath
            self._pidpath.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32]
            self._pidpath.restype = ctypes.c_int
            self._metal_device: int | None = None
            self._metal_tried = False

        def _sysctl(self, name: str, size: int) -> bytes | None:
            buf = ctypes.create_string_buffer(size)
            length = ctypes.c_size_t(size)
            if self._sysctlbyname(name.encode(), buf, ctypes.byref(length), None, 0) != 0:
                return None
            return buf.raw[: length.value]

        def sysctl_string(self, name: str) -> str | None:
            length = ctypes.c_size_t(0)
            if self._sysctlbyname(name.encode(), None, ctypes.byref(length), None, 0) != 0:
                return None
            raw = self._sysctl(name, max(length.value, 1))
            if raw is None:
                return None
            return raw.rstrip(b"\0").decode("utf-8", "replace") or None

        def sysctl_u64(self, name: str) -> int | None:
            raw = self._sysctl(name, 8)
            return None if raw is None or len(raw) != 8 else int.from_bytes(raw, "little")

        def ledger_template(self) -> list[str] | None:
            buf = ctypes.create_string_buffer(TEMPLATE_ROW_BYTES * LEDGER_BUF_ENTRIES)
            count = ctypes.c_int(LEDGER_BUF_ENTRIES)
            if self._ledger(LEDGER_TEMPLATE_INFO, buf, ctypes.byref(count), None) != 0:
                return None
            return decode_template_names(buf.raw, count.value)

        def ledger_balances(self, pid: int) -> tuple[list[int] | None, int]:
            buf = ctypes.create_string_buffer(ENTRY_V2_ROW_BYTES * LEDGER_BUF_ENTRIES)
            count = ctypes.c_int(LEDGER_BUF_ENTRIES)
            # The kernel reads arg1 as the pid, passed in a pointer-sized slot.
            rc = self._ledger(LEDGER_ENTRY_INFO_V2, pid, buf, ctypes.byref(count))
            if rc != 0:
                return None, ctypes.get_errno()
            return decode_balances(buf.raw, count.value), 0

        def list_pids(self) -> list[int] | None:
            need = self._listpids(PROC_ALL_PIDS, 0, None, 0)
            if need <= 0:
                return None
            buf = (ctypes.c_int * (need // 4 + 64))()
            got = self._listpids(PROC_ALL_PIDS, 0, buf, ctypes.sizeof(buf))
            if got <= 0:
                return None
            return [int(p) for p in buf[: got // 4]]

        def pid_path(self, pid: int) -> str | None:
            buf = ctypes.create_string_buffer(PROC_PIDPATHINFO_MAXSIZE)
            n = self._pidpath(pid, buf, PROC_PIDPATHINFO_MAXSIZE)
            return buf.raw[:n].decode("utf-8", "replace") if n > 0 else None

        def recommended_max_working_set(self) -> int | None:
            try:
                if not self._metal_tried:
                    self._metal_tried = True
                    metal = ctypes.CDLL("/System/Library/Frameworks/Metal.framework/Metal")
                    metal.MTLCreateSystemDefaultDevice.restype = ctypes.c_void_p
                    self._metal_device = metal.MTLCreateSystemDefaultDevice()
                if not self._metal_device:
                    return None
                objc = ctypes.CDLL("/usr/lib/libobjc.A.dylib")
                objc.sel_registerName.restype = ctypes.c_void_p
                objc.sel_registerName.argtypes = [ctypes.c_char_p]
                selector = objc.sel_registerName(b"recommendedMaxWorkingSetSize")
                # objc_msgSend must be called through the exact prototype of the method
                # (arm64 passes variadic arguments differently).
                address = ctypes.cast(objc.objc_msgSend, ctypes.c_void_p).value
                if address is None:
                    return None
                send = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p)(address)
                value = int(send(self._metal_device, selector))
                return value or None
            except (OSError, AttributeError, ValueError) as exc:
                debug(BACKEND, f"recommendedMaxWorkingSetSize unavailable: {exc}")
                return None
