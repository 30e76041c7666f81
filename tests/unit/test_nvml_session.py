"""The NVML backend's session against a fake ``pynvml``: init, re-init, fork, the
sampler's reader, the library path, debug output."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
import types
from typing import Any

import pytest

from pytest_hypomnesis import _platform
from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis.model import GpuQuerySource
from pytest_hypomnesis.probe import nvml
from pytest_hypomnesis.probe.readings import VramReading
from tests.helpers.fakepynvml import (
    DRIVER_NOT_LOADED,
    GPU_IS_LOST,
    NAMES,
    NO_PERMISSION,
    NOT_SUPPORTED,
    SENTINEL,
    TOTAL,
    UNKNOWN,
    V3,
    FakePynvml,
    Row,
    failure,
)
from tests.helpers.units import GIB


def test_initialises_once_across_many_queries(fake_pynvml: FakePynvml) -> None:
    fake_pynvml.rows = [Row(os.getpid(), 10)]
    reader = nvml.self_reader(0)
    for _ in range(20):
        nvml.device_count()
        nvml.device_query(0)
        nvml.list_processes(0)
        nvml.process_used_bytes(0, os.getpid())
        reader()
    assert fake_pynvml.count("nvmlInit") == 1
    assert fake_pynvml.count("nvmlShutdown") == 0


def test_initialises_once_across_threads(fake_pynvml: FakePynvml) -> None:
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
    assert fake_pynvml.count("nvmlInit") == 1


def test_failed_init_is_remembered_briefly_then_retried(
    fake_pynvml: FakePynvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(nvml, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    fake_pynvml.errors["nvmlInit"] = DRIVER_NOT_LOADED
    failure(nvml.device_count)
    # A GPU-less machine must not pay a library load + init on every call.
    assert failure(nvml.device_count).reason == NAMES[DRIVER_NOT_LOADED]
    assert fake_pynvml.count("nvmlInit") == 1
    del fake_pynvml.errors["nvmlInit"]
    clock[0] += nvml._INIT_RETRY_S + 0.1
    assert nvml.device_count() == 1
    assert nvml.device_count() == 1
    assert fake_pynvml.count("nvmlInit") == 2


@pytest.mark.parametrize("code", [GPU_IS_LOST, DRIVER_NOT_LOADED, 1, UNKNOWN, 16])
def test_driver_level_error_reinitialises_next_call(fake_pynvml: FakePynvml, code: int) -> None:
    nvml.device_query(0)
    fake_pynvml.errors["nvmlDeviceGetMemoryInfo"] = code
    assert failure(lambda: nvml.device_query(0)).reason == NAMES[code]
    del fake_pynvml.errors["nvmlDeviceGetMemoryInfo"]
    assert nvml.device_query(0).total_bytes == TOTAL
    assert (fake_pynvml.count("nvmlShutdown"), fake_pynvml.count("nvmlInit")) == (1, 2)
    nvml.device_query(0)
    assert fake_pynvml.count("nvmlInit") == 2


@pytest.mark.parametrize("code", [NO_PERMISSION, NOT_SUPPORTED])
def test_ordinary_error_keeps_the_session(fake_pynvml: FakePynvml, code: int) -> None:
    fake_pynvml.errors[V3] = code
    failure(lambda: nvml.list_processes(0))
    del fake_pynvml.errors[V3]
    nvml.list_processes(0)
    assert (fake_pynvml.count("nvmlShutdown"), fake_pynvml.count("nvmlInit")) == (0, 1)


def test_best_effort_gpu_lost_also_reinitialises(fake_pynvml: FakePynvml) -> None:
    fake_pynvml.errors["nvmlDeviceGetName"] = GPU_IS_LOST
    assert nvml.device_query(0).name is None
    del fake_pynvml.errors["nvmlDeviceGetName"]
    assert nvml.device_query(0).name == "NVIDIA Fake GPU"
    assert fake_pynvml.count("nvmlInit") == 2


def test_pid_change_reinitialises_without_shutting_the_parent_down(
    fake_pynvml: FakePynvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvml.device_count()
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 100_000)
    nvml.device_count()
    assert (fake_pynvml.count("nvmlInit"), fake_pynvml.count("nvmlShutdown")) == (2, 0)


def test_after_fork_hook_drops_state_and_lock(fake_pynvml: FakePynvml) -> None:
    nvml.device_count()
    old_lock = nvml._lock
    old_lock.acquire()  # as if a sampler thread held it while the parent forked
    try:
        nvml._after_fork_in_child()
        assert nvml._lock is not old_lock
        assert nvml.device_count() == 1
    finally:
        old_lock.release()
    assert fake_pynvml.count("nvmlInit") == 2


def test_atexit_shutdown_balances_init(fake_pynvml: FakePynvml) -> None:
    nvml.device_count()
    assert nvml._atexit_registered
    nvml._shutdown_at_exit()
    assert fake_pynvml.live == 0
    nvml.device_count()
    assert fake_pynvml.count("nvmlInit") == 2


def test_reset_for_tests_shuts_down(fake_pynvml: FakePynvml) -> None:
    nvml.device_count()
    nvml._reset_for_tests()
    assert fake_pynvml.live == 0


def test_another_pynvml_module_is_not_served_a_stale_session(
    fake_pynvml: FakePynvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvml.device_count()
    other = FakePynvml()
    monkeypatch.setitem(sys.modules, "pynvml", other.module())
    assert nvml.device_count() == 1
    assert other.count("nvmlInit") == 1


def test_self_reader_reads_own_row_and_device_used(fake_pynvml: FakePynvml) -> None:
    fake_pynvml.rows = [Row(1, 5), Row(os.getpid(), 300)]
    reader = nvml.self_reader(0)
    assert reader() == VramReading(300, 2 * GIB, GpuQuerySource.NVML)
    fake_pynvml.rows = [Row(os.getpid(), 900)]
    fake_pynvml.used = 3 * GIB
    assert reader() == VramReading(900, 3 * GIB, GpuQuerySource.NVML)  # fresh every call


def test_self_reader_absent_from_listing_is_zero(fake_pynvml: FakePynvml) -> None:
    fake_pynvml.rows = [Row(1, 5)]
    assert nvml.self_reader(0)() == VramReading(0, 2 * GIB, GpuQuerySource.NVML)


@pytest.mark.parametrize("used", [None, SENTINEL, TOTAL + 1])
def test_self_reader_unusable_own_row(fake_pynvml: FakePynvml, used: int | None) -> None:
    fake_pynvml.rows = [Row(os.getpid(), used)]
    assert nvml.self_reader(0)() == VramReading(None, 2 * GIB, GpuQuerySource.NVML)


def test_self_reader_listing_failure_keeps_device_figure(fake_pynvml: FakePynvml) -> None:
    reader = nvml.self_reader(0)
    fake_pynvml.errors[V3] = NO_PERMISSION
    assert reader() == VramReading(None, 2 * GIB, GpuQuerySource.NVML)


@pytest.mark.parametrize("code", [GPU_IS_LOST, NO_PERMISSION, DRIVER_NOT_LOADED])
def test_self_reader_failed_read_is_all_none(fake_pynvml: FakePynvml, code: int) -> None:
    reader = nvml.self_reader(0)
    fake_pynvml.errors["*"] = code
    assert reader() == VramReading(None, None, None)


def test_self_reader_keeps_its_handle_until_reinit(fake_pynvml: FakePynvml) -> None:
    fake_pynvml.rows = [Row(os.getpid(), 1)]
    reader = nvml.self_reader(0)
    for _ in range(10):
        reader()
    assert fake_pynvml.count("nvmlDeviceGetHandleByIndex_v2") == 1
    fake_pynvml.errors["nvmlDeviceGetMemoryInfo"] = GPU_IS_LOST
    assert reader() == VramReading(None, None, None)
    del fake_pynvml.errors["nvmlDeviceGetMemoryInfo"]
    assert reader() == VramReading(1, 2 * GIB, GpuQuerySource.NVML)
    assert fake_pynvml.count("nvmlDeviceGetHandleByIndex_v2") == 2
    assert fake_pynvml.count("nvmlInit") == 2


def test_self_reader_unreadable_listing_fails_at_creation(fake_pynvml: FakePynvml) -> None:
    fake_pynvml.errors[V3] = NOT_SUPPORTED
    assert failure(lambda: nvml.self_reader(0)).reason == "Not Supported"


def test_library_env_var_bad_path(
    fake_pynvml: FakePynvml, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    missing = tmp_path / "libnvidia-ml.so.1"
    monkeypatch.setenv("HYPOMNESIS_NVML_LIBRARY", str(missing))
    reason = failure(nvml.device_count).reason
    assert reason.startswith("NVML Shared Library Not Found")
    assert str(missing) in reason


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="loads libc.so.6 as a stand-in")
def test_library_env_var_replaces_pynvml_library(
    fake_pynvml: FakePynvml, monkeypatch: pytest.MonkeyPatch
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
    fake_pynvml: FakePynvml, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYPOMNESIS_DEBUG", "1")
    _platform.refresh_debug()
    fake_pynvml.rows = [Row(5, SENTINEL)]
    nvml.device_query(0)
    nvml.list_processes(0)
    err = capsys.readouterr().err
    assert f"[NVML debug] device 0: total={TOTAL} free={TOTAL - 2 * GIB} used={2 * GIB}" in err
    assert "dropped 1 sentinel/>total row(s)" in err


def test_debug_silent_by_default(
    fake_pynvml: FakePynvml, capsys: pytest.CaptureFixture[str]
) -> None:
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
