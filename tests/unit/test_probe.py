"""The probe chain, RSS, and the fake GPU (parity checklist 1, 8, 9, 16-19; SPEC §2)."""

from __future__ import annotations

import os
from typing import Any

import pytest

import pytest_hypomnesis as hmn
from pytest_hypomnesis import _platform
from pytest_hypomnesis._errors import BackendFailure, RamError
from pytest_hypomnesis._platform import IS_LINUX
from pytest_hypomnesis.probe import chain, rss
from pytest_hypomnesis.probe.fake import FakeGpu
from pytest_hypomnesis.probe.readings import NvmlDeviceReading, SmiDeviceReading
from tests.helpers.units import GIB, MIB

linux_only = pytest.mark.skipif(not IS_LINUX, reason="procfs")


def test_parse_vmrss() -> None:
    assert rss.parse_vmrss("Name:\tpython\nVmRSS:\t   1234 kB\n") == 1234 * 1024


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Name: x\n", "RAM query failed: VmRSS not found in /proc/self/status"),
        ("VmRSS:\t12x kB\n", "RAM query failed: failed to parse VmRSS value '12x': "),
    ],
)
def test_parse_vmrss_errors(text: str, message: str) -> None:
    with pytest.raises(RamError) as info:
        rss.parse_vmrss(text)
    assert str(info.value).startswith(message)


@linux_only
def test_statm_fast_path_agrees_with_status() -> None:
    with open("/proc/self/status") as fh:
        from_status = rss.parse_vmrss(fh.read())
    from_statm = rss.procfs_rss()
    # Both read the same kernel counter; allow for pages touched between the two reads.
    assert abs(from_statm - from_status) < 4 * MIB


def test_rss_grows_with_allocation() -> None:
    before = hmn.process_rss()
    block = bytearray(64 * MIB)
    block[::4096] = b"x" * len(block[::4096])
    after = hmn.process_rss()
    assert after - before > 48 * MIB
    del block


@linux_only
def test_rss_reopens_after_fork() -> None:
    rss.procfs_rss()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read_fd)
        block = bytearray(96 * MIB)
        block[::4096] = b"x" * len(block[::4096])
        os.write(write_fd, str(rss.procfs_rss()).encode())
        os._exit(0)
    os.close(write_fd)
    child_rss = int(os.read(read_fd, 64))
    os.waitpid(pid, 0)
    os.close(read_fd)
    assert child_rss - hmn.process_rss() > 64 * MIB


def test_rss_failure_is_the_only_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> int:
        raise RamError("failed to read /proc/self/status: boom")

    monkeypatch.setattr(chain, "process_rss", broken)
    with pytest.raises(RamError):
        hmn.Snapshot.now(0)
    with pytest.raises(RamError):
        hmn.Snapshot.all()


def test_snapshot_without_gpu_has_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_hypomnesis.probe import nvml, smi

    def no_nvml(*_: object) -> object:
        raise BackendFailure("NVML", "NVML Shared Library Not Found")

    def no_smi(*_: object) -> object:
        raise BackendFailure("nvidia-smi", "not found on PATH")

    for name in ("device_count", "device_query", "process_used_bytes", "list_processes"):
        monkeypatch.setattr(nvml, name, no_nvml)
    monkeypatch.setattr(smi, "device_query", no_smi)
    monkeypatch.setattr(smi, "list_processes", no_smi)
    monkeypatch.setattr(chain, "platform", lambda: "linux")
    snap = hmn.Snapshot.now(0)
    assert snap.ram_bytes > 0
    assert snap.gpu is None and snap.gpu_device is None
    assert snap.gpu_unavailable_reason == (
        "NVML: NVML Shared Library Not Found; nvidia-smi: not found on PATH"
    )
    assert hmn.device_count() == 0
    assert hmn.Snapshot.all() == []
    with pytest.raises(hmn.NoGpuSourceError) as info:
        hmn.device_info(0)
    assert "NVML: NVML Shared Library Not Found" in info.value.reasons
    with pytest.raises(hmn.NoGpuSourceError):
        hmn.gpu_processes(0)


def test_chain_prefers_nvml_then_falls_back_to_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_hypomnesis.probe import nvml, smi

    monkeypatch.setattr(chain, "platform", lambda: "linux")
    monkeypatch.setattr(nvml, "device_count", lambda: 2)
    monkeypatch.setattr(
        nvml,
        "device_query",
        lambda i: NvmlDeviceReading("NVIDIA T", 16 * GIB, 10 * GIB, 6 * GIB, 259 * MIB, "610.88"),
    )

    def absent(index: int, pid: int) -> int:
        raise BackendFailure("NVML", f"pid {pid} has no compute context on GPU {index}")

    monkeypatch.setattr(nvml, "process_used_bytes", absent)
    monkeypatch.setattr(
        smi, "device_query", lambda i: SmiDeviceReading(6 * GIB, 16 * GIB, "610.88")
    )
    info = hmn.device_info(1)
    assert (info.index, info.name, info.reserved_bytes) == (1, "NVIDIA T", 259 * MIB)
    gpu = hmn.process_gpu_info(0)
    # A process without a CUDA context gets the device-wide nvidia-smi figure (parity §4.2).
    assert gpu == hmn.ProcessGpuInfo(
        used_bytes=6 * GIB, is_per_process=False, source=hmn.GpuQuerySource.NVIDIA_SMI
    )
    monkeypatch.setattr(nvml, "process_used_bytes", lambda i, p: 123)
    assert hmn.process_gpu_info(0).source is hmn.GpuQuerySource.NVML
    assert hmn.process_gpu_info(0, pid=1).used_bytes == 123


def test_smi_device_info_derives_free(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_hypomnesis.probe import nvml, smi

    monkeypatch.setattr(chain, "platform", lambda: "linux")

    def fail(*_: object) -> object:
        raise BackendFailure("NVML", "Driver Not Loaded")

    monkeypatch.setattr(nvml, "device_query", fail)
    monkeypatch.setattr(nvml, "device_count", fail)
    monkeypatch.setattr(smi, "device_query", lambda i: SmiDeviceReading(20 * MIB, 10 * MIB, None))
    info = hmn.device_info(0)
    # used > total from a lying tool saturates free at 0 rather than going negative.
    assert (info.name, info.free_bytes, info.reserved_bytes, info.driver_version) == (
        None,
        0,
        None,
        None,
    )


def test_out_of_range_decided_after_backends_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_hypomnesis.probe import nvml, smi

    monkeypatch.setattr(chain, "platform", lambda: "linux")

    def fail(*_: object) -> object:
        raise BackendFailure("NVML", "Invalid Argument")

    def smi_fail(*_: object) -> object:
        raise BackendFailure("nvidia-smi", "exited with status 6")

    monkeypatch.setattr(nvml, "device_count", lambda: 1)
    monkeypatch.setattr(nvml, "device_query", fail)
    monkeypatch.setattr(nvml, "list_processes", fail)
    monkeypatch.setattr(smi, "device_query", smi_fail)
    monkeypatch.setattr(smi, "list_processes", smi_fail)
    with pytest.raises(hmn.DeviceIndexOutOfRangeError) as info:
        hmn.device_info(5)
    assert (info.value.index, info.value.count) == (5, 1)
    with pytest.raises(hmn.DeviceIndexOutOfRangeError):
        hmn.gpu_processes(5)
    with pytest.raises(hmn.NoGpuSourceError):
        hmn.device_info(0)


def test_backend_bug_degrades_to_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_hypomnesis.probe import nvml, smi

    monkeypatch.setattr(chain, "platform", lambda: "linux")

    def buggy(*_: object) -> object:
        raise ZeroDivisionError("oops")

    for name in ("device_count", "device_query", "process_used_bytes"):
        monkeypatch.setattr(nvml, name, buggy)
    monkeypatch.setattr(smi, "device_query", buggy)
    snap = hmn.Snapshot.now(0)
    assert snap.gpu is None
    assert snap.gpu_unavailable_reason is not None
    assert "NVML: unexpected ZeroDivisionError: oops" in snap.gpu_unavailable_reason


def test_listing_sorted_by_pid_and_nvml_empty_stands(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_hypomnesis.probe import nvml, smi

    monkeypatch.setattr(chain, "platform", lambda: "linux")
    monkeypatch.setattr(nvml, "list_processes", lambda i: [(30, 1), (2, 5)])
    rows = hmn.gpu_processes(0)
    assert [r.pid for r in rows] == [2, 30]
    assert all(r.source is hmn.GpuQuerySource.NVML and r.shared_used_bytes == 0 for r in rows)

    def smi_called(i: int) -> list[tuple[int, str | None, int]]:
        raise AssertionError("an NVML answer of [] must not fall through to nvidia-smi")

    monkeypatch.setattr(nvml, "list_processes", lambda i: [])
    monkeypatch.setattr(smi, "list_processes", smi_called)
    assert hmn.gpu_processes(0) == []


def test_own_pid_listing_has_comm_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_hypomnesis.probe import nvml

    monkeypatch.setattr(chain, "platform", lambda: "linux")
    monkeypatch.setattr(nvml, "list_processes", lambda i: [(os.getpid(), 7)])
    (row,) = hmn.gpu_processes(0)
    if IS_LINUX:
        with open("/proc/self/comm") as fh:
            assert row.name == fh.read().strip()


def test_fake_gpu_answers_every_function(fake_gpu: FakeGpu) -> None:
    fake_gpu.add_device(name="NVIDIA Fake", total="16GiB", used="1GiB", reserved="256MiB")
    fake_gpu.add_device(name=None, total="8GiB")
    fake_gpu.set_process_vram(0, "2GiB")
    fake_gpu.set_process_vram(0, "512MiB", pid=4242, name="trainer,v2")
    assert hmn.device_count() == 2
    info = hmn.device_info(0)
    assert info.used_bytes == 1 * GIB + 2 * GIB + 512 * MIB
    assert info.free_bytes == 16 * GIB - info.used_bytes - 256 * MIB
    assert hmn.process_gpu_info(0).used_bytes == 2 * GIB
    assert hmn.process_gpu_info(0, pid=4242).used_bytes == 512 * MIB
    assert [(r.pid, r.name) for r in hmn.gpu_processes(0)] == sorted(
        [(os.getpid(), "python"), (4242, "trainer,v2")]
    )
    snaps = hmn.Snapshot.all()
    assert [s.gpu_device.index for s in snaps if s.gpu_device] == [0, 1]
    assert len({s.ram_bytes for s in snaps}) == 1
    with pytest.raises(hmn.DeviceIndexOutOfRangeError):
        hmn.device_info(2)
    reader = chain.vram_reader(0)
    assert reader is not None
    assert reader().process_used_bytes == 2 * GIB
    fake_gpu.set_process_vram(0, 0)
    assert reader().process_used_bytes == 0
    assert chain.vram_reader(9) is None


def test_fake_gpu_without_devices(fake_gpu: FakeGpu) -> None:
    assert hmn.device_count() == 0
    snap = hmn.Snapshot.now(0)
    assert snap.gpu is None and snap.gpu_unavailable_reason is not None
    with pytest.raises(hmn.NoGpuSourceError):
        hmn.device_info(0)


def test_debug_output(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HYPOMNESIS_DEBUG", "1")
    _platform.refresh_debug()
    hmn.process_rss()
    assert "[RSS debug] rss_bytes=" in capsys.readouterr().err
    monkeypatch.setenv("HYPOMNESIS_DEBUG", "0")
    _platform.refresh_debug()
    hmn.process_rss()
    assert capsys.readouterr().err == ""


def test_vram_reader_uses_dxgi_on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_hypomnesis.probe import dxgi

    monkeypatch.setattr(chain, "platform", lambda: "win32")
    usage = [5 * MIB]
    monkeypatch.setattr(dxgi, "self_usage", lambda index: usage[0])
    reader = chain.vram_reader(0)
    assert reader is not None
    assert reader() == chain.VramReading(5 * MIB, None, hmn.GpuQuerySource.DXGI)

    def gone(index: int) -> int:
        raise BackendFailure("DXGI", "adapter removed")

    monkeypatch.setattr(dxgi, "self_usage", gone)
    assert reader() == chain.VramReading(None, None, None)


def test_vram_reader_uses_metal_on_macos(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_hypomnesis.probe import metal

    monkeypatch.setattr(chain, "platform", lambda: "darwin")
    monkeypatch.setattr(metal, "process_footprint", lambda pid: 7 * MIB)
    reader = chain.vram_reader(0)
    assert reader is not None
    assert reader().process_used_bytes == 7 * MIB
    assert reader().source is hmn.GpuQuerySource.METAL


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "cannot parse integer from empty string"),
        ("١٢", "invalid digit found in string"),
        ("-5", "invalid digit found in string"),
        ("99999999999999999999999", "number too large to fit in target type"),
    ],
)
def test_parse_vmrss_uses_rusts_parse_errors(value: str, problem: str) -> None:
    with pytest.raises(RamError) as info:
        # An empty value has no " kB" either (the crate strips that suffix after trimming).
        rss.parse_vmrss(f"VmRSS:\t{value} kB\n" if value else "VmRSS:\t\n")
    assert str(info.value) == f"RAM query failed: failed to parse VmRSS value '{value}': {problem}"


def test_parse_vmrss_accepts_a_plus_sign() -> None:
    assert rss.parse_vmrss("VmRSS:\t+7 kB\n") == 7 * 1024


def test_apple_index_zero_failing_is_no_source(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_hypomnesis.probe import metal, nvml, smi

    def fail(*_: object) -> object:
        raise BackendFailure("Metal", "ledger unavailable")

    monkeypatch.setattr(chain, "platform", lambda: "darwin")
    monkeypatch.setattr(metal, "is_apple_silicon", lambda: True)
    monkeypatch.setattr(metal, "device_info", fail)
    for module, names in ((nvml, ("device_query", "device_count")), (smi, ("device_query",))):
        for name in names:
            monkeypatch.setattr(module, name, fail)
    with pytest.raises(hmn.NoGpuSourceError):
        hmn.device_info(0)
    with pytest.raises(hmn.NoGpuSourceError):
        hmn.device_info(1)


@pytest.mark.parametrize("bad", [[], "x", None, 3])
def test_from_dict_rejects_non_objects(bad: object) -> None:
    with pytest.raises(ValueError, match="expected an object"):
        hmn.Snapshot.from_dict(bad)


@pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="POSIX fork")
def test_rss_works_in_a_child_forked_while_the_lock_is_held() -> None:
    read_fd, write_fd = os.pipe()
    with rss._statm._lock:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os.write(write_fd, str(rss.procfs_rss()).encode())
            os._exit(0)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert int(os.read(read_fd, 64)) > 0
    os.close(read_fd)


def test_plain_span_record_has_the_measurement_record_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A span begun on the fast path (nothing to sample) gives a record of the same shape
    as one that took the sampling path."""
    from pytest_hypomnesis.plugin.engine import Engine

    monkeypatch.setenv("HYPOMNESIS_NVML_LIBRARY", "/nonexistent")
    engine = Engine(interval_s=0.01)
    try:
        first = engine.begin()
        engine.end(first)  # resolves the (empty) readers: later spans take the fast path
        plain = engine.begin()
        if not plain.plain:
            pytest.skip("no fast path here (RAM peak sampled, or a GPU reader exists)")
        plain_record = engine.end(plain)
        ram, vram, timeline = plain_record["ram"], plain_record["vram"], plain_record["timeline"]
        full = engine.end(engine.begin(timeline=True))
    finally:
        engine.close()
    assert timeline is None
    assert list(plain_record) == list(full)
    assert list(ram) == list(full["ram"])
    assert list(vram) == list(full["vram"])
    assert {type(v) for v in ram.values()} <= {int, str, type(None)}
    peak, start = ram["peak_bytes"], ram["start_bytes"]
    assert peak is not None and start is not None
    assert ram["increase_bytes"] == max(peak - start, 0)


def test_vram_reader_polls_process_gpu_info_without_a_fast_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No kept-handle reader (NVML's fails) but a per-process answer: the chain polls
    ``process_gpu_info``; a device-wide answer only (nvidia-smi) gives no reader."""
    from pytest_hypomnesis.probe import nvml, smi

    def no_handle(index: int) -> Any:
        raise BackendFailure("NVML", "Not Supported")

    used = [5 * MIB]
    monkeypatch.setattr(chain, "platform", lambda: "linux")
    monkeypatch.setattr(nvml, "self_reader", no_handle)
    monkeypatch.setattr(nvml, "process_used_bytes", lambda index, pid: used[0])
    reader = chain.vram_reader(0)
    assert reader is not None
    assert reader() == chain.VramReading(5 * MIB, None, hmn.GpuQuerySource.NVML)
    used[0] = 6 * MIB
    assert reader().process_used_bytes == 6 * MIB

    def no_rows(index: int, pid: int) -> int:
        raise BackendFailure("NVML", "Driver Not Loaded")

    monkeypatch.setattr(nvml, "process_used_bytes", no_rows)
    monkeypatch.setattr(smi, "device_query", lambda index: SmiDeviceReading(GIB, 8 * GIB, None))
    assert chain.vram_reader(0) is None
