"""Budgets: the ``max_ram`` / ``max_vram`` markers and the suite-wide defaults, parsed once
per test before it runs, and judged against the span's record."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import pytest

from pytest_hypomnesis._units import (
    SIZE_FORMS,
    SizeError,
    format_bytes_iec,
    parse_size,
    short_repr,
)
from pytest_hypomnesis.plugin.markers import MARKERS
from pytest_hypomnesis.plugin.options import MAX_DEVICE_INDEX
from pytest_hypomnesis.record import (
    BudgetRecord,
    SpanRecord,
    VramRecord,
    allocator_total_bytes,
    vram_total_bytes,
)

__all__ = [
    "MARKERS",
    "Budget",
    "BudgetError",
    "HypomnesisWarning",
    "budgets_for",
    "judge",
]

Kind = Literal["max_ram", "max_vram"]

VRAM_SOURCES = ("auto", "driver", "allocator")
"""``max_vram(source=...)``: which figure is judged (docs/metrics.md, "VRAM budget sources")."""

_FORMS: dict[str, str] = {
    "max_ram": 'max_ram("512MiB"), max_ram(536870912), max_ram("1.5 GB", absolute=True), '
    'max_ram("64MiB", source="python")',
    "max_vram": (
        'max_vram("2GiB"), max_vram("2GiB", device=0), max_vram("8GiB", absolute=True), '
        'max_vram("1GiB", source="allocator")'
    ),
}


class HypomnesisWarning(pytest.PytestWarning):
    """A budget that could not be checked, or another measurement caveat."""

    __module__ = "pytest_hypomnesis"


class BudgetError(Exception):
    """A marker with a bad argument; the message names marker, value, test and valid forms."""


@dataclass(frozen=True, slots=True)
class Budget:
    kind: Kind
    limit_bytes: int
    absolute: bool = False
    device: int | None = None
    origin: Literal["marker", "option"] = "marker"
    limit_text: str | None = dataclasses.field(default=None, compare=False)
    """The limit as written, when a string (``"24 MB"``); not part of the budget's value."""
    source: str | None = None
    """``max_ram``: ``rss`` or ``python`` (``None``: the session's default, ``rss``);
    ``max_vram``: ``driver`` or ``allocator`` (``None``: ``auto``, the larger)."""

    @property
    def traced(self) -> bool:
        """A RAM budget on traced Python allocations (its span runs tracemalloc)."""
        return self.kind == "max_ram" and self.source == "python"


def _call_text(mark: pytest.Mark) -> str:
    # short_repr: repr(10**5000) itself raises, and a 400-digit limit is not a readable line.
    parts = [short_repr(a) for a in mark.args]
    parts += [f"{k}={short_repr(v)}" for k, v in mark.kwargs.items()]
    return f"{mark.name}({', '.join(parts)})"


def _parse_mark(mark: pytest.Mark, nodeid: str, vram_source: str = "auto") -> Budget:
    name = mark.name

    def bad(problem: str) -> BudgetError:
        return BudgetError(
            f"{_call_text(mark)} on {nodeid}: {problem}; valid forms: {_FORMS[name]}"
        )

    kwargs = dict(mark.kwargs)
    if "limit" in kwargs:
        if mark.args:
            raise bad("limit given twice")
        limit = kwargs.pop("limit")
    elif len(mark.args) == 1:
        limit = mark.args[0]
    elif not mark.args:
        raise bad("missing the limit")
    else:
        raise bad(f"takes one limit, got {len(mark.args)} positional arguments")
    allowed = {"absolute", "device", "source"} if name == "max_vram" else {"absolute", "source"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise bad(f"unknown keyword {unknown[0]!r}")
    absolute = kwargs.get("absolute", False)
    if not isinstance(absolute, bool):
        raise bad(f"absolute must be True or False, not {short_repr(absolute)}")
    device = kwargs.get("device")
    if device is not None and (
        isinstance(device, bool)
        or not isinstance(device, int)
        or device < 0
        or device > MAX_DEVICE_INDEX
    ):
        raise bad(
            f"device must be a CUDA ordinal (0, 1, ... as in cuda:N) or None, not "
            f"{short_repr(device)}"
        )
    source = kwargs.get("source")
    if name == "max_vram" and source is not None and source not in VRAM_SOURCES:
        raise bad(f"source must be 'auto', 'driver' or 'allocator', not {short_repr(source)}")
    try:
        limit_bytes = parse_size(limit)
    except SizeError as exc:
        raise bad(f"{exc}".replace(f"; expected {SIZE_FORMS}", "")) from None
    text = limit if isinstance(limit, str) else None
    if name == "max_ram":
        if source is not None and source not in ("rss", "python"):
            raise bad(f"source must be 'rss' or 'python', not {short_repr(source)}")
        return Budget("max_ram", limit_bytes, absolute, device, "marker", text, source)
    return Budget(
        "max_vram", limit_bytes, absolute, device, "marker", text, _source(source, vram_source)
    )


def _source(marker: str | None, default: str) -> str | None:
    """The source a ``max_vram`` budget judges; ``None`` is ``auto``, the default."""
    chosen = marker or default
    return None if chosen == "auto" else chosen


def _closest_per_device(
    marks: Iterable[pytest.Mark], nodeid: str, vram_source: str
) -> list[Budget]:
    chosen: dict[int | None, Budget] = {}
    for mark in marks:  # closest first: a function's marker beats its class's and module's
        budget = _parse_mark(mark, nodeid, vram_source)
        chosen.setdefault(budget.device, budget)
    return list(chosen.values())


def budgets_for(
    item: pytest.Item,
    *,
    max_ram_bytes: int | None,
    max_vram_bytes: int | None,
    ram_source: str = "rss",
    vram_source: str = "auto",
) -> list[Budget]:
    """The budgets of one test; raises ``BudgetError`` for a bad marker argument.
    ``ram_source`` is what a RAM budget without ``source=`` judges. The closest RAM
    marker wins per source, so one test may carry an RSS and a Python budget.
    ``vram_source`` is ``--hypomnesis-vram-budget-source``, for markers without one."""
    # One walk over the node chain (closest first) instead of one per marker name.
    ram_marks: list[pytest.Mark] = []
    vram_marks: list[pytest.Mark] = []
    for mark in item.iter_markers():
        if mark.name == "max_ram":
            ram_marks.append(mark)
        elif mark.name == "max_vram":
            vram_marks.append(mark)
    budgets: list[Budget] = []
    if ram_marks:
        # Closest first; every marker is parsed, so an overridden one is validated too.
        per_source: dict[str, Budget] = {}
        for mark in ram_marks:
            budget = _parse_mark(mark, item.nodeid)
            if budget.source is None and ram_source != "rss":
                budget = dataclasses.replace(budget, source=ram_source)
            per_source.setdefault(budget.source or "rss", budget)
        budgets.extend(per_source.values())
    elif max_ram_bytes is not None:
        source = None if ram_source == "rss" else ram_source
        budgets.append(Budget("max_ram", max_ram_bytes, origin="option", source=source))
    if vram_marks:
        budgets.extend(_closest_per_device(vram_marks, item.nodeid, vram_source))
    elif max_vram_bytes is not None:
        budgets.append(
            Budget("max_vram", max_vram_bytes, origin="option", source=_source(None, vram_source))
        )
    return budgets


def _what(budget: Budget, scope: str) -> str:
    what = "peak" if budget.absolute else "peak increase"
    return f"{what} over setup+call" if scope == "test" else what


def _record(
    budget: Budget,
    measured: int | None,
    passed: bool | None,
    message: str | None,
    figure: str | None = None,
) -> BudgetRecord:
    record: BudgetRecord = {
        "kind": budget.kind,
        "limit_bytes": budget.limit_bytes,
        "measured_bytes": measured,
        "passed": passed,
        "absolute": budget.absolute,
        "device": budget.device,
        "origin": budget.origin,
        "message": message,
        "source": budget.source or ("auto" if budget.kind == "max_vram" else "rss"),
        "figure": figure,
    }
    if budget.limit_text is not None:
        record["limit_text"] = budget.limit_text
    return record


_NO_ALLOCATOR = "no framework allocator figure (torch, CuPy or JAX with GPU memory)"


def _gpus(indices: list[str]) -> str:
    return f"VRAM on GPU{'s' if len(indices) > 1 else ''} {', '.join(sorted(indices, key=int))}"


def _judge_vram(
    budget: Budget, vram: VramRecord, field: Literal["peak_bytes", "increase_bytes"]
) -> tuple[int | None, str, str, str, str | None]:
    """Measured bytes, where, which source, why unknown, and which figure was judged:
    the driver's, the allocators', or (``auto``) the larger of the two."""
    watched = vram["devices"]
    if budget.device is None:
        driver = vram_total_bytes(vram, field)
        gpus = list(watched)
    else:
        one = watched.get(str(budget.device))
        driver = None if one is None else one[field]
        gpus = [] if one is None else [str(budget.device)]
    if budget.device is not None and watched and str(budget.device) not in watched:
        listed = ", ".join(sorted(watched, key=int))
        reason = f"GPU {budget.device} is not watched (watched: {listed})"
    else:
        # The device's own reason (GPU lost mid-test...) before the record's summary.
        own = watched.get(str(budget.device)) if budget.device is not None else None
        own_reason = None if own is None else own.get("unavailable_reason")
        reason = own_reason or vram["unavailable_reason"] or "no per-process VRAM reading"
    want = budget.source or "auto"
    allocator: int | None = None
    alloc_devices: list[int] = []
    names: list[str] = []
    if want != "driver":
        allocator, alloc_devices, names = allocator_total_bytes(vram, field, budget.device)
    if want == "allocator":
        if allocator is None:
            return None, "", "", _NO_ALLOCATOR, None  # never the driver's figure instead
    elif allocator is None or (driver is not None and driver >= allocator):
        source = (vram["source"] or "unknown").upper().replace("NVIDIA_SMI", "nvidia-smi")
        if vram.get("attribution") == "device":
            source += " device-wide used"
        return driver, _gpus(gpus), source, reason, None if driver is None else "driver"
    where = _gpus([str(i) for i in alloc_devices])
    return allocator, where, f"{'/'.join(names)} allocator", reason, "allocator"


def _judge_one(budget: Budget, span: SpanRecord, *, scope: str, strict: bool) -> BudgetRecord:
    limit_text = format_bytes_iec(budget.limit_bytes)
    field: Literal["peak_bytes", "increase_bytes"] = (
        "peak_bytes" if budget.absolute else "increase_bytes"
    )
    figure: str | None = None
    if budget.traced:
        ram = span["ram"]
        measured = (
            ram.get("python_peak_bytes") if budget.absolute else ram.get("python_increase_bytes")
        )
        where, source = "RAM", "traced Python allocations"
        reason = "Python allocations were not traced"
    elif budget.kind == "max_ram":
        measured = span["ram"][field]
        where, source, reason = "RAM", "RSS", "RSS could not be read"
    else:
        measured, where, source, reason, figure = _judge_vram(budget, span["vram"], field)
    if measured is None:
        if strict:
            return _record(
                budget,
                None,
                False,
                f"{budget.kind}: could not be checked ({reason}) and --hypomnesis-strict is set",
            )
        return _record(budget, None, None, f"{budget.kind}: not checked: {reason}")
    if measured <= budget.limit_bytes:
        return _record(budget, measured, True, None, figure)
    message = (
        f"{budget.kind}: test used {format_bytes_iec(measured)} {where} "
        f"({_what(budget, scope)}, {source}) > limit {limit_text}"
    )
    return _record(budget, measured, False, message, figure)


def judge(
    budgets: Iterable[Budget], span: SpanRecord, *, scope: str, strict: bool
) -> list[BudgetRecord]:
    """One record per budget: ``passed`` True/False, or None (not checked, with why)."""
    return [_judge_one(b, span, scope=scope, strict=strict) for b in budgets]
