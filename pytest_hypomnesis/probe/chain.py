"""The one place that chooses among backends: the crate's fallback chains (parity §4), and
how this OS reads its RAM.

RAM goes to one ``RamSource``, chosen once for this OS (``_ram_source()``): RSS and the
span's peak meter (Linux: procfs and a resettable high-water mark; macOS/Windows: the
crate's native calls, psutil where they cannot be reached, peaks sampled).

Every question about a GPU goes to one ``GpuSource``: the fake GPU installed by ``set_fake``
(the ``fake_gpu`` fixture), or else the real backends in their fallback order
(``_RealGpus``). Both answer in the public model types. Each real backend function returns
a value or raises ``BackendFailure``; the chain keeps the first answer and remembers why the
others failed, so an unavailable reading can say why.

The OS a GPU chain runs on is ``platform()`` (``_platform.system()``; a function, so tests
can play another OS); the RAM choice, made once, reads ``_platform.IS_*``. How the package
asks which OS it is: ``_platform``'s docstring.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from pytest_hypomnesis import _platform
from pytest_hypomnesis._errors import BackendFailure, DeviceIndexOutOfRangeError, NoGpuSourceError
from pytest_hypomnesis._platform import debug
from pytest_hypomnesis.probe import rss as _rss

if TYPE_CHECKING:
    from pytest_hypomnesis.gpumodel import (
        GpuDeviceInfo,
        GpuProcessEntry,
        GpuQuerySource,
        ProcessGpuInfo,
    )
    from pytest_hypomnesis.probe.cuda_devices import CudaDevice, VisibleDevices
    from pytest_hypomnesis.probe.fake import FakeGpu
    from pytest_hypomnesis.probe.rampeak import RamPeakMeter
    from pytest_hypomnesis.probe.readings import (
        GpuReading,
        SmiDeviceReading,
        SpillSource,
        VramReading,
    )

# The records (dataclasses) are imported where a result is built, not here: `hmn ps` on a
# machine without a GPU finds nothing to build and so never pays for `dataclasses`.


def __getattr__(name: str) -> object:
    if name == "VramReading":
        from pytest_hypomnesis.probe.readings import VramReading

        return VramReading
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "GpuSource",
    "RamSource",
    "VramReading",
    "counted_devices",
    "cuda_devices",
    "current_fake",
    "device_count",
    "device_info",
    "find_own_mig_device",
    "gpu_processes",
    "gpu_reading",
    "gpu_readings_all",
    "lifetime_peak_bytes",
    "platform",
    "process_gpu_info",
    "process_rss",
    "ram_peak_meter",
    "set_fake",
    "spill_counters_available",
    "spill_source",
    "vram_reader",
]

T = TypeVar("T")

Reader = Callable[[], "VramReading"]


class GpuSource(Protocol):
    """What answers the probe's questions about GPUs, in the public model types. Raises
    ``DeviceIndexOutOfRangeError`` or ``NoGpuSourceError`` (with the reasons) when nothing
    can answer for ``index``."""

    def device_count(self) -> int: ...

    def device_info(self, index: int) -> GpuDeviceInfo: ...

    def process_gpu_info(self, index: int, pid: int | None) -> ProcessGpuInfo: ...

    def gpu_processes(self, index: int) -> list[GpuProcessEntry]: ...

    def gpu_reading(self, index: int) -> GpuReading:
        """Best-effort GPU figures for ``Snapshot.now``, with the reasons; never raises."""
        ...

    def vram_reader(self, index: int) -> Reader | None:
        """A cheap repeatable reader of this process's VRAM, or ``None`` when nothing
        per-process can be read on ``index``."""
        ...


class RamSource(Protocol):
    """How this process's RAM is read on this OS; ``rss_bytes`` raises ``RamError``."""

    def rss_bytes(self) -> int: ...

    def peak_meter(
        self, *, reset_allowed: bool, children: bool = False, interval_s: float = 0.01
    ) -> RamPeakMeter:
        """The span peak meter: exact where the OS has a high-water mark we may reset,
        sampled elsewhere or with ``reset_allowed=False`` (by the sidecar process, which
        with ``children`` also counts the descendants)."""
        ...

    def lifetime_peak_bytes(self) -> int | None:
        """The kernel's peak RSS of the process (since the last reset), ``None`` unknown."""
        ...


_fake: FakeGpu | None = None


def _source() -> GpuSource:
    return _REAL if _fake is None else _fake


def platform() -> str:
    """``linux``, ``win32``, ``darwin`` or other; a function so tests can patch it."""
    return _platform.system()


def set_fake(fake: FakeGpu | None) -> FakeGpu | None:
    """Install (or with ``None`` remove) a fake GPU; returns the one it replaces."""
    global _fake
    previous, _fake = _fake, fake
    return previous


def current_fake() -> FakeGpu | None:
    return _fake


def process_rss() -> int:
    """Resident set size of the calling process in bytes; raises ``RamError``."""
    value = _RAM.rss_bytes()
    if _platform._debug_on:  # twice per measured test: no message built when off
        debug("RSS", f"rss_bytes={value}")
    return value


def ram_peak_meter(
    *, reset_allowed: bool = True, children: bool = False, interval_s: float = 0.01
) -> RamPeakMeter:
    """A span peak meter for this OS (``RamSource.peak_meter``)."""
    return _RAM.peak_meter(reset_allowed=reset_allowed, children=children, interval_s=interval_s)


def lifetime_peak_bytes() -> int | None:
    """The kernel's peak RSS of this process: the whole run's while the mark was never
    reset, else since the last reset; ``None`` where the OS keeps none we read."""
    return _RAM.lifetime_peak_bytes()


def _try(reasons: list[str], backend: str, fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except BackendFailure as exc:
        reasons.append(f"{exc.backend}: {exc.reason}")
    except Exception as exc:  # a backend bug must degrade, never crash the caller
        reasons.append(f"{backend}: unexpected {type(exc).__name__}: {exc}")
    debug("probe", f"{backend} failed: {reasons[-1]}")
    return None


def _is_mac() -> bool:
    return platform() == "darwin"


def _is_windows() -> bool:
    return platform() == "win32"


def _apple_gpu() -> bool:
    if not _is_mac():
        return False
    from pytest_hypomnesis.probe import metal

    return metal.is_apple_silicon()


def _count_for_bounds(reasons: list[str]) -> int | None:
    from pytest_hypomnesis.probe import nvml

    count = _try(reasons, "NVML", nvml.device_count)
    if count is None and _is_windows():
        from pytest_hypomnesis.probe import dxgi

        count = _try(reasons, "DXGI", dxgi.nvidia_adapter_count)
    return count


def _bounds_error(index: int, reasons: list[str]) -> Exception:
    scratch: list[str] = []
    # As in the crate, only NVML or DXGI can count for the bounds check: on macOS (no
    # NVIDIA) any failed index, 0 or past the one Apple GPU, is "no source" (parity §4.1).
    count = _count_for_bounds(scratch)
    if count is not None and index >= count:
        return DeviceIndexOutOfRangeError(index, count, tuple(reasons))
    return NoGpuSourceError(tuple(reasons))


def device_count() -> int:
    """Visible GPUs: macOS Apple GPU → NVML → (Windows) DXGI NVIDIA adapters; 0 when
    nothing can count (the crate raises ``NoGpuSource`` there). Never ``nvidia-smi``."""
    return _source().device_count()


def counted_devices() -> tuple[int | None, tuple[str, ...]]:
    """``device_count``'s answer, ``None`` when nothing could count, with the reasons of the
    backends that failed (for the CLI, which must not read a failure as "no GPUs")."""
    if _fake is not None:
        return _fake.device_count(), ()
    return _real_counted_devices()


def _real_counted_devices() -> tuple[int | None, tuple[str, ...]]:
    if _apple_gpu():
        return 1, ()
    reasons: list[str] = []
    count = _count_for_bounds(reasons)
    return count, tuple(reasons)


def device_info(index: int = 0, uuid: str | None = None) -> GpuDeviceInfo:
    """Device-wide memory of GPU ``index``: Metal → NVML (+DXGI name) → DXGI → nvidia-smi.
    ``uuid`` (real GPUs only) makes NVML read the device it names (a MIG slice: its own)."""
    if uuid is None or _fake is not None:
        return _source().device_info(index)
    info, reasons = _device_info(index, uuid=uuid)
    if info is None:
        raise _bounds_error(index, reasons)
    return info


def _device_info(
    index: int,
    smi_query: Callable[[], SmiDeviceReading] | None = None,
    uuid: str | None = None,
) -> tuple[GpuDeviceInfo | None, list[str]]:
    from pytest_hypomnesis.probe import nvml, smi

    reasons: list[str] = []
    if _is_mac() and index == 0:
        from pytest_hypomnesis.probe import metal

        found = _try(reasons, "Metal", metal.device_info)
        if found is not None:
            return found, reasons
    reading = _try(
        reasons,
        "NVML",
        lambda: nvml.device_query(index) if uuid is None else nvml.device_query(index, uuid),
    )
    if reading is not None:
        name = reading.name
        if _is_windows():
            from pytest_hypomnesis.probe import dxgi

            dxgi_name = _try(reasons, "DXGI", lambda: dxgi.adapter_name(index))
            if dxgi_name is not None:
                name = dxgi_name
        from pytest_hypomnesis.gpumodel import GpuDeviceInfo

        return (
            GpuDeviceInfo(
                index=index,
                name=name,
                total_bytes=reading.total_bytes,
                free_bytes=reading.free_bytes,
                used_bytes=reading.used_bytes,
                reserved_bytes=reading.reserved_bytes,
                driver_version=reading.driver_version,
            ),
            reasons,
        )
    if _is_windows():
        from pytest_hypomnesis.probe import dxgi

        found = _try(reasons, "DXGI", lambda: dxgi.device_info(index))
        if found is not None:
            return found, reasons
    smi_reading = _try(reasons, "nvidia-smi", smi_query or (lambda: smi.device_query(index)))
    if smi_reading is not None:
        from pytest_hypomnesis.gpumodel import GpuDeviceInfo

        return (
            GpuDeviceInfo(
                index=index,
                name=None,
                total_bytes=smi_reading.total_bytes,
                free_bytes=max(smi_reading.total_bytes - smi_reading.used_bytes, 0),
                used_bytes=smi_reading.used_bytes,
                reserved_bytes=None,
                driver_version=smi_reading.driver_version,
            ),
            reasons,
        )
    return None, reasons


def process_gpu_info(index: int = 0, pid: int | None = None) -> ProcessGpuInfo:
    """GPU memory of ``pid`` (default: this process) on GPU ``index``:
    Metal → DXGI → NVML → nvidia-smi device-wide (``is_per_process=False``)."""
    return _source().process_gpu_info(index, pid)


def _process_gpu_info(
    index: int, pid: int | None, smi_query: Callable[[], SmiDeviceReading] | None = None
) -> tuple[ProcessGpuInfo | None, list[str]]:
    from pytest_hypomnesis.probe import nvml, smi

    reasons: list[str] = []
    own = pid is None or pid == os.getpid()
    target = os.getpid() if pid is None else pid
    if _is_mac() and index == 0:
        from pytest_hypomnesis.probe import metal

        used = _try(reasons, "Metal", lambda: metal.process_footprint(target))
        if used is not None:
            from pytest_hypomnesis.gpumodel import GpuQuerySource, ProcessGpuInfo

            return ProcessGpuInfo(
                used_bytes=used, is_per_process=True, source=GpuQuerySource.METAL
            ), reasons
    if _is_windows() and own:
        # DXGI answers only for the calling process.
        from pytest_hypomnesis.probe import dxgi

        used = _try(reasons, "DXGI", lambda: dxgi.self_usage(index))
        if used is not None:
            from pytest_hypomnesis.gpumodel import GpuQuerySource, ProcessGpuInfo

            return ProcessGpuInfo(
                used_bytes=used, is_per_process=True, source=GpuQuerySource.DXGI
            ), reasons
    used = _try(reasons, "NVML", lambda: nvml.process_used_bytes(index, target))
    if used is not None:
        from pytest_hypomnesis.gpumodel import GpuQuerySource, ProcessGpuInfo

        return ProcessGpuInfo(
            used_bytes=used, is_per_process=True, source=GpuQuerySource.NVML
        ), reasons
    smi_reading = _try(reasons, "nvidia-smi", smi_query or (lambda: smi.device_query(index)))
    if smi_reading is not None:
        from pytest_hypomnesis.gpumodel import GpuQuerySource, ProcessGpuInfo

        return (
            ProcessGpuInfo(
                used_bytes=smi_reading.used_bytes,
                is_per_process=False,
                source=GpuQuerySource.NVIDIA_SMI,
            ),
            reasons,
        )
    return None, reasons


def gpu_processes(index: int = 0) -> list[GpuProcessEntry]:
    """Every process holding memory on GPU ``index``, sorted by pid:
    Metal → (Linux) NVML → (Windows) PDH → nvidia-smi. An NVML answer of ``[]`` stands."""
    return _source().gpu_processes(index)


def _gpu_processes(index: int) -> list[GpuProcessEntry]:
    from pytest_hypomnesis.probe import nvml, procname, smi

    reasons: list[str] = []
    rows: list[GpuProcessEntry] | None = None
    if _is_mac() and index == 0:
        from pytest_hypomnesis.probe import metal

        rows = _try(reasons, "Metal", metal.list_processes)
    if rows is None and platform().startswith("linux"):
        listing = _try(reasons, "NVML", lambda: nvml.list_processes(index))
        if listing is not None:
            from pytest_hypomnesis.gpumodel import GpuProcessEntry, GpuQuerySource

            rows = [
                GpuProcessEntry(
                    pid=p,
                    name=procname.linux_comm(p),
                    used_bytes=used,
                    shared_used_bytes=0,
                    source=GpuQuerySource.NVML,
                )
                for p, used in listing
            ]
    if rows is None and _is_windows():
        from pytest_hypomnesis.probe import pdh

        rows = _try(reasons, "PDH", lambda: pdh.list_processes(index))
    if rows is None:
        smi_rows = _try(reasons, "nvidia-smi", lambda: smi.list_processes(index))
        if smi_rows is not None:
            from pytest_hypomnesis.gpumodel import GpuProcessEntry, GpuQuerySource

            rows = [
                GpuProcessEntry(
                    pid=p,
                    name=name,
                    used_bytes=used,
                    shared_used_bytes=0,
                    source=GpuQuerySource.NVIDIA_SMI,
                )
                for p, name, used in smi_rows
            ]
    if rows is None:
        raise _bounds_error(index, reasons)
    return sorted(rows, key=lambda r: r.pid)


def _once(fn: Callable[[], T]) -> Callable[[], T]:
    """``fn``'s first outcome, value or exception, for every later call."""
    values: list[T] = []
    errors: list[Exception] = []

    def call() -> T:
        if not values and not errors:
            try:
                values.append(fn())
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        return values[0]

    return call


def gpu_reading(index: int = 0) -> GpuReading:
    """Best-effort GPU figures for ``index`` (what ``Snapshot.now`` adds to RSS); never raises."""
    return _source().gpu_reading(index)


def _gpu_reading(index: int) -> GpuReading:
    from pytest_hypomnesis.probe import smi
    from pytest_hypomnesis.probe.readings import GpuReading

    # Both chains end in the same nvidia-smi device query: run it once per snapshot.
    smi_query = _once(lambda: smi.device_query(index))
    gpu, gpu_reasons = _process_gpu_info(index, None, smi_query)
    device, device_reasons = _device_info(index, smi_query)
    reason = None
    if gpu is None or device is None:
        seen: list[str] = []
        for r in gpu_reasons + device_reasons:
            if r not in seen:
                seen.append(r)
        reason = "; ".join(seen) or "no GPU backend answered"
    return GpuReading(gpu, device, reason)


def gpu_readings_all() -> list[GpuReading]:
    """One reading per visible GPU, then (Windows) non-NVIDIA adapters (``Snapshot.all``)."""
    count = device_count()
    source = _source()
    readings = [source.gpu_reading(i) for i in range(count)]
    if _fake is None and _is_windows():
        from pytest_hypomnesis.probe import dxgi

        extra = _try([], "DXGI", lambda: dxgi.non_nvidia_readings(count))
        if extra:
            readings.extend(extra)
    return readings


def cuda_devices() -> tuple[list[CudaDevice], VisibleDevices]:
    """The GPUs this process can use, by CUDA ordinal (``CUDA_VISIBLE_DEVICES``,
    ``CUDA_DEVICE_ORDER``), and how that was found. Where NVML cannot list GPUs (no
    NVIDIA driver, Apple, a DXGI-only Windows) ordinal N is backend index N."""
    from pytest_hypomnesis.probe import cuda_devices as _cuda

    visible = _cuda.visible_devices()
    if visible.mapped:
        return list(visible.devices), visible
    count = device_count()
    return [_cuda.CudaDevice(i, None, i, None, None) for i in range(count)], visible


def find_own_mig_device() -> CudaDevice | None:
    """Look for this process on every MIG device (by PID) where the visible one is only
    CUDA's first of a GPU in MIG mode; ``cuda_devices()`` gives the one found from then
    on. Returns the device found (its readers should then be made again), else ``None``."""
    if _fake is not None:
        return None
    from pytest_hypomnesis.probe import cuda_devices as _cuda

    return _cuda.find_own_mig()


def vram_reader(index: int, uuid: str | None = None) -> Reader | None:
    """A cheap, repeatable reader of this process's VRAM on ``index`` for a sampler thread:
    a fake GPU's; Metal's ledger (macOS); DXGI's own-process usage (Windows, where NVML's
    per-process rows are WDDM sentinels); NVML's through a kept handle; else a poll of
    ``process_gpu_info`` when that answers per process. ``None`` when nothing per-process
    can be read (``nvidia-smi`` is device-wide only). ``uuid`` (real GPUs only, a ``GPU-``
    or ``MIG-`` UUID) makes NVML read that device's handle."""
    if uuid is None or _fake is not None:
        return _source().vram_reader(index)
    return _vram_reader(index, uuid)


def _vram_reader(index: int, uuid: str | None = None) -> Reader | None:
    return _fast_vram_reader(index, uuid) or _per_process_poll(index)


_reader_reasons: dict[int, tuple[str, ...]] = {}


def vram_reader_reasons(index: int) -> tuple[str, ...]:
    """Why the last ``vram_reader(index)`` found no fast reader: each backend's own reason
    (``NVML: GPU is lost``), for a message that says what failed rather than a guess."""
    return _reader_reasons.get(index, ())


def _fast_vram_reader(index: int, uuid: str | None = None) -> Reader | None:
    reasons: list[str] = []
    try:
        return _first_fast_reader(index, uuid, reasons)
    finally:
        _reader_reasons[index] = tuple(reasons)


def _first_fast_reader(index: int, uuid: str | None, reasons: list[str]) -> Reader | None:
    if _is_mac() and index == 0:
        from pytest_hypomnesis.probe import metal

        pid = os.getpid()
        if _try(reasons, "Metal", lambda: metal.process_footprint(pid)) is not None:
            from pytest_hypomnesis.gpumodel import GpuQuerySource

            return _polling_reader(lambda: metal.process_footprint(pid), GpuQuerySource.METAL)
    if _is_windows():
        from pytest_hypomnesis.probe import dxgi

        if _try(reasons, "DXGI", lambda: dxgi.self_usage(index)) is not None:
            from pytest_hypomnesis.gpumodel import GpuQuerySource

            return _polling_reader(lambda: dxgi.self_usage(index), GpuQuerySource.DXGI)
    from pytest_hypomnesis.probe import nvml

    return _try(
        reasons,
        "NVML",
        lambda: nvml.self_reader(index) if uuid is None else nvml.self_reader(index, uuid),
    )


def _polling_reader(read: Callable[[], int], source: GpuQuerySource) -> Callable[[], VramReading]:
    from pytest_hypomnesis.probe.readings import VramReading

    def reader() -> VramReading:
        try:
            return VramReading(read(), None, source)
        except BackendFailure as exc:  # a failed sample is unknown, never a fabricated zero
            return VramReading(None, None, None, failure=f"{exc.backend}: {exc.reason}")
        except Exception as exc:
            return VramReading(None, None, None, failure=f"{type(exc).__name__}: {exc}")

    return reader


def spill_source(index: int) -> SpillSource | None:
    """The spill sample source of GPU ``index``: Windows PDH adapter counters; ``None``
    elsewhere or where the counters are missing. Raises ``PdhError`` on a hard failure."""
    if not _is_windows():
        return None
    from pytest_hypomnesis.probe import pdh

    return pdh.open_adapter_query(index)


def spill_counters_available() -> bool:
    """Whether Windows' ``GPU Adapter Memory`` counter set enumerates an instance."""
    if not _is_windows():
        return False
    from pytest_hypomnesis.probe import pdh

    return pdh.adapter_counter_set_available()


def _per_process_poll(index: int) -> Reader | None:
    """A reader over ``process_gpu_info`` when it answers per process but no fast reader
    exists; ``None`` when the answer is device-wide only (``nvidia-smi``), which cannot
    say what this process used."""
    try:
        first = process_gpu_info(index)
    except Exception:
        return None
    if not first.is_per_process:
        return None

    from pytest_hypomnesis.probe.readings import VramReading

    def read() -> VramReading:
        info = process_gpu_info(index)
        if not info.is_per_process:
            failure = f"{info.source.value}: only a device-wide figure this time"
            return VramReading(None, None, info.source, failure=failure)
        return VramReading(info.used_bytes, None, info.source)

    return read


class _RealGpus:
    """The real backends, each question answered by its fallback chain above."""

    def device_count(self) -> int:
        count, _ = _real_counted_devices()
        return 0 if count is None else count

    def device_info(self, index: int) -> GpuDeviceInfo:
        info, reasons = _device_info(index)
        if info is None:
            raise _bounds_error(index, reasons)
        return info

    def process_gpu_info(self, index: int, pid: int | None) -> ProcessGpuInfo:
        info, reasons = _process_gpu_info(index, pid)
        if info is None:
            raise _bounds_error(index, reasons)
        return info

    def gpu_processes(self, index: int) -> list[GpuProcessEntry]:
        return _gpu_processes(index)

    def gpu_reading(self, index: int) -> GpuReading:
        return _gpu_reading(index)

    def vram_reader(self, index: int) -> Reader | None:
        return _vram_reader(index)


_REAL: GpuSource = _RealGpus()


class _ProcfsRam:
    """Linux: RSS from ``/proc/self/statm`` (``status`` when that fails); the exact span
    peak by resetting the kernel's high-water mark (``rampeak``)."""

    def rss_bytes(self) -> int:
        return _rss.procfs_rss()

    def peak_meter(
        self, *, reset_allowed: bool, children: bool = False, interval_s: float = 0.01
    ) -> RamPeakMeter:
        from pytest_hypomnesis.probe.rampeak import RamPeakMeter

        return RamPeakMeter(
            reset_allowed=reset_allowed,
            children=children,
            interval_s=interval_s,
            read_rss=_rss.procfs_rss,
        )

    def lifetime_peak_bytes(self) -> int | None:
        from pytest_hypomnesis.probe import rampeak

        return rampeak.lifetime_peak_bytes()


class _NativeRam:
    """macOS ``phys_footprint`` / Windows ``WorkingSetSize`` through ctypes, as the crate
    reads them; psutil where ctypes cannot reach the call, and on other systems. No
    high-water mark we may reset: span peaks are sampled."""

    def __init__(self, native: Callable[[], int] | None) -> None:
        self._native = native

    def rss_bytes(self) -> int:
        if self._native is not None:
            try:
                return self._native()
            except (OSError, AttributeError) as exc:  # ctypes could not reach the call
                debug("RSS", f"native RSS unavailable ({exc}); using psutil")
        return _rss.psutil_rss()

    def peak_meter(
        self, *, reset_allowed: bool, children: bool = False, interval_s: float = 0.01
    ) -> RamPeakMeter:
        from pytest_hypomnesis.probe.rampeak import RamPeakMeter

        return RamPeakMeter(
            reset_allowed=False, children=children, interval_s=interval_s, read_rss=self.rss_bytes
        )

    def lifetime_peak_bytes(self) -> int | None:
        return None


def _macos_rss() -> int:
    from pytest_hypomnesis.probe import rss_macos

    return rss_macos.process_rss()


def _windows_rss() -> int:
    from pytest_hypomnesis.probe import rss_windows

    return rss_windows.process_rss()


def _ram_source() -> RamSource:
    if _platform.IS_LINUX:
        return _ProcfsRam()
    if _platform.IS_MACOS:
        return _NativeRam(_macos_rss)
    if _platform.IS_WINDOWS:
        return _NativeRam(_windows_rss)
    return _NativeRam(None)


_RAM: RamSource = _ram_source()
