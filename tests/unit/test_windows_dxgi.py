"""The DXGI backend, process names and the working set against fake Windows APIs."""

from __future__ import annotations

import ctypes
import sys
from typing import Any

import pytest

from pytest_hypomnesis import GpuQuerySource, RamError
from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis.probe import dxgi, rss_windows, winnames
from tests.helpers.fakewin import (
    AMD,
    INTEL,
    MSFT,
    FakeAdapter,
    FakeDxgi,
    FakeNames,
    is_64bit,
)
from tests.helpers.units import GIB, MIB


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


def test_dxgi_non_nvidia_readings() -> None:
    fake = FakeDxgi(
        [
            FakeAdapter(name="nv"),
            FakeAdapter(name="Basic Render", vendor=MSFT, dedicated=0, shared=8 * GIB),
            FakeAdapter(name="Intel Iris", vendor=INTEL, dedicated=0, shared=8 * GIB, usage=None),
            FakeAdapter(name="AMD empty", vendor=AMD, dedicated=0, shared=0),
            FakeAdapter(name="AMD", vendor=AMD, dedicated=4 * GIB, usage=5 * GIB),
        ]
    )
    rows = dxgi.non_nvidia_readings(1, fake)
    assert [r.device.index for r in rows if r.device] == [1, 2]
    intel, amd = rows
    assert intel.reason is None
    assert intel.device is not None and intel.device.total_bytes == 8 * GIB
    assert intel.gpu is not None and intel.gpu.used_bytes == 0
    assert intel.gpu.source is GpuQuerySource.DXGI and intel.gpu.is_per_process
    assert amd.device is not None and amd.device.free_bytes == 0


def test_dxgi_default_api_is_windows_only() -> None:
    if sys.platform == "win32":
        pytest.skip("checks the non-Windows refusal")
    with pytest.raises(BackendFailure, match="only on Windows"):
        dxgi.nvidia_adapter_count()


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
