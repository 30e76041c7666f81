"""The probe's per-platform fallback chains, driven through the public functions with every
backend scripted (parity doc §3.1, §4.1-4.3; checklist 4, 10, 11, 12, 16, 17, 20, 21).

Each backend function is replaced by a stub that records its call and either answers from
the script or raises ``BackendFailure``. The chain swallows every exception a backend
raises, so a forbidden call is also recorded and checked at teardown: an ``AssertionError``
raised inside the chain alone would only turn into a fall-through.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

import pytest_hypomnesis as hmn
from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis.probe import chain, dxgi, metal, nvml, pdh, rss, smi
from pytest_hypomnesis.probe.readings import NvmlDeviceReading, SmiDeviceReading
from tests.helpers.units import GIB, MIB

RAM_BYTES = 300 * MIB
OTHER_PID = os.getpid() + 1

Source = hmn.GpuQuerySource

_SCRIPTED: dict[str, tuple[ModuleType, str, tuple[str, ...]]] = {
    "nvml": (
        nvml,
        "NVML",
        ("device_count", "device_query", "process_used_bytes", "list_processes", "self_reader"),
    ),
    "smi": (smi, "nvidia-smi", ("device_query", "list_processes")),
    "dxgi": (
        dxgi,
        "DXGI",
        (
            "nvidia_adapter_count",
            "adapter_name",
            "self_usage",
            "device_info",
            "non_nvidia_snapshots",
        ),
    ),
    "pdh": (pdh, "PDH", ("list_processes",)),
    "metal": (
        metal,
        "Metal",
        ("is_apple_silicon", "device_info", "process_footprint", "list_processes"),
    ),
    "rss": (rss, "RSS", ("process_rss",)),
}
SMI_ALL = ("smi.device_query", "smi.list_processes")


class Machine:
    """A scripted machine: a platform name plus an answer (or a failure) per backend call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self._answers: dict[str, Callable[..., object]] = {}
        self._forbidden: set[str] = set()
        self.violations: list[str] = []
        for prefix, (module, label, names) in _SCRIPTED.items():
            for name in names:
                monkeypatch.setattr(module, name, self._stub(f"{prefix}.{name}", label))
        # Neither is a failure on an ordinary machine: not a Mac, and RSS always readable.
        self.returns("metal.is_apple_silicon", False)
        self.returns("rss.process_rss", RAM_BYTES)
        self.platform("linux")

    def _stub(self, key: str, label: str) -> Callable[..., object]:
        def stub(*args: object) -> object:
            self.calls.append((key, args))
            if key in self._forbidden:
                self.violations.append(key)
                raise AssertionError(f"{key} must not be called here")
            answer = self._answers.get(key)
            if answer is None:
                raise BackendFailure(label, f"{key.split('.')[1]} failed")
            return answer(*args)

        return stub

    def platform(self, name: str) -> None:
        self._monkeypatch.setattr(chain, "platform", lambda: name)

    def apple(self) -> None:
        self.platform("darwin")
        self.returns("metal.is_apple_silicon", True)

    def returns(self, key: str, value: object) -> None:
        self._answers[key] = lambda *_: value

    def answers(self, key: str, fn: Callable[..., object]) -> None:
        self._answers[key] = fn

    def fails(self, key: str) -> None:
        self._answers.pop(key, None)

    def forbid(self, *keys: str) -> None:
        self._forbidden.update(keys)

    def allow(self, *keys: str) -> None:
        self._forbidden.difference_update(keys)

    def args_of(self, key: str) -> list[tuple[object, ...]]:
        return [args for called, args in self.calls if called == key]

    def called(self, key: str) -> bool:
        return any(called == key for called, _ in self.calls)

    def order(self) -> list[str]:
        return [called for called, _ in self.calls if not called.startswith(("rss.", "metal.is_"))]


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    previous = chain.set_fake(None)
    scripted = Machine(monkeypatch)
    try:
        yield scripted
    finally:
        chain.set_fake(previous)
    assert scripted.violations == []


def nvml_reading(name: str = "NVIDIA GeForce RTX 4090") -> NvmlDeviceReading:
    return NvmlDeviceReading(name, 24 * GIB, 20 * GIB, 4 * GIB, 300 * MIB, "566.36")


def device(index: int, name: str | None, used_bytes: int = 1 * GIB) -> hmn.GpuDeviceInfo:
    return hmn.GpuDeviceInfo(
        index=index,
        name=name,
        total_bytes=8 * GIB,
        free_bytes=8 * GIB - used_bytes,
        used_bytes=used_bytes,
    )


# --- checklist 10: device_count -------------------------------------------------------------


def test_device_count_apple_mac_is_one_without_nvml(machine: Machine) -> None:
    machine.apple()
    machine.forbid("nvml.device_count", "dxgi.nvidia_adapter_count", *SMI_ALL)
    assert hmn.device_count() == 1


@pytest.mark.parametrize(
    ("platform", "nvml_count", "dxgi_count", "expected", "dxgi_asked"),
    [
        pytest.param("linux", 2, None, 2, False, id="linux-nvml"),
        pytest.param("linux", None, 3, 0, False, id="linux-no-dxgi"),
        pytest.param("darwin", None, 3, 0, False, id="intel-mac-nothing"),
        pytest.param("win32", 3, 1, 3, False, id="windows-nvml-first"),
        pytest.param("win32", None, 2, 2, True, id="windows-dxgi"),
        pytest.param("win32", None, 0, 0, True, id="windows-dxgi-zero"),
        pytest.param("win32", None, None, 0, True, id="windows-nothing"),
    ],
)
def test_device_count_chain_never_uses_smi(
    machine: Machine,
    platform: str,
    nvml_count: int | None,
    dxgi_count: int | None,
    expected: int,
    dxgi_asked: bool,
) -> None:
    machine.platform(platform)
    machine.forbid(*SMI_ALL)
    if nvml_count is not None:
        machine.returns("nvml.device_count", nvml_count)
    if dxgi_count is not None:
        machine.returns("dxgi.nvidia_adapter_count", dxgi_count)
    assert hmn.device_count() == expected
    assert machine.called("nvml.device_count")
    assert machine.called("dxgi.nvidia_adapter_count") is dxgi_asked


# --- checklist 11: device_info --------------------------------------------------------------


def test_device_info_macos_metal_first_for_index_zero_only(machine: Machine) -> None:
    machine.apple()
    apple = device(0, "Apple M3 Pro")
    machine.returns("metal.device_info", apple)
    machine.forbid("nvml.device_query", *SMI_ALL)
    assert hmn.device_info(0) == apple

    # Index 1 of a Mac is never Metal's: the chain goes straight to the NVIDIA backends.
    machine.returns("nvml.device_query", nvml_reading())
    machine.calls.clear()
    machine.forbid("metal.device_info")
    machine.allow("nvml.device_query")
    assert hmn.device_info(1).name == "NVIDIA GeForce RTX 4090"
    assert not machine.called("dxgi.adapter_name")


def test_device_info_macos_metal_failure_falls_to_nvml(machine: Machine) -> None:
    machine.apple()
    machine.returns("nvml.device_query", nvml_reading())
    info = hmn.device_info(0)
    assert (info.name, info.reserved_bytes) == ("NVIDIA GeForce RTX 4090", 300 * MIB)
    assert machine.order() == ["metal.device_info", "nvml.device_query"]


def test_device_info_windows_dxgi_name_replaces_nvml_name(machine: Machine) -> None:
    machine.platform("win32")
    machine.returns("nvml.device_query", nvml_reading("NVIDIA GeForce RTX 4090 (NVML)"))
    machine.answers("dxgi.adapter_name", lambda index: f"DXGI adapter {index}")
    machine.forbid("dxgi.device_info", *SMI_ALL)
    info = hmn.device_info(1)
    assert info == hmn.GpuDeviceInfo(
        index=1,
        name="DXGI adapter 1",
        total_bytes=24 * GIB,
        free_bytes=20 * GIB,
        used_bytes=4 * GIB,
        reserved_bytes=300 * MIB,
        driver_version="566.36",
    )
    assert machine.args_of("dxgi.adapter_name") == [(1,)]


def test_device_info_windows_dxgi_name_failure_keeps_nvml_name(machine: Machine) -> None:
    machine.platform("win32")
    machine.returns("nvml.device_query", nvml_reading())
    info = hmn.device_info(0)
    assert (info.name, info.reserved_bytes, info.driver_version) == (
        "NVIDIA GeForce RTX 4090",
        300 * MIB,
        "566.36",
    )
    assert machine.order() == ["nvml.device_query", "dxgi.adapter_name"]


def test_device_info_linux_never_asks_dxgi_for_a_name(machine: Machine) -> None:
    machine.returns("nvml.device_query", nvml_reading())
    machine.returns("dxgi.adapter_name", "must not be used")
    assert hmn.device_info(0).name == "NVIDIA GeForce RTX 4090"
    assert machine.order() == ["nvml.device_query"]


def test_device_info_windows_dxgi_only_when_nvml_fails(machine: Machine) -> None:
    machine.platform("win32")
    only_dxgi = device(0, "NVIDIA RTX A2000", used_bytes=512 * MIB)
    machine.returns("dxgi.device_info", only_dxgi)
    machine.forbid(*SMI_ALL)
    assert hmn.device_info(0) == only_dxgi
    assert machine.order() == ["nvml.device_query", "dxgi.device_info"]


@pytest.mark.parametrize("platform", ["linux", "win32"])
def test_device_info_smi_is_last(machine: Machine, platform: str) -> None:
    machine.platform(platform)
    machine.returns("smi.device_query", SmiDeviceReading(3 * GIB, 8 * GIB, "566.36"))
    info = hmn.device_info(0)
    assert info == hmn.GpuDeviceInfo(
        index=0,
        name=None,
        total_bytes=8 * GIB,
        free_bytes=5 * GIB,
        used_bytes=3 * GIB,
        reserved_bytes=None,
        driver_version="566.36",
    )
    expected = ["nvml.device_query", "smi.device_query"]
    if platform == "win32":
        expected.insert(1, "dxgi.device_info")
    assert machine.order() == expected


# --- checklists 4 and 12: process_gpu_info --------------------------------------------------


def test_process_gpu_info_macos_metal_first(machine: Machine) -> None:
    machine.apple()
    machine.returns("metal.process_footprint", 7 * MIB)
    machine.forbid("nvml.process_used_bytes", "dxgi.self_usage", *SMI_ALL)
    assert hmn.process_gpu_info(0) == hmn.ProcessGpuInfo(
        used_bytes=7 * MIB, is_per_process=True, source=Source.METAL
    )
    assert hmn.process_gpu_info(0, pid=OTHER_PID).used_bytes == 7 * MIB
    assert machine.args_of("metal.process_footprint") == [(os.getpid(),), (OTHER_PID,)]


@pytest.mark.parametrize("pid", [None, os.getpid()], ids=["default-pid", "own-pid"])
def test_process_gpu_info_windows_own_process_is_dxgi(machine: Machine, pid: int | None) -> None:
    machine.platform("win32")
    machine.returns("dxgi.self_usage", 96 * MIB)
    machine.returns("pdh.list_processes", [hmn.GpuProcessEntry(pid=os.getpid(), used_bytes=1)])
    machine.forbid("nvml.process_used_bytes", "pdh.list_processes", *SMI_ALL)
    assert hmn.process_gpu_info(2, pid=pid) == hmn.ProcessGpuInfo(
        used_bytes=96 * MIB, is_per_process=True, source=Source.DXGI
    )
    assert machine.args_of("dxgi.self_usage") == [(2,)]


def test_process_gpu_info_windows_dxgi_failure_falls_to_nvml(machine: Machine) -> None:
    machine.platform("win32")
    machine.returns("nvml.process_used_bytes", 64 * MIB)
    machine.forbid(*SMI_ALL)
    assert hmn.process_gpu_info(0) == hmn.ProcessGpuInfo(
        used_bytes=64 * MIB, is_per_process=True, source=Source.NVML
    )
    assert machine.order() == ["dxgi.self_usage", "nvml.process_used_bytes"]
    assert machine.args_of("nvml.process_used_bytes") == [(0, os.getpid())]


def test_process_gpu_info_windows_then_smi_device_wide(machine: Machine) -> None:
    machine.platform("win32")
    machine.returns("smi.device_query", SmiDeviceReading(5 * GIB, 8 * GIB, None))
    # A PDH listing that could name this process is still never a per-process source.
    machine.returns("pdh.list_processes", [hmn.GpuProcessEntry(pid=os.getpid(), used_bytes=1)])
    machine.forbid("pdh.list_processes")
    assert hmn.process_gpu_info(0) == hmn.ProcessGpuInfo(
        used_bytes=5 * GIB, is_per_process=False, source=Source.NVIDIA_SMI
    )
    assert machine.order() == ["dxgi.self_usage", "nvml.process_used_bytes", "smi.device_query"]


def test_process_gpu_info_windows_other_pid_skips_dxgi(machine: Machine) -> None:
    machine.platform("win32")
    machine.returns("dxgi.self_usage", 96 * MIB)
    machine.forbid("dxgi.self_usage")
    machine.returns("nvml.process_used_bytes", 32 * MIB)
    info = hmn.process_gpu_info(0, pid=OTHER_PID)
    assert (info.used_bytes, info.source) == (32 * MIB, Source.NVML)
    assert machine.args_of("nvml.process_used_bytes") == [(0, OTHER_PID)]

    machine.fails("nvml.process_used_bytes")
    machine.returns("smi.device_query", SmiDeviceReading(5 * GIB, 8 * GIB, None))
    assert hmn.process_gpu_info(0, pid=OTHER_PID).is_per_process is False


def test_process_gpu_info_linux_never_asks_dxgi_or_pdh(machine: Machine) -> None:
    machine.returns("dxgi.self_usage", 96 * MIB)
    machine.forbid("dxgi.self_usage", "pdh.list_processes")
    machine.returns("smi.device_query", SmiDeviceReading(5 * GIB, 8 * GIB, None))
    info = hmn.process_gpu_info(0)
    assert (info.source, info.is_per_process) == (Source.NVIDIA_SMI, False)
    assert machine.order() == ["nvml.process_used_bytes", "smi.device_query"]


# --- checklists 4, 20, 21: gpu_processes -----------------------------------------------------


def test_listing_windows_is_pdh_never_nvml(machine: Machine) -> None:
    machine.platform("win32")
    machine.returns("nvml.list_processes", [(1, 1)])
    machine.forbid("nvml.list_processes", *SMI_ALL)
    rows = [
        hmn.GpuProcessEntry(pid=900, name="b.exe", used_bytes=2 * MIB, shared_used_bytes=MIB),
        hmn.GpuProcessEntry(pid=4, name="[kernel]", used_bytes=MIB),
    ]
    machine.returns("pdh.list_processes", rows)
    listed = hmn.gpu_processes(1)
    assert [(r.pid, r.source, r.shared_used_bytes) for r in listed] == [
        (4, Source.PDH, 0),
        (900, Source.PDH, MIB),
    ]
    assert machine.args_of("pdh.list_processes") == [(1,)]


def test_listing_windows_pdh_failure_falls_to_smi(machine: Machine) -> None:
    machine.platform("win32")
    machine.forbid("nvml.list_processes")
    machine.returns("smi.list_processes", [(77, "train.exe", 3 * MIB), (12, None, MIB)])
    # A working DXGI must not invent listing rows.
    machine.returns("dxgi.self_usage", 96 * MIB)
    machine.returns("dxgi.device_info", device(0, "NVIDIA RTX A2000"))
    listed = hmn.gpu_processes(0)
    assert listed == [
        hmn.GpuProcessEntry(pid=12, name=None, used_bytes=MIB, source=Source.NVIDIA_SMI),
        hmn.GpuProcessEntry(pid=77, name="train.exe", used_bytes=3 * MIB, source=Source.NVIDIA_SMI),
    ]
    assert machine.order() == ["pdh.list_processes", "smi.list_processes"]


def test_listing_windows_no_rows_from_dxgi_when_all_fail(machine: Machine) -> None:
    machine.platform("win32")
    machine.returns("dxgi.nvidia_adapter_count", 1)
    machine.returns("dxgi.self_usage", 96 * MIB)
    machine.returns("dxgi.device_info", device(0, "NVIDIA RTX A2000"))
    machine.forbid("dxgi.self_usage", "dxgi.device_info", "nvml.list_processes")
    with pytest.raises(hmn.NoGpuSourceError) as info:
        hmn.gpu_processes(0)
    assert info.value.reasons == ("PDH: list_processes failed", "nvidia-smi: list_processes failed")


def test_listing_linux_nvml_empty_stands(machine: Machine) -> None:
    machine.returns("nvml.list_processes", [])
    machine.forbid("pdh.list_processes", *SMI_ALL)
    assert hmn.gpu_processes(0) == []


def test_listing_linux_nvml_rows_then_smi_never_pdh(machine: Machine) -> None:
    machine.returns("nvml.list_processes", [(OTHER_PID, 9 * MIB), (1, MIB)])
    machine.forbid("pdh.list_processes", *SMI_ALL)
    listed = hmn.gpu_processes(0)
    assert [(r.pid, r.used_bytes, r.source, r.shared_used_bytes) for r in listed] == [
        (1, MIB, Source.NVML, 0),
        (OTHER_PID, 9 * MIB, Source.NVML, 0),
    ]

    machine.fails("nvml.list_processes")
    machine.allow(*SMI_ALL)
    machine.returns("smi.list_processes", [(5, "python", MIB)])
    assert [r.source for r in hmn.gpu_processes(0)] == [Source.NVIDIA_SMI]


def test_listing_macos_metal_first_for_index_zero(machine: Machine) -> None:
    machine.apple()
    rows = [
        hmn.GpuProcessEntry(pid=50, name="WindowServer", used_bytes=MIB, source=Source.METAL),
        hmn.GpuProcessEntry(pid=3, name="python", used_bytes=MIB, source=Source.METAL),
    ]
    machine.returns("metal.list_processes", rows)
    machine.forbid("nvml.list_processes", "pdh.list_processes", *SMI_ALL)
    assert [r.pid for r in hmn.gpu_processes(0)] == [3, 50]


# --- checklist 16: DeviceIndexOutOfRangeError vs NoGpuSourceError ----------------------------


def test_windows_bounds_use_dxgi_count_when_nvml_cannot_count(machine: Machine) -> None:
    machine.platform("win32")
    machine.returns("dxgi.nvidia_adapter_count", 1)
    with pytest.raises(hmn.DeviceIndexOutOfRangeError) as out:
        hmn.device_info(3)
    assert (out.value.index, out.value.count) == (3, 1)
    assert out.value.reasons == (
        "NVML: device_query failed",
        "DXGI: device_info failed",
        "nvidia-smi: device_query failed",
    )
    # The bounds check comes only after every backend of the chain has failed.
    assert machine.order()[:3] == ["nvml.device_query", "dxgi.device_info", "smi.device_query"]
    with pytest.raises(hmn.DeviceIndexOutOfRangeError):
        hmn.process_gpu_info(3)
    with pytest.raises(hmn.DeviceIndexOutOfRangeError):
        hmn.gpu_processes(3)
    for in_range in (
        lambda: hmn.device_info(0),
        lambda: hmn.process_gpu_info(0),
        lambda: hmn.gpu_processes(0),
    ):
        with pytest.raises(hmn.NoGpuSourceError):
            in_range()


def test_windows_bounds_without_any_count_is_no_source(machine: Machine) -> None:
    machine.platform("win32")
    with pytest.raises(hmn.NoGpuSourceError):
        hmn.device_info(3)
    assert machine.called("nvml.device_count") and machine.called("dxgi.nvidia_adapter_count")


def test_linux_bounds_never_consult_dxgi(machine: Machine) -> None:
    machine.returns("dxgi.nvidia_adapter_count", 1)
    machine.forbid("dxgi.nvidia_adapter_count")
    with pytest.raises(hmn.NoGpuSourceError):
        hmn.device_info(3)
    machine.returns("nvml.device_count", 2)
    with pytest.raises(hmn.DeviceIndexOutOfRangeError) as out:
        hmn.process_gpu_info(2)
    assert (out.value.index, out.value.count) == (2, 2)


def test_apple_mac_index_one_is_no_source(machine: Machine) -> None:
    # Parity §4.1 step 5: on macOS only NVML/DXGI could count, so index 1 is NoGpuSource.
    machine.apple()
    machine.forbid("metal.device_info", "metal.process_footprint", "metal.list_processes")
    for call in (
        lambda: hmn.device_info(1),
        lambda: hmn.process_gpu_info(1),
        lambda: hmn.gpu_processes(1),
    ):
        with pytest.raises(hmn.NoGpuSourceError):
            call()


def test_apple_mac_index_zero_with_metal_failing_is_no_source(machine: Machine) -> None:
    machine.apple()
    for call in (
        lambda: hmn.device_info(0),
        lambda: hmn.process_gpu_info(0),
        lambda: hmn.gpu_processes(0),
    ):
        with pytest.raises(hmn.NoGpuSourceError) as out:
            call()
        assert out.value.reasons[0].startswith("Metal: ")


# --- checklist 17: Snapshot.now / Snapshot.all on Windows -----------------------------------


def _extra_snapshots(ram_bytes: int, nvidia_count: int) -> list[hmn.Snapshot]:
    return [
        hmn.Snapshot(
            ram_bytes=ram_bytes,
            gpu=hmn.ProcessGpuInfo(used_bytes=0, is_per_process=True, source=Source.DXGI),
            gpu_device=device(nvidia_count, "AMD Radeon(TM) Graphics", used_bytes=0),
        )
    ]


def test_snapshot_all_windows_nvidia_then_other_vendors(machine: Machine) -> None:
    machine.platform("win32")
    machine.returns("nvml.device_count", 2)
    machine.answers("nvml.device_query", lambda index: nvml_reading(f"NVML {index}"))
    machine.answers("dxgi.adapter_name", lambda index: f"DXGI {index}")
    machine.answers("dxgi.self_usage", lambda index: (index + 1) * MIB)
    machine.answers("dxgi.non_nvidia_snapshots", _extra_snapshots)
    machine.forbid(*SMI_ALL)
    snaps = hmn.Snapshot.all()
    assert len(machine.args_of("rss.process_rss")) == 1
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
    assert machine.args_of("dxgi.non_nvidia_snapshots") == [(RAM_BYTES, 2)]


def test_snapshot_all_windows_other_vendor_only(machine: Machine) -> None:
    machine.platform("win32")
    machine.returns("dxgi.nvidia_adapter_count", 0)
    machine.answers("dxgi.non_nvidia_snapshots", _extra_snapshots)
    snaps = hmn.Snapshot.all()
    assert [s.gpu_device.index for s in snaps if s.gpu_device] == [0]
    assert machine.args_of("dxgi.non_nvidia_snapshots") == [(RAM_BYTES, 0)]


@pytest.mark.parametrize("other_vendors", [[], None], ids=["none-found", "walk-failed"])
def test_snapshot_all_windows_nothing_visible(
    machine: Machine, other_vendors: list[hmn.Snapshot] | None
) -> None:
    machine.platform("win32")
    if other_vendors is not None:
        machine.returns("dxgi.non_nvidia_snapshots", other_vendors)
    assert hmn.Snapshot.all() == []
    assert len(machine.args_of("rss.process_rss")) == 1


def test_snapshot_all_linux_skips_other_vendor_walk(machine: Machine) -> None:
    machine.returns("nvml.device_count", 1)
    machine.returns("nvml.device_query", nvml_reading())
    machine.returns("smi.device_query", SmiDeviceReading(4 * GIB, 24 * GIB, None))
    machine.forbid("dxgi.non_nvidia_snapshots")
    (snap,) = hmn.Snapshot.all()
    assert snap.gpu is not None and snap.gpu.source is Source.NVIDIA_SMI


def test_snapshot_now_windows_dxgi_own_usage_and_reasons(machine: Machine) -> None:
    machine.platform("win32")
    machine.returns("dxgi.self_usage", 40 * MIB)
    snap = hmn.Snapshot.now(0)
    assert snap.gpu == hmn.ProcessGpuInfo(
        used_bytes=40 * MIB, is_per_process=True, source=Source.DXGI
    )
    assert snap.gpu_device is None
    assert snap.gpu_unavailable_reason == (
        "NVML: device_query failed; DXGI: device_info failed; nvidia-smi: device_query failed"
    )
