"""pytest-hypomnesis: process RAM, device-wide GPU memory and per-process VRAM.

A Python port of the Rust crate *hypomnesis*, a pytest plugin with memory budgets,
and the ``hmn`` CLI. Sizes are integers in bytes; an unknown figure is ``None``.

The public names load on first use (PEP 562): pytest imports this package for its plugin
in every run, measured or not, and a test run should not pay for what it does not use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> private module that defines it
_EXPORTS: dict[str, str] = {
    "GpuDeviceInfoBuilder": "_builders",
    "GpuProcessEntryBuilder": "_builders",
    "SpillReportBuilder": "_builders",
    "DeviceIndexOutOfRangeError": "_common",
    "DxgiError": "_common",
    "HypomnesisError": "_common",
    "NoGpuSourceError": "_common",
    "NvidiaSmiError": "_common",
    "NvmlError": "_common",
    "PdhError": "_common",
    "RamError": "_common",
    "FakeGpu": "_fake",
    "MemoryReport": "_memreport",
    "device_count": "_probe",
    "device_info": "_probe",
    "gpu_processes": "_probe",
    "process_gpu_info": "_probe",
    "process_rss": "_probe",
    "GpuDeviceInfo": "_records",
    "GpuProcessEntry": "_records",
    "GpuQuerySource": "_records",
    "ProcessGpuInfo": "_records",
    "Snapshot": "_records",
    "SpillEpisode": "_records",
    "SpillReport": "_records",
    "SizeError": "_sizes",
    "parse_size": "_sizes",
    "DEFAULT_DEDICATED_THRESHOLD_PCT": "_spill",
    "DEFAULT_SHARED_GROWTH_BYTES": "_spill",
    "SpillTracker": "_spill",
    "is_spill_measurable": "_spill",
}

__all__ = [
    "DEFAULT_DEDICATED_THRESHOLD_PCT",
    "DEFAULT_SHARED_GROWTH_BYTES",
    "DeviceIndexOutOfRangeError",
    "DxgiError",
    "FakeGpu",
    "GpuDeviceInfo",
    "GpuDeviceInfoBuilder",
    "GpuProcessEntry",
    "GpuProcessEntryBuilder",
    "GpuQuerySource",
    "HypomnesisError",
    "MemoryReport",
    "NoGpuSourceError",
    "NvidiaSmiError",
    "NvmlError",
    "PdhError",
    "ProcessGpuInfo",
    "RamError",
    "SizeError",
    "Snapshot",
    "SpillEpisode",
    "SpillReport",
    "SpillReportBuilder",
    "SpillTracker",
    "__version__",
    "device_count",
    "device_info",
    "gpu_processes",
    "is_spill_measurable",
    "parse_size",
    "process_gpu_info",
    "process_rss",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_hypomnesis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pytest_hypomnesis.{module}"), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from pytest_hypomnesis._builders import (
        GpuDeviceInfoBuilder,
        GpuProcessEntryBuilder,
        SpillReportBuilder,
    )
    from pytest_hypomnesis._common import (
        DeviceIndexOutOfRangeError,
        DxgiError,
        HypomnesisError,
        NoGpuSourceError,
        NvidiaSmiError,
        NvmlError,
        PdhError,
        RamError,
    )
    from pytest_hypomnesis._fake import FakeGpu
    from pytest_hypomnesis._memreport import MemoryReport
    from pytest_hypomnesis._probe import (
        device_count,
        device_info,
        gpu_processes,
        process_gpu_info,
        process_rss,
    )
    from pytest_hypomnesis._records import (
        GpuDeviceInfo,
        GpuProcessEntry,
        GpuQuerySource,
        ProcessGpuInfo,
        Snapshot,
        SpillEpisode,
        SpillReport,
    )
    from pytest_hypomnesis._sizes import SizeError, parse_size
    from pytest_hypomnesis._spill import (
        DEFAULT_DEDICATED_THRESHOLD_PCT,
        DEFAULT_SHARED_GROWTH_BYTES,
        SpillTracker,
        is_spill_measurable,
    )
