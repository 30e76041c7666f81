"""Windows process names for PDH listing rows (parity doc §4.5, §7 #13-14).

Order: pid 4 → ``[kernel]``; ``OpenProcess(QUERY_LIMITED_INFORMATION)`` +
``QueryFullProcessImageNameW`` basename; whatever is still unresolved gets one batched
``CreateToolhelp32Snapshot`` walk (``szExeFile`` by pid), which names most processes an
unelevated caller cannot open (dwm.exe, csrss.exe); a pid missing from the snapshot is
``[exited]``, and if the snapshot itself fails, every unresolved pid is ``[protected]``.

The raw calls live in ``_WinNameApi`` (defined only on Windows); ``resolve_names`` takes
any object with the ``NameApi`` methods, so the order of resolution is tested with fakes.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections.abc import Iterable
from typing import Protocol

__all__ = [
    "EXITED",
    "KERNEL",
    "PROCESSENTRY32W",
    "PROTECTED",
    "NameApi",
    "basename",
    "exe_name",
    "resolve_names",
]

KERNEL = "[kernel]"
EXITED = "[exited]"
PROTECTED = "[protected]"
SYSTEM_PID = 4


class PROCESSENTRY32W(ctypes.Structure):
    """Toolhelp32's process record with fixed-width fields (same layout on every OS)."""

    _fields_ = [
        ("dwSize", ctypes.c_uint32),
        ("cntUsage", ctypes.c_uint32),
        ("th32ProcessID", ctypes.c_uint32),
        ("th32DefaultHeapID", ctypes.c_size_t),
        ("th32ModuleID", ctypes.c_uint32),
        ("cntThreads", ctypes.c_uint32),
        ("th32ParentProcessID", ctypes.c_uint32),
        ("pcPriClassBase", ctypes.c_int32),
        ("dwFlags", ctypes.c_uint32),
        ("szExeFile", ctypes.c_uint16 * 260),
    ]


def basename(path: str) -> str:
    """The part after the last ``\\`` or ``/``."""
    cut = max(path.rfind("\\"), path.rfind("/"))
    return path[cut + 1 :]


def exe_name(entry: PROCESSENTRY32W) -> str | None:
    """``szExeFile`` up to its first NUL; ``None`` when empty."""
    units = list(entry.szExeFile)
    if 0 in units:
        units = units[: units.index(0)]
    text = b"".join(u.to_bytes(2, "little") for u in units).decode("utf-16-le", "replace")
    return basename(text) or None


class NameApi(Protocol):
    def image_path(self, pid: int) -> str | None:
        """The full image path of ``pid``, or ``None`` when it cannot be opened/queried."""
        ...

    def snapshot_names(self) -> dict[int, str] | None:
        """One Toolhelp32 walk: pid → exe name; ``None`` when the snapshot fails."""
        ...


def resolve_names(pids: Iterable[int], api: NameApi | None = None) -> dict[int, str]:
    """A name for every pid, never ``None``: a real exe basename or a bracketed word."""
    names: dict[int, str] = {}
    unresolved: list[int] = []
    wanted = list(dict.fromkeys(pids))
    if any(pid != SYSTEM_PID for pid in wanted) and api is None:
        api = _default_api()
    for pid in wanted:
        if pid == SYSTEM_PID:
            names[pid] = KERNEL
            continue
        assert api is not None
        path = api.image_path(pid)
        name = basename(path) if path else ""
        if name:
            names[pid] = name
        else:
            unresolved.append(pid)
    if unresolved:
        assert api is not None
        table = api.snapshot_names()
        for pid in unresolved:
            if table is None:
                names[pid] = PROTECTED
            else:
                names[pid] = table.get(pid) or EXITED
    return names


class _NoNames:
    """Where the Win32 calls are unavailable every lookup fails the way a denied one does."""

    def image_path(self, pid: int) -> str | None:
        return None

    def snapshot_names(self) -> dict[int, str] | None:
        return None


_api: NameApi | None = None


def _default_api() -> NameApi:
    global _api
    if _api is None:
        _api = _NoNames()
        if sys.platform == "win32":
            with contextlib.suppress(OSError, AttributeError):
                _api = _WinNameApi()
    return _api


if sys.platform == "win32":
    from ctypes import wintypes

    PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
    TH32CS_SNAPPROCESS = 0x00000002
    INVALID_HANDLE_VALUE = ctypes.c_void_p(-1).value
    IMAGE_PATH_CHARS = 1024

    class _WinNameApi:
        def __init__(self) -> None:
            k32 = ctypes.WinDLL("kernel32", use_last_error=True)
            self._open = k32.OpenProcess
            self._open.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
            self._open.restype = wintypes.HANDLE
            self._query = k32.QueryFullProcessImageNameW
            self._query.argtypes = [
                wintypes.HANDLE,
                wintypes.DWORD,
                wintypes.LPWSTR,
                ctypes.POINTER(wintypes.DWORD),
            ]
            self._query.restype = wintypes.BOOL
            self._close = k32.CloseHandle
            self._close.argtypes = [wintypes.HANDLE]
            self._close.restype = wintypes.BOOL
            self._snapshot = k32.CreateToolhelp32Snapshot
            self._snapshot.argtypes = [wintypes.DWORD, wintypes.DWORD]
            self._snapshot.restype = wintypes.HANDLE
            self._first = k32.Process32FirstW
            self._next = k32.Process32NextW
            for fn in (self._first, self._next):
                fn.argtypes = [wintypes.HANDLE, ctypes.POINTER(PROCESSENTRY32W)]
                fn.restype = wintypes.BOOL

        def image_path(self, pid: int) -> str | None:
            handle = self._open(PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
            if not handle:
                return None
            try:
                buf = ctypes.create_unicode_buffer(IMAGE_PATH_CHARS)
                size = wintypes.DWORD(IMAGE_PATH_CHARS)
                if not self._query(handle, 0, buf, ctypes.byref(size)):
                    return None
                return buf.value[: size.value] or None
            finally:
                self._close(handle)

        def snapshot_names(self) -> dict[int, str] | None:
            snap = self._snapshot(TH32CS_SNAPPROCESS, 0)
            if not snap or snap == INVALID_HANDLE_VALUE:
                return None
            try:
                table: dict[int, str] = {}
                entry = PROCESSENTRY32W()
                entry.dwSize = ctypes.sizeof(PROCESSENTRY32W)
                ok = self._first(snap, ctypes.byref(entry))
                while ok:
                    name = exe_name(entry)
                    if name:
                        table[int(entry.th32ProcessID)] = name
                    ok = self._next(snap, ctypes.byref(entry))
                return table
            finally:
                self._close(snap)
