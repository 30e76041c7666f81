"""Unit tests of the NVML backend against a fake ``pynvml`` module in ``sys.modules``."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_hypomnesis import _platform
from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis.model import GpuQuerySource
from pytest_hypomnesis.probe import nvml
from pytest_hypomnesis.probe.readings import VramReading
from tests.helpers.units import GIB

SENTINEL = 2**64 - 1
TOTAL = 16 * GIB

NAMES = {
    1: "Uninitialized",
    3: "Not Supported",
    4: "Insufficient Permissions",
    7: "Insufficient Size",
    9: "Driver Not Loaded",
    12: "NVML Shared Library Not Found",
    13: "Function Not Found",
    15: "GPU is lost",
    16: "GPU requires restart",
    999: "Unknown Error",
}
NOT_SUPPORTED, NO_PERMISSION, INSUFFICIENT_SIZE, DRIVER_NOT_LOADED = 3, 4, 7, 9
FUNCTION_NOT_FOUND, GPU_IS_LOST, UNKNOWN = 13, 15, 999
V1 = "nvmlDeviceGetComputeRunningProcesses"
V2 = "nvmlDeviceGetComputeRunningProcesses_v2"
V3 = "nvmlDeviceGetComputeRunningProcesses_v3"


class FakeNVMLError(Exception):
    """Like pynvml's: ``value`` holds the code, ``str()`` the readable text."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return NAMES.get(self.value, f"NVML Error with code {self.value}")


@dataclass
class Row:
    pid: int
    usedGpuMemory: int | None  # pynvml's field name


@dataclass
class FakePynvml:
    """State behind the fake module; every NVML call is counted in ``calls``."""

    name: object = "NVIDIA Fake GPU"
    driver: object = "555.42.06"
    total: int = TOTAL
    used: int = 2 * GIB
    reserved: int = 256 * 1024**2
    rows: list[Row] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    insufficient: int = 0  # the next N process queries hit a growing process table
    calls: dict[str, int] = field(default_factory=dict)
    live: int = 0

    def module(self) -> types.ModuleType:
        module = types.ModuleType("pynvml")
        members: dict[str, object] = {
            "NVMLError": FakeNVMLError,
            "nvmlInit": self.init,
            "nvmlShutdown": self.shutdown,
            "nvmlDeviceGetCount": self.device_count,
            "nvmlDeviceGetHandleByIndex": self.handle,
            "nvmlDeviceGetMemoryInfo": self.memory,
            "nvmlDeviceGetName": self.device_name,
            "nvmlSystemGetDriverVersion": self.driver_version,
            V3: lambda h: self.processes(V3),
            V2: lambda h: self.processes(V2),
            "_nvmlGetFunctionPointer": self.function_pointer,
        }
        for name, value in members.items():
            setattr(module, name, value)
        return module

    def count(self, name: str) -> int:
        return self.calls.get(name, 0)

    def enter(self, name: str) -> None:
        self.calls[name] = self.count(name) + 1
        code = self.errors.get(name, self.errors.get("*"))
        if code is not None and name != "nvmlShutdown":
            raise FakeNVMLError(code)
        if name in self.missing:
            raise FakeNVMLError(FUNCTION_NOT_FOUND)
        if name not in ("nvmlInit", "nvmlShutdown") and self.live <= 0:
            raise FakeNVMLError(1)

    def init(self) -> None:
        self.enter("nvmlInit")
        self.live += 1

    def shutdown(self) -> None:
        self.enter("nvmlShutdown")
        self.live -= 1

    def device_count(self) -> int:
        self.enter("nvmlDeviceGetCount_v2")
        return 1

    def device_name(self, handle: object) -> object:
        self.enter("nvmlDeviceGetName")
        return self.name

    def driver_version(self) -> object:
        self.enter("nvmlSystemGetDriverVersion")
        return self.driver

    def handle(self, index: int) -> object:
        self.enter("nvmlDeviceGetHandleByIndex_v2")
        if index != 0:
            raise FakeNVMLError(2)
        return ("handle", index)

    def memory(self, handle: object, version: int | None = None) -> types.SimpleNamespace:
        if version is None:
            self.enter("nvmlDeviceGetMemoryInfo")
            return types.SimpleNamespace(
                total=self.total, free=self.total - self.used, used=self.used
            )
        assert version == 0x02000028
        self.enter("nvmlDeviceGetMemoryInfo_v2")
        return types.SimpleNamespace(reserved=self.reserved)

    def processes(self, name: str) -> list[Row]:
        self.enter(name)
        if self.insufficient:
            self.insufficient -= 1
            raise FakeNVMLError(INSUFFICIENT_SIZE)
        return list(self.rows)

    def function_pointer(self, name: str) -> Callable[..., int]:
        # pynvml's symbol lookup: raises FunctionNotFound for a missing symbol.
        assert name == V1
        if V1 in self.missing:
            raise FakeNVMLError(FUNCTION_NOT_FOUND)

        def v1(handle: object, count_ref: Any, infos: Any) -> int:
            self.enter(V1)
            count = count_ref._obj  # the c_uint behind ctypes.byref
            if count.value < len(self.rows) or (self.rows and infos is None):
                count.value = len(self.rows)
                return INSUFFICIENT_SIZE
            for slot, row in zip(infos or [], self.rows, strict=False):
                slot.pid = row.pid
                slot.usedGpuMemory = SENTINEL if row.usedGpuMemory is None else row.usedGpuMemory
            count.value = len(self.rows)
            return 0

        return v1


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePynvml]:
    state = FakePynvml()
    monkeypatch.delenv("HYPOMNESIS_NVML_LIBRARY", raising=False)
    monkeypatch.delenv("HYPOMNESIS_DEBUG", raising=False)
    _platform.refresh_debug()
    monkeypatch.setitem(sys.modules, "pynvml", state.module())
    nvml._reset_for_tests()
    yield state
    nvml._reset_for_tests()


PUBLIC: dict[str, Callable[[], object]] = {
    "device_count": nvml.device_count,
    "device_query": lambda: nvml.device_query(0),
    "process_used_bytes": lambda: nvml.process_used_bytes(0, os.getpid()),
    "list_processes": lambda: nvml.list_processes(0),
    "self_reader": lambda: nvml.self_reader(0),
}


def failure(call: Callable[[], object]) -> BackendFailure:
    with pytest.raises(BackendFailure) as info:
        call()
    assert info.value.backend == "NVML"
    return info.value


@pytest.mark.parametrize("call", PUBLIC.values(), ids=PUBLIC.keys())
def test_missing_nvidia_ml_py(monkeypatch: pytest.MonkeyPatch, call: Callable[[], object]) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    nvml._reset_for_tests()
    assert failure(call).reason == "nvidia-ml-py not installed"


@pytest.mark.parametrize("call", PUBLIC.values(), ids=PUBLIC.keys())
@pytest.mark.parametrize("code", [DRIVER_NOT_LOADED, NO_PERMISSION, GPU_IS_LOST, NOT_SUPPORTED])
def test_every_call_failing_degrades_with_reason(
    fake: FakePynvml, code: int, call: Callable[[], object]
) -> None:
    fake.errors["*"] = code
    assert failure(call).reason == NAMES[code]


REQUIRED = {
    "nvmlDeviceGetHandleByIndex_v2": [
        "device_query",
        "process_used_bytes",
        "list_processes",
        "self_reader",
    ],
    "nvmlDeviceGetMemoryInfo": [
        "device_query",
        "process_used_bytes",
        "list_processes",
        "self_reader",
    ],
    V3: ["process_used_bytes", "list_processes", "self_reader"],
    "nvmlDeviceGetCount_v2": ["device_count"],
    "nvmlInit": list(PUBLIC),
}


@pytest.mark.parametrize(
    ("function", "public"),
    [(f, p) for f, publics in REQUIRED.items() for p in publics],
)
@pytest.mark.parametrize("code", [DRIVER_NOT_LOADED, NO_PERMISSION, GPU_IS_LOST, NOT_SUPPORTED])
def test_each_required_call_failing_degrades(
    fake: FakePynvml, function: str, public: str, code: int
) -> None:
    fake.errors[function] = code
    assert failure(PUBLIC[public]).reason == NAMES[code]


def test_library_not_found_reason(fake: FakePynvml) -> None:
    fake.errors["nvmlInit"] = 12
    assert failure(nvml.device_count).reason == "NVML Shared Library Not Found"


@pytest.mark.parametrize(
    "function", ["nvmlDeviceGetName", "nvmlDeviceGetMemoryInfo_v2", "nvmlSystemGetDriverVersion"]
)
@pytest.mark.parametrize("code", [NO_PERMISSION, NOT_SUPPORTED, FUNCTION_NOT_FOUND, GPU_IS_LOST])
def test_best_effort_fields_become_none(fake: FakePynvml, function: str, code: int) -> None:
    fake.errors[function] = code
    reading = nvml.device_query(0)
    assert reading.total_bytes == TOTAL
    assert reading.used_bytes == 2 * GIB
    assert reading.free_bytes == TOTAL - 2 * GIB
    fields = {
        "nvmlDeviceGetName": reading.name,
        "nvmlDeviceGetMemoryInfo_v2": reading.reserved_bytes,
        "nvmlSystemGetDriverVersion": reading.driver_version,
    }
    assert fields.pop(function) is None
    assert None not in fields.values()


def test_device_query_fields(fake: FakePynvml) -> None:
    reading = nvml.device_query(0)
    assert reading.name == "NVIDIA Fake GPU"
    assert reading.reserved_bytes == 256 * 1024**2
    assert reading.driver_version == "555.42.06"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", None),
        (b"", None),
        ("NVIDIA A100\0garbage", "NVIDIA A100"),
        (b"NVIDIA \xff GPU", "NVIDIA \ufffd GPU"),
    ],
)
def test_strings_nul_trimmed_lossy_empty_none(
    fake: FakePynvml, raw: object, expected: str | None
) -> None:
    fake.name = raw
    fake.driver = raw
    reading = nvml.device_query(0)
    assert reading.name == expected
    assert reading.driver_version == expected


def test_strict_decode_error_from_pynvml_is_decoded_lossily(
    fake: FakePynvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    def strict(handle: object) -> str:
        return b"Tesla \xfe".decode()  # what pynvml's convertStrBytes does to bad bytes

    monkeypatch.setattr(sys.modules["pynvml"], "nvmlDeviceGetName", strict)
    assert nvml.device_query(0).name == "Tesla \ufffd"


def test_device_count(fake: FakePynvml) -> None:
    assert nvml.device_count() == 1


def test_listing_filters_and_sorts(fake: FakePynvml) -> None:
    fake.rows = [
        Row(30, 5),
        Row(10, None),  # pynvml's form of the 2^64-1 sentinel
        Row(11, SENTINEL),  # the raw form, should a pynvml not convert it
        Row(12, TOTAL + 1),
        Row(13, TOTAL),  # == total is kept
        Row(2, 0),
        Row(30, 7),  # MIG: one row per instance, kept as the crate keeps them
    ]
    assert nvml.list_processes(0) == [(2, 0), (13, TOTAL), (30, 5), (30, 7)]


def test_listing_empty_is_a_valid_answer(fake: FakePynvml) -> None:
    assert nvml.list_processes(0) == []


def test_listing_past_64_processes(fake: FakePynvml) -> None:
    fake.rows = [Row(pid, pid * 1024) for pid in range(1000, 1100)]
    rows = nvml.list_processes(0)
    assert len(rows) == 100
    assert rows[-1] == (1099, 1099 * 1024)


def test_listing_retries_a_table_that_grew_between_calls(fake: FakePynvml) -> None:
    fake.rows = [Row(pid, 1) for pid in range(1, 200)]
    fake.insufficient = 2
    assert len(nvml.list_processes(0)) == 199
    assert fake.count(V3) == 3


def test_listing_that_never_fits_fails_instead_of_truncating(fake: FakePynvml) -> None:
    fake.rows = [Row(1, 1)]
    fake.insufficient = 100
    assert failure(lambda: nvml.list_processes(0)).reason == "Insufficient Size"


@pytest.mark.parametrize(
    ("rows", "reason_part"),
    [
        ([Row(1, 5)], "has no compute context"),
        ([Row(-1, None)], "not available"),
        ([Row(-1, SENTINEL)], "not available"),
        ([Row(-1, TOTAL + 1)], "exceeds device total"),
    ],
)
def test_own_pid_rejections(fake: FakePynvml, rows: list[Row], reason_part: str) -> None:
    fake.rows = [Row(os.getpid() if r.pid == -1 else r.pid, r.usedGpuMemory) for r in rows]
    assert reason_part in failure(lambda: nvml.process_used_bytes(0, os.getpid())).reason


def test_own_pid_first_row_and_total_kept(fake: FakePynvml) -> None:
    fake.rows = [Row(7, 1), Row(4242, TOTAL), Row(4242, 3)]
    assert nvml.process_used_bytes(0, 4242) == TOTAL
    assert nvml.process_used_bytes(0, 7) == 1


def test_process_query_falls_back_v3_to_v2(fake: FakePynvml) -> None:
    fake.missing = {V3}
    fake.rows = [Row(5, 50)]
    assert nvml.list_processes(0) == [(5, 50)]
    assert nvml.list_processes(0) == [(5, 50)]
    assert fake.count(V3) == 1  # a missing symbol is remembered, not probed every call
    assert fake.count(V2) == 2


def test_process_query_falls_back_to_v1(fake: FakePynvml) -> None:
    fake.missing = {V3, V2}
    fake.rows = [Row(9, 90), Row(5, 50), Row(6, None)]
    assert nvml.list_processes(0) == [(5, 50), (9, 90)]
    assert nvml.process_used_bytes(0, 9) == 90
    assert fake.count(V1) == 4  # size probe + fetch, twice


def test_process_query_all_versions_missing(fake: FakePynvml) -> None:
    fake.missing = {V3, V2, V1}
    assert failure(lambda: nvml.list_processes(0)).reason == "Function Not Found"


def test_v1_with_no_processes(fake: FakePynvml) -> None:
    fake.missing = {V3, V2}
    assert nvml.list_processes(0) == []


def test_pynvml_without_versioned_wrapper_falls_back(
    fake: FakePynvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(sys.modules["pynvml"], V3)
    fake.rows = [Row(5, 50)]
    assert nvml.list_processes(0) == [(5, 50)]
    assert fake.count(V2) == 1


def test_initialises_once_across_many_queries(fake: FakePynvml) -> None:
    fake.rows = [Row(os.getpid(), 10)]
    reader = nvml.self_reader(0)
    for _ in range(20):
        nvml.device_count()
        nvml.device_query(0)
        nvml.list_processes(0)
        nvml.process_used_bytes(0, os.getpid())
        reader()
    assert fake.count("nvmlInit") == 1
    assert fake.count("nvmlShutdown") == 0


def test_initialises_once_across_threads(fake: FakePynvml) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                nvml.device_query(0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert fake.count("nvmlInit") == 1


def test_failed_init_is_remembered_briefly_then_retried(
    fake: FakePynvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(nvml, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    fake.errors["nvmlInit"] = DRIVER_NOT_LOADED
    failure(nvml.device_count)
    # A GPU-less machine must not pay a library load + init on every call.
    assert failure(nvml.device_count).reason == NAMES[DRIVER_NOT_LOADED]
    assert fake.count("nvmlInit") == 1
    del fake.errors["nvmlInit"]
    clock[0] += nvml._INIT_RETRY_S + 0.1
    assert nvml.device_count() == 1
    assert nvml.device_count() == 1
    assert fake.count("nvmlInit") == 2


@pytest.mark.parametrize("code", [GPU_IS_LOST, DRIVER_NOT_LOADED, 1, UNKNOWN, 16])
def test_driver_level_error_reinitialises_next_call(fake: FakePynvml, code: int) -> None:
    nvml.device_query(0)
    fake.errors["nvmlDeviceGetMemoryInfo"] = code
    assert failure(lambda: nvml.device_query(0)).reason == NAMES[code]
    del fake.errors["nvmlDeviceGetMemoryInfo"]
    assert nvml.device_query(0).total_bytes == TOTAL
    assert (fake.count("nvmlShutdown"), fake.count("nvmlInit")) == (1, 2)
    nvml.device_query(0)
    assert fake.count("nvmlInit") == 2


@pytest.mark.parametrize("code", [NO_PERMISSION, NOT_SUPPORTED])
def test_ordinary_error_keeps_the_session(fake: FakePynvml, code: int) -> None:
    fake.errors[V3] = code
    failure(lambda: nvml.list_processes(0))
    del fake.errors[V3]
    nvml.list_processes(0)
    assert (fake.count("nvmlShutdown"), fake.count("nvmlInit")) == (0, 1)


def test_best_effort_gpu_lost_also_reinitialises(fake: FakePynvml) -> None:
    fake.errors["nvmlDeviceGetName"] = GPU_IS_LOST
    assert nvml.device_query(0).name is None
    del fake.errors["nvmlDeviceGetName"]
    assert nvml.device_query(0).name == "NVIDIA Fake GPU"
    assert fake.count("nvmlInit") == 2


def test_pid_change_reinitialises_without_shutting_the_parent_down(
    fake: FakePynvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvml.device_count()
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 100_000)
    nvml.device_count()
    assert (fake.count("nvmlInit"), fake.count("nvmlShutdown")) == (2, 0)


def test_after_fork_hook_drops_state_and_lock(fake: FakePynvml) -> None:
    nvml.device_count()
    old_lock = nvml._lock
    old_lock.acquire()  # as if a sampler thread held it while the parent forked
    try:
        nvml._after_fork_in_child()
        assert nvml._lock is not old_lock
        assert nvml.device_count() == 1
    finally:
        old_lock.release()
    assert fake.count("nvmlInit") == 2


def test_atexit_shutdown_balances_init(fake: FakePynvml) -> None:
    nvml.device_count()
    assert nvml._atexit_registered
    nvml._shutdown_at_exit()
    assert fake.live == 0
    nvml.device_count()
    assert fake.count("nvmlInit") == 2


def test_reset_for_tests_shuts_down(fake: FakePynvml) -> None:
    nvml.device_count()
    nvml._reset_for_tests()
    assert fake.live == 0


def test_another_pynvml_module_is_not_served_a_stale_session(
    fake: FakePynvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvml.device_count()
    other = FakePynvml()
    monkeypatch.setitem(sys.modules, "pynvml", other.module())
    assert nvml.device_count() == 1
    assert other.count("nvmlInit") == 1


def test_self_reader_reads_own_row_and_device_used(fake: FakePynvml) -> None:
    fake.rows = [Row(1, 5), Row(os.getpid(), 300)]
    reader = nvml.self_reader(0)
    assert reader() == VramReading(300, 2 * GIB, GpuQuerySource.NVML)
    fake.rows = [Row(os.getpid(), 900)]
    fake.used = 3 * GIB
    assert reader() == VramReading(900, 3 * GIB, GpuQuerySource.NVML)  # fresh every call


def test_self_reader_absent_from_listing_is_zero(fake: FakePynvml) -> None:
    fake.rows = [Row(1, 5)]
    assert nvml.self_reader(0)() == VramReading(0, 2 * GIB, GpuQuerySource.NVML)


@pytest.mark.parametrize("used", [None, SENTINEL, TOTAL + 1])
def test_self_reader_unusable_own_row(fake: FakePynvml, used: int | None) -> None:
    fake.rows = [Row(os.getpid(), used)]
    assert nvml.self_reader(0)() == VramReading(None, 2 * GIB, GpuQuerySource.NVML)


def test_self_reader_listing_failure_keeps_device_figure(fake: FakePynvml) -> None:
    reader = nvml.self_reader(0)
    fake.errors[V3] = NO_PERMISSION
    assert reader() == VramReading(None, 2 * GIB, GpuQuerySource.NVML)


@pytest.mark.parametrize("code", [GPU_IS_LOST, NO_PERMISSION, DRIVER_NOT_LOADED])
def test_self_reader_failed_read_is_all_none(fake: FakePynvml, code: int) -> None:
    reader = nvml.self_reader(0)
    fake.errors["*"] = code
    assert reader() == VramReading(None, None, None)


def test_self_reader_keeps_its_handle_until_reinit(fake: FakePynvml) -> None:
    fake.rows = [Row(os.getpid(), 1)]
    reader = nvml.self_reader(0)
    for _ in range(10):
        reader()
    assert fake.count("nvmlDeviceGetHandleByIndex_v2") == 1
    fake.errors["nvmlDeviceGetMemoryInfo"] = GPU_IS_LOST
    assert reader() == VramReading(None, None, None)
    del fake.errors["nvmlDeviceGetMemoryInfo"]
    assert reader() == VramReading(1, 2 * GIB, GpuQuerySource.NVML)
    assert fake.count("nvmlDeviceGetHandleByIndex_v2") == 2
    assert fake.count("nvmlInit") == 2


def test_self_reader_unreadable_listing_fails_at_creation(fake: FakePynvml) -> None:
    fake.errors[V3] = NOT_SUPPORTED
    assert failure(lambda: nvml.self_reader(0)).reason == "Not Supported"


def test_library_env_var_bad_path(
    fake: FakePynvml, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    missing = tmp_path / "libnvidia-ml.so.1"
    monkeypatch.setenv("HYPOMNESIS_NVML_LIBRARY", str(missing))
    reason = failure(nvml.device_count).reason
    assert reason.startswith("NVML Shared Library Not Found")
    assert str(missing) in reason


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="loads libc.so.6 as a stand-in")
def test_library_env_var_replaces_pynvml_library(
    fake: FakePynvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = sys.modules["pynvml"]
    cache = {"nvmlInit": object()}
    monkeypatch.setattr(module, "nvmlLib", None, raising=False)
    monkeypatch.setattr(module, "_nvmlGetFunctionPointer_cache", cache, raising=False)
    monkeypatch.setenv("HYPOMNESIS_NVML_LIBRARY", "libc.so.6")
    assert nvml.device_count() == 1
    assert isinstance(module.nvmlLib, ctypes.CDLL)
    assert cache == {}  # pointers into the old library must not survive
    nvml._reset_for_tests()
    assert module.nvmlLib is None


def test_debug_prints_raw_values(
    fake: FakePynvml, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYPOMNESIS_DEBUG", "1")
    _platform.refresh_debug()
    fake.rows = [Row(5, SENTINEL)]
    nvml.device_query(0)
    nvml.list_processes(0)
    err = capsys.readouterr().err
    assert f"[NVML debug] device 0: total={TOTAL} free={TOTAL - 2 * GIB} used={2 * GIB}" in err
    assert "dropped 1 sentinel/>total row(s)" in err


def test_debug_silent_by_default(fake: FakePynvml, capsys: pytest.CaptureFixture[str]) -> None:
    nvml.device_query(0)
    assert capsys.readouterr().err == ""


def test_importing_the_package_does_not_import_pynvml() -> None:
    code = "import sys, pytest_hypomnesis; print('pynvml' in sys.modules, 'ctypes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "False"


def test_missing_library_fails_before_importing_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    monkeypatch.delenv("HYPOMNESIS_NVML_LIBRARY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    loads: list[str] = []

    def no_library(name: str, *args: object, **kwargs: object) -> object:
        loads.append(name)
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_library)
    nvml._reset_for_tests()
    with pytest.raises(BackendFailure) as info:
        nvml.device_count()
    assert info.value.reason == "NVML Shared Library Not Found"
    assert "pynvml" not in sys.modules  # the ~25 ms import was skipped
    with pytest.raises(BackendFailure):
        nvml.device_count()
    assert loads == ["libnvidia-ml.so.1"]  # remembered briefly, not retried per call
    nvml._reset_for_tests()


@pytest.mark.parametrize("installed", [True, False], ids=["library-missing", "not-installed"])
def test_remembered_missing_nvml_skips_the_sys_path_scan(
    monkeypatch: pytest.MonkeyPatch, installed: bool
) -> None:
    # A GPU-less Snapshot.now() asks NVML twice per call; each find_spec("pynvml") walks
    # every sys.path entry, which made it several times its RSS floor.
    import ctypes
    import importlib.util

    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    monkeypatch.delenv("HYPOMNESIS_NVML_LIBRARY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    scans: list[str] = []

    def find_spec(name: str, *args: object) -> object:
        scans.append(name)
        return object() if installed else None

    def no_library(name: str, *args: object, **kwargs: object) -> object:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(ctypes, "CDLL", no_library)
    nvml._reset_for_tests()
    reasons = {failure(nvml.device_count).reason for _ in range(5)}
    assert reasons == {
        "NVML Shared Library Not Found" if installed else "nvidia-ml-py not installed"
    }
    assert scans == ["pynvml"]
    nvml._reset_for_tests()
