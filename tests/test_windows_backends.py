"""Windows backends (DXGI, PDH, process names, working set) driven through fake raw APIs on
any OS: the walk, filtering, parsing, folding and name order are real code; only the ctypes
calls are replaced (parity §4.5, checklist 8, 10-12, 17, 21, 22, 31, 32)."""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_hypomnesis import GpuQuerySource, PdhError, RamError
from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis.probe import dxgi, pdh, rss_windows, winnames
from pytest_hypomnesis.probe.pdh import Luid
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


@is_64bit
def test_dxgi_struct_layouts_match_windows_x64() -> None:
    assert ctypes.sizeof(dxgi.DXGI_ADAPTER_DESC1) == 312
    assert dxgi.DXGI_ADAPTER_DESC1.DedicatedVideoMemory.offset == 272
    assert dxgi.DXGI_ADAPTER_DESC1.AdapterLuidLowPart.offset == 296
    assert dxgi.DXGI_ADAPTER_DESC1.Flags.offset == 304
    assert ctypes.sizeof(dxgi.DXGI_QUERY_VIDEO_MEMORY_INFO) == 32
    assert ctypes.sizeof(winnames.PROCESSENTRY32W) == 568
    assert winnames.PROCESSENTRY32W.szExeFile.offset == 44
    assert ctypes.sizeof(rss_windows.PROCESS_MEMORY_COUNTERS) == 72
    assert rss_windows.PROCESS_MEMORY_COUNTERS.WorkingSetSize.offset == 16


def test_dxgi_guid_bytes_are_windows_layout() -> None:
    # IID_IDXGIAdapter3 {645967A4-1392-4310-A798-8053CE3E93FD}: Data1..3 little-endian.
    assert dxgi.IID_IDXGIADAPTER3[:8] == bytes.fromhex("a467596492131043")
    assert dxgi.IID_IDXGIADAPTER3[8:] == bytes.fromhex("a7988053ce3e93fd")


def test_dxgi_description_decoding() -> None:
    arr = (ctypes.c_uint16 * 8)(*[ord(c) for c in "GPU"], 0, ord("x"))
    assert dxgi.decode_utf16(arr) == "GPU"
    assert dxgi.decode_utf16((ctypes.c_uint16 * 4)()) is None
    lone_surrogate = (ctypes.c_uint16 * 2)(0xD800, 0)
    assert dxgi.decode_utf16(lone_surrogate) == "\ufffd"


def test_dxgi_nvidia_filtered_index_skips_bad_adapters_and_others() -> None:
    fake = FakeDxgi(
        [
            FakeAdapter(name="Intel UHD", vendor=INTEL, dedicated=128 * MIB),
            FakeAdapter(name="first", luid=(1, 0)),
            FakeAdapter(bad_desc=True),
            FakeAdapter(name="NV no dedicated", dedicated=0),
            FakeAdapter(name="second", luid=(2, -1), usage=None),
        ]
    )
    assert dxgi.nvidia_adapter_count(fake) == 2
    assert dxgi.adapter_name(0, fake) == "first"
    assert dxgi.nvidia_adapter(1, fake).luid_high == -1
    assert dxgi.self_usage(0, fake) == 512 * MIB
    with pytest.raises(BackendFailure, match="QueryVideoMemoryInfo failed on adapter 1"):
        dxgi.self_usage(1, fake)
    with pytest.raises(BackendFailure, match="no NVIDIA adapter at index 2"):
        dxgi.adapter_name(2, fake)


def test_dxgi_releases_every_handle() -> None:
    fake = FakeDxgi([FakeAdapter(), FakeAdapter(bad_desc=True)])
    dxgi.adapters(fake)
    assert sorted(map(str, fake.released)) == sorted(
        ["factory", str(("adapter", 0)), str(("adapter", 1))]
    )


def test_dxgi_factory_failure_is_backend_failure() -> None:
    with pytest.raises(BackendFailure, match="CreateDXGIFactory1 failed"):
        dxgi.nvidia_adapter_count(FakeDxgi([], factory_fails=True))


def test_dxgi_empty_name_raises_for_name_query_only() -> None:
    fake = FakeDxgi([FakeAdapter(name="")])
    with pytest.raises(BackendFailure, match="empty description"):
        dxgi.adapter_name(0, fake)
    assert dxgi.device_info(0, fake).name is None


def test_dxgi_device_info_uses_own_usage() -> None:
    info = dxgi.device_info(0, FakeDxgi([FakeAdapter(usage=None)]))
    assert (info.total_bytes, info.used_bytes, info.free_bytes) == (16 * GIB, 0, 16 * GIB)
    assert info.reserved_bytes is None
    assert info.driver_version is None
    info = dxgi.device_info(0, FakeDxgi([FakeAdapter(usage=GIB)]))
    assert (info.used_bytes, info.free_bytes) == (GIB, 15 * GIB)


def test_dxgi_non_nvidia_snapshots() -> None:
    fake = FakeDxgi(
        [
            FakeAdapter(name="nv"),
            FakeAdapter(name="Basic Render", vendor=MSFT, dedicated=0, shared=8 * GIB),
            FakeAdapter(name="Intel Iris", vendor=INTEL, dedicated=0, shared=8 * GIB, usage=None),
            FakeAdapter(name="AMD empty", vendor=AMD, dedicated=0, shared=0),
            FakeAdapter(name="AMD", vendor=AMD, dedicated=4 * GIB, usage=5 * GIB),
        ]
    )
    snaps = dxgi.non_nvidia_snapshots(1234, 1, fake)
    assert [s.gpu_device.index for s in snaps if s.gpu_device] == [1, 2]
    intel, amd = snaps
    assert intel.ram_bytes == 1234
    assert intel.gpu_device is not None and intel.gpu_device.total_bytes == 8 * GIB
    assert intel.gpu is not None and intel.gpu.used_bytes == 0
    assert intel.gpu.source is GpuQuerySource.DXGI and intel.gpu.is_per_process
    assert amd.gpu_device is not None and amd.gpu_device.free_bytes == 0


def test_dxgi_default_api_is_windows_only() -> None:
    if sys.platform == "win32":
        pytest.skip("checks the non-Windows refusal")
    with pytest.raises(BackendFailure, match="only on Windows"):
        dxgi.nvidia_adapter_count()


# --- PDH parsers -------------------------------------------------------------------------


def test_pdh_process_instance_parse() -> None:
    assert pdh.parse_process_instance("pid_1234_luid_0x00000000_0x0000C3A1_phys_0") == (
        1234,
        Luid(low=0xC3A1, high=0),
        0,
    )
    # The high part is a LONG: 0xFFFFFFFF reads as -1.
    parsed = pdh.parse_process_instance("pid_7_luid_0xFFFFFFFF_0x00000001_phys_2")
    assert parsed == (7, Luid(low=1, high=-1), 2)
    assert pdh.parse_process_instance("pid_7_luid_0x80000000_0x0_phys_1") == (
        7,
        Luid(low=0, high=-(2**31)),
        1,
    )


@pytest.mark.parametrize(
    "name",
    [
        "_Total",
        "pid_1_luid_0xZZ_0x1_phys_0",
        "pid_1_luid_0x0_0x1",
        "pid_1_luid_0x0_0x1_phys_",
        "pid__luid_0x0_0x1_phys_0",
        "pid_1_luid_0x123456789_0x1_phys_0",
        "pid_99999999999_luid_0x0_0x1_phys_0",
        "pid_1_luid_0x0_0x1_phys_0_extra",
    ],
)
def test_pdh_process_instance_rejects(name: str) -> None:
    assert pdh.parse_process_instance(name) is None


def test_pdh_adapter_instance_parse() -> None:
    assert pdh.parse_adapter_instance("luid_0x00000000_0x0000C3A1_phys_0") == (
        Luid(0xC3A1, 0),
        0,
    )
    assert pdh.parse_adapter_instance("pid_1_luid_0x0_0x1_phys_0") is None
    assert pdh.parse_adapter_instance("_Total") is None


def test_pdh_multi_string_split() -> None:
    assert pdh.split_multi_string("a\0b c\0\0junk\0") == ["a", "b c"]
    assert pdh.split_multi_string("") == []
    assert pdh.split_multi_string("\0\0") == []
    assert pdh.split_multi_string("only") == ["only"]


def test_pdh_fold_sums_segments_and_drops_bad_rows() -> None:
    folded = pdh.fold_process_counters(
        [
            (10, 100, 5),
            (10, 50, None),
            (11, None, 7),
            (12, -1, 7),
            (13, 0, -4),
            (14, 2**64 - 1, 0),
            (14, 5, 0),
        ]
    )
    assert folded == {10: (150, 5), 13: (0, 0), 14: (2**64 - 1, 0)}


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


def test_pdh_enum_two_call_protocol_with_regrowth() -> None:
    fake = FakePdh({PROC: ["a", "b"]}, data_statuses=[pdh.PDH_MORE_DATA])
    assert pdh.enum_instances(fake, PROC) == ["a", "b"]
    assert fake.enum_calls[0] == (PROC, 0, 0)
    assert len(fake.enum_calls) == 3


def test_pdh_enum_errors() -> None:
    with pytest.raises(PdhError) as info:
        pdh.enum_instances(FakePdh({}, no_object=(PROC,)), PROC)
    assert str(info.value) == (
        "PDH error: GPU Process Memory counter set not registered (pre-WDDM 2.0?)"
    )
    with pytest.raises(PdhError) as info:
        pdh.enum_instances(FakePdh({}, size_status=0xC0000BC6), PROC)
    assert info.value.message == (
        "PdhEnumObjectItemsW (size query, GPU Process Memory) failed: 0xC0000BC6"
    )
    with pytest.raises(PdhError) as info:
        pdh.enum_instances(FakePdh({PROC: ["x"]}, data_statuses=[0xC0000BC6]), ADAPTER)
    assert info.value.message == (
        "PdhEnumObjectItemsW (data fetch, GPU Adapter Memory) failed: 0xC0000BC6"
    )


def test_pdh_enum_empty_success_is_empty() -> None:
    fake = FakePdh({}, size_status=0)

    def empty(name: str, c: int, i: int) -> tuple[int, int, int, str]:
        return 0, 0, 0, ""

    fake.enum_object_items = empty  # type: ignore[method-assign]
    assert pdh.enum_instances(fake, PROC) == []


def test_pdh_listing_luid_filter_sums_names_and_sorting() -> None:
    a0, a1 = _inst(300, 0), _inst(300, 1)
    b, other = _inst(20), _inst(20, luid=(0x99, 0))
    kernel, gone, hidden = _inst(4), _inst(77), _inst(88)
    no_shared, bad_ded, neg = _inst(50), _inst(60), _inst(61)
    fake = FakePdh(
        {PROC: ["_Total", a0, a1, b, other, kernel, gone, hidden, no_shared, bad_ded, neg]},
        values={
            _ded(a0): 100,
            _shr(a0): 1,
            _ded(a1): 200,
            _shr(a1): 2,
            _ded(b): 5 * MIB,
            _shr(b): 0,
            _ded(other): 999,
            _shr(other): 999,
            _ded(kernel): 7,
            _shr(kernel): 0,
            _ded(gone): 8,
            _shr(gone): 0,
            _ded(hidden): 9,
            _shr(hidden): 0,
            _ded(no_shared): 10,
            _ded(bad_ded): None,
            _shr(bad_ded): 3,
            _ded(neg): -5,
            _shr(neg): 3,
        },
        unaddable={_shr(no_shared)},
    )
    names = FakeNames({300: "C:\\Python\\python.exe", 20: "D:/games/game.exe"}, {77: "x"})
    names.table = {50: "svc.exe"}
    rows = pdh.list_processes(
        0, api=fake, dxgi_api=FakeDxgi([FakeAdapter(luid=NV_LUID)]), names=names
    )
    assert [(r.pid, r.name, r.used_bytes, r.shared_used_bytes) for r in rows] == [
        (4, "[kernel]", 7, 0),
        (20, "game.exe", 5 * MIB, 0),
        (50, "svc.exe", 10, 0),
        (77, "[exited]", 8, 0),
        (88, "[exited]", 9, 0),
        (300, "python.exe", 300, 3),
    ]
    assert all(r.source is GpuQuerySource.PDH for r in rows)
    assert fake.opened == fake.closed == 1
    assert names.snapshots == 1


def test_pdh_listing_dedicated_counter_required() -> None:
    inst = _inst(5)
    fake = FakePdh({PROC: [inst]}, values={_shr(inst): 1}, unaddable={_ded(inst)})
    rows = pdh.list_processes(0, api=fake, dxgi_api=FakeDxgi([FakeAdapter()]), names=None)
    assert rows == []


def test_pdh_listing_no_matching_instances_is_empty() -> None:
    fake = FakePdh({PROC: [_inst(5, luid=(1, 1))]})
    assert pdh.list_processes(0, api=fake, dxgi_api=FakeDxgi([FakeAdapter()])) == []
    assert fake.opened == 0


def test_pdh_listing_failures_fall_through_as_backend_failure() -> None:
    inst = _inst(5)
    with pytest.raises(BackendFailure) as info:
        pdh.list_processes(3, api=FakePdh({PROC: [inst]}), dxgi_api=FakeDxgi([FakeAdapter()]))
    assert (info.value.backend, info.value.reason) == (
        "PDH",
        "no NVIDIA adapter at device_index 3 via DXGI walk",
    )
    fake = FakePdh({PROC: [inst]}, values={_ded(inst): 1}, collect_statuses=[0xC0000BC9])
    with pytest.raises(BackendFailure, match="PdhCollectQueryData failed: 0xC0000BC9"):
        pdh.list_processes(0, api=fake, dxgi_api=FakeDxgi([FakeAdapter()]))
    assert fake.closed == 1
    with pytest.raises(BackendFailure, match="counter set not registered"):
        pdh.list_processes(
            0, api=FakePdh({}, no_object=(PROC,)), dxgi_api=FakeDxgi([FakeAdapter()])
        )


# --- names -------------------------------------------------------------------------------


def test_names_order_and_brackets() -> None:
    api = FakeNames({10: "C:\\Windows\\explorer.exe", 11: "", 12: "/odd/unix.exe"}, {11: "dwm.exe"})
    assert winnames.resolve_names([4, 10, 11, 12, 13], api) == {
        4: "[kernel]",
        10: "explorer.exe",
        11: "dwm.exe",
        12: "unix.exe",
        13: "[exited]",
    }
    failed = FakeNames({}, None)
    assert winnames.resolve_names([4, 20], failed) == {4: "[kernel]", 20: "[protected]"}


def test_names_snapshot_skipped_when_all_resolved() -> None:
    api = FakeNames({10: "a.exe"}, {})
    winnames.resolve_names([10, 4], api)
    assert api.snapshots == 0


def test_names_basename_and_szexefile() -> None:
    assert winnames.basename("C:\\a\\b/c.exe") == "c.exe"
    assert winnames.basename("plain.exe") == "plain.exe"
    entry = winnames.PROCESSENTRY32W()
    for i, ch in enumerate("csrss.exe"):
        entry.szExeFile[i] = ord(ch)
    assert winnames.exe_name(entry) == "csrss.exe"
    assert winnames.exe_name(winnames.PROCESSENTRY32W()) is None


def test_names_without_win32_are_protected() -> None:
    if sys.platform == "win32":
        pytest.skip("checks the non-Windows stand-in")
    assert winnames.resolve_names([4, 99]) == {4: "[kernel]", 99: "[protected]"}


# --- spill adapter query -----------------------------------------------------------------


def _adapter_inst(phys: int, luid: tuple[int, int] = NV_LUID) -> str:
    return f"luid_0x{luid[1] & 0xFFFFFFFF:08X}_0x{luid[0]:08X}_phys_{phys}"


def test_adapter_query_sums_segments_with_dxgi_limit() -> None:
    s0, s1, other = _adapter_inst(0), _adapter_inst(1), _adapter_inst(0, (5, 0))
    fake = FakePdh(
        {ADAPTER: [s0, s1, other]},
        values={
            _ded(s0, ADAPTER): 10 * GIB,
            _shr(s0, ADAPTER): MIB,
            _ded(s1, ADAPTER): GIB,
            _shr(s1, ADAPTER): 2 * MIB,
        },
    )
    query = pdh.open_adapter_query(0, api=fake, dxgi_api=FakeDxgi([FakeAdapter()]))
    assert query is not None
    assert query.sample() == (11 * GIB, 3 * MIB, 16 * GIB)
    fake.collect_statuses = [0xC0000BC9]
    assert query.sample() is None
    fake.values[_shr(s1, ADAPTER)] = None
    assert query.sample() is None
    query.close()
    query.close()
    assert fake.closed == 1
    assert query.sample() is None


@pytest.mark.parametrize(
    "fake",
    [
        FakePdh({}, no_object=(ADAPTER,)),
        FakePdh({ADAPTER: [_adapter_inst(0, (5, 0)), "_Total"]}),
        FakePdh({ADAPTER: [_adapter_inst(0)]}, unaddable={_shr(_adapter_inst(0), ADAPTER)}),
    ],
)
def test_adapter_query_non_measurable_cases(fake: FakePdh) -> None:
    assert pdh.open_adapter_query(0, api=fake, dxgi_api=FakeDxgi([FakeAdapter()])) is None
    assert fake.opened == fake.closed


def test_adapter_query_hard_errors() -> None:
    with pytest.raises(PdhError) as info:
        pdh.open_adapter_query(1, api=FakePdh({}), dxgi_api=FakeDxgi([FakeAdapter()]))
    assert str(info.value) == "PDH error: no NVIDIA adapter at device_index 1 via DXGI walk"
    with pytest.raises(PdhError, match="PdhOpenQueryW failed"):
        pdh.open_adapter_query(
            0,
            api=FakePdh({ADAPTER: [_adapter_inst(0)]}, open_fails=True),
            dxgi_api=FakeDxgi([FakeAdapter()]),
        )
    with pytest.raises(PdhError, match=r"size query, GPU Adapter Memory\) failed"):
        pdh.open_adapter_query(
            0, api=FakePdh({}, size_status=0xC0000BC6), dxgi_api=FakeDxgi([FakeAdapter()])
        )


def test_adapter_counter_set_probe() -> None:
    assert pdh.adapter_counter_set_available(FakePdh({ADAPTER: [_adapter_inst(0)]}))
    assert not pdh.adapter_counter_set_available(FakePdh({ADAPTER: []}))
    assert not pdh.adapter_counter_set_available(FakePdh({}, no_object=(ADAPTER,)))


# --- working set ---------------------------------------------------------------------------


def test_working_set_reads_the_struct() -> None:
    def fake_k32(process: object, counters: Any, cb: int) -> int:
        assert cb == ctypes.sizeof(rss_windows.PROCESS_MEMORY_COUNTERS)
        target = ctypes.cast(counters, ctypes.POINTER(rss_windows.PROCESS_MEMORY_COUNTERS))
        target.contents.WorkingSetSize = 123 * MIB
        return 1

    assert rss_windows.working_set_from(fake_k32, object(), lambda: 0) == 123 * MIB


def test_working_set_failure_text() -> None:
    with pytest.raises(RamError) as info:
        rss_windows.working_set_from(lambda *a: 0, object(), lambda: 5)
    assert str(info.value) == "RAM query failed: K32GetProcessMemoryInfo failed (GetLastError = 5)"
