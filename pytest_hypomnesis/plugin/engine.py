"""The measurement engine: RAM start/peak/end and per-device VRAM start/peak/end of a span.

One ``Engine`` per process (per xdist worker). Spans nest: a test's span and any
``memory_report()`` block inside it are measured at once; resetting the RAM high-water
mark (or, opted in, torch's peak counters) for an inner span first folds the running peak
into every open one. Framework allocators (plugin/frameworks.py) are read with the VRAM.

VRAM is read at span start and end, and in between by ONE background thread, started
the first time a span needs it; it parks itself on an event after ten intervals with no
open span, so it costs nothing while no test runs, and nothing extra between tests.
With no GPU (and no fake one) there is no thread.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pytest_hypomnesis.plugin import frameworks
from pytest_hypomnesis.plugin.frameworks import AllocatorReading
from pytest_hypomnesis.plugin.timeline import TimelineRecorder
from pytest_hypomnesis.probe import chain
from pytest_hypomnesis.probe.chain import lifetime_peak_bytes
from pytest_hypomnesis.probe.cuda_devices import CudaDevice, VisibleDevices
from pytest_hypomnesis.probe.fake import FakeGpu
from pytest_hypomnesis.probe.readings import VramReading
from pytest_hypomnesis.record import (
    AllocatorDeviceRecord,
    DeviceIdentity,
    RamRecord,
    SpanRecord,
    VramDeviceRecord,
    VramTotalRecord,
    device_identity,
    ram_record,
    vram_device_record,
    vram_record,
    vram_total_record,
)

if TYPE_CHECKING:
    from pytest_hypomnesis.plugin.pytrace import PythonTracer

__all__ = ["Engine", "Span"]

Reader = Callable[[], VramReading]

_IDLE_INTERVALS_BEFORE_PARKING = 10
# Bound once: a test that mocks time.perf_counter (freezegun, monkeypatch) must not make a
# span last a negative time, which a report then could not hold.
_clock = time.perf_counter


# A GPU reading running this long on the sampler thread is taken as a hung driver call
# (NVML calls have no timeout): later readings of the span are unknown, with that reason.
HUNG_CALL_S = 10.0
# Back-off between attempts to find a VRAM source after one failed (NVML init refused, the
# driver not loaded yet): doubling from the first to the last.
_RETRY_FIRST_S = 1.0
_RETRY_MAX_S = 60.0
# Reasons that no retry heals (nothing to load).
_PERMANENT = ("NVML Shared Library Not Found", "nvidia-ml-py not installed")


@dataclass(slots=True)
class _DeviceTrack:
    start_bytes: int | None = None
    peak_bytes: int | None = None
    end_bytes: int | None = None
    device_used_peak_bytes: int | None = None
    samples: int = 0
    failed_samples: int = 0
    failure: str | None = None
    """The first failed reading's reason: with any failure the span's figures are unknown."""
    device_used_missing: int = 0
    context_pending: bool = False
    """The span began with no CUDA context here (0 bytes): the first figure above 0 is
    the context being created."""
    cuda_context_bytes: int | None = None
    detect_context: bool = True
    """False for a ``FakeGpu`` device: it models allocations, not a driver's context."""

    def add(
        self, reading: VramReading, *, final: bool = False, reserved_bytes: int | None = None
    ) -> None:
        used = reading.process_used_bytes
        if used is None:
            # A reading that failed mid-span: the figures from the others would understate
            # (or invent) what the process used, so the span's figures become unknown.
            self.failed_samples += 1
            if self.failure is None:
                self.failure = reading.failure or "no per-process reading"
        else:
            if self.start_bytes is None:
                self.start_bytes = used
                self.context_pending = used == 0 and self.detect_context
            elif self.context_pending and used > 0:
                # The first reading after the context appeared holds the context plus
                # whatever the framework reserved by then; its own figure takes that out.
                # Without a framework figure the split is unknowable (the first reading
                # may be mostly the test's own memory): nothing is set apart then.
                self.context_pending = False
                if reserved_bytes is not None:
                    self.cuda_context_bytes = max(used - reserved_bytes, 0)
            if self.peak_bytes is None or used > self.peak_bytes:
                self.peak_bytes = used
            if final:
                self.end_bytes = used
            self.samples += 1
        dev = reading.device_used_bytes
        if dev is None:
            self.device_used_missing += 1
        elif self.device_used_peak_bytes is None or dev > self.device_used_peak_bytes:
            self.device_used_peak_bytes = dev

    def record(self, *, final: bool) -> VramDeviceRecord:
        if self.failed_samples:
            record = vram_device_record(None, None, None, None, self.samples)
        else:
            # A device-wide figure that was missing from some readings is a lower bound.
            device_peak = self.device_used_peak_bytes if not self.device_used_missing else None
            record = vram_device_record(
                self.start_bytes,
                self.peak_bytes,
                self.end_bytes if final else None,
                device_peak,
                self.samples,
                self.cuda_context_bytes,
            )
        record["failed_samples"] = self.failed_samples
        record["unavailable_reason"] = (
            None
            if self.failure is None
            else f"{self.failure} ({self.failed_samples} of "
            f"{self.failed_samples + self.samples} readings failed)"
        )
        return record


@dataclass(slots=True)
class _TotalTrack:
    """This process's VRAM summed over the span's devices at each reading (every reading
    reads all devices): the start, the highest sum, the end. A sum with any device unknown
    makes the total unknown for the span; so does a real device first read mid-span (its
    share of the start sum is unknown)."""

    start_bytes: int | None = None
    peak_bytes: int | None = None
    end_bytes: int | None = None
    unknown: bool = False

    def add(self, total: int | None, *, final: bool) -> None:
        if self.unknown:
            return
        if total is None:
            self.unknown = True
            return
        if self.start_bytes is None:
            self.start_bytes = total
        if self.peak_bytes is None or total > self.peak_bytes:
            self.peak_bytes = total
        if final:
            self.end_bytes = total

    def record(self, context_bytes: int | None, *, final: bool) -> VramTotalRecord:
        if self.unknown:
            return vram_total_record(None, None, None, None)
        return vram_total_record(
            self.start_bytes, self.peak_bytes, self.end_bytes if final else None, context_bytes
        )


@dataclass(slots=True)
class _AllocTrack:
    """One framework device over a span: its allocated figure sampled, and its own
    running peak counter, which is exact whenever it rose during the span."""

    start_bytes: int
    counter_start: int | None
    peak_bytes: int = 0
    end_bytes: int | None = None
    counter_max: int | None = None
    reserved_peak_bytes: int | None = None

    def add(self, r: AllocatorReading, *, final: bool) -> None:
        if r.allocated_bytes > self.peak_bytes:
            self.peak_bytes = r.allocated_bytes
        if r.peak_bytes is not None and (
            self.counter_max is None or r.peak_bytes > self.counter_max
        ):
            self.counter_max = r.peak_bytes
        reserved = r.reserved_bytes
        if reserved is not None and (
            self.reserved_peak_bytes is None or reserved > self.reserved_peak_bytes
        ):
            self.reserved_peak_bytes = reserved
        if final:
            self.end_bytes = r.allocated_bytes

    def record(self, *, reset: bool, final: bool) -> AllocatorDeviceRecord:
        peak, method = self.peak_bytes, "sampled"
        counter, start = self.counter_max, self.counter_start
        # A counter above its value at span start was set inside the span: that is the
        # exact peak, whatever the samples missed. Otherwise it is an earlier test's.
        if counter is not None and start is not None and counter > start and counter >= peak:
            peak, method = counter, "counter"
        if reset:
            method = "reset"
        return {
            "start_bytes": self.start_bytes,
            "peak_bytes": peak,
            "end_bytes": self.end_bytes if final else None,
            "increase_bytes": max(peak - self.start_bytes, 0),
            "reserved_peak_bytes": self.reserved_peak_bytes,
            "peak_method": method,
        }


@dataclass(slots=True)
class Span:
    """An open measurement; only the engine touches its fields."""

    t0: float
    ram_start_bytes: int | None
    ram_peak_bytes: int | None = None
    devices: dict[int, _DeviceTrack] = field(default_factory=dict)
    total: _TotalTrack = field(default_factory=_TotalTrack)
    """The per-reading sum over the devices: the honest total (docs/metrics.md)."""
    source: str | None = None
    allocators: dict[tuple[str, int], _AllocTrack] = field(default_factory=dict)
    torch_reset: bool = False
    """Torch's peak counters were reset at this span's start (opt-in)."""
    closed: bool = False
    started: bool = False
    """Set once the start readings are in: a device first seen later was added mid-span."""
    timeline: TimelineRecorder | None = None
    plain: bool = False
    """Begun on the fast path: nothing to sample, only the RAM high-water mark."""
    thread: int = 0
    traced_start_bytes: int | None = None
    """Traced Python allocations at the start (a ``source="python"`` budget); ``None``
    when the span does not trace."""
    traced_peak_bytes: int | None = None
    """The thread that opened it: only spans of one thread may reset the high-water mark."""
    mig_moved: str | None = None
    """Why its VRAM is unknown: this process's MIG device was found elsewhere meanwhile."""


class Engine:
    """Measures spans in this process. ``devices`` limits the watched GPU indices."""

    def __init__(
        self,
        *,
        interval_s: float,
        devices: tuple[int, ...] | None = None,
        keep_hwm: bool = False,
        torch_reset_peak: bool = False,
        vram_source: Literal["process", "device"] | str = "process",
        children: bool = False,
    ) -> None:
        self.interval_s = interval_s
        self.torch_reset_peak = torch_reset_peak
        # "device": the device-wide used figure stands in for this process's (a CI job that
        # owns its GPU; a container where NVML cannot see this process's PID).
        self.vram_attribution: Literal["process", "device"] = (
            "device" if vram_source == "device" else "process"
        )
        self._device_filter = devices
        # The process's peak before the first span (start-up, collection), read before
        # calibration or any reset of the kernel's mark can lose it.
        self._run_peak_bytes: int | None = lifetime_peak_bytes()
        # Where the kernel's mark cannot give a span's peak, a sidecar process samples it
        # (probe/sidecar.py); with ``children`` it also counts the descendants.
        self.children = children
        self.ram = chain.ram_peak_meter(
            reset_allowed=not keep_hwm, children=children, interval_s=interval_s
        )
        self._lock = threading.Lock()
        self._open: list[Span] = []
        # Readers resolve once per process for a real GPU; a fake GPU's are re-resolved
        # whenever its device list changes (tests add devices while they run).
        self._real_readers: list[tuple[int, Reader]] | None = None
        self._real_reason: str | None = None
        self._visible: VisibleDevices | None = None
        # Which GPU each watched ordinal is (records carry it), found with the readers.
        self._identities: dict[int, DeviceIdentity] = {}
        self._fake_identities: dict[int, DeviceIdentity] = {}
        # When finding a source failed for a reason that may heal: when to look again.
        self._retry_at: float | None = None
        self._retry_delay_s = _RETRY_FIRST_S
        # When the sampler thread's current GPU reading began (None between readings).
        self._sampler_call_t0: float | None = None
        self._blind_reason: str | None = None  # NVML cannot see this process (containers)
        # A watched MIG device is only CUDA's first of its GPU: search for this process's
        # own by PID at each span start until found (its CUDA context may come later).
        self._mig_pending = False
        self._fake_seen: FakeGpu | None = None
        self._fake_count = -1
        self._fake_readers: list[tuple[int, Reader]] = []
        self._thread: threading.Thread | None = None
        self._thread_pid: int | None = None
        _ENGINES.add(self)
        self._active = threading.Event()
        self._closing = threading.Event()
        # Open spans that keep a timeline; the sampler then reads RSS even when the
        # kernel's high-water mark makes that unnecessary for the peak.
        self._timeline_spans = 0
        self._tracer: PythonTracer | None = None
        """Made on the first span that traces Python allocations."""

    # -- devices -------------------------------------------------------------------------

    def _watched(self, count: int) -> list[int]:
        if self._device_filter is None:
            return list(range(count))
        return [i for i in self._device_filter if i < count]

    def _resolve_real(self) -> None:
        # Keyed by CUDA ordinal (what cuda:N means in this process), read through the
        # NVML device the ordinal maps to (its UUID: a MIG slice's own handle).
        readers: list[tuple[int, Reader]] = []
        reason = None
        retry = False
        targets, visible = chain.cuda_devices()
        self._visible = visible
        by_ordinal = {d.cuda_ordinal: d for d in targets}
        count = len(targets)
        blind: str | None = None
        watched = self._watched(count)
        self._mig_pending = any(by_ordinal[o].mig_source == "first" for o in watched)
        for ordinal in watched:
            device = by_ordinal[ordinal]
            reader = chain.vram_reader(device.nvml_index, device.uuid)
            why = None
            if reader is not None and self.vram_attribution == "device":
                reader = _device_wide(reader)  # no own row needed: nothing to be blind to
            elif reader is not None and visible.mapped:
                why = _nvml_blind(device.nvml_index, device.uuid, ordinal)
                if why is not None:
                    blind = blind or why
                    reader = _without_own_figure(reader)
            # A device-wide figure already holds the children's memory.
            device_wide = self.vram_attribution == "device"
            if reader is not None and why is None and self.children and not device_wide:
                from pytest_hypomnesis.probe.children import with_descendants

                reader = with_descendants(
                    reader, device.nvml_index, device.uuid, self.ram.descendants
                )
            if reader is not None:
                readers.append((ordinal, reader))
        self._blind_reason = blind
        self._identities = _identities(targets, visible.mapped)
        if not readers:
            # The backend's own reason, never a guess ("no GPU visible" when NVML said
            # Driver Not Loaded; "NVML unavailable" when NVML answered but the GPU was lost).
            if count == 0 and visible.mapped:
                reason = visible.note or "no GPU visible"
            elif count == 0:
                counted, count_reasons = chain.counted_devices()
                if counted is None:
                    reason = "; ".join(dict.fromkeys(count_reasons)) or "no GPU backend answered"
                    from pytest_hypomnesis.model import Snapshot

                    snapshot = Snapshot.now(0)
                    if snapshot.gpu_device is not None:
                        reason += " (nvidia-smi sees the GPU, but gives no per-process figure)"
                    elif snapshot.gpu_unavailable_reason:
                        # Every backend's own words (nvidia-smi's "couldn't communicate with
                        # the NVIDIA driver" beside NVML's "Driver Not Loaded").
                        reason = snapshot.gpu_unavailable_reason
                    retry = True
                else:
                    reason = "no GPU visible (the driver counts 0 devices)"
            elif not self._watched(count):
                reason = f"no watched GPU exists ({count} visible)"
            else:
                reader_reasons = [
                    r
                    for ordinal in self._watched(count)
                    for r in chain.vram_reader_reasons(by_ordinal[ordinal].nvml_index)
                ]
                found = "; ".join(dict.fromkeys(reader_reasons)) or "no backend answered"
                reason = f"no per-process VRAM source ({found})"
                retry = True
        if retry and reason is not None and not any(p in reason for p in _PERMANENT):
            self._retry_at = _clock() + self._retry_delay_s
            self._retry_delay_s = min(self._retry_delay_s * 2, _RETRY_MAX_S)
        else:
            self._retry_at = None
            if readers:
                self._retry_delay_s = _RETRY_FIRST_S
        self._real_readers, self._real_reason = readers, reason

    def _maybe_retry(self) -> None:
        """Look for a VRAM source again once the back-off since the last failure is over
        (NVML init failing at session start must not leave the whole session unmeasured)."""
        retry_at = self._retry_at
        if retry_at is not None and _clock() >= retry_at:
            self._real_readers = None

    def readers(self) -> tuple[list[tuple[int, Reader]], FakeGpu | None]:
        """The current (index, reader) pairs, and the fake GPU when one is installed."""
        fake = chain.current_fake()
        if fake is not None:
            count = fake.device_count()
            if fake is not self._fake_seen or count != self._fake_count:
                pairs = [(i, fake.vram_reader(i)) for i in self._watched(count)]
                self._fake_readers = [(i, self._attributed(r)) for i, r in pairs if r is not None]
                self._fake_identities = {
                    d.index: device_identity(d.uuid, d.index, d.pci_bus_id, d.name)
                    for d in fake.devices
                }
                self._fake_seen, self._fake_count = fake, count
            return self._fake_readers, fake
        if self._real_readers is None:
            self._resolve_real()
        assert self._real_readers is not None
        return self._real_readers, None

    def prepare(self) -> None:
        """Resolve the backends (NVML session, CUDA mapping, kept handles) now, before the
        first test's span, so no test is charged the plugin's own start-up."""
        self.readers()
        if self._mig_pending and self._find_own_mig() is not None:
            self.readers()

    def _find_own_mig(self) -> str | None:
        """Search for this process's MIG device by PID (only while a watched one is CUDA's
        first of its GPU). When found, the readers are made again for it; the reason a
        span's figures read another MIG device is returned, ``None`` when nothing moved."""
        found = chain.find_own_mig_device()
        if found is None:
            return None
        visible = self._visible
        read = None if visible is None else visible.by_ordinal(found.cuda_ordinal)
        self._mig_pending = False
        self._real_readers = None
        if read is not None and read.uuid == found.uuid:
            return None
        return (
            f"this process's CUDA context appeared on {found.uuid} during the span, not on "
            f"the MIG device read ({None if read is None else read.uuid}); later spans read it"
        )

    def header_lines(self) -> list[str]:
        """What a user should know about the watched GPUs, one line each (``prepare`` first)."""
        visible = self._visible
        attribution = []
        if self.vram_attribution == "device":
            attribution = [
                "VRAM attribution: device-wide used increase charged to each test "
                "(--hypomnesis-vram-source=device; right only when nothing else uses the GPU)"
            ]
        if chain.current_fake() is not None or visible is None or not visible.mapped:
            return attribution
        lines = [*attribution, visible.describe()]
        if self._blind_reason is not None:
            lines.append(f"per-process VRAM unavailable: {self._blind_reason}")
        return lines

    def notes(self) -> list[str]:
        """Only the warnings of ``header_lines`` (an assumed order, dropped entries)."""
        visible = self._visible
        notes = []
        if visible is not None and visible.mapped and visible.note is not None:
            notes.append(visible.note)
        if self._blind_reason is not None and chain.current_fake() is None:
            notes.append(f"per-process VRAM unavailable: {self._blind_reason}")
        if self.ram.metric_note is not None:
            notes.append(self.ram.metric_note)
        if self.ram.fallback_reason is not None:
            notes.append(
                f"{self.ram.fallback_reason}; RAM peaks are sampled by a thread, which "
                "cannot run while a C call holds the GIL"
            )
        return notes

    def unavailable_reason(self) -> str | None:
        return self._reason(*self.readers())

    def _reason(self, readers: list[tuple[int, Reader]], fake: FakeGpu | None) -> str | None:
        if readers:
            return None
        if fake is not None:
            return "fake GPU has no devices"
        return self._real_reason

    # -- sampling ------------------------------------------------------------------------

    def _needs_thread(
        self, readers: list[tuple[int, Reader]], fake: FakeGpu | None, timeline: bool
    ) -> bool:
        return (
            bool(readers)
            or fake is not None
            or not self.ram.exact
            or timeline
            or frameworks.any_loaded()
        )

    def _ensure_thread(self) -> None:
        thread = self._thread
        if thread is not None and _FORK_FORGETS:
            # At every span start: a forked child has already forgotten the thread (it
            # does not exist there), and ours ends only through close(), which drops it.
            return
        pid = os.getpid()
        if thread is not None and self._thread_pid == pid and thread.is_alive():
            return
        self._thread_pid = pid
        self._closing.clear()
        self._thread = threading.Thread(target=self._run, name="hypomnesis-sampler", daemon=True)
        self._thread.start()

    def _forget_thread(self) -> None:
        """In a forked child: the parent's sampler thread does not exist here."""
        self._thread = None
        self._thread_pid = None

    def _run(self) -> None:
        idle = 0
        while not self._closing.is_set():
            self._active.wait()
            if self._closing.wait(self.interval_s):
                return
            with self._lock:
                open_spans = bool(self._open)
                if not open_spans:
                    # The thread parks itself after a few idle intervals, rather than the
                    # end of every span parking it and the next span waking it: a wake-up
                    # per test costs the test thread a GIL hand-over each time.
                    idle += 1
                    if idle >= _IDLE_INTERVALS_BEFORE_PARKING:
                        self._active.clear()
                        idle = 0
                    continue
            idle = 0
            # A failing reader must never kill the sampler.
            with contextlib.suppress(Exception):
                self._sample(final=False)

    def _hung_for_s(self) -> float | None:
        t0 = self._sampler_call_t0
        if t0 is None:
            return None
        elapsed = _clock() - t0
        return elapsed if elapsed > HUNG_CALL_S else None

    def _sample(self, *, final: bool, only: Span | None = None) -> None:
        readers, fake = self.readers()
        readings: list[tuple[int, VramReading]] = []
        on_sampler = only is None
        hung = None if on_sampler else self._hung_for_s()
        if hung is not None:
            # The sampler thread is stuck in a GPU call (which holds the backend's lock):
            # calling again would hang this test too. Unknown, with the reason.
            failure = (
                f"a GPU reading has not returned for {hung:.0f}s "
                "(hung driver call); readings after it are unknown"
            )
            readings = [(i, VramReading(None, None, None, failure=failure)) for i, _ in readers]
        for index, reader in readers if hung is None else ():
            if on_sampler:
                self._sampler_call_t0 = _clock()
            try:
                readings.append((index, reader()))
            except Exception as exc:  # unknown with the reason, never skipped as if fine
                failure = f"{type(exc).__name__}: {exc}"
                readings.append((index, VramReading(None, None, None, failure=failure)))
            finally:
                if on_sampler:
                    self._sampler_call_t0 = None
        allocated = frameworks.read_allocators() if frameworks.any_loaded() else ()
        reserved: dict[int, int] = {}
        for r in allocated:
            if r.reserved_bytes is not None:
                reserved[r.device] = reserved.get(r.device, 0) + r.reserved_bytes
        tick_total: int | None = 0
        for _, reading in readings:
            used = reading.process_used_bytes
            if used is None or tick_total is None:
                tick_total = None
            else:
                tick_total += used
        sampled_peak = not self.ram.exact
        rss = self.ram.read_rss() if sampled_peak or self._timeline_spans else None
        now = _clock()
        with self._lock:
            if sampled_peak:
                self._note_run_peak(rss)
            spans = [only] if only is not None else list(self._open)
            for span in spans:
                if span.closed:
                    continue
                if (
                    sampled_peak
                    and rss is not None
                    and (span.ram_peak_bytes is None or rss > span.ram_peak_bytes)
                ):
                    span.ram_peak_bytes = rss
                if span.timeline is not None:
                    span.timeline.add(now, rss, {i: r.process_used_bytes for i, r in readings})
                for index, reading in readings:
                    track = span.devices.get(index)
                    if track is None:
                        # A fake device added mid-span did not exist at its start: the
                        # process held nothing on it then.
                        track = span.devices[index] = _DeviceTrack(
                            start_bytes=0 if fake is not None and span.started else None,
                            detect_context=fake is None,
                        )
                        if span.started and fake is None:
                            span.total.unknown = True
                        elif span.started and span.total.start_bytes is None:
                            span.total.start_bytes = 0  # the fake's: nothing held at start
                    track.add(reading, final=final, reserved_bytes=reserved.get(index))
                    if reading.source is not None:
                        # _value_: the member's plain attribute (.value is a descriptor).
                        span.source = reading.source._value_
                if readings:
                    span.total.add(tick_total, final=final)
                for r in allocated:
                    key = (r.framework, r.device)
                    alloc = span.allocators.get(key)
                    if alloc is None:
                        # Seen first mid-span: the framework held nothing there before
                        # (torch initialised CUDA inside the test).
                        counter = r.peak_bytes if not span.started else 0
                        start = r.allocated_bytes if not span.started else 0
                        alloc = span.allocators[key] = _AllocTrack(start, counter)
                    alloc.add(r, final=final)

    # -- the run's peak ------------------------------------------------------------------

    def _reset_ram(self) -> None:
        """Reset the kernel's mark for a new span, first keeping the peak since the last
        reset (the previous span and the time between tests) as a candidate for the run's
        peak: the reset hides it from everyone else (``/usr/bin/time``, CI accounting)."""
        peak = self.ram.peak_then_reset()  # None when sampling: nothing is reset then
        if peak is not None:
            run = self._run_peak_bytes
            if run is None or peak > run:
                self._run_peak_bytes = peak

    def _note_run_peak(self, value: int | None) -> None:
        run = self._run_peak_bytes
        if value is not None and (run is None or value > run):
            self._run_peak_bytes = value

    def run_peak_bytes(self) -> int | None:
        """The highest RSS this process reached so far in the run: the peaks kept before
        every reset, the sampled readings, and the kernel's mark now (with
        ``keep_hwm`` or where nothing is reset, the kernel's own whole-run figure)."""
        with self._lock:
            candidates = [self._run_peak_bytes]
        try:
            method = self.ram.method
            if method != "sampled":
                candidates.append(self.ram.peak_bytes())
            if method in ("sampled", "sidecar"):  # the kernel's mark was never reset
                candidates.append(lifetime_peak_bytes())
            candidates.append(self.ram.read_rss())
        except Exception:  # a failed read keeps what is known; never fail the session
            pass
        known = [c for c in candidates if c is not None]
        return max(known) if known else None

    # -- spans ---------------------------------------------------------------------------

    def _fold_ram(self) -> None:
        peak = self.ram.peak_bytes()
        if peak is None:
            return
        for span in self._open:
            if span.ram_peak_bytes is None or peak > span.ram_peak_bytes:
                span.ram_peak_bytes = peak

    def _fold_and_reset_ram(self) -> None:
        """Start a new high-water span; call with ``_lock`` held.

        Nested spans of one thread fold the running peak into the open ones, then reset.
        While a span of another thread is open the mark is not reset at all: that thread
        may allocate and free between the fold's read and the reset, and its peak would
        be lost (a 0 B increase). Blocks open at once in several threads then share one
        high-water mark: an upper bound, never a lost peak."""
        if self._open:
            me = threading.get_ident()
            if any(span.thread != me for span in self._open):
                return
            self._fold_ram()
        self._reset_ram()

    def _plain_case(self) -> bool:
        """Nothing to sample but RSS: no GPU reader, no fake GPU, an exact RAM peak, no
        torch, no span already open. The common case on a GPU-less machine, taken twice
        per measured test, so it skips the reader and torch machinery (with a timeline the
        sampler thread still reads RSS into it)."""
        return (
            not self._open
            and self._real_readers == []
            and chain.current_fake() is None
            and self.ram.exact
            and not frameworks.any_loaded()
        )

    def _begin_tracing(self, span: Span) -> None:
        tracer = self._tracer
        if tracer is None:
            from pytest_hypomnesis.plugin.pytrace import PythonTracer

            tracer = self._tracer = PythonTracer()
        tracer.acquire()
        with self._lock:
            # An inner span resets the traced peak: fold it into the open ones first.
            _, peak = tracer.read()
            for other in self._open:
                if other.traced_peak_bytes is not None and peak > other.traced_peak_bytes:
                    other.traced_peak_bytes = peak
            tracer.reset_peak()
            current, _ = tracer.read()
        span.traced_start_bytes = span.traced_peak_bytes = current

    def _traced(self, span: Span, ram: RamRecord, *, final: bool) -> None:
        start, tracer = span.traced_start_bytes, self._tracer
        if start is None or tracer is None:
            return
        _, peak = tracer.read()
        with self._lock:
            earlier = span.traced_peak_bytes or 0
            peak = max(peak, earlier)
            if final:
                span.traced_peak_bytes = peak
        ram["python_peak_bytes"] = peak
        ram["python_increase_bytes"] = max(peak - start, 0)

    def begin(self, *, timeline: bool = False, traced: bool = False) -> Span:
        """Open a span; with ``timeline`` it also keeps the sampled RSS/VRAM series; with
        ``traced`` it also traces Python allocations (tracemalloc) while it is open."""
        if self._retry_at is not None:
            self._maybe_retry()
        if self._mig_pending:
            self._find_own_mig()
        if traced:
            span = self._begin(timeline=timeline, plain=False)
            self._begin_tracing(span)
            return span
        return self._begin(timeline=timeline, plain=self._plain_case())

    def _begin(self, *, timeline: bool, plain: bool) -> Span:
        if plain:
            # Fold and reset under one lock: spans opened at once from several threads
            # (memory_report blocks) must not reset a peak another span has not folded.
            with self._lock:
                self._fold_and_reset_ram()
                rss = self.ram.read_rss()
                t0 = _clock()
                span = Span(
                    t0=t0,
                    ram_start_bytes=rss,
                    ram_peak_bytes=rss,
                    started=True,
                    plain=True,
                    thread=threading.get_ident(),
                )
                if timeline:
                    # Its first point is the start reading; the sampler adds RSS points.
                    span.timeline = recorder = TimelineRecorder()
                    recorder.start(t0)
                    recorder.add(_clock(), rss, {})
                    self._timeline_spans += 1
                self._open.append(span)  # an inner span must still fold into this one
            if timeline:
                self._wake_sampler()
            return span
        exact = self.ram.exact
        loaded = frameworks.any_loaded()
        torch_reset = loaded and self.torch_reset_peak and frameworks.torch_cuda() is not None
        if torch_reset and self._open:
            # The reset below would lose the open spans' peaks: fold them in first.
            self._sample(final=False)
        with self._lock:
            if exact:
                self._fold_and_reset_ram()
            else:
                self._reset_ram()  # a no-op when sampling
            rss = self.ram.read_rss()
            span = Span(
                t0=_clock(), ram_start_bytes=rss, ram_peak_bytes=rss, thread=threading.get_ident()
            )
            if torch_reset:
                span.torch_reset = frameworks.reset_torch_peaks()
        readers, fake = self.readers()
        if timeline:
            span.timeline = TimelineRecorder()
            span.timeline.start(span.t0)
        with self._lock:
            self._open.append(span)
            if timeline:
                self._timeline_spans += 1
        if readers or timeline or loaded:
            self._sample(final=False, only=span)
        span.started = True
        if self._needs_thread(readers, fake, timeline):
            self._wake_sampler()
        return span

    def _wake_sampler(self) -> None:
        self._ensure_thread()
        if not self._active.is_set():
            self._active.set()

    def peek(self, span: Span) -> SpanRecord:
        """The figures so far, leaving the span open (budgets judged before teardown)."""
        return self._finish(span, self._figures(span, final=False))

    def _attributed(self, reader: Reader) -> Reader:
        return _device_wide(reader) if self.vram_attribution == "device" else reader

    def _finish(self, span: Span, record: SpanRecord) -> SpanRecord:
        """Unknown VRAM, with the reason, when this process turned out to be on another MIG
        device than the one the span read (its context was created during the span); and
        which figure the record's VRAM is (``attribution``)."""
        record["vram"]["attribution"] = self.vram_attribution
        if self._mig_pending and span.mig_moved is None:
            span.mig_moved = self._find_own_mig()
        reason = span.mig_moved
        if reason is not None:
            vram = record["vram"]
            for key, device in vram["devices"].items():
                unknown = vram_device_record(None, None, None, None, device["samples"])
                unknown["failed_samples"] = device.get("failed_samples", 0)
                unknown["unavailable_reason"] = reason
                vram["devices"][key] = unknown
            vram["unavailable_reason"] = reason
        return record

    def end(self, span: Span) -> SpanRecord:
        record = self._finish(span, self._figures(span, final=True, close=True))
        if not span.closed:
            self._close(span)
        if span.traced_start_bytes is not None and self._tracer is not None:
            self._tracer.release()
        if span.timeline is not None:
            record["timeline"] = span.timeline.finish()
        return record

    def _close(self, span: Span) -> None:
        with self._lock:
            self._close_locked(span)

    def _close_locked(self, span: Span) -> None:
        span.closed = True
        if span in self._open:
            self._open.remove(span)
            if span.timeline is not None:
                self._timeline_spans -= 1

    def _ram_now(self, span: Span, *, final: bool, close: bool = False) -> tuple[float, int, int]:
        """Duration, RAM peak and RSS now; with ``final`` the peak is kept on the span;
        with ``close`` the span is closed under the same lock (a plain span's end)."""
        rss = self.ram.read_rss()
        now = _clock()
        duration_s = max(0.0, now - span.t0)
        with self._lock:
            if close:
                timeline = span.timeline
                if timeline is not None:  # a plain span's last point: the end reading
                    timeline.add(now, rss, {})
                self._close_locked(span)
            # Read under the lock another thread's fold-and-reset takes.
            peak_now = self.ram.peak_bytes()
            ram_peak = rss
            earlier = span.ram_peak_bytes
            if earlier is not None and earlier > ram_peak:
                ram_peak = earlier
            if peak_now is not None and peak_now > ram_peak:
                ram_peak = peak_now
            if final:
                span.ram_peak_bytes = ram_peak
                if peak_now is None:  # sampled: the span's peak is a run-peak candidate
                    self._note_run_peak(ram_peak)
        return duration_s, ram_peak, rss

    def _figures(self, span: Span, *, final: bool, close: bool = False) -> SpanRecord:
        # A plain span (begun with nothing to sample) reads only RAM, unless a fake GPU
        # was installed after it began (fixture set-up inside a scope=test span): that
        # one has devices to read, and takes the sampling path below.
        if span.plain and chain.current_fake() is None:
            duration_s, ram_peak, rss = self._ram_now(span, final=final, close=close)
            return {
                "duration_s": duration_s,
                "ram": ram_record(span.ram_start_bytes, ram_peak, rss, self.ram.method),
                "vram": vram_record(None, {}, None, self._real_reason),
                "timeline": None,
            }
        readers, fake = self.readers()
        last_point = final and span.timeline is not None
        if (
            readers
            or (final and not self.ram.exact)
            or last_point
            or span.allocators
            or frameworks.any_loaded()
        ):
            self._sample(final=final, only=span)
        duration_s, ram_peak, rss = self._ram_now(span, final=final)
        identities = self._identities if fake is None else self._fake_identities
        with self._lock:
            devices: dict[str, VramDeviceRecord] = {
                str(i): _identified(t.record(final=final), identities.get(i))
                for i, t in sorted(span.devices.items())
            }
            source = span.source
            total = None
            if devices:
                contexts = [t.cuda_context_bytes for t in span.devices.values()]
                known = [c for c in contexts if c is not None]
                total = span.total.record(sum(known) if known else None, final=final)
            allocators: dict[str, dict[str, AllocatorDeviceRecord]] | None = None
            if span.allocators:
                allocators = {}
                for (name, device), track in sorted(span.allocators.items()):
                    figures = track.record(reset=span.torch_reset, final=final)
                    allocators.setdefault(name, {})[str(device)] = figures
        torch = None
        if allocators is not None and "torch" in allocators:
            torch = {d: f["peak_bytes"] for d, f in allocators["torch"].items()}
        reason = None if devices else self._reason(readers, fake)
        failed = [
            f"GPU {i}: {d['unavailable_reason']}"
            for i, d in devices.items()
            if d.get("unavailable_reason")
        ]
        if failed:
            reason = "; ".join(failed)
        if fake is None and self._blind_reason is not None:
            reason = self._blind_reason
        ram = ram_record(span.ram_start_bytes, ram_peak, rss, self.ram.method)
        self._traced(span, ram, final=final)
        vram = vram_record(source, devices, torch, reason, allocators)
        if total is not None:
            vram["total"] = total
        return {"duration_s": duration_s, "ram": ram, "vram": vram, "timeline": None}

    def close(self) -> None:
        self._closing.set()
        self._active.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive() and self._thread_pid == os.getpid():
            thread.join(timeout=max(1.0, self.interval_s * 5))
        self.ram.close()


def _identities(targets: list[CudaDevice], mapped: bool) -> dict[int, DeviceIdentity]:
    """Each ordinal's GPU as NVML listed it; where NVML could not list GPUs the ordinal is
    another backend's index, and nothing about the GPU is known."""
    if not mapped:
        return {d.cuda_ordinal: device_identity(None, None, None, None) for d in targets}
    return {
        d.cuda_ordinal: device_identity(d.uuid, d.nvml_index, d.pci_bus_id, d.name, d.parent_uuid)
        for d in targets
    }


def _identified(record: VramDeviceRecord, identity: DeviceIdentity | None) -> VramDeviceRecord:
    """The device's identity first, then its figures (unknown identity: all ``None``)."""
    if identity is None:
        identity = device_identity(None, None, None, None)
    return {**identity, **record}


_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
_FORK_FORGETS = hasattr(os, "register_at_fork")


def _after_fork_in_child() -> None:
    for engine in list(_ENGINES):
        engine._forget_thread()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _nvml_blind(index: int, uuid: str | None, ordinal: int) -> str | None:
    """Why NVML's per-process figure on this device cannot be this process's (a foreign
    PID namespace), or ``None``; checked once, when the readers are resolved."""
    from pytest_hypomnesis.probe import nvml, pidns

    return pidns.blind_reason(lambda: nvml.listed_pids(index, uuid), str(ordinal))


def _device_wide(reader: Reader) -> Reader:
    """The device-wide used figure as the span's own (``--hypomnesis-vram-source=device``):
    its increase is the test's when nothing else grows on that device. A reading without
    a device-wide figure is unknown, with the reason, never the per-process one instead."""

    def read() -> VramReading:
        reading = reader()
        used = reading.device_used_bytes
        if used is None:
            failure = reading.failure or "no device-wide used figure in this reading"
            return VramReading(None, None, reading.source, failure=failure)
        return VramReading(used, used, reading.source)

    return read


def _without_own_figure(reader: Reader) -> Reader:
    """The device-wide figure only: the per-process one is unknown, never a silent 0."""

    def read() -> VramReading:
        reading = reader()
        return VramReading(None, reading.device_used_bytes, reading.source)

    return read
