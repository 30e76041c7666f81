"""A scripted machine for the probe chain's tests: a platform plus an answer or a failure
per backend call; fixture ``chain_machine``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

import pytest_hypomnesis as hmn
from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis.probe import chain, dxgi, metal, nvml, pdh, smi
from pytest_hypomnesis.probe.readings import NvmlDeviceReading
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
            "non_nvidia_readings",
        ),
    ),
    "pdh": (pdh, "PDH", ("list_processes",)),
    "metal": (
        metal,
        "Metal",
        ("is_apple_silicon", "device_info", "process_footprint", "list_processes"),
    ),
    "rss": (chain, "RSS", ("process_rss",)),
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
def chain_machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
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
