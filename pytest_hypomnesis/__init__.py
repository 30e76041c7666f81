"""pytest-hypomnesis: process RAM, device-wide GPU memory and per-process VRAM.

A Python port of the Rust crate *hypomnesis*, a pytest plugin with memory budgets,
and the ``hmn`` CLI. Sizes are integers in bytes; an unknown figure is ``None``.

The public names load on first use (PEP 562): pytest imports this package for its plugin
in every run, measured or not, and a test run should not pay for what it does not use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> private module that defines it
_EXPORTS: dict[str, str] = {
    "GpuDeviceInfoBuilder": "testing",
    "GpuProcessEntryBuilder": "testing",
    "SpillReportBuilder": "testing",
    "DeviceIndexOutOfRangeError": "_errors",
    "DxgiError": "_errors",
    "HypomnesisError": "_errors",
    "NoGpuSourceError": "_errors",
    "NvidiaSmiError": "_errors",
    "NvmlError": "_errors",
    "PdhError": "_errors",
    "RamError": "_errors",
    "FakeGpu": "testing",
    "MemoryReport": "model",
    "device_count": "probe.chain",
    "device_info": "probe.chain",
    "gpu_processes": "probe.chain",
    "process_gpu_info": "probe.chain",
    "process_rss": "probe.chain",
    "GpuDeviceInfo": "model",
    "GpuProcessEntry": "model",
    "GpuQuerySource": "model",
    "ProcessGpuInfo": "model",
    "Snapshot": "model",
    "SpillEpisode": "model",
    "SpillReport": "model",
    "SizeError": "_units",
    "parse_size": "_units",
    "DEFAULT_DEDICATED_THRESHOLD_PCT": "probe.spill",
    "DEFAULT_SHARED_GROWTH_BYTES": "probe.spill",
    "HypomnesisWarning": "plugin.budgets",
    "MeasuredBlock": "plugin.block",
    "SpillTracker": "probe.spill",
    "is_spill_measurable": "probe.spill",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_hypomnesis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pytest_hypomnesis.{module}"), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # the same table, spelled out for type checkers
    from pytest_hypomnesis._errors import (
        DeviceIndexOutOfRangeError as DeviceIndexOutOfRangeError,
    )
    from pytest_hypomnesis._errors import (
        DxgiError as DxgiError,
    )
    from pytest_hypomnesis._errors import (
        HypomnesisError as HypomnesisError,
    )
    from pytest_hypomnesis._errors import (
        NoGpuSourceError as NoGpuSourceError,
    )
    from pytest_hypomnesis._errors import (
        NvidiaSmiError as NvidiaSmiError,
    )
    from pytest_hypomnesis._errors import (
        NvmlError as NvmlError,
    )
    from pytest_hypomnesis._errors import (
        PdhError as PdhError,
    )
    from pytest_hypomnesis._errors import (
        RamError as RamError,
    )
    from pytest_hypomnesis._units import (
        SizeError as SizeError,
    )
    from pytest_hypomnesis._units import (
        parse_size as parse_size,
    )
    from pytest_hypomnesis.model import (
        GpuDeviceInfo as GpuDeviceInfo,
    )
    from pytest_hypomnesis.model import (
        GpuProcessEntry as GpuProcessEntry,
    )
    from pytest_hypomnesis.model import (
        GpuQuerySource as GpuQuerySource,
    )
    from pytest_hypomnesis.model import (
        MemoryReport as MemoryReport,
    )
    from pytest_hypomnesis.model import (
        ProcessGpuInfo as ProcessGpuInfo,
    )
    from pytest_hypomnesis.model import (
        Snapshot as Snapshot,
    )
    from pytest_hypomnesis.model import (
        SpillEpisode as SpillEpisode,
    )
    from pytest_hypomnesis.model import (
        SpillReport as SpillReport,
    )
    from pytest_hypomnesis.plugin.block import (
        MeasuredBlock as MeasuredBlock,
    )
    from pytest_hypomnesis.plugin.budgets import (
        HypomnesisWarning as HypomnesisWarning,
    )
    from pytest_hypomnesis.probe.chain import (
        device_count as device_count,
    )
    from pytest_hypomnesis.probe.chain import (
        device_info as device_info,
    )
    from pytest_hypomnesis.probe.chain import (
        gpu_processes as gpu_processes,
    )
    from pytest_hypomnesis.probe.chain import (
        process_gpu_info as process_gpu_info,
    )
    from pytest_hypomnesis.probe.chain import (
        process_rss as process_rss,
    )
    from pytest_hypomnesis.probe.spill import (
        DEFAULT_DEDICATED_THRESHOLD_PCT as DEFAULT_DEDICATED_THRESHOLD_PCT,
    )
    from pytest_hypomnesis.probe.spill import (
        DEFAULT_SHARED_GROWTH_BYTES as DEFAULT_SHARED_GROWTH_BYTES,
    )
    from pytest_hypomnesis.probe.spill import (
        SpillTracker as SpillTracker,
    )
    from pytest_hypomnesis.probe.spill import (
        is_spill_measurable as is_spill_measurable,
    )
    from pytest_hypomnesis.testing import (
        FakeGpu as FakeGpu,
    )
    from pytest_hypomnesis.testing import (
        GpuDeviceInfoBuilder as GpuDeviceInfoBuilder,
    )
    from pytest_hypomnesis.testing import (
        GpuProcessEntryBuilder as GpuProcessEntryBuilder,
    )
    from pytest_hypomnesis.testing import (
        SpillReportBuilder as SpillReportBuilder,
    )
