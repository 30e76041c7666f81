"""Shape-only smoke tests on whatever machine runs them, and live checks that need a real
NVIDIA GPU (marked ``gpu``; they skip cleanly without one). Parity §8, checklist 58."""

from __future__ import annotations

import os
import re
import sys

import pytest

import pytest_hypomnesis as hmn
from tests.helpers.units import GIB


def _real_gpu_count() -> int:
    # device_count() answers 0 when nothing can count; a fake GPU is never installed here.
    try:
        return hmn.device_count()
    except hmn.HypomnesisError:
        return 0


needs_gpu = pytest.mark.skipif(
    sys.platform == "darwin" or _real_gpu_count() == 0,
    reason="no NVIDIA GPU visible (NVML answered no devices)",
)


def test_smoke_rss_and_snapshot() -> None:
    assert hmn.process_rss() > 0
    snap = hmn.Snapshot.now(0)
    assert snap.ram_bytes > 0
    if snap.gpu is None:
        assert snap.gpu_unavailable_reason
    for each in hmn.Snapshot.all():
        assert each.ram_bytes > 0


def test_smoke_listing_is_ok_or_a_gpu_error() -> None:
    try:
        rows = hmn.gpu_processes(0)
    except (hmn.NoGpuSourceError, hmn.DeviceIndexOutOfRangeError):
        return
    for row in rows:
        assert row.pid > 0
        assert row.source in {
            hmn.GpuQuerySource.NVML,
            hmn.GpuQuerySource.PDH,
            hmn.GpuQuerySource.NVIDIA_SMI,
            hmn.GpuQuerySource.METAL,
        }
        if sys.platform != "win32":
            assert row.shared_used_bytes == 0


def test_smoke_spill_off_windows() -> None:
    tracker = hmn.SpillTracker(0)
    if sys.platform != "win32":
        assert not hmn.is_spill_measurable()
        assert not tracker.is_measurable()
        tracker.observe("+0.0s")
        report = tracker.into_report()
        assert not report.measurable and report.observations == 0


@pytest.mark.skipif(
    sys.platform != "linux"
    or any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/dxg"))  # dxg: WSL2's GPU
    or _real_gpu_count() > 0,
    reason="only on a GPU-less Linux box",
)
def test_no_gpu_here_means_none_and_zero() -> None:
    snap = hmn.Snapshot.now(0)
    assert snap.gpu is None and snap.gpu_device is None
    assert hmn.device_count() == 0


@pytest.mark.gpu
@needs_gpu
def test_live_device_info() -> None:
    count = hmn.device_count()
    assert count >= 1
    for index in range(count):
        info = hmn.device_info(index)
        assert 1 * GIB <= info.total_bytes <= 1024 * GIB
        assert info.free_bytes <= info.total_bytes
        assert info.used_bytes <= info.total_bytes
        if info.reserved_bytes is not None:
            assert info.reserved_bytes < info.total_bytes
        assert info.driver_version is not None and re.search(r"\d", info.driver_version)
        assert info.name is not None


@pytest.mark.gpu
@needs_gpu
def test_live_out_of_range_and_sources() -> None:
    with pytest.raises(hmn.DeviceIndexOutOfRangeError) as info:
        hmn.device_info(255)
    assert info.value.count == hmn.device_count()
    gpu = hmn.process_gpu_info(0)
    expected = hmn.GpuQuerySource.DXGI if sys.platform == "win32" else None
    if expected is not None:
        assert gpu.source is expected
    assert [s.gpu_device.index for s in hmn.Snapshot.all() if s.gpu_device] == list(
        range(hmn.device_count())
    )
    for row in hmn.gpu_processes(0):
        assert row.pid > 0
