"""A fake ``pynvml`` module for the NVML backend's tests: calls, return codes, process
tables and failures as nvidia-ml-py has them; fixture ``fake_pynvml`` installs it."""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_hypomnesis import _platform
from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis.probe import nvml
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
def fake_pynvml(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePynvml]:
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
