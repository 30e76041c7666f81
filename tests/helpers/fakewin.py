"""Fake DXGI, PDH and process-name APIs for the Windows backends' tests (they run on any OS)."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import pytest

from pytest_hypomnesis import PdhError
from pytest_hypomnesis.probe import dxgi, pdh
from tests.helpers.units import GIB, MIB

NV, INTEL, AMD, MSFT = 0x10DE, 0x8086, 0x1002, 0x1414
is_64bit = pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="x64 layout")


# --- fake DXGI --------------------------------------------------------------------------


@dataclass
class FakeAdapter:
    name: str = "NVIDIA GeForce RTX 5060 Ti"
    vendor: int = NV
    dedicated: int = 16 * GIB
    shared: int = 32 * GIB
    luid: tuple[int, int] = (0xC3A1, 0)
    usage: int | None = 512 * MIB
    bad_desc: bool = False


@dataclass
class FakeDxgi:
    adapters: list[FakeAdapter]
    factory_fails: bool = False
    released: list[object] = field(default_factory=list)
    created: int = 0

    def create_factory(self) -> object:
        if self.factory_fails:
            raise OSError("HRESULT 0x887A0004")
        self.created += 1
        return "factory"

    def enum_adapter(self, factory: object, k: int) -> object | None:
        assert factory == "factory"
        return ("adapter", k) if k < len(self.adapters) else None

    def _spec(self, adapter: object) -> FakeAdapter:
        assert isinstance(adapter, tuple)
        self.created += 1
        return self.adapters[adapter[1]]

    def get_desc1(self, adapter: object) -> dxgi.DXGI_ADAPTER_DESC1:
        spec = self._spec(adapter)
        if spec.bad_desc:
            raise OSError("GetDesc1 failed: HRESULT 0x887A0001")
        desc = dxgi.DXGI_ADAPTER_DESC1()
        encoded = spec.name.encode("utf-16-le")
        for i in range(len(encoded) // 2):
            desc.Description[i] = int.from_bytes(encoded[2 * i : 2 * i + 2], "little")
        desc.VendorId = spec.vendor
        desc.DedicatedVideoMemory = spec.dedicated
        desc.SharedSystemMemory = spec.shared
        desc.AdapterLuidLowPart, desc.AdapterLuidHighPart = spec.luid
        return desc

    def local_usage(self, adapter: object) -> int:
        assert isinstance(adapter, tuple)
        usage = self.adapters[adapter[1]].usage
        if usage is None:
            raise OSError("QueryInterface failed: HRESULT 0x80004002")
        return usage

    def release(self, obj: object) -> None:
        self.released.append(obj)


# --- fake PDH ----------------------------------------------------------------------------

NV_LUID = (0xC3A1, 0)
PROC = "GPU Process Memory"
ADAPTER = "GPU Adapter Memory"


def _inst(pid: int, phys: int = 0, luid: tuple[int, int] = NV_LUID) -> str:
    return f"pid_{pid}_luid_0x{luid[1] & 0xFFFFFFFF:08X}_0x{luid[0]:08X}_phys_{phys}"


@dataclass
class FakePdh:
    instances: dict[str, list[str]]
    values: dict[str, int | None] = field(default_factory=dict)
    no_object: tuple[str, ...] = ()
    size_status: int = pdh.PDH_MORE_DATA
    data_statuses: list[int] = field(default_factory=list)
    open_fails: bool = False
    collect_statuses: list[int] = field(default_factory=list)
    unaddable: set[str] = field(default_factory=set)
    closed: int = 0
    opened: int = 0
    enum_calls: list[tuple[str, int, int]] = field(default_factory=list)

    def enum_object_items(self, name: str, c: int, i: int) -> tuple[int, int, int, str]:
        self.enum_calls.append((name, c, i))
        if name in self.no_object:
            return pdh.PDH_CSTATUS_NO_OBJECT, 0, 0, ""
        text = "".join(f"{x}\0" for x in self.instances.get(name, [])) + "\0"
        if c == 0 and i == 0:
            return self.size_status, 10, len(text), ""
        if self.data_statuses:
            return self.data_statuses.pop(0), 10, len(text), ""
        return 0, 10, len(text), text

    def open_query(self) -> object:
        if self.open_fails:
            raise PdhError("PdhOpenQueryW failed: 0xC0000BBC")
        self.opened += 1
        return "query"

    def add_counter(self, query: object, path: str) -> object | None:
        return None if path in self.unaddable else path

    def collect(self, query: object) -> int:
        return self.collect_statuses.pop(0) if self.collect_statuses else 0

    def read_large(self, counter: object) -> int | None:
        assert isinstance(counter, str)
        return self.values.get(counter)

    def close_query(self, query: object) -> None:
        self.closed += 1


def _ded(inst: str, obj: str = PROC) -> str:
    return f"\\{obj}({inst})\\Dedicated Usage"


def _shr(inst: str, obj: str = PROC) -> str:
    return f"\\{obj}({inst})\\Shared Usage"


class FakeNames:
    def __init__(self, paths: dict[int, str], table: dict[int, str] | None) -> None:
        self.paths = paths
        self.table = table
        self.snapshots = 0

    def image_path(self, pid: int) -> str | None:
        return self.paths.get(pid)

    def snapshot_names(self) -> dict[int, str] | None:
        self.snapshots += 1
        return self.table
