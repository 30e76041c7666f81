"""The public records a GPU reading is answered in (the probe builds them), as frozen,
keyword-only dataclasses with plain-JSON round trips. ``model`` re-exports them beside
``Snapshot`` and ``MemoryReport``; this module sits below ``probe`` and imports nothing of it.

Sizes are integers in bytes; a figure that is not known is ``None``.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pytest_hypomnesis import _format

if TYPE_CHECKING:
    from _typeshed import DataclassInstance
    from typing_extensions import Self

__all__ = [
    "GpuDeviceInfo",
    "GpuProcessEntry",
    "GpuQuerySource",
    "ProcessGpuInfo",
    "SpillEpisode",
    "SpillReport",
]


class GpuQuerySource(enum.Enum):
    """Which backend produced a GPU reading. Callers should tolerate members added later."""

    DXGI = "dxgi"
    """Windows ``IDXGIAdapter3::QueryVideoMemoryInfo``: the calling process only."""
    NVML = "nvml"
    """NVML per-process query; listing rows are compute-only (processes with a CUDA context)."""
    PDH = "pdh"
    """Windows ``\\GPU Process Memory(*)`` counters: every GPU-memory holder, dedicated commit."""
    NVIDIA_SMI = "nvidia_smi"
    """``nvidia-smi`` subprocess: device-wide in ``ProcessGpuInfo``, per process in listings."""
    METAL = "metal"
    """macOS kernel ledger ``graphics_footprint`` (resident bytes)."""


T = TypeVar("T")
R = TypeVar("R", bound="DataclassInstance")


def _req(data: object, key: str, kind: type[T], what: str) -> T:
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected an object, got {type(data).__name__}")
    if key not in data:
        raise ValueError(f"{what}: missing field {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ValueError(f"{what}: field {key!r} has the wrong type ({value!r})")
    return value


def _opt(data: object, key: str, kind: type[T], what: str) -> T | None:
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected an object, got {type(data).__name__}")
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ValueError(f"{what}: field {key!r} has the wrong type ({value!r})")
    return value


def _source(data: object, what: str) -> GpuQuerySource:
    raw = _req(data, "source", str, what)
    try:
        return GpuQuerySource(raw)
    except ValueError:
        raise ValueError(f"{what}: unknown source {raw!r}") from None


def _as_json(record: DataclassInstance) -> dict[str, object]:
    """A plain record's JSON object: its fields in order, an enum by its value, a nested
    record as its own object (the records whose JSON is more than their fields write it)."""
    out: dict[str, object] = {}
    for f in fields(record):
        value = getattr(record, f.name)
        if isinstance(value, enum.Enum):
            value = value.value
        elif is_dataclass(value) and not isinstance(value, type):
            value = _as_json(value)
        out[f.name] = value
    return out


_SCALARS: dict[str, type] = {"int": int, "str": str, "bool": bool}


def _from_json(cls: type[R], data: object) -> R:
    """``_as_json``'s inverse, checking each field by its annotation (the module's
    annotations are postponed, so a field's ``type`` is its text): ``X | None`` may be
    absent or null, anything else is required; a wrong type is a ``ValueError``."""
    what = cls.__name__
    values: dict[str, object] = {}
    for f in fields(cls):
        annotation = str(f.type)
        optional = annotation.endswith(" | None")
        kind = annotation.removesuffix(" | None")
        if kind == "GpuQuerySource":
            values[f.name] = _source(data, what)
            continue
        nested = _NESTED.get(kind)
        read = _opt if optional else _req
        if nested is None:
            values[f.name] = read(data, f.name, _SCALARS[kind], what)
        else:
            raw = read(data, f.name, dict, what)
            values[f.name] = None if raw is None else _from_json(nested, raw)
    return cast("Callable[..., R]", cls)(**values)


class _FieldsJson:
    """``to_dict``/``from_dict`` of a record whose JSON object is its fields."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        return _as_json(cast("DataclassInstance", self))

    @classmethod
    def from_dict(cls, data: object) -> Self:
        """The record from its ``to_dict()`` object; ``ValueError`` names a bad field."""
        return cast("Self", _from_json(cast("type[DataclassInstance]", cls), data))


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuDeviceInfo(_FieldsJson):
    """Device-wide memory of one GPU, all processes together."""

    index: int
    name: str | None = None
    total_bytes: int = 0
    free_bytes: int = 0
    used_bytes: int = 0
    reserved_bytes: int | None = None
    """NVML v2 ``reserved`` (driver R510+), a subset of ``total_bytes``; else ``None``."""
    driver_version: str | None = None

    def name_or_unknown(self) -> str:
        """The name, or the fixed ``"unknown GPU"``."""
        return self.name if self.name is not None else "unknown GPU"

    def format_free(self) -> str:
        """``"  GPU 0: free 13284 MB / 16384 MB [NVIDIA Test GPU]\\n"`` (MB = MiB, rounded)."""
        return _format.device_line(
            self.index,
            f"free {_format.mb0(self.free_bytes)} MB / {_format.mb0(self.total_bytes)} MB",
            self.name,
        )

    def print_free(self) -> None:
        """Write exactly ``format_free()`` to stdout."""
        sys.stdout.write(self.format_free())

    def format_total(self) -> str:
        """``"  GPU 0: total 16384 MB [NVIDIA Test GPU]\\n"``."""
        return _format.device_line(
            self.index, f"total {_format.mb0(self.total_bytes)} MB", self.name
        )

    def format_used(self) -> str:
        """``"  GPU 0: used 3100 MB [NVIDIA Test GPU]\\n"``."""
        return _format.device_line(self.index, f"used {_format.mb0(self.used_bytes)} MB", self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessGpuInfo(_FieldsJson):
    """GPU memory of one process on one device.

    ``used_bytes`` is the device-wide total when ``is_per_process`` is false
    (the ``nvidia-smi`` fallback).
    """

    used_bytes: int
    is_per_process: bool
    source: GpuQuerySource


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuProcessEntry(_FieldsJson):
    """One row of a device's process listing."""

    pid: int
    name: str | None = None
    used_bytes: int = 0
    shared_used_bytes: int = 0
    """Resident shared-system-memory bytes (WDDM spill signal); 0 except on PDH rows."""
    source: GpuQuerySource = GpuQuerySource.PDH


@dataclass(frozen=True, slots=True, kw_only=True)
class SpillEpisode:
    """One contiguous stretch of spilling observations."""

    start_label: str
    end_label: str | None
    peak_shared_bytes: int
    observations: int
    duration: timedelta

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_label": self.start_label,
            "end_label": self.end_label,
            "peak_shared_bytes": self.peak_shared_bytes,
            "observations": self.observations,
            "duration_ms": int(self.duration / timedelta(milliseconds=1)),
        }

    @classmethod
    def from_dict(cls, data: object) -> SpillEpisode:
        what = "SpillEpisode"
        return cls(
            start_label=_req(data, "start_label", str, what),
            end_label=_opt(data, "end_label", str, what),
            peak_shared_bytes=_req(data, "peak_shared_bytes", int, what),
            observations=_req(data, "observations", int, what),
            duration=timedelta(milliseconds=_req(data, "duration_ms", int, what)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SpillReport:
    """End-of-run WDDM spill summary. Check ``measurable`` before trusting "no spill"."""

    episodes: tuple[SpillEpisode, ...] = field(default_factory=tuple)
    peak_dedicated_bytes: int = 0
    dedicated_limit_bytes: int = 0
    peak_shared_bytes: int = 0
    baseline_shared_bytes: int = 0
    observations: int = 0
    measurable: bool = False

    def spilled(self) -> bool:
        return bool(self.episodes)

    def first_spill_label(self) -> str | None:
        return self.episodes[0].start_label if self.episodes else None

    def total_spill_duration(self) -> timedelta:
        return sum((e.duration for e in self.episodes), timedelta())

    def longest_episode(self) -> SpillEpisode | None:
        best: SpillEpisode | None = None
        for episode in self.episodes:
            # Strictly greater keeps the earliest of equal durations.
            if best is None or episode.duration > best.duration:
                best = episode
        return best

    def to_dict(self) -> dict[str, Any]:
        return {
            "measurable": self.measurable,
            "spilled": self.spilled(),
            "observations": self.observations,
            "baseline_shared_bytes": self.baseline_shared_bytes,
            "peak_shared_bytes": self.peak_shared_bytes,
            "peak_dedicated_bytes": self.peak_dedicated_bytes,
            "dedicated_limit_bytes": self.dedicated_limit_bytes,
            "total_spill_duration_ms": int(self.total_spill_duration() / timedelta(milliseconds=1)),
            "episodes": [e.to_dict() for e in self.episodes],
        }

    @classmethod
    def from_dict(cls, data: object) -> SpillReport:
        what = "SpillReport"
        episodes = _req(data, "episodes", list, what)
        return cls(
            episodes=tuple(SpillEpisode.from_dict(e) for e in episodes),
            peak_dedicated_bytes=_req(data, "peak_dedicated_bytes", int, what),
            dedicated_limit_bytes=_req(data, "dedicated_limit_bytes", int, what),
            peak_shared_bytes=_req(data, "peak_shared_bytes", int, what),
            baseline_shared_bytes=_req(data, "baseline_shared_bytes", int, what),
            observations=_req(data, "observations", int, what),
            measurable=_req(data, "measurable", bool, what),
        )


# The records a record may hold, by annotation, for ``_from_json``.
_NESTED: dict[str, type[DataclassInstance]] = {
    "GpuDeviceInfo": GpuDeviceInfo,
    "ProcessGpuInfo": ProcessGpuInfo,
}
