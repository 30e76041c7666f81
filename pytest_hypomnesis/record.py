"""What a test record is: its typed shape, the one builder, and the one set of accessors.

A record is plain JSON data (str/int/float/bool/None/list/dict) so it travels on a pytest
``TestReport`` across the xdist boundary unchanged and lands in the JSON report as is; the
``TypedDict`` classes here give it a type. Device keys inside ``vram.devices`` are strings
(``"0"``) because JSON object keys are.

Every consumer (budgets, the summary table, the HTML report, the baseline gate, JUnit
properties, ``memory_report``) reads totals over devices, heaviness and budget status
through the accessors below, so each rule is written once. This module imports nothing
from the plugin or pytest: ``hmn report`` uses it without loading the plugin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypedDict

__all__ = [
    "AllocatorDeviceRecord",
    "AttemptRecord",
    "BudgetRecord",
    "BudgetStatus",
    "DeviceFigure",
    "DeviceIdentity",
    "MeasuredTestRecord",
    "RamRecord",
    "SpanRecord",
    "TimelineRecord",
    "VramDeviceRecord",
    "VramRecord",
    "VramTotalRecord",
    "allocator_total_bytes",
    "attempt_count",
    "budget_failed",
    "budget_status",
    "cuda_context_total_bytes",
    "device_identity",
    "heaviness",
    "heaviness_key",
    "increase",
    "measured_test_record",
    "over_budget",
    "ram_record",
    "unchecked_failure",
    "vram_device_record",
    "vram_devices_sum_bytes",
    "vram_increase_bytes",
    "vram_peak_bytes",
    "vram_record",
    "vram_total_bytes",
    "vram_total_record",
    "with_attempts",
    "worst_attempt",
]


class _RequiredRamFields(TypedDict):
    start_bytes: int | None
    peak_bytes: int | None
    end_bytes: int | None
    increase_bytes: int | None
    method: str


class RamRecord(_RequiredRamFields, total=False):
    """Process RSS over the measured span; ``method`` says how the peak was taken:
    ``rusage`` or ``hwm`` (kernel high-water mark, exact), ``sidecar`` (sampled by a
    separate process) or ``sampled`` (by a thread). With Python
    allocations traced (a ``source="python"`` budget): ``python_peak_bytes`` (the
    traced peak over the span) and ``python_increase_bytes`` (that peak over what was
    traced at its start)."""

    python_peak_bytes: int
    python_increase_bytes: int


class _RequiredDeviceFields(TypedDict):
    start_bytes: int | None
    peak_bytes: int | None
    end_bytes: int | None
    increase_bytes: int | None
    device_used_peak_bytes: int | None
    samples: int
    cuda_context_bytes: int | None
    gross_increase_bytes: int | None


class AllocatorDeviceRecord(TypedDict):
    """One framework allocator on one device over the span (docs/metrics.md):
    allocated bytes at start, peak, end; ``peak_method`` ``counter`` (the framework's
    own peak counter rose in the span: exact), ``sampled`` (on the sampler's beat) or
    ``reset`` (``--hypomnesis-torch-reset-peak``: exact)."""

    start_bytes: int
    peak_bytes: int
    end_bytes: int | None
    increase_bytes: int
    reserved_peak_bytes: int | None
    peak_method: str


class DeviceIdentity(TypedDict):
    """Which GPU a ``vram.devices`` entry is (schema 2; absent from older reports): its
    ``uuid`` (``GPU-…``, or ``MIG-…`` for a MIG device, whose ``parent_uuid`` is its GPU's),
    ``nvml_index`` (NVML's number, what ``hmn`` and ``nvidia-smi`` show), ``pci_bus_id`` and
    ``name``, as NVML gave them; each ``None`` where unknown (a backend without UUIDs, a
    ``FakeGpu`` device without one), never made up. The entry's key is the CUDA ordinal."""

    uuid: str | None
    nvml_index: int | None
    pci_bus_id: str | None
    name: str | None
    parent_uuid: str | None


class VramDeviceRecord(_RequiredDeviceFields, total=False):
    """This process's VRAM on one device over the span, and the device-wide used peak.

    ``samples`` counts the readings that succeeded, ``failed_samples`` those that failed
    (GPU lost, query not supported, a 2^64-1 or above-total figure, a hung call); with any
    failure every figure is ``None`` and ``unavailable_reason`` says why. Reports written
    before these two fields existed lack them. ``increase_bytes`` is net of a CUDA context
    created in the span (``cuda_context_bytes``, else ``None``); ``gross_increase_bytes``
    keeps it in (also absent from older reports)."""

    failed_samples: int
    unavailable_reason: str | None
    uuid: str | None
    nvml_index: int | None
    pci_bus_id: str | None
    name: str | None
    parent_uuid: str | None
    """The identity fields (``DeviceIdentity``; ``parent_uuid`` is ``None`` unless MIG);
    absent from schema-1 reports."""


class VramTotalRecord(TypedDict):
    """This process's VRAM over all watched devices together (docs/metrics.md): the sum
    over the devices at the span's first and last readings, and the **highest sum at any
    one reading** (not the sum of each device's own peak: devices that peak at different
    times never held that much at once). ``increase_bytes`` is that peak over the start,
    net of CUDA contexts created in the span. Every figure ``None`` when any device was
    unknown at any reading. Absent without a GPU, and from reports written before it."""

    start_bytes: int | None
    peak_bytes: int | None
    end_bytes: int | None
    increase_bytes: int | None


class _RequiredVramFields(TypedDict):
    source: str | None
    devices: dict[str, VramDeviceRecord]
    torch_peak_allocated_bytes: dict[str, int] | None
    unavailable_reason: str | None
    allocators: dict[str, dict[str, AllocatorDeviceRecord]] | None


class VramRecord(_RequiredVramFields, total=False):
    """``devices`` is keyed by the device index as a string; empty without a GPU.
    ``torch_peak_allocated_bytes`` (keyed by torch's CUDA index) is ``None`` unless
    PyTorch was imported and had initialised CUDA. ``allocators`` (framework name →
    framework device index → figures) is ``None`` unless torch, CuPy or JAX was loaded
    with memory on a GPU; older reports lack it. ``attribution``: ``process`` (this
    process's own per-process figure) or ``device`` (the device-wide used figure,
    ``--hypomnesis-vram-source=device``); older reports lack it (``process``). ``total``:
    the figures over all devices together, there whenever ``devices`` is not empty (read
    it through ``vram_total_bytes``)."""

    attribution: Literal["process", "device"]
    total: VramTotalRecord


class _RequiredBudgetFields(TypedDict):
    kind: Literal["max_ram", "max_vram"]
    limit_bytes: int
    measured_bytes: int | None
    passed: bool | None
    absolute: bool
    device: int | None
    origin: Literal["marker", "option"]
    message: str | None
    source: str | None
    """The source asked for: ``max_vram`` ``auto``, ``driver`` or ``allocator``;
    ``max_ram`` ``rss`` or ``python``. Reports older than budget sources lack it."""
    figure: str | None
    """Which figure was judged (``driver`` or ``allocator``); ``None`` when none was."""


class BudgetRecord(_RequiredBudgetFields, total=False):
    """One budget and its verdict; ``passed`` is ``None`` when it could not be checked.
    ``limit_text`` is the marker's limit as written, when it was a string."""

    limit_text: str


class TimelineRecord(TypedDict):
    """The sampled series of one test (``--hypomnesis-timeline``): equal-length lists,
    at most 200 points; see ``plugin/timeline.py``."""

    t_s: list[float]
    rss_bytes: list[int | None]
    vram_bytes: dict[str, list[int | None]]


class SpanRecord(TypedDict):
    """What the engine measured over one span: the figures a test record is built from
    (and what ``memory_report()`` holds). ``timeline`` is ``None`` unless asked for."""

    duration_s: float
    ram: RamRecord
    vram: VramRecord
    timeline: TimelineRecord | None


class _RequiredTestFields(TypedDict):
    nodeid: str
    outcome: str
    worker: str
    scope: str
    duration_s: float
    ram: RamRecord
    vram: VramRecord
    budgets: list[BudgetRecord]


class AttemptRecord(TypedDict):
    """One attempt of a test that was rerun (pytest-rerunfailures): its own figures and
    verdicts, in the order the attempts ran."""

    outcome: str
    worker: str
    duration_s: float
    ram: RamRecord
    vram: VramRecord
    budgets: list[BudgetRecord]
    budget_failed: bool


class MeasuredTestRecord(_RequiredTestFields, total=False):
    """One measured test: the JSON report's per-test record. ``timeline`` is there only
    with ``--hypomnesis-timeline``; ``admission_wait_s`` only with ``--hypomnesis-admit``
    (seconds the test waited for VRAM before its setup). ``budget_failed`` says whether a
    budget is what failed the test (absent from reports written before it); ``attempts``
    is there only for a rerun test."""

    budget_failed: bool
    attempts: list[AttemptRecord]
    """Every attempt, the last included, when the test was rerun; absent otherwise. The
    record's own figures are the last attempt's (the one pytest's outcome is for)."""
    timeline: TimelineRecord
    admission_wait_s: float


DeviceFigure = Literal["start_bytes", "peak_bytes", "end_bytes", "increase_bytes"]
BudgetStatus = Literal["passed", "failed", "not_checked"]


# ---------------------------------------------------------------------------------------
# The builder: the one place each part's shape is written.


def increase(start: int | None, peak: int | None) -> int | None:
    """The peak over the start, never negative; ``None`` when either is unknown."""
    if start is None or peak is None:
        return None
    return peak - start if peak > start else 0


def ram_record(start: int | None, peak: int | None, end: int | None, method: str) -> RamRecord:
    return {
        "start_bytes": start,
        "peak_bytes": peak,
        "end_bytes": end,
        "increase_bytes": increase(start, peak),
        "method": method,
    }


def vram_device_record(
    start: int | None,
    peak: int | None,
    end: int | None,
    device_used_peak: int | None,
    samples: int,
    cuda_context: int | None = None,
) -> VramDeviceRecord:
    """``cuda_context``: the CUDA context created in the span, left out of the increase."""
    gross = increase(start, peak)
    net = gross if gross is None or cuda_context is None else max(gross - cuda_context, 0)
    return {
        "start_bytes": start,
        "peak_bytes": peak,
        "end_bytes": end,
        "increase_bytes": net,
        "device_used_peak_bytes": device_used_peak,
        "samples": samples,
        "cuda_context_bytes": cuda_context,
        "gross_increase_bytes": gross,
    }


def device_identity(
    uuid: str | None,
    nvml_index: int | None,
    pci_bus_id: str | None,
    name: str | None,
    parent_uuid: str | None = None,
) -> DeviceIdentity:
    return {
        "uuid": uuid,
        "nvml_index": nvml_index,
        "pci_bus_id": pci_bus_id,
        "name": name,
        "parent_uuid": parent_uuid,
    }


def vram_total_record(
    start: int | None, peak: int | None, end: int | None, cuda_context: int | None
) -> VramTotalRecord:
    """``cuda_context``: the CUDA contexts created in the span (all devices), left out of
    the increase as on each device."""
    gross = increase(start, peak)
    net = gross if gross is None or cuda_context is None else max(gross - cuda_context, 0)
    return {"start_bytes": start, "peak_bytes": peak, "end_bytes": end, "increase_bytes": net}


def vram_record(
    source: str | None,
    devices: dict[str, VramDeviceRecord],
    torch: dict[str, int] | None,
    reason: str | None,
    allocators: dict[str, dict[str, AllocatorDeviceRecord]] | None = None,
) -> VramRecord:
    return {
        "source": source,
        "devices": devices,
        "torch_peak_allocated_bytes": torch,
        "unavailable_reason": reason,
        "allocators": allocators,
    }


def measured_test_record(
    span: SpanRecord,
    *,
    nodeid: str,
    outcome: str,
    worker: str,
    scope: str,
    budgets: list[BudgetRecord],
    budget_failed: bool = False,
) -> MeasuredTestRecord:
    """One test's record from its span's figures; keys in the documented order."""
    record: MeasuredTestRecord = {
        "nodeid": nodeid,
        "outcome": outcome,
        "worker": worker,
        "scope": scope,
        "duration_s": round(span["duration_s"], 6),
        "ram": span["ram"],
        "vram": span["vram"],
        "budgets": budgets,
        "budget_failed": budget_failed,
    }
    timeline = span["timeline"]
    if timeline is not None:
        record["timeline"] = timeline
    return record


# ---------------------------------------------------------------------------------------
# Accessors. Each takes a record's part or a whole record (a span's or a test's).


def vram_devices_sum_bytes(vram: VramRecord, figure: DeviceFigure) -> int | None:
    """The devices' own ``figure`` added up; ``None`` without a device, or when any
    device's figure is unknown (a partial sum would understate what the process used).
    For the peak and the increase an upper bound of ``vram_total_bytes`` (the devices may
    have peaked at different times): what a VRAM need plans with, so it never falls short."""
    devices = vram["devices"]
    if not devices:
        return None
    summed = 0
    for device in devices.values():
        value = device.get(figure)
        if value is None:
            return None
        summed += value
    return summed


def vram_total_bytes(vram: VramRecord, figure: DeviceFigure) -> int | None:
    """``figure`` over all the record's devices together: the one place a total over
    devices is read. ``None`` without a device, or when any device's figure is unknown.
    The record's ``total``, whose peak is the highest per-reading sum; a record without
    one (written before it) gives ``vram_devices_sum_bytes``."""
    summed = vram_devices_sum_bytes(vram, figure)
    if summed is None:
        return None
    total = vram.get("total")
    return summed if total is None else total.get(figure)


def cuda_context_total_bytes(vram: VramRecord) -> int | None:
    """The CUDA context created in the span, summed over the devices where one was;
    ``None`` when none was (older records lack the field)."""
    found = [d.get("cuda_context_bytes") for d in vram["devices"].values()]
    known = [v for v in found if v is not None]
    return sum(known) if known else None


def allocator_total_bytes(
    vram: VramRecord, figure: Literal["peak_bytes", "increase_bytes"], device: int | None
) -> tuple[int | None, list[int], list[str]]:
    """The framework allocators' ``figure`` summed over frameworks and their devices (or
    on ``device`` only), the device indices it covers, and the frameworks' names;
    ``(None, [], [])`` when no framework has a figure there."""
    total, devices, names = 0, set(), []
    for name, by_device in (vram.get("allocators") or {}).items():
        for key, figures in by_device.items():
            if device is None or key == str(device):
                total += figures[figure]
                devices.add(int(key))
                if name not in names:
                    names.append(name)
    if not names:
        return None, [], []
    return total, sorted(devices), names


def vram_peak_bytes(record: SpanRecord | MeasuredTestRecord) -> int | None:
    """Per-process VRAM peak over the watched devices; ``None`` without a GPU."""
    return vram_total_bytes(record["vram"], "peak_bytes")


def vram_increase_bytes(record: SpanRecord | MeasuredTestRecord) -> int | None:
    """Per-process VRAM increase over the watched devices; ``None`` without a GPU."""
    return vram_total_bytes(record["vram"], "increase_bytes")


def heaviness_key(
    vram_increase: int | None, ram_increase: int | None, nodeid: str
) -> tuple[int, int, str]:
    """The heaviness order, heaviest first: VRAM increase, then RAM increase (unknown
    sorts after any known figure), then node id for stability."""
    return (
        -(vram_increase if vram_increase is not None else -1),
        -(ram_increase if ram_increase is not None else -1),
        nodeid,
    )


def heaviness(record: MeasuredTestRecord) -> tuple[int, int, str]:
    """``heaviness_key`` of one record: sorting by it puts the heaviest test first."""
    # Once per test at session end: no GPU (no devices) skips the device total.
    vram = vram_increase_bytes(record) if record["vram"]["devices"] else None
    return heaviness_key(vram, record["ram"]["increase_bytes"], record["nodeid"])


def budget_status(budget: BudgetRecord) -> BudgetStatus:
    passed = budget["passed"]
    if passed is None:
        return "not_checked"
    return "passed" if passed else "failed"


def budget_failed(record: Mapping[str, object]) -> bool:
    """Whether a budget is what failed the test: it passed on its own and a budget failed
    it. Not a skipped, xfailed or xpassed test, nor one that failed on its own (an
    assertion, a pytest-timeout, a strict XPASS) and also had a failing budget: pytest
    counts those for their own reason. Takes any mapping: it also screens what arrives on
    a ``TestReport``."""
    budgets = record.get("budgets")
    if not budgets or not isinstance(budgets, list):  # the common case: no budget
        return False
    flag = record.get("budget_failed")
    if isinstance(flag, bool):
        return flag
    # A report written before the flag: the closest reading of it.
    return record.get("outcome") == "failed" and any(
        isinstance(b, Mapping) and b.get("passed") is False for b in budgets
    )


def over_budget(record: Mapping[str, object]) -> bool:
    """A budget failed the test on a measured figure above its limit (see
    ``budget_failed``); what "N over budget" counts and ``OVER BUDGET`` labels."""
    if not budget_failed(record):
        return False
    budgets = record["budgets"]
    assert isinstance(budgets, list)
    return any(
        isinstance(b, Mapping) and b.get("passed") is False and b.get("measured_bytes") is not None
        for b in budgets
    )


def unchecked_failure(record: Mapping[str, object]) -> bool:
    """A budget failed the test because it could not be checked (``--hypomnesis-strict``)
    and none was over its limit: a failure of its own, not "over budget"."""
    return budget_failed(record) and not over_budget(record)


def with_attempts(attempts: list[MeasuredTestRecord]) -> MeasuredTestRecord:
    """The record of a test that ran ``len(attempts)`` times: the last attempt's record
    (pytest's outcome is for it), with every attempt's figures kept in ``attempts``."""
    last = attempts[-1]
    record: MeasuredTestRecord = {k: v for k, v in last.items() if k != "attempts"}  # type: ignore[assignment]
    record["attempts"] = [
        {
            "outcome": a["outcome"],
            "worker": a["worker"],
            "duration_s": a["duration_s"],
            "ram": a["ram"],
            "vram": a["vram"],
            "budgets": a["budgets"],
            "budget_failed": budget_failed(a),
        }
        for a in attempts
    ]
    return record


def worst_attempt(record: MeasuredTestRecord) -> MeasuredTestRecord:
    """The record with the figures and verdicts of its heaviest attempt (the record itself
    when it ran once): what the summary shows, so a rerun that found the memory already
    resident does not hide the attempt that went over. ``budget_failed`` and ``outcome``
    stay the final ones."""
    attempts = record.get("attempts")
    if not attempts or len(attempts) < 2:
        return record
    nodeid = record["nodeid"]
    worst = min(
        attempts,
        key=lambda a: heaviness_key(
            vram_total_bytes(a["vram"], "increase_bytes") if a["vram"]["devices"] else None,
            a["ram"]["increase_bytes"],
            nodeid,
        ),
    )
    return {
        **record,
        "duration_s": worst["duration_s"],
        "ram": worst["ram"],
        "vram": worst["vram"],
        "budgets": worst["budgets"],
    }


def attempt_count(record: MeasuredTestRecord) -> int:
    attempts = record.get("attempts")
    return len(attempts) if attempts else 1
