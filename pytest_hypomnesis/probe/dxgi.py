"""Windows DXGI adapters through ctypes COM vtable calls (parity doc §4.5).

``CreateDXGIFactory1`` → ``EnumAdapters1(k)`` until it fails → ``GetDesc1`` for name,
vendor, capacities and LUID, and ``QueryInterface(IDXGIAdapter3)`` →
``QueryVideoMemoryInfo(node 0, LOCAL)`` for the calling process's own usage. The
"NVIDIA-filtered index" counts adapters with vendor 0x10DE and dedicated memory > 0, the
same order NVML uses. An adapter whose ``GetDesc1`` fails is skipped; only an
``EnumAdapters1`` failure ends the walk.

The raw calls live in ``_WinDxgiApi``, defined only on Windows (no DLL is touched at
import); everything else works on any object with the ``DxgiApi`` methods, so the walk,
the filtering and the record building are tested on Linux with fakes.
"""

from __future__ import annotations

import ctypes
import sys
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis._platform import debug
from pytest_hypomnesis.gpumodel import GpuDeviceInfo, GpuQuerySource, ProcessGpuInfo
from pytest_hypomnesis.probe.readings import GpuReading

__all__ = [
    "DXGI_ADAPTER_DESC1",
    "DXGI_QUERY_VIDEO_MEMORY_INFO",
    "Adapter",
    "DxgiApi",
    "adapter_name",
    "adapters",
    "decode_utf16",
    "device_info",
    "non_nvidia_readings",
    "nvidia_adapter",
    "nvidia_adapter_count",
    "self_usage",
]

BACKEND = "DXGI"
VENDOR_NVIDIA = 0x10DE
VENDOR_MICROSOFT_BASIC_RENDER = 0x1414
# No machine has this many adapters; a fake or a broken driver that never ends the
# enumeration must not loop forever.
_MAX_ADAPTERS = 64


class DXGI_ADAPTER_DESC1(ctypes.Structure):
    """``DXGI_ADAPTER_DESC1`` with fixed-width fields, so the layout is the same on every
    OS (``c_wchar`` and ``c_long`` are 4/8 bytes on Linux, 2/4 on Windows)."""

    _fields_ = [
        ("Description", ctypes.c_uint16 * 128),
        ("VendorId", ctypes.c_uint32),
        ("DeviceId", ctypes.c_uint32),
        ("SubSysId", ctypes.c_uint32),
        ("Revision", ctypes.c_uint32),
        ("DedicatedVideoMemory", ctypes.c_size_t),
        ("DedicatedSystemMemory", ctypes.c_size_t),
        ("SharedSystemMemory", ctypes.c_size_t),
        ("AdapterLuidLowPart", ctypes.c_uint32),
        ("AdapterLuidHighPart", ctypes.c_int32),
        ("Flags", ctypes.c_uint32),
    ]


class DXGI_QUERY_VIDEO_MEMORY_INFO(ctypes.Structure):
    _fields_ = [
        ("Budget", ctypes.c_uint64),
        ("CurrentUsage", ctypes.c_uint64),
        ("AvailableForReservation", ctypes.c_uint64),
        ("CurrentReservation", ctypes.c_uint64),
    ]


def decode_utf16(chars: ctypes.Array[ctypes.c_uint16]) -> str | None:
    """A fixed UTF-16 buffer up to its first NUL, lossy; ``None`` when empty."""
    units = list(chars)
    if 0 in units:
        units = units[: units.index(0)]
    text = b"".join(u.to_bytes(2, "little") for u in units).decode("utf-16-le", "replace")
    return text or None


@dataclass(frozen=True, slots=True)
class Adapter:
    """What one successful ``GetDesc1`` (plus the optional usage query) said."""

    description: str | None
    vendor_id: int
    dedicated_video_bytes: int
    shared_system_bytes: int
    luid_low: int
    luid_high: int
    current_usage_bytes: int | None

    @property
    def is_nvidia(self) -> bool:
        return self.vendor_id == VENDOR_NVIDIA and self.dedicated_video_bytes > 0


class DxgiApi(Protocol):
    """The raw calls the walk needs. ``enum_adapter`` returns ``None`` when
    ``EnumAdapters1`` fails (end of the list or error); the others raise ``OSError``."""

    def create_factory(self) -> object: ...

    def enum_adapter(self, factory: object, k: int) -> object | None: ...

    def get_desc1(self, adapter: object) -> DXGI_ADAPTER_DESC1: ...

    def local_usage(self, adapter: object) -> int: ...

    def release(self, obj: object) -> None: ...


def _walk(api: DxgiApi) -> list[Adapter]:
    try:
        factory = api.create_factory()
    except OSError as exc:
        raise BackendFailure(BACKEND, f"CreateDXGIFactory1 failed: {exc}") from None
    found: list[Adapter] = []
    try:
        for k in range(_MAX_ADAPTERS):
            handle = api.enum_adapter(factory, k)
            if handle is None:
                break
            try:
                try:
                    desc = api.get_desc1(handle)
                except OSError as exc:
                    debug(BACKEND, f"adapter {k}: GetDesc1 failed ({exc}); skipped")
                    continue
                try:
                    usage: int | None = api.local_usage(handle)
                except OSError as exc:
                    debug(BACKEND, f"adapter {k}: QueryVideoMemoryInfo failed ({exc})")
                    usage = None
                adapter = Adapter(
                    description=decode_utf16(desc.Description),
                    vendor_id=int(desc.VendorId),
                    dedicated_video_bytes=int(desc.DedicatedVideoMemory),
                    shared_system_bytes=int(desc.SharedSystemMemory),
                    luid_low=int(desc.AdapterLuidLowPart),
                    luid_high=int(desc.AdapterLuidHighPart),
                    current_usage_bytes=usage,
                )
                debug(BACKEND, f"adapter {k}: {adapter}")
                found.append(adapter)
            finally:
                api.release(handle)
    finally:
        api.release(factory)
    return found


def adapters(api: DxgiApi | None = None) -> list[Adapter]:
    """Every adapter whose description could be read, in DXGI order."""
    return _walk(api if api is not None else _default_api())


def _nvidia(api: DxgiApi | None) -> list[Adapter]:
    return [a for a in adapters(api) if a.is_nvidia]


def nvidia_adapter_count(api: DxgiApi | None = None) -> int:
    """NVIDIA adapters with dedicated memory (may be 0)."""
    return len(_nvidia(api))


def nvidia_adapter(index: int, api: DxgiApi | None = None) -> Adapter:
    """The ``index``-th NVIDIA adapter (NVML's order)."""
    found = _nvidia(api)
    if not 0 <= index < len(found):
        raise BackendFailure(BACKEND, f"no NVIDIA adapter at index {index} ({len(found)} found)")
    return found[index]


def adapter_name(index: int, api: DxgiApi | None = None) -> str:
    """The adapter Description, preferred over NVML's name on Windows."""
    name = nvidia_adapter(index, api).description
    if name is None:
        raise BackendFailure(BACKEND, f"adapter {index} has an empty description")
    return name


def self_usage(index: int, api: DxgiApi | None = None) -> int:
    """This process's ``CurrentUsage`` of local (dedicated) memory on the adapter."""
    usage = nvidia_adapter(index, api).current_usage_bytes
    if usage is None:
        raise BackendFailure(BACKEND, f"QueryVideoMemoryInfo failed on adapter {index}")
    return usage


def device_info(index: int, api: DxgiApi | None = None) -> GpuDeviceInfo:
    """DXGI-only device figures: ``used`` is this process's own usage, a lower bound."""
    adapter = nvidia_adapter(index, api)
    used = adapter.current_usage_bytes or 0
    total = adapter.dedicated_video_bytes
    return GpuDeviceInfo(
        index=index,
        name=adapter.description,
        total_bytes=total,
        free_bytes=max(total - used, 0),
        used_bytes=used,
        reserved_bytes=None,
        driver_version=None,
    )


def non_nvidia_readings(nvidia_count: int, api: DxgiApi | None = None) -> list[GpuReading]:
    """``Snapshot.all()``'s extra rows: other vendors' adapters (not Basic Render, with
    some memory), indexed after the NVIDIA ones; not addressable by ``Snapshot.now``."""
    rows: list[GpuReading] = []
    for adapter in adapters(api):
        if adapter.vendor_id in (VENDOR_NVIDIA, VENDOR_MICROSOFT_BASIC_RENDER):
            continue
        if adapter.dedicated_video_bytes == 0 and adapter.shared_system_bytes == 0:
            continue
        total = adapter.dedicated_video_bytes or adapter.shared_system_bytes
        used = adapter.current_usage_bytes or 0
        index = nvidia_count + len(rows)
        rows.append(
            GpuReading(
                ProcessGpuInfo(used_bytes=used, is_per_process=True, source=GpuQuerySource.DXGI),
                GpuDeviceInfo(
                    index=index,
                    name=adapter.description,
                    total_bytes=total,
                    free_bytes=max(total - used, 0),
                    used_bytes=used,
                ),
            )
        )
    return rows


def _guid(text: str) -> bytes:
    # A GUID's in-memory layout is exactly uuid's little-endian field form.
    return uuid.UUID(text).bytes_le


IID_IDXGIFACTORY1 = _guid("770aae78-f26f-4dba-a829-253c83d1b387")
IID_IDXGIADAPTER3 = _guid("645967a4-1392-4310-a798-8053ce3e93fd")
# vtable slots: IUnknown 0-2, IDXGIObject 3-6, IDXGIFactory 7-11, IDXGIFactory1 12-13;
# IDXGIAdapter 7-9, IDXGIAdapter1 10, IDXGIAdapter2 11, IDXGIAdapter3 12-17.
SLOT_QUERY_INTERFACE = 0
SLOT_RELEASE = 2
SLOT_ENUM_ADAPTERS1 = 12
SLOT_GET_DESC1 = 10
SLOT_QUERY_VIDEO_MEMORY_INFO = 14
SEGMENT_GROUP_LOCAL = 0

_api: DxgiApi | None = None


def _default_api() -> DxgiApi:
    global _api
    if sys.platform == "win32":
        if _api is None:
            try:
                _api = _WinDxgiApi()
            except OSError as exc:
                raise BackendFailure(BACKEND, f"cannot load dxgi.dll: {exc}") from None
        return _api
    raise BackendFailure(BACKEND, "DXGI exists only on Windows")


if sys.platform == "win32":

    def _method(obj: ctypes.c_void_p, slot: int, *argtypes: type) -> Any:
        vtable = ctypes.cast(obj, ctypes.POINTER(ctypes.POINTER(ctypes.c_void_p))).contents
        proto = ctypes.WINFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, *argtypes)
        return proto(vtable[slot])

    def _check(hr: int, what: str) -> None:
        if hr < 0:
            raise OSError(f"{what} failed: HRESULT 0x{hr & 0xFFFFFFFF:08X}")

    class _WinDxgiApi:
        def __init__(self) -> None:
            dll = ctypes.WinDLL("dxgi.dll")
            self._create = dll.CreateDXGIFactory1
            self._create.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
            self._create.restype = ctypes.c_int32

        def create_factory(self) -> object:
            factory = ctypes.c_void_p()
            _check(self._create(IID_IDXGIFACTORY1, ctypes.byref(factory)), "CreateDXGIFactory1")
            return factory

        def enum_adapter(self, factory: object, k: int) -> object | None:
            assert isinstance(factory, ctypes.c_void_p)
            adapter = ctypes.c_void_p()
            call = _method(factory, SLOT_ENUM_ADAPTERS1, ctypes.c_uint32, ctypes.c_void_p)
            if call(factory, k, ctypes.byref(adapter)) < 0 or not adapter.value:
                return None
            return adapter

        def get_desc1(self, adapter: object) -> DXGI_ADAPTER_DESC1:
            assert isinstance(adapter, ctypes.c_void_p)
            desc = DXGI_ADAPTER_DESC1()
            call = _method(adapter, SLOT_GET_DESC1, ctypes.c_void_p)
            _check(call(adapter, ctypes.byref(desc)), "GetDesc1")
            return desc

        def local_usage(self, adapter: object) -> int:
            assert isinstance(adapter, ctypes.c_void_p)
            adapter3 = ctypes.c_void_p()
            qi = _method(adapter, SLOT_QUERY_INTERFACE, ctypes.c_char_p, ctypes.c_void_p)
            _check(qi(adapter, IID_IDXGIADAPTER3, ctypes.byref(adapter3)), "QueryInterface")
            try:
                info = DXGI_QUERY_VIDEO_MEMORY_INFO()
                call = _method(
                    adapter3,
                    SLOT_QUERY_VIDEO_MEMORY_INFO,
                    ctypes.c_uint32,
                    ctypes.c_int32,
                    ctypes.c_void_p,
                )
                hr = call(adapter3, 0, SEGMENT_GROUP_LOCAL, ctypes.byref(info))
                _check(hr, "QueryVideoMemoryInfo")
                return int(info.CurrentUsage)
            finally:
                self.release(adapter3)

        def release(self, obj: object) -> None:
            if isinstance(obj, ctypes.c_void_p) and obj.value:
                release = ctypes.WINFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p)(
                    ctypes.cast(obj, ctypes.POINTER(ctypes.POINTER(ctypes.c_void_p))).contents[
                        SLOT_RELEASE
                    ]
                )
                release(obj)
