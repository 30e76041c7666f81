"""The NVML backend through real nvidia-ml-py + ctypes against the compiled fake
``libnvidia-ml.so.1`` (``tests/helpers/fakenvml.py``), and the public functions on top."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

import pytest_hypomnesis as hmn
from pytest_hypomnesis import _platform
from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis.probe import nvml, smi
from pytest_hypomnesis.probe.readings import VramReading
from tests.helpers.fakenvml import (
    NOT_AVAILABLE,
    SELF,
    FakeNvml,
    FakeNvmlDevice,
    FakeProcess,
    linux_only,
)
from tests.helpers.units import GIB, MIB

pytestmark = linux_only

A100 = FakeNvmlDevice(
    name="NVIDIA A100-SXM4-80GB",
    total_bytes=80 * GIB,
    used_bytes=3 * GIB,
    free_bytes=77 * GIB,
    reserved_bytes=512 * MIB,
    processes=(FakeProcess(SELF, 700 * MIB), FakeProcess(4242, 2 * GIB)),
)


def nvml_failure(call: Callable[[], object]) -> str:
    with pytest.raises(BackendFailure) as info:
        call()
    assert info.value.backend == "NVML"
    return info.value.reason


def test_device_query_reads_every_field(fake_nvml: FakeNvml) -> None:
    fake_nvml.set([A100], driver="580.65.06")
    reading = nvml.device_query(0)
    assert reading.name == "NVIDIA A100-SXM4-80GB"
    assert (reading.total_bytes, reading.free_bytes, reading.used_bytes) == (
        80 * GIB,
        77 * GIB,
        3 * GIB,
    )
    assert reading.reserved_bytes == 512 * MIB
    assert reading.driver_version == "580.65.06"


def test_reserved_none_when_v2_unsupported(fake_nvml: FakeNvml) -> None:
    fake_nvml.set([FakeNvmlDevice(reserved_bytes=None)])
    assert nvml.device_query(0).reserved_bytes is None


def test_reserved_none_when_v2_symbol_missing(fake_nvml_factory: Callable[..., FakeNvml]) -> None:
    fake = fake_nvml_factory(defines=("NO_MEMV2",))
    fake.set([A100])
    reading = nvml.device_query(0)
    assert reading.reserved_bytes is None
    assert reading.total_bytes == 80 * GIB


@pytest.mark.parametrize("driver", [None, ""])
def test_driver_none_when_missing_or_empty(fake_nvml: FakeNvml, driver: str | None) -> None:
    fake_nvml.set([A100], driver=driver)
    assert nvml.device_query(0).driver_version is None


def test_empty_and_invalid_utf8_names(fake_nvml: FakeNvml) -> None:
    fake_nvml.set([FakeNvmlDevice(name=""), FakeNvmlDevice(name=b"NVIDIA \xff GPU")])
    assert nvml.device_query(0).name is None
    assert nvml.device_query(1).name == "NVIDIA \ufffd GPU"


def test_process_rows_self_sentinel_and_total(fake_nvml: FakeNvml) -> None:
    total = 8 * GIB
    rows = (
        FakeProcess(SELF, 700 * MIB),
        FakeProcess(30, NOT_AVAILABLE),
        FakeProcess(20, total + 1),
        FakeProcess(10, total),
    )
    fake_nvml.set([FakeNvmlDevice(total_bytes=total, processes=rows)])
    assert nvml.list_processes(0) == sorted([(os.getpid(), 700 * MIB), (10, total)])
    assert nvml.process_used_bytes(0, os.getpid()) == 700 * MIB
    assert "not available" in nvml_failure(lambda: nvml.process_used_bytes(0, 30))
    assert "exceeds device total" in nvml_failure(lambda: nvml.process_used_bytes(0, 20))
    assert "no compute context" in nvml_failure(lambda: nvml.process_used_bytes(0, 99))


def test_more_than_64_processes_are_all_listed(fake_nvml: FakeNvml) -> None:
    rows = tuple(FakeProcess(pid, pid * MIB) for pid in range(5000, 5150))
    fake_nvml.set([FakeNvmlDevice(total_bytes=80 * GIB, processes=rows)])
    listed = nvml.list_processes(0)
    assert len(listed) == 150
    assert listed[0] == (5000, 5000 * MIB)
    assert listed[-1] == (5149, 5149 * MIB)
    assert nvml.process_used_bytes(0, 5149) == 5149 * MIB


@pytest.mark.parametrize("defines", [("NO_V3",), ("NO_V3", "NO_V2")], ids=["v2", "v1"])
def test_process_query_fallback_on_missing_symbols(
    fake_nvml_factory: Callable[..., FakeNvml], defines: tuple[str, ...]
) -> None:
    fake = fake_nvml_factory(defines=defines)
    rows: tuple[FakeProcess, ...] = (FakeProcess(SELF, 5 * MIB), FakeProcess(77, NOT_AVAILABLE))
    rows += tuple(FakeProcess(pid, MIB) for pid in range(100, 170))
    fake.set([FakeNvmlDevice(processes=rows)])
    listed = nvml.list_processes(0)
    assert len(listed) == 71
    assert (os.getpid(), 5 * MIB) in listed
    assert nvml.process_used_bytes(0, os.getpid()) == 5 * MIB
    assert nvml.self_reader(0)().process_used_bytes == 5 * MIB


def test_function_not_found_code_also_falls_back(fake_nvml: FakeNvml) -> None:
    fake_nvml.set(
        [FakeNvmlDevice(processes=(FakeProcess(SELF, MIB),))],
        errors={"nvmlDeviceGetComputeRunningProcesses_v3": "FUNCTION_NOT_FOUND"},
    )
    assert nvml.list_processes(0) == [(os.getpid(), MIB)]


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("DRIVER_NOT_LOADED", "Driver Not Loaded"),
        ("NO_PERMISSION", "Insufficient Permissions"),
        ("GPU_IS_LOST", "GPU is lost"),
        ("NOT_SUPPORTED", "Not Supported"),
    ],
)
def test_every_call_failing(fake_nvml: FakeNvml, code: str, reason: str) -> None:
    fake_nvml.set([A100], errors={"*": code})
    assert nvml_failure(nvml.device_count) == reason
    assert nvml_failure(lambda: nvml.device_query(0)) == reason
    assert nvml_failure(lambda: nvml.list_processes(0)) == reason
    assert nvml_failure(lambda: nvml.self_reader(0)) == reason


def test_no_config_is_driver_not_loaded(fake_nvml: FakeNvml) -> None:
    fake_nvml.config_path.unlink()
    assert nvml_failure(nvml.device_count) == "Driver Not Loaded"


def test_process_query_permission_error_spares_device_query(fake_nvml: FakeNvml) -> None:
    fake_nvml.set([A100], errors={"nvmlDeviceGetComputeRunningProcesses_v3": "NO_PERMISSION"})
    reason = nvml_failure(lambda: nvml.process_used_bytes(0, os.getpid()))
    assert reason == "Insufficient Permissions"
    assert nvml.device_query(0).total_bytes == 80 * GIB


def test_initialised_once_then_reinitialised_after_gpu_lost(fake_nvml: FakeNvml) -> None:
    fake_nvml.set([A100])
    # The counters live as long as the process: an earlier test in this worker may have
    # left its (legitimately long-lived) NVML session open, so compare with what was there.
    before = fake_nvml.stats()
    inits_before, refcount_before = before.inits, before.refcount
    reader = nvml.self_reader(0)
    for _ in range(25):
        nvml.device_count()
        nvml.device_query(0)
        nvml.list_processes(0)
        reader()
    stats = fake_nvml.stats()
    assert (stats.inits - inits_before, stats.refcount - refcount_before) == (1, 1)

    fake_nvml.fail("nvmlDeviceGetMemoryInfo", "GPU_IS_LOST")
    assert nvml_failure(lambda: nvml.device_query(0)) == "GPU is lost"
    assert reader() == VramReading(None, None, None)
    fake_nvml.clear_errors()
    assert reader().process_used_bytes == 700 * MIB
    assert nvml.device_query(0).total_bytes == 80 * GIB
    stats = fake_nvml.stats()
    # One re-init for each call made while the GPU stayed lost (the reader's), none after.
    assert stats.inits - inits_before == 3
    # The lost session was shut down before the new init.
    assert stats.refcount - refcount_before == 1


def test_self_reader_sees_spikes_and_zero_when_absent(fake_nvml: FakeNvml) -> None:
    fake_nvml.set([A100])
    reader = nvml.self_reader(0)
    assert reader() == VramReading(700 * MIB, 3 * GIB, hmn.GpuQuerySource.NVML)
    fake_nvml.set_self_used(5 * GIB, device_used_bytes=8 * GIB)
    assert reader() == VramReading(5 * GIB, 8 * GIB, hmn.GpuQuerySource.NVML)
    fake_nvml.set_self_used(None)
    assert reader() == VramReading(0, 8 * GIB, hmn.GpuQuerySource.NVML)


def test_self_reader_fast_path_grows_past_its_buffer(fake_nvml: FakeNvml) -> None:
    # 150 other processes before ours: more rows than the reader's first 64-row buffer.
    # PIDs above any pid_max (2^22), so none can be this process's.
    others = tuple(FakeProcess(pid=5_000_000 + n, used_bytes=MIB) for n in range(150))
    device = FakeNvmlDevice(name="NVIDIA Busy", total_bytes=80 * GIB, used_bytes=4 * GIB)
    fake_nvml.set([replace(device, processes=(*others, FakeProcess(SELF, 9 * MIB)))])
    reader = nvml.self_reader(0)
    assert getattr(reader, "_fast", None) is not None  # real nvidia-ml-py: direct ctypes
    assert reader() == VramReading(9 * MIB, 4 * GIB, hmn.GpuQuerySource.NVML)
    assert reader() == VramReading(9 * MIB, 4 * GIB, hmn.GpuQuerySource.NVML)


def test_self_reader_fast_path_degrades_on_errors(fake_nvml: FakeNvml) -> None:
    fake_nvml.set([A100])
    reader = nvml.self_reader(0)
    fake_nvml.fail("nvmlDeviceGetComputeRunningProcesses_v3", "NO_PERMISSION")
    assert reader() == VramReading(None, 3 * GIB, hmn.GpuQuerySource.NVML)
    fake_nvml.fail("*", "GPU_IS_LOST")
    assert reader() == VramReading(None, None, None)
    fake_nvml.clear_errors()
    assert reader() == VramReading(700 * MIB, 3 * GIB, hmn.GpuQuerySource.NVML)


def test_self_reader_under_concurrent_config_rewrites(fake_nvml: FakeNvml) -> None:
    fake_nvml.set([A100])
    reader = nvml.self_reader(0)
    written = {700 * MIB} | {n * MIB for n in range(1, 101)}
    seen: list[VramReading] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen.append(reader())

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        for n in range(1, 101):
            fake_nvml.set_self_used(n * MIB)
    finally:
        stop.set()
        thread.join()
    assert seen
    assert {r.process_used_bytes for r in seen} <= written
    assert all(r.device_used_bytes == 3 * GIB for r in seen)


def test_public_functions_through_the_probe_chain(
    fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    second = FakeNvmlDevice(name="NVIDIA L4", total_bytes=24 * GIB, used_bytes=GIB)
    fake_nvml.set([A100, second], driver="580.65.06")
    assert hmn.device_count() == 2

    info = hmn.device_info(0)
    assert info == hmn.GpuDeviceInfo(
        index=0,
        name="NVIDIA A100-SXM4-80GB",
        total_bytes=80 * GIB,
        free_bytes=77 * GIB,
        used_bytes=3 * GIB,
        reserved_bytes=512 * MIB,
        driver_version="580.65.06",
    )
    assert hmn.device_info(1).name == "NVIDIA L4"

    mine = hmn.process_gpu_info(0)
    assert mine == hmn.ProcessGpuInfo(
        used_bytes=700 * MIB, is_per_process=True, source=hmn.GpuQuerySource.NVML
    )
    assert hmn.process_gpu_info(0, pid=4242).used_bytes == 2 * GIB

    rows = hmn.gpu_processes(0)
    assert [r.pid for r in rows] == sorted([os.getpid(), 4242])
    assert {r.source for r in rows} == {hmn.GpuQuerySource.NVML}
    assert all(r.shared_used_bytes == 0 for r in rows)
    own = next(r for r in rows if r.pid == os.getpid())
    assert own.used_bytes == 700 * MIB
    with open(f"/proc/{os.getpid()}/comm", encoding="utf-8") as fh:
        assert own.name == fh.read().strip()
    assert hmn.gpu_processes(1) == []  # an NVML empty answer stands

    snap = hmn.Snapshot.now(0)
    assert snap.ram_bytes > 0
    assert snap.gpu == mine
    assert snap.gpu_device == info

    def smi_down(*_: object) -> None:
        raise BackendFailure("nvidia-smi", "not found")

    monkeypatch.setattr(smi, "device_query", smi_down)
    monkeypatch.setattr(smi, "list_processes", smi_down)
    with pytest.raises(hmn.DeviceIndexOutOfRangeError) as out_of_range:
        hmn.device_info(5)
    assert (out_of_range.value.index, out_of_range.value.count) == (5, 2)


def test_debug_output_through_the_library(
    fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_nvml.set([A100])
    monkeypatch.setenv("HYPOMNESIS_DEBUG", "1")
    _platform.refresh_debug()
    nvml.device_query(0)
    err = capsys.readouterr().err
    assert "[NVML debug] device 0: total=85899345920 free=82678120448 used=3221225472" in err
    assert "reserved=536870912 name='NVIDIA A100-SXM4-80GB' driver='555.42.06'" in err


def test_env_reaches_a_subprocess_and_self_is_its_pid(fake_nvml: FakeNvml) -> None:
    fake_nvml.set([A100])
    code = (
        "import os\n"
        "from pytest_hypomnesis.probe import nvml\n"
        "print(nvml.device_count(), nvml.process_used_bytes(0, os.getpid()))\n"
    )
    env = {**os.environ, **fake_nvml.env}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["1", str(700 * MIB)]


def test_self_reader_latency(fake_nvml: FakeNvml) -> None:
    """Measured, not asserted: the sampler calls this every ~10 ms."""
    fake_nvml.set([A100])
    reader = nvml.self_reader(0)
    for _ in range(50):
        reader()
    samples_us: list[float] = []
    for _ in range(2000):
        start = time.perf_counter()
        reading = reader()
        samples_us.append((time.perf_counter() - start) * 1e6)
    assert reading.process_used_bytes == 700 * MIB
    samples_us.sort()
    median_us = statistics.median(samples_us)
    p99_us = samples_us[int(len(samples_us) * 0.99)]
    print(f"\nself_reader per call, fake library: median {median_us:.1f} us, p99 {p99_us:.1f} us")
