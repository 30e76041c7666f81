"""The error hierarchy. Depends on nothing else in the package."""

from __future__ import annotations

__all__ = [
    "BackendFailure",
    "DeviceIndexOutOfRangeError",
    "DxgiError",
    "HypomnesisError",
    "NoGpuSourceError",
    "NvidiaSmiError",
    "NvmlError",
    "PdhError",
    "RamError",
]


class HypomnesisError(Exception):
    """Base of every error the library raises (the crate's ``HypomnesisError``).

    As in the crate, only an RSS failure, "every GPU backend failed" and a hard
    ``SpillTracker`` failure raise; every other failure is a ``None`` reading.
    """

    __module__ = "pytest_hypomnesis"


class _MessageError(HypomnesisError):
    prefix = ""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.prefix}{self.message}"


class RamError(_MessageError):
    """The process RSS could not be read (``RAM query failed: <msg>``)."""

    prefix = "RAM query failed: "


class NvmlError(_MessageError):
    """Declared for parity with the crate; never raised (NVML failures become ``None``)."""

    prefix = "NVML error: "


class DxgiError(_MessageError):
    """Declared for parity with the crate; never raised."""

    prefix = "DXGI error: "


class PdhError(_MessageError):
    """A hard PDH failure, raised only by ``SpillTracker(...)`` on Windows."""

    prefix = "PDH error: "


class NvidiaSmiError(_MessageError):
    """Declared for parity with the crate; never raised."""

    prefix = "nvidia-smi error: "


class DeviceIndexOutOfRangeError(HypomnesisError):
    """Every backend failed and a device count says the index does not exist.

    ``str()`` keeps the crate's text, un-pluralised "1 devices" included; format
    messages of your own from ``index`` and ``count``.
    """

    def __init__(self, index: int, count: int, reasons: tuple[str, ...] = ()) -> None:
        super().__init__(index, count)
        self.index = index
        self.count = count
        self.reasons = reasons

    def __str__(self) -> str:
        return f"device index {self.index} out of range (have {self.count} devices)"


class NoGpuSourceError(HypomnesisError):
    """No backend answered and no device count can be blamed.

    ``reasons`` holds one line per backend that was tried, e.g.
    ``"NVML: NVML Shared Library Not Found"``.
    """

    def __init__(self, reasons: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.reasons = reasons

    def __str__(self) -> str:
        return (
            "no GPU measurement source available "
            "(NVML, DXGI, PDH, and nvidia-smi all failed or are disabled)"
        )


class BackendFailure(Exception):
    """Internal: a backend could not answer. The probe chain turns it into a reason string.

    Never escapes the public functions.
    """

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"{backend}: {reason}")
        self.backend = backend
        self.reason = reason
