"""nvidia-smi subprocess. CONTRACT STUB: to be implemented."""

from __future__ import annotations

from pytest_hypomnesis._common import BackendFailure
from pytest_hypomnesis._readings import SmiDeviceReading

__all__ = ["device_query", "list_processes"]


def device_query(index: int) -> SmiDeviceReading:
    raise BackendFailure("nvidia-smi", "not implemented")


def list_processes(index: int) -> list[tuple[int, str | None, int]]:
    raise BackendFailure("nvidia-smi", "not implemented")
