"""pytest-hypomnesis: process RAM, device-wide GPU memory and per-process VRAM.

A Python port of the Rust crate *hypomnesis*, a pytest plugin with memory budgets,
and the ``hmn`` CLI. Sizes are integers in bytes; an unknown figure is ``None``.
"""

from __future__ import annotations

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

__version__ = "0.1.0"

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
