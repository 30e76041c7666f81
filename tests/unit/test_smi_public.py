"""The public functions with NVML unavailable: nvidia-smi's answers (device-wide figures,
its process listing, its failures and hangs) through ``hmn.device_info``,
``process_gpu_info``, ``gpu_processes`` and ``Snapshot.now``."""

from __future__ import annotations

import time

import pytest

import pytest_hypomnesis as hmn
from tests.helpers.fakesmi import FakeSmi, posix_only
from tests.helpers.units import MIB

pytestmark = [posix_only, pytest.mark.usefixtures("no_nvml")]


def test_public_device_info_falls_through_to_smi(fake_smi: FakeSmi) -> None:
    fake_smi.set_gpu("3100, 16311, 610.88\n")
    info = hmn.device_info(0)
    assert info.name is None
    assert info.total_bytes == 16311 * MIB
    assert info.used_bytes == 3100 * MIB
    assert info.free_bytes == (16311 - 3100) * MIB
    assert info.reserved_bytes is None
    assert info.driver_version == "610.88"


def test_public_used_above_total_is_unknown_not_free_0(fake_smi: FakeSmi) -> None:
    # The crate prints "free 0 MiB / 10 MiB"; figures no device can have are no reading.
    fake_smi.set_gpu("20, 10, \n")
    with pytest.raises(hmn.NoGpuSourceError) as info:
        hmn.device_info(0)
    assert (
        "nvidia-smi: impossible device figures: used 20 MiB exceeds total 10 MiB"
        in info.value.reasons
    )


def test_public_process_gpu_info_is_device_wide(fake_smi: FakeSmi) -> None:
    fake_smi.set_gpu("3100, 16311, 610.88\n")
    gpu = hmn.process_gpu_info(0)
    assert gpu.is_per_process is False
    assert gpu.source is hmn.GpuQuerySource.NVIDIA_SMI
    assert gpu.used_bytes == 3100 * MIB


def test_public_gpu_processes_sorted_by_pid(fake_smi: FakeSmi) -> None:
    fake_smi.set_apps("900, b, 2\n42, weird,name, 8\n7, ?, [N/A]\n")
    rows = hmn.gpu_processes(0)
    assert [(r.pid, r.name, r.used_bytes) for r in rows] == [
        (42, "weird,name", 8 * MIB),
        (900, "b", 2 * MIB),
    ]
    assert all(r.source is hmn.GpuQuerySource.NVIDIA_SMI for r in rows)
    assert all(r.shared_used_bytes == 0 for r in rows)


def test_public_gpu_processes_empty_is_ok(fake_smi: FakeSmi) -> None:
    assert hmn.gpu_processes(0) == []


def test_public_snapshot_now_with_smi(fake_smi: FakeSmi) -> None:
    snap = hmn.Snapshot.now(0)
    assert snap.ram_bytes > 0
    assert snap.gpu is not None
    assert snap.gpu.is_per_process is False
    assert snap.gpu_device is not None
    assert snap.gpu_device.driver_version == "610.88"
    assert snap.gpu_unavailable_reason is None
    # The process and device chains share one device query per snapshot.
    gpu_queries = [c for c in fake_smi.calls() if any(a.startswith("--query-gpu") for a in c)]
    assert len(gpu_queries) == 1


def test_public_hanging_smi_gives_reason_within_timeout(
    fake_smi: FakeSmi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYPOMNESIS_SMI_TIMEOUT", "0.4")
    fake_smi.set_gpu("1, 2, 3", hang_s=60)
    start = time.monotonic()
    snap = hmn.Snapshot.now(0)
    elapsed = time.monotonic() - start
    assert snap.gpu is None
    assert snap.gpu_device is None
    assert snap.gpu_unavailable_reason is not None
    assert "nvidia-smi: timed out after 0.4 s" in snap.gpu_unavailable_reason
    # One timeout; the device query that follows fails at once (back-off), not a second wait.
    assert elapsed < 0.4 + 3.0
    start = time.monotonic()
    again = hmn.Snapshot.now(0)
    assert time.monotonic() - start < 0.3
    assert again.gpu_unavailable_reason is not None
    assert "timed out after 0.4 s; not retried for 30 s" in again.gpu_unavailable_reason


def test_public_every_backend_failed_raises(fake_smi: FakeSmi) -> None:
    fake_smi.set_gpu("", exit_code=9, stderr="NVIDIA-SMI has failed")
    with pytest.raises(hmn.NoGpuSourceError) as info:
        hmn.device_info(0)
    assert "nvidia-smi: exited with status 9: NVIDIA-SMI has failed" in info.value.reasons
