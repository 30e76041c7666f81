"""NVML through nvidia-ml-py. CONTRACT STUB: to be implemented (see function docstrings)."""

from __future__ import annotations

from collections.abc import Callable

from pytest_hypomnesis._common import BackendFailure
from pytest_hypomnesis._readings import NvmlDeviceReading, VramReading

__all__ = ["device_count", "device_query", "list_processes", "process_used_bytes", "self_reader"]


def device_count() -> int:
    """nvmlDeviceGetCount_v2. Raises BackendFailure("NVML", reason)."""
    raise BackendFailure("NVML", "not implemented")


def device_query(index: int) -> NvmlDeviceReading:
    """Device-wide figures for ``index`` (mem v1, name, v2 reserved, driver)."""
    raise BackendFailure("NVML", "not implemented")


def process_used_bytes(index: int, pid: int) -> int:
    """``pid``'s row from the running-process queries; raises when absent/sentinel/>total."""
    raise BackendFailure("NVML", "not implemented")


def list_processes(index: int) -> list[tuple[int, int]]:
    """(pid, used_bytes) rows, filtered (2^64-1, > total), sorted by pid."""
    raise BackendFailure("NVML", "not implemented")


def self_reader(index: int) -> Callable[[], VramReading]:
    """A cheap repeated reader of this process's VRAM on ``index`` (0 when absent from a
    successful listing), through a kept handle."""
    raise BackendFailure("NVML", "not implemented")
