"""The probe chain's per-process figures, process listings, bounds errors and snapshots
on every platform, with every backend call scripted."""

from __future__ import annotations

import os
from typing import TypeVar

import pytest

import pytest_hypomnesis as hmn
from pytest_hypomnesis.probe.readings import GpuReading, SmiDeviceReading
from tests.helpers.chainmachine import (
    OTHER_PID,
    RAM_BYTES,
    SMI_ALL,
    Machine,
    Source,
    device,
    nvml_reading,
)
from tests.helpers.units import GIB, MIB

_E = TypeVar("_E", bound=Exception)


def _every_query_raises(index: int, error: type[_E]) -> list[_E]:
    """``device_info``, ``process_gpu_info`` and ``gpu_processes`` of ``index`` each raise
    ``error``; the errors, in that order."""
    raised = []
    for query in (hmn.device_info, hmn.process_gpu_info, hmn.gpu_processes):
        with pytest.raises(error) as out:
            query(index)
        raised.append(out.value)
    return raised


# --- checklists 4 and 12: process_gpu_info --------------------------------------------------


def test_process_gpu_info_macos_metal_first(chain_machine: Machine) -> None:
    chain_machine.apple()
    chain_machine.returns("metal.process_footprint", 7 * MIB)
    chain_machine.forbid("nvml.process_used_bytes", "dxgi.self_usage", *SMI_ALL)
    assert hmn.process_gpu_info(0) == hmn.ProcessGpuInfo(
        used_bytes=7 * MIB, is_per_process=True, source=Source.METAL
    )
    assert hmn.process_gpu_info(0, pid=OTHER_PID).used_bytes == 7 * MIB
    assert chain_machine.args_of("metal.process_footprint") == [(os.getpid(),), (OTHER_PID,)]


@pytest.mark.parametrize("pid", [None, os.getpid()], ids=["default-pid", "own-pid"])
def test_process_gpu_info_windows_own_process_is_dxgi(
    chain_machine: Machine, pid: int | None
) -> None:
    chain_machine.platform("win32")
    chain_machine.returns("dxgi.self_usage", 96 * MIB)
    chain_machine.returns(
        "pdh.list_processes", [hmn.GpuProcessEntry(pid=os.getpid(), used_bytes=1)]
    )
    chain_machine.forbid("nvml.process_used_bytes", "pdh.list_processes", *SMI_ALL)
    assert hmn.process_gpu_info(2, pid=pid) == hmn.ProcessGpuInfo(
        used_bytes=96 * MIB, is_per_process=True, source=Source.DXGI
    )
    assert chain_machine.args_of("dxgi.self_usage") == [(2,)]


def test_process_gpu_info_windows_dxgi_failure_falls_to_nvml(chain_machine: Machine) -> None:
    chain_machine.platform("win32")
    chain_machine.returns("nvml.process_used_bytes", 64 * MIB)
    chain_machine.forbid(*SMI_ALL)
    assert hmn.process_gpu_info(0) == hmn.ProcessGpuInfo(
        used_bytes=64 * MIB, is_per_process=True, source=Source.NVML
    )
    assert chain_machine.order() == ["dxgi.self_usage", "nvml.process_used_bytes"]
    assert chain_machine.args_of("nvml.process_used_bytes") == [(0, os.getpid())]


def test_process_gpu_info_windows_then_smi_device_wide(chain_machine: Machine) -> None:
    chain_machine.platform("win32")
    chain_machine.returns("smi.device_query", SmiDeviceReading(5 * GIB, 8 * GIB, None))
    # A PDH listing that could name this process is still never a per-process source.
    chain_machine.returns(
        "pdh.list_processes", [hmn.GpuProcessEntry(pid=os.getpid(), used_bytes=1)]
    )
    chain_machine.forbid("pdh.list_processes")
    assert hmn.process_gpu_info(0) == hmn.ProcessGpuInfo(
        used_bytes=5 * GIB, is_per_process=False, source=Source.NVIDIA_SMI
    )
    assert chain_machine.order() == [
        "dxgi.self_usage",
        "nvml.process_used_bytes",
        "smi.device_query",
    ]


def test_process_gpu_info_windows_other_pid_skips_dxgi(chain_machine: Machine) -> None:
    chain_machine.platform("win32")
    chain_machine.returns("dxgi.self_usage", 96 * MIB)
    chain_machine.forbid("dxgi.self_usage")
    chain_machine.returns("nvml.process_used_bytes", 32 * MIB)
    info = hmn.process_gpu_info(0, pid=OTHER_PID)
    assert (info.used_bytes, info.source) == (32 * MIB, Source.NVML)
    assert chain_machine.args_of("nvml.process_used_bytes") == [(0, OTHER_PID)]

    chain_machine.fails("nvml.process_used_bytes")
    chain_machine.returns("smi.device_query", SmiDeviceReading(5 * GIB, 8 * GIB, None))
    assert hmn.process_gpu_info(0, pid=OTHER_PID).is_per_process is False


def test_process_gpu_info_linux_never_asks_dxgi_or_pdh(chain_machine: Machine) -> None:
    chain_machine.returns("dxgi.self_usage", 96 * MIB)
    chain_machine.forbid("dxgi.self_usage", "pdh.list_processes")
    chain_machine.returns("smi.device_query", SmiDeviceReading(5 * GIB, 8 * GIB, None))
    info = hmn.process_gpu_info(0)
    assert (info.source, info.is_per_process) == (Source.NVIDIA_SMI, False)
    assert chain_machine.order() == ["nvml.process_used_bytes", "smi.device_query"]


# --- checklists 4, 20, 21: gpu_processes -----------------------------------------------------


def test_listing_windows_is_pdh_never_nvml(chain_machine: Machine) -> None:
    chain_machine.platform("win32")
    chain_machine.returns("nvml.list_processes", [(1, 1)])
    chain_machine.forbid("nvml.list_processes", *SMI_ALL)
    rows = [
        hmn.GpuProcessEntry(pid=900, name="b.exe", used_bytes=2 * MIB, shared_used_bytes=MIB),
        hmn.GpuProcessEntry(pid=4, name="[kernel]", used_bytes=MIB),
    ]
    chain_machine.returns("pdh.list_processes", rows)
    listed = hmn.gpu_processes(1)
    assert [(r.pid, r.source, r.shared_used_bytes) for r in listed] == [
        (4, Source.PDH, 0),
        (900, Source.PDH, MIB),
    ]
    assert chain_machine.args_of("pdh.list_processes") == [(1,)]


def test_listing_windows_pdh_failure_falls_to_smi(chain_machine: Machine) -> None:
    chain_machine.platform("win32")
    chain_machine.forbid("nvml.list_processes")
    chain_machine.returns("smi.list_processes", [(77, "train.exe", 3 * MIB), (12, None, MIB)])
    # A working DXGI must not invent listing rows.
    chain_machine.returns("dxgi.self_usage", 96 * MIB)
    chain_machine.returns("dxgi.device_info", device(0, "NVIDIA RTX A2000"))
    listed = hmn.gpu_processes(0)
    assert listed == [
        hmn.GpuProcessEntry(pid=12, name=None, used_bytes=MIB, source=Source.NVIDIA_SMI),
        hmn.GpuProcessEntry(pid=77, name="train.exe", used_bytes=3 * MIB, source=Source.NVIDIA_SMI),
    ]
    assert chain_machine.order() == ["pdh.list_processes", "smi.list_processes"]


def test_listing_windows_no_rows_from_dxgi_when_all_fail(chain_machine: Machine) -> None:
    chain_machine.platform("win32")
    chain_machine.returns("dxgi.nvidia_adapter_count", 1)
    chain_machine.returns("dxgi.self_usage", 96 * MIB)
    chain_machine.returns("dxgi.device_info", device(0, "NVIDIA RTX A2000"))
    chain_machine.forbid("dxgi.self_usage", "dxgi.device_info", "nvml.list_processes")
    with pytest.raises(hmn.NoGpuSourceError) as info:
        hmn.gpu_processes(0)
    assert info.value.reasons == ("PDH: list_processes failed", "nvidia-smi: list_processes failed")


def test_listing_linux_nvml_empty_stands(chain_machine: Machine) -> None:
    chain_machine.returns("nvml.list_processes", [])
    chain_machine.forbid("pdh.list_processes", *SMI_ALL)
    assert hmn.gpu_processes(0) == []


def test_listing_linux_nvml_rows_then_smi_never_pdh(chain_machine: Machine) -> None:
    chain_machine.returns("nvml.list_processes", [(OTHER_PID, 9 * MIB), (1, MIB)])
    chain_machine.forbid("pdh.list_processes", *SMI_ALL)
    listed = hmn.gpu_processes(0)
    assert [(r.pid, r.used_bytes, r.source, r.shared_used_bytes) for r in listed] == [
        (1, MIB, Source.NVML, 0),
        (OTHER_PID, 9 * MIB, Source.NVML, 0),
    ]

    chain_machine.fails("nvml.list_processes")
    chain_machine.allow(*SMI_ALL)
    chain_machine.returns("smi.list_processes", [(5, "python", MIB)])
    assert [r.source for r in hmn.gpu_processes(0)] == [Source.NVIDIA_SMI]


def test_listing_macos_metal_first_for_index_zero(chain_machine: Machine) -> None:
    chain_machine.apple()
    rows = [
        hmn.GpuProcessEntry(pid=50, name="WindowServer", used_bytes=MIB, source=Source.METAL),
        hmn.GpuProcessEntry(pid=3, name="python", used_bytes=MIB, source=Source.METAL),
    ]
    chain_machine.returns("metal.list_processes", rows)
    chain_machine.forbid("nvml.list_processes", "pdh.list_processes", *SMI_ALL)
    assert [r.pid for r in hmn.gpu_processes(0)] == [3, 50]


# --- checklist 16: DeviceIndexOutOfRangeError vs NoGpuSourceError ----------------------------


def test_windows_bounds_use_dxgi_count_when_nvml_cannot_count(chain_machine: Machine) -> None:
    chain_machine.platform("win32")
    chain_machine.returns("dxgi.nvidia_adapter_count", 1)
    with pytest.raises(hmn.DeviceIndexOutOfRangeError) as out:
        hmn.device_info(3)
    assert (out.value.index, out.value.count) == (3, 1)
    assert out.value.reasons == (
        "NVML: device_query failed",
        "DXGI: device_info failed",
        "nvidia-smi: device_query failed",
    )
    # The bounds check comes only after every backend of the chain has failed.
    assert chain_machine.order()[:3] == [
        "nvml.device_query",
        "dxgi.device_info",
        "smi.device_query",
    ]
    with pytest.raises(hmn.DeviceIndexOutOfRangeError):
        hmn.process_gpu_info(3)
    with pytest.raises(hmn.DeviceIndexOutOfRangeError):
        hmn.gpu_processes(3)
    _every_query_raises(0, hmn.NoGpuSourceError)


def test_windows_bounds_without_any_count_is_no_source(chain_machine: Machine) -> None:
    chain_machine.platform("win32")
    with pytest.raises(hmn.NoGpuSourceError):
        hmn.device_info(3)
    assert chain_machine.called("nvml.device_count") and chain_machine.called(
        "dxgi.nvidia_adapter_count"
    )


def test_linux_bounds_never_consult_dxgi(chain_machine: Machine) -> None:
    chain_machine.returns("dxgi.nvidia_adapter_count", 1)
    chain_machine.forbid("dxgi.nvidia_adapter_count")
    with pytest.raises(hmn.NoGpuSourceError):
        hmn.device_info(3)
    chain_machine.returns("nvml.device_count", 2)
    with pytest.raises(hmn.DeviceIndexOutOfRangeError) as out:
        hmn.process_gpu_info(2)
    assert (out.value.index, out.value.count) == (2, 2)


def test_apple_mac_index_one_is_no_source(chain_machine: Machine) -> None:
    # Parity §4.1 step 5: on macOS only NVML/DXGI could count, so index 1 is NoGpuSource.
    chain_machine.apple()
    chain_machine.forbid("metal.device_info", "metal.process_footprint", "metal.list_processes")
    _every_query_raises(1, hmn.NoGpuSourceError)


def test_apple_mac_index_zero_with_metal_failing_is_no_source(chain_machine: Machine) -> None:
    chain_machine.apple()
    for error in _every_query_raises(0, hmn.NoGpuSourceError):
        assert error.reasons[0].startswith("Metal: ")


# --- checklist 17: Snapshot.now / Snapshot.all on Windows -----------------------------------


def _extra_readings(nvidia_count: int) -> list[GpuReading]:
    return [
        GpuReading(
            hmn.ProcessGpuInfo(used_bytes=0, is_per_process=True, source=Source.DXGI),
            device(nvidia_count, "AMD Radeon(TM) Graphics", used_bytes=0),
        )
    ]


def test_snapshot_all_windows_nvidia_then_other_vendors(chain_machine: Machine) -> None:
    chain_machine.platform("win32")
    chain_machine.returns("nvml.device_count", 2)
    chain_machine.answers("nvml.device_query", lambda index: nvml_reading(f"NVML {index}"))
    chain_machine.answers("dxgi.adapter_name", lambda index: f"DXGI {index}")
    chain_machine.answers("dxgi.self_usage", lambda index: (index + 1) * MIB)
    chain_machine.answers("dxgi.non_nvidia_readings", _extra_readings)
    chain_machine.forbid(*SMI_ALL)
    snaps = hmn.Snapshot.all()
    assert len(chain_machine.args_of("rss.process_rss")) == 1
    assert {s.ram_bytes for s in snaps} == {RAM_BYTES}
    assert [(s.gpu_device.index, s.gpu_device.name) for s in snaps if s.gpu_device] == [
        (0, "DXGI 0"),
        (1, "DXGI 1"),
        (2, "AMD Radeon(TM) Graphics"),
    ]
    assert [s.gpu for s in snaps[:2]] == [
        hmn.ProcessGpuInfo(used_bytes=MIB, is_per_process=True, source=Source.DXGI),
        hmn.ProcessGpuInfo(used_bytes=2 * MIB, is_per_process=True, source=Source.DXGI),
    ]
    assert all(s.gpu_unavailable_reason is None for s in snaps)
    assert chain_machine.args_of("dxgi.non_nvidia_readings") == [(2,)]


def test_snapshot_all_windows_other_vendor_only(chain_machine: Machine) -> None:
    chain_machine.platform("win32")
    chain_machine.returns("dxgi.nvidia_adapter_count", 0)
    chain_machine.answers("dxgi.non_nvidia_readings", _extra_readings)
    snaps = hmn.Snapshot.all()
    assert [s.gpu_device.index for s in snaps if s.gpu_device] == [0]
    assert chain_machine.args_of("dxgi.non_nvidia_readings") == [(0,)]


@pytest.mark.parametrize("other_vendors", [[], None], ids=["none-found", "walk-failed"])
def test_snapshot_all_windows_nothing_visible(
    chain_machine: Machine, other_vendors: list[GpuReading] | None
) -> None:
    chain_machine.platform("win32")
    if other_vendors is not None:
        chain_machine.returns("dxgi.non_nvidia_readings", other_vendors)
    assert hmn.Snapshot.all() == []
    assert len(chain_machine.args_of("rss.process_rss")) == 1


def test_snapshot_all_linux_skips_other_vendor_walk(chain_machine: Machine) -> None:
    chain_machine.returns("nvml.device_count", 1)
    chain_machine.returns("nvml.device_query", nvml_reading())
    chain_machine.returns("smi.device_query", SmiDeviceReading(4 * GIB, 24 * GIB, None))
    chain_machine.forbid("dxgi.non_nvidia_readings")
    (snap,) = hmn.Snapshot.all()
    assert snap.gpu is not None and snap.gpu.source is Source.NVIDIA_SMI


def test_snapshot_now_windows_dxgi_own_usage_and_reasons(chain_machine: Machine) -> None:
    chain_machine.platform("win32")
    chain_machine.returns("dxgi.self_usage", 40 * MIB)
    snap = hmn.Snapshot.now(0)
    assert snap.gpu == hmn.ProcessGpuInfo(
        used_bytes=40 * MIB, is_per_process=True, source=Source.DXGI
    )
    assert snap.gpu_device is None
    assert snap.gpu_unavailable_reason == (
        "NVML: device_query failed; DXGI: device_info failed; nvidia-smi: device_query failed"
    )
