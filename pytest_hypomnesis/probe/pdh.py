"""Windows Performance Data Helper counters (parity doc §4.5): the per-process listing
from ``\\GPU Process Memory(*)`` and the adapter-wide spill sample from
``\\GPU Adapter Memory(*)``.

PDH sees every holder of GPU memory (compositor, browsers, games, compute), without
elevation; ``Dedicated Usage`` is dedicated *commit* and ``Shared Usage`` resident shared
system memory. Instances are named ``pid_<dec>_luid_0x<hi>_0x<lo>_phys_<n>`` (process) and
``luid_0x<hi>_0x<lo>_phys_<n>`` (adapter) and are matched to the DXGI adapter by LUID.

The raw calls live in ``_WinPdhApi`` (defined only on Windows); the parsers, the two-call
enumeration, the folding and both query flows take any object with the ``PdhApi``
methods and are tested with fakes. Counters are added with ``PdhAddEnglishCounterW`` so the
English paths also work on a localized Windows (the crate uses ``PdhAddCounterW``).
"""

from __future__ import annotations

import re
import sys
import weakref
from collections.abc import Iterable
from typing import NamedTuple, Protocol

from pytest_hypomnesis._errors import BackendFailure, PdhError
from pytest_hypomnesis._platform import debug
from pytest_hypomnesis.gpumodel import GpuProcessEntry, GpuQuerySource
from pytest_hypomnesis.probe import dxgi, winnames
from pytest_hypomnesis.probe.readings import SpillSample

__all__ = [
    "ADAPTER_OBJECT",
    "PROCESS_OBJECT",
    "AdapterMemoryQuery",
    "Luid",
    "PdhApi",
    "adapter_counter_set_available",
    "enum_instances",
    "fold_process_counters",
    "list_processes",
    "open_adapter_query",
    "parse_adapter_instance",
    "parse_process_instance",
    "split_multi_string",
]

BACKEND = "PDH"
PROCESS_OBJECT = "GPU Process Memory"
ADAPTER_OBJECT = "GPU Adapter Memory"
ERROR_SUCCESS = 0
PDH_MORE_DATA = 0x800007D2
PDH_CSTATUS_NO_OBJECT = 0xC0000BB8
U64_MAX = 2**64 - 1
_DATA_FETCH_TRIES = 3

_HEX = r"0x([0-9A-Fa-f]{1,8})"
_PROCESS_RE = re.compile(rf"pid_([0-9]+)_luid_{_HEX}_{_HEX}_phys_([0-9]+)")
_ADAPTER_RE = re.compile(rf"luid_{_HEX}_{_HEX}_phys_([0-9]+)")


class Luid(NamedTuple):
    """A Windows LUID as DXGI gives it: unsigned low part, signed 32-bit high part."""

    low: int
    high: int


def _luid(high_hex: str, low_hex: str) -> Luid:
    high = int(high_hex, 16)
    # The high part is a LONG: reinterpret the u32 bits as i32, as DXGI reports it.
    return Luid(low=int(low_hex, 16), high=high - 2**32 if high >= 2**31 else high)


def parse_process_instance(name: str) -> tuple[int, Luid, int] | None:
    """``(pid, luid, phys)`` of a ``GPU Process Memory`` instance; ``None`` for
    ``_Total`` and anything malformed."""
    match = _PROCESS_RE.fullmatch(name)
    if match is None:
        return None
    pid = int(match.group(1))
    if pid > 2**32 - 1:
        return None
    return pid, _luid(match.group(2), match.group(3)), int(match.group(4))


def parse_adapter_instance(name: str) -> tuple[Luid, int] | None:
    """``(luid, phys)`` of a ``GPU Adapter Memory`` instance; ``None`` when malformed."""
    match = _ADAPTER_RE.fullmatch(name)
    if match is None:
        return None
    return _luid(match.group(1), match.group(2)), int(match.group(3))


def split_multi_string(text: str) -> list[str]:
    """A NUL-separated, double-NUL-terminated list (``MULTI_SZ``) as strings."""
    items: list[str] = []
    for item in text.split("\0"):
        if not item:
            break
        items.append(item)
    return items


def fold_process_counters(
    rows: Iterable[tuple[int, int | None, int | None]],
) -> dict[int, tuple[int, int]]:
    """Per-pid ``(dedicated, shared)`` sums over segments. A row whose dedicated read
    failed or is negative is dropped; a failed or negative shared read counts as 0."""
    sums: dict[int, tuple[int, int]] = {}
    for pid, dedicated, shared in rows:
        if dedicated is None or dedicated < 0:
            continue
        shared_bytes = shared if shared is not None and shared >= 0 else 0
        old_dedicated, old_shared = sums.get(pid, (0, 0))
        sums[pid] = (
            min(old_dedicated + dedicated, U64_MAX),
            min(old_shared + shared_bytes, U64_MAX),
        )
    return sums


class PdhApi(Protocol):
    """Raw PDH calls. Statuses are unsigned 32-bit ``PDH_STATUS`` values."""

    def enum_object_items(
        self, object_name: str, counter_chars: int, instance_chars: int
    ) -> tuple[int, int, int, str]:
        """``PdhEnumObjectItemsW``; buffers of 0 chars are passed as NULL. Returns
        ``(status, counter_chars_needed, instance_chars_needed, instance_text)``."""
        ...

    def open_query(self) -> object:
        """``PdhOpenQueryW``; raises ``PdhError("PdhOpenQueryW failed: 0x...")``."""
        ...

    def add_counter(self, query: object, path: str) -> object | None: ...

    def collect(self, query: object) -> int: ...

    def read_large(self, counter: object) -> int | None: ...

    def close_query(self, query: object) -> None: ...


class _NoCounterSet(PdhError):
    """The counter set is not registered on this system (pre-WDDM 2.0)."""


def enum_instances(api: PdhApi, object_name: str) -> list[str]:
    """The instance names of a counter set, by the two-call protocol."""
    status, counter_chars, instance_chars, _ = api.enum_object_items(object_name, 0, 0)
    if status == PDH_CSTATUS_NO_OBJECT:
        raise _NoCounterSet(f"{object_name} counter set not registered (pre-WDDM 2.0?)")
    if status == ERROR_SUCCESS and instance_chars == 0:
        return []
    if status not in (ERROR_SUCCESS, PDH_MORE_DATA):
        raise PdhError(f"PdhEnumObjectItemsW (size query, {object_name}) failed: 0x{status:08X}")
    for _ in range(_DATA_FETCH_TRIES):
        status, need_counters, need_instances, text = api.enum_object_items(
            object_name, max(counter_chars, 1), max(instance_chars, 1)
        )
        if status == ERROR_SUCCESS:
            return split_multi_string(text)
        if status != PDH_MORE_DATA:
            break
        # Instances appeared between the calls: grow and ask again.
        counter_chars = max(need_counters, counter_chars * 2)
        instance_chars = max(need_instances, instance_chars * 2)
    raise PdhError(f"PdhEnumObjectItemsW (data fetch, {object_name}) failed: 0x{status:08X}")


def _adapter_luid(index: int, dxgi_api: dxgi.DxgiApi | None) -> tuple[Luid, int]:
    try:
        adapter = dxgi.nvidia_adapter(index, dxgi_api)
    except BackendFailure:
        raise PdhError(f"no NVIDIA adapter at device_index {index} via DXGI walk") from None
    return Luid(adapter.luid_low, adapter.luid_high), adapter.dedicated_video_bytes


def _process_rows(
    index: int, api: PdhApi, dxgi_api: dxgi.DxgiApi | None
) -> dict[int, tuple[int, int]]:
    luid, _ = _adapter_luid(index, dxgi_api)
    matched: list[tuple[str, int]] = []
    for instance in enum_instances(api, PROCESS_OBJECT):
        parsed = parse_process_instance(instance)
        if parsed is not None and parsed[1] == luid:
            matched.append((instance, parsed[0]))
    if not matched:
        return {}
    query = api.open_query()
    try:
        counters: list[tuple[int, object, object | None]] = []
        for instance, pid in matched:
            dedicated = api.add_counter(query, f"\\{PROCESS_OBJECT}({instance})\\Dedicated Usage")
            if dedicated is None:
                continue
            shared = api.add_counter(query, f"\\{PROCESS_OBJECT}({instance})\\Shared Usage")
            counters.append((pid, dedicated, shared))
        if not counters:
            return {}
        status = api.collect(query)
        if status != ERROR_SUCCESS:
            raise PdhError(f"PdhCollectQueryData failed: 0x{status:08X}")
        rows = [
            (pid, api.read_large(d), None if s is None else api.read_large(s))
            for pid, d, s in counters
        ]
    finally:
        api.close_query(query)
    for row in rows:
        debug(BACKEND, f"pid={row[0]} dedicated={row[1]} shared={row[2]}")
    return fold_process_counters(rows)


def list_processes(
    index: int,
    *,
    api: PdhApi | None = None,
    dxgi_api: dxgi.DxgiApi | None = None,
    names: winnames.NameApi | None = None,
) -> list[GpuProcessEntry]:
    """Every process holding memory on the ``index``-th NVIDIA adapter, sorted by pid.
    Any PDH failure is a ``BackendFailure`` (the chain falls through to nvidia-smi)."""
    try:
        sums = _process_rows(index, api if api is not None else _default_api(), dxgi_api)
    except PdhError as exc:
        raise BackendFailure(BACKEND, exc.message) from None
    resolved = winnames.resolve_names(sorted(sums), names) if sums else {}
    return [
        GpuProcessEntry(
            pid=pid,
            name=resolved.get(pid),
            used_bytes=dedicated,
            shared_used_bytes=shared,
            source=GpuQuerySource.PDH,
        )
        for pid, (dedicated, shared) in sorted(sums.items())
    ]


class AdapterMemoryQuery:
    """A long-lived ``GPU Adapter Memory`` query: the ``SpillTracker`` sample source."""

    def __init__(
        self,
        api: PdhApi,
        query: object,
        segments: list[tuple[object, object]],
        limit_bytes: int,
    ) -> None:
        self._api = api
        self._query = query
        self._segments = segments
        self.limit_bytes = limit_bytes
        # A tracker dropped without into_report() must not leak the PDH handle.
        self._finalizer = weakref.finalize(self, api.close_query, query)

    def sample(self) -> SpillSample | None:
        """Adapter-wide (dedicated, shared) summed over segments; ``None`` when the collect
        or any counter read fails (a skipped observation, never zeros)."""
        if not self._finalizer.alive:
            return None
        if self._api.collect(self._query) != ERROR_SUCCESS:
            return None
        dedicated_total = shared_total = 0
        for dedicated_counter, shared_counter in self._segments:
            dedicated = self._api.read_large(dedicated_counter)
            shared = self._api.read_large(shared_counter)
            if dedicated is None or shared is None or dedicated < 0 or shared < 0:
                return None
            dedicated_total = min(dedicated_total + dedicated, U64_MAX)
            shared_total = min(shared_total + shared, U64_MAX)
        return SpillSample(dedicated_total, shared_total, self.limit_bytes)

    def close(self) -> None:
        self._finalizer()


def open_adapter_query(
    index: int, *, api: PdhApi | None = None, dxgi_api: dxgi.DxgiApi | None = None
) -> AdapterMemoryQuery | None:
    """The spill source for the ``index``-th NVIDIA adapter, or ``None`` (non-measurable)
    when the counter set is absent, no instance matches the LUID, or no segment has both
    counters. Raises ``PdhError`` for a missing adapter, ``PdhOpenQueryW`` failure or an
    enumeration failure."""
    luid, limit_bytes = _adapter_luid(index, dxgi_api)
    if api is None:
        try:
            api = _default_api()
        except PdhError as exc:
            debug("spill", f"no PDH: {exc}")
            return None
    try:
        instances = enum_instances(api, ADAPTER_OBJECT)
    except _NoCounterSet as exc:
        debug("spill", str(exc))
        return None
    matched = [
        i for i in instances if (p := parse_adapter_instance(i)) is not None and p[0] == luid
    ]
    if not matched:
        debug("spill", f"no {ADAPTER_OBJECT} instance for LUID {luid}")
        return None
    query = api.open_query()
    segments: list[tuple[object, object]] = []
    for instance in matched:
        dedicated = api.add_counter(query, f"\\{ADAPTER_OBJECT}({instance})\\Dedicated Usage")
        shared = api.add_counter(query, f"\\{ADAPTER_OBJECT}({instance})\\Shared Usage")
        if dedicated is not None and shared is not None:
            segments.append((dedicated, shared))
    if not segments:
        api.close_query(query)
        return None
    return AdapterMemoryQuery(api, query, segments, limit_bytes)


def adapter_counter_set_available(api: PdhApi | None = None) -> bool:
    """Whether ``GPU Adapter Memory`` enumerates at least one instance."""
    try:
        return bool(enum_instances(api if api is not None else _default_api(), ADAPTER_OBJECT))
    except PdhError:
        return False


_api: PdhApi | None = None


def _default_api() -> PdhApi:
    global _api
    if sys.platform == "win32":
        if _api is None:
            try:
                _api = _WinPdhApi()
            except (OSError, AttributeError) as exc:
                raise PdhError(f"cannot load pdh.dll: {exc}") from None
        return _api
    raise PdhError("PDH exists only on Windows")


if sys.platform == "win32":
    import ctypes
    from ctypes import wintypes

    PDH_FMT_LARGE = 0x00000400
    PDH_FMT_NOCAP100 = 0x00008000
    PERF_DETAIL_WIZARD = 400
    _VALID_CSTATUS = (0, 1)  # PDH_CSTATUS_VALID_DATA, PDH_CSTATUS_NEW_DATA

    class _PdhFmtCounterValue(ctypes.Structure):
        _fields_ = [("CStatus", wintypes.DWORD), ("largeValue", ctypes.c_int64)]

    class _WinPdhApi:
        def __init__(self) -> None:
            dll = ctypes.WinDLL("pdh.dll")
            self._enum = dll.PdhEnumObjectItemsW
            self._enum.argtypes = [
                wintypes.LPCWSTR,
                wintypes.LPCWSTR,
                wintypes.LPCWSTR,
                ctypes.c_void_p,
                ctypes.POINTER(wintypes.DWORD),
                ctypes.c_void_p,
                ctypes.POINTER(wintypes.DWORD),
                wintypes.DWORD,
                wintypes.DWORD,
            ]
            self._enum.restype = ctypes.c_int32
            self._open = dll.PdhOpenQueryW
            self._open.argtypes = [
                wintypes.LPCWSTR,
                ctypes.c_size_t,
                ctypes.POINTER(wintypes.HANDLE),
            ]
            self._open.restype = ctypes.c_int32
            self._add = dll.PdhAddEnglishCounterW
            self._add.argtypes = [
                wintypes.HANDLE,
                wintypes.LPCWSTR,
                ctypes.c_size_t,
                ctypes.POINTER(wintypes.HANDLE),
            ]
            self._add.restype = ctypes.c_int32
            self._collect = dll.PdhCollectQueryData
            self._collect.argtypes = [wintypes.HANDLE]
            self._collect.restype = ctypes.c_int32
            self._read = dll.PdhGetFormattedCounterValue
            self._read.argtypes = [
                wintypes.HANDLE,
                wintypes.DWORD,
                ctypes.POINTER(wintypes.DWORD),
                ctypes.POINTER(_PdhFmtCounterValue),
            ]
            self._read.restype = ctypes.c_int32
            self._close = dll.PdhCloseQuery
            self._close.argtypes = [wintypes.HANDLE]
            self._close.restype = ctypes.c_int32

        def enum_object_items(
            self, object_name: str, counter_chars: int, instance_chars: int
        ) -> tuple[int, int, int, str]:
            counters = ctypes.create_unicode_buffer(counter_chars) if counter_chars else None
            instances = ctypes.create_unicode_buffer(instance_chars) if instance_chars else None
            n_counters = wintypes.DWORD(counter_chars)
            n_instances = wintypes.DWORD(instance_chars)
            status = self._enum(
                None,
                None,
                object_name,
                counters,
                ctypes.byref(n_counters),
                instances,
                ctypes.byref(n_instances),
                PERF_DETAIL_WIZARD,
                0,
            )
            status &= 0xFFFFFFFF
            text = ""
            if instances is not None and status == 0:
                text = "".join(instances[: n_instances.value])
            return status, int(n_counters.value), int(n_instances.value), text

        def open_query(self) -> object:
            query = wintypes.HANDLE()
            status = self._open(None, 0, ctypes.byref(query)) & 0xFFFFFFFF
            if status != 0:
                raise PdhError(f"PdhOpenQueryW failed: 0x{status:08X}")
            return query

        def add_counter(self, query: object, path: str) -> object | None:
            counter = wintypes.HANDLE()
            if self._add(query, path, 0, ctypes.byref(counter)) != 0:
                debug(BACKEND, f"cannot add counter {path}")
                return None
            return counter

        def collect(self, query: object) -> int:
            return int(self._collect(query)) & 0xFFFFFFFF

        def read_large(self, counter: object) -> int | None:
            value = _PdhFmtCounterValue()
            kind = wintypes.DWORD()
            status = self._read(
                counter, PDH_FMT_LARGE | PDH_FMT_NOCAP100, ctypes.byref(kind), ctypes.byref(value)
            )
            if status != 0 or value.CStatus not in _VALID_CSTATUS:
                return None
            return int(value.largeValue)

        def close_query(self, query: object) -> None:
            self._close(query)
