"""Records, builders, errors (parity checklist 1-7, 33, 36)."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest

import pytest_hypomnesis as hmn
from pytest_hypomnesis import (
    DeviceIndexOutOfRangeError,
    GpuDeviceInfoBuilder,
    GpuProcessEntryBuilder,
    GpuQuerySource,
    HypomnesisError,
    NoGpuSourceError,
    ProcessGpuInfo,
    RamError,
    Snapshot,
    SpillReport,
    SpillReportBuilder,
)


def test_records_are_frozen_keyword_only() -> None:
    info = ProcessGpuInfo(used_bytes=1, is_per_process=True, source=GpuQuerySource.NVML)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.used_bytes = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        ProcessGpuInfo(1, True, GpuQuerySource.NVML)  # type: ignore[call-arg]


def test_builder_defaults() -> None:
    device = GpuDeviceInfoBuilder().build()
    assert (device.index, device.name, device.total_bytes, device.free_bytes) == (0, None, 0, 0)
    assert (device.used_bytes, device.reserved_bytes, device.driver_version) == (0, None, None)
    entry = GpuProcessEntryBuilder().build()
    assert (entry.pid, entry.name, entry.used_bytes, entry.shared_used_bytes) == (0, None, 0, 0)
    assert entry.source is GpuQuerySource.PDH
    report = SpillReportBuilder().build()
    assert report == SpillReport()
    assert not report.measurable and report.episodes == () and report.observations == 0


def test_builders_set_every_field() -> None:
    device = (
        GpuDeviceInfoBuilder()
        .index(3)
        .name("X")
        .total_bytes(10)
        .free_bytes(4)
        .used_bytes(6)
        .reserved_bytes(1)
        .driver_version("610.88")
        .build()
    )
    assert device.to_dict() == {
        "index": 3,
        "name": "X",
        "total_bytes": 10,
        "free_bytes": 4,
        "used_bytes": 6,
        "reserved_bytes": 1,
        "driver_version": "610.88",
    }
    entry = (
        GpuProcessEntryBuilder()
        .pid(7)
        .name("py")
        .used_bytes(5)
        .shared_used_bytes(2)
        .source(GpuQuerySource.NVML)
        .build()
    )
    assert entry.to_dict() == {
        "pid": 7,
        "name": "py",
        "used_bytes": 5,
        "shared_used_bytes": 2,
        "source": "nvml",
    }


def test_spill_report_derived_values() -> None:
    report = (
        SpillReportBuilder()
        .measurable(True)
        .observations(9)
        .episode("+1.0s", "+2.0s", 10, 2, timedelta(seconds=1))
        .episode("+3.0s", "+6.0s", 30, 4, timedelta(seconds=3))
        .episode("+7.0s", None, 20, 4, timedelta(seconds=3))
        .build()
    )
    assert report.spilled()
    assert report.first_spill_label() == "+1.0s"
    assert report.total_spill_duration() == timedelta(seconds=7)
    longest = report.longest_episode()
    assert longest is not None and longest.start_label == "+3.0s"  # ties go to the earliest
    assert SpillReport().longest_episode() is None
    assert SpillReport().first_spill_label() is None


def test_round_trips_through_json() -> None:
    device = GpuDeviceInfoBuilder().index(1).name("é").total_bytes(5).build()
    snap = Snapshot(
        ram_bytes=10,
        gpu=ProcessGpuInfo(used_bytes=3, is_per_process=False, source=GpuQuerySource.NVIDIA_SMI),
        gpu_device=device,
    )
    assert Snapshot.from_dict(json.loads(json.dumps(snap.to_dict()))) == snap
    report = SpillReportBuilder().measurable(True).episode("a", None, 1, 1, timedelta()).build()
    assert SpillReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
    entry = GpuProcessEntryBuilder().pid(3).build()
    assert hmn.GpuProcessEntry.from_dict(entry.to_dict()) == entry
    memreport = hmn.MemoryReport(snap, snap)
    assert hmn.MemoryReport.from_dict(memreport.to_dict()) == memreport


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"ram_bytes": "1"}, "ram_bytes"),
        ({}, "missing field 'ram_bytes'"),
        (
            {"ram_bytes": 1, "gpu": {"used_bytes": 1, "is_per_process": True, "source": "x"}},
            "unknown source",
        ),
        ({"ram_bytes": True}, "wrong type"),
    ],
)
def test_from_dict_rejects_bad_data(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Snapshot.from_dict(data)


def test_error_texts_match_the_crate() -> None:
    assert str(RamError("VmRSS not found in /proc/self/status")) == (
        "RAM query failed: VmRSS not found in /proc/self/status"
    )
    error = DeviceIndexOutOfRangeError(5, 1)
    assert str(error) == "device index 5 out of range (have 1 devices)"
    assert (error.index, error.count) == (5, 1)
    assert str(NoGpuSourceError()) == (
        "no GPU measurement source available "
        "(NVML, DXGI, PDH, and nvidia-smi all failed or are disabled)"
    )
    assert str(hmn.PdhError("PdhOpenQueryW failed: 0xC0000BB8")) == (
        "PDH error: PdhOpenQueryW failed: 0xC0000BB8"
    )
    assert str(hmn.NvmlError("x")) == "NVML error: x"
    assert str(hmn.DxgiError("x")) == "DXGI error: x"
    assert str(hmn.NvidiaSmiError("x")) == "nvidia-smi error: x"
    for cls in (RamError, DeviceIndexOutOfRangeError, NoGpuSourceError, hmn.PdhError):
        assert issubclass(cls, HypomnesisError)
    assert HypomnesisError.__module__ == "pytest_hypomnesis"


def test_public_surface() -> None:
    for name in hmn.__all__:
        assert hasattr(hmn, name), name
