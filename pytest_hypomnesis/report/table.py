"""The summary table, shared by the plugin's terminal section and ``hmn report``.

Input is the JSON report's test records (plain dicts), so both callers print exactly the
same table. The column layout lives in ``_COLUMNS`` and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_hypomnesis._units import format_bytes_iec
from pytest_hypomnesis.record import (
    DeviceFigure,
    MeasuredTestRecord,
    attempt_count,
    budget_failed,
    cuda_context_total_bytes,
    heaviness,
    over_budget,
    unchecked_failure,
    vram_increase_bytes,
    vram_peak_bytes,
    worst_attempt,
)
from pytest_hypomnesis.report.printable import printable

if TYPE_CHECKING:
    from pytest_hypomnesis.report.schema import Report, ReportDevice

__all__ = [
    "budget_cell",
    "fit_table",
    "format_interval",
    "header_line",
    "header_notes",
    "heap_reuse_hid",
    "not_checked_lines",
    "run_peak_line",
    "shorten_left",
    "summary_lines",
    "unit_note",
    "wrap_header",
]

CONTEXT_MARK = "†"
"""Marks a test that created the CUDA context; the footnote under the table says so."""

_RAM_METHODS = {
    "rusage": "kernel high-water mark (exact)",
    "hwm": "kernel high-water mark (exact)",
    "sampled": "sampled",
    "sidecar": "sampled by a sidecar process",
}


def budget_cell(record: MeasuredTestRecord) -> str:
    """``ram 45%``, ``vram[0] 130% OVER``, ``vram n/c`` (not checked), joined; ``-`` if none.
    A budget over its limit on a test it did not fail (skipped, xfailed, xpassed, or failed
    on its own) reads ``ram 130% (over)``: the verdict is kept, not counted."""
    parts: list[str] = []
    enforced = budget_failed(record)
    for budget in record["budgets"]:
        label = "ram" if budget["kind"] == "max_ram" else "vram"
        if budget["device"] is not None:
            label += f"[{budget['device']}]"
        passed, measured, limit = budget["passed"], budget["measured_bytes"], budget["limit_bytes"]
        if passed is None or measured is None:
            # Not checked (no GPU); with --hypomnesis-strict that fails the test.
            parts.append(f"{label} n/c" + (" FAIL" if passed is False else ""))
            continue
        share = f" {measured * 100 / limit:.0f}%" if limit > 0 else ""
        mark = "" if passed else (" OVER" if enforced else " (over)")
        parts.append(f"{label}{share}{mark}")
    return ", ".join(parts) if parts else "-"


def unit_note(tests: Sequence[MeasuredTestRecord], option_texts: Sequence[str] = ()) -> str | None:
    """Once per run: what a decimal unit in a budget's limit (``"24 MB"``) means here and
    how to write the binary one; ``None`` when no limit used one."""
    from pytest_hypomnesis._units import decimal_unit_note

    texts = list(option_texts)
    seen: set[str] = set()
    for test in tests:
        for budget in test["budgets"]:
            text = budget.get("limit_text")
            if text is not None and text not in seen:
                seen.add(text)
                texts.append(text)
    return decimal_unit_note(texts)


def not_checked_lines(tests: Sequence[MeasuredTestRecord]) -> list[str]:
    """One line per reason a budget could not be checked (the verdict's message), with the
    number of tests: said once for the run, not once per test."""
    counts: dict[str, int] = {}
    for test in tests:
        for budget in test["budgets"]:
            message = budget["message"]
            if budget["passed"] is None and message:
                counts[message] = counts.get(message, 0) + 1
    return [
        f"hypomnesis: {message} ({n} test{'s' if n != 1 else ''}; --hypomnesis-strict fails them)"
        for message, n in counts.items()
    ]


def _duration(record: MeasuredTestRecord) -> str:
    return f"{record['duration_s']:.2f}s"


@dataclass(frozen=True)
class _Column:
    title: str
    cell: Callable[[MeasuredTestRecord], str]
    right: bool = True
    verbose_only: bool = False


def _ram(key: DeviceFigure) -> Callable[[MeasuredTestRecord], str]:
    return lambda r: format_bytes_iec(r["ram"][key])


_COLUMNS: tuple[_Column, ...] = (
    _Column("test", lambda r: r["nodeid"], right=False),
    _Column("RAM start", _ram("start_bytes"), verbose_only=True),
    _Column("RAM peak", _ram("peak_bytes")),
    _Column("RAM increase", _ram("increase_bytes")),
    _Column("RAM end", _ram("end_bytes"), verbose_only=True),
    _Column("VRAM peak", lambda r: format_bytes_iec(vram_peak_bytes(r))),
    _Column("VRAM increase", lambda r: format_bytes_iec(vram_increase_bytes(r))),
    _Column("budget", budget_cell, right=False),
    _Column("duration", _duration),
    _Column("outcome", lambda r: r["outcome"], right=False, verbose_only=True),
    _Column("worker", lambda r: r["worker"], right=False, verbose_only=True),
)


def _python_increase(record: MeasuredTestRecord) -> str:
    return format_bytes_iec(record["ram"].get("python_increase_bytes"))


_PYTHON_COLUMN = _Column("Python increase", _python_increase)
"""Shown when some test traced Python allocations (a ``source="python"`` budget)."""


def _render(
    header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]
) -> list[str]:
    # Cells come from report files (hmn report): escaped before their widths are taken.
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        out = [
            cell.rjust(widths[i]) if right[i] else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(out).rstrip()

    return [line(header), *(line(r) for r in rows)]


def summary_lines(
    tests: Sequence[MeasuredTestRecord],
    *,
    top: int,
    verbose: bool = False,
    sources: Sequence[str] | None = None,
    width: int | None = None,
) -> list[str]:
    """The table of the ``top`` heaviest tests (0 = all), then a line counting what is
    not shown and the budget failures. ``sources`` (parallel to ``tests``) adds a column
    naming the report each record came from, for merged shards. ``[]`` when no tests.

    With ``width`` (the terminal's) and not ``verbose``, the table fits it: see
    ``fit_table``. ``verbose`` shows every column and whole node ids."""
    if not tests:
        return []
    if sources is not None and len(sources) != len(tests):
        raise ValueError("sources must name one report per test record")
    # A rerun test shows its heaviest attempt, with the number of attempts.
    worst = [worst_attempt(t) for t in tests]
    order = sorted(range(len(tests)), key=lambda i: heaviness(worst[i]))
    shown = order if top <= 0 else order[:top]
    columns = [c for c in _COLUMNS if verbose or not c.verbose_only]
    if any("python_increase_bytes" in w["ram"] for w in worst):
        # Both figures where both were measured: the traced one beside RSS's.
        at = next(i for i, c in enumerate(columns) if c.title == "RAM increase") + 1
        columns.insert(at, _PYTHON_COLUMN)
    header = [c.title for c in columns]
    right = [c.right for c in columns]
    rows = [[c.cell(worst[i]) for c in columns] for i in shown]
    if not verbose and width is None:
        for row in rows:
            row[0] = shorten_nodeid(row[0])
    contexts = [cuda_context_total_bytes(worst[i]["vram"]) for i in shown]
    for row, i, context in zip(rows, shown, contexts, strict=True):
        attempts = attempt_count(tests[i])
        if attempts > 1:
            row[0] += f" (worst of {attempts} attempts)"
        if context is not None:
            row[0] += f" {CONTEXT_MARK}"
    if sources is not None:
        header.insert(1, "source")
        right.insert(1, False)
        for row, i in zip(rows, shown, strict=True):
            row.insert(1, sources[i])
    notes: list[str] = []
    if width is not None and not verbose:
        header, rows, right, dropped = fit_table(header, rows, right, width)
        if dropped:
            notes.append(f"left out to fit {width} columns: {', '.join(dropped)} (-v shows all)")
    lines = _render(header, rows, right)
    marked = [c for c in contexts if c is not None]
    if marked:
        size = format_bytes_iec(marked[0]) if len(marked) == 1 else "see cuda_context_bytes"
        lines.append(
            f"{CONTEXT_MARK} created the CUDA context ({size}): left out of its VRAM increase "
            "(the JSON keeps gross_increase_bytes); --hypomnesis-cuda-warmup creates it "
            "before the first test"
        )
    hidden = len(tests) - len(shown)
    if hidden:
        notes.append(f"{hidden} more not shown (top {top} of {len(tests)}; top 0 shows all)")
    failed = sum(1 for t in tests if over_budget(t))
    if failed:
        notes.append(f"{failed} over budget")
    rerun = sum(1 for t in tests if attempt_count(t) > 1)
    if rerun:
        notes.append(f"{rerun} rerun (figures: the worst attempt)")
    hidden_by_reuse = sum(1 for w in worst if heap_reuse_hid(w))
    if hidden_by_reuse:
        notes.append(
            f"{hidden_by_reuse} RSS budget{'s' if hidden_by_reuse != 1 else ''} passed on an "
            "increase near 0 B while traced Python allocations exceeded the limit: the heap "
            'already held the memory (source="python" judges allocations)'
        )
    unchecked = sum(1 for t in tests if unchecked_failure(t))
    if unchecked:
        notes.append(f"{unchecked} failed: budget not checked (--hypomnesis-strict)")
    if notes:
        lines.append("; ".join(notes))
    return lines


NEAR_ZERO_BYTES = 1 << 20
"""An RSS increase this small on a test whose traced allocations exceeded the limit is
what heap reuse looks like."""


def heap_reuse_hid(record: MeasuredTestRecord) -> bool:
    """An RSS budget passed on an increase near 0 B while the traced Python allocations of
    the same span exceeded its limit: the heap already held the memory (an earlier test
    grew it), so RSS did not rise."""
    traced = record["ram"].get("python_increase_bytes")
    rss = record["ram"]["increase_bytes"]
    if traced is None or rss is None or rss > NEAR_ZERO_BYTES:
        return False
    return any(
        b["kind"] == "max_ram"
        and b.get("source", "rss") == "rss"
        and not b["absolute"]
        and b["passed"] is True
        and traced > b["limit_bytes"]
        for b in record["budgets"]
    )


DROP_ORDER = ("RAM peak", "duration", "VRAM peak")
"""The columns left out, in this order, when the table is wider than the terminal (after
the VRAM columns of a run without any VRAM figure, and after node ids are shortened to
``MIN_TEST_CHARS``): the increases, which budgets judge, and the budget cell stay."""

MIN_TEST_CHARS = 28
"""Node ids are shortened from the left down to this many characters, or to the longest
test name (at most half the width), before any column with figures is left out."""


def fit_table(
    header: list[str], rows: list[list[str]], right: list[bool], width: int
) -> tuple[list[str], list[list[str]], list[bool], list[str]]:
    """The table made to fit ``width`` characters: first the VRAM columns go when no row
    has a VRAM figure (the header says there is no GPU), then node ids are shortened from
    the left keeping the test name (``…a.py::test_x[case]``) down to ``MIN_TEST_CHARS`` or
    the longest test name,
    then ``DROP_ORDER``'s columns go one by one, then node ids are shortened further.
    Returns the header, rows, alignment and the titles of the columns left out (the VRAM
    columns without figures are not listed: nothing was in them)."""
    keep = list(range(len(header)))
    dropped: list[str] = []

    def cell_width(i: int) -> int:
        return max(len(r[i]) for r in [header, *rows])

    def others_width() -> int:
        return sum(cell_width(i) + 2 for i in keep if i != 0)

    if cell_width(0) + others_width() <= width:
        return header, rows, right, dropped
    for title in ("VRAM peak", "VRAM increase"):
        if title in header:
            i = header.index(title)
            if all(r[i] == "-" for r in rows):
                keep.remove(i)
    if cell_width(0) + others_width() > width:
        # Enough room for every row's test name (the part after the last "::"), or at
        # least MIN_TEST_CHARS, before a column with figures is left out.
        names = max(len(r[0].rsplit("::", 1)[-1]) + 1 for r in rows)
        floor = max(MIN_TEST_CHARS, min(names, width // 2))
        for title in DROP_ORDER:
            if width - others_width() >= floor:
                break
            if title in header and header.index(title) in keep:
                keep.remove(header.index(title))
                dropped.append(title)
        limit = max(width - others_width(), len(header[0]), 12)
        for row in rows:
            row[0] = shorten_left(row[0], limit)
    pick = [i for i in range(len(header)) if i in keep]
    return (
        [header[i] for i in pick],
        [[r[i] for i in pick] for r in rows],
        [right[i] for i in pick],
        dropped,
    )


def shorten_left(nodeid: str, limit: int) -> str:
    """``nodeid`` cut from the left to ``limit`` characters, an ellipsis first: the end of
    a node id is the test's name and parameters, what tells tests apart."""
    if len(nodeid) <= limit:
        return nodeid
    return "…" + nodeid[len(nodeid) - limit + 1 :]


def wrap_header(text: str, width: int) -> list[str]:
    """The header line broken at its ``; `` separators to fit ``width``; continuation
    lines are indented by two spaces. A single part longer than ``width`` stays whole
    on its own line rather than being cut inside a name."""
    parts = text.split("; ")
    lines: list[str] = []
    current = ""
    for part in parts:
        candidate = f"{current}; {part}" if current else part
        if current and len(candidate) + (1 if part is not parts[-1] else 0) > width:
            lines.append(current + ";")
            current = "  " + part
        else:
            current = candidate
    lines.append(current)
    return lines


MAX_NODEID_CHARS = 80


def shorten_nodeid(nodeid: str, limit: int = MAX_NODEID_CHARS) -> str:
    """A long node id cut in the middle (``tests/a.py::Test…::test_x[case]``), keeping
    the file and the test name, so one 300-character id does not widen every row.
    ``-v`` shows ids whole."""
    if len(nodeid) <= limit:
        return nodeid
    head = limit // 3
    tail = limit - head - 1
    return f"{nodeid[:head]}…{nodeid[-tail:]}"


def format_interval(seconds: float) -> str:
    """``0.01`` → ``10ms``, ``0.0005`` → ``500us``, ``2.0`` → ``2s``."""
    if seconds < 0.001:
        return f"{seconds * 1e6:g}us"
    if seconds < 1:
        return f"{seconds * 1e3:g}ms"
    return f"{seconds:g}s"


def _device_text(device: ReportDevice) -> str:
    name = device.get("name") or "unknown GPU"
    total = format_bytes_iec(device.get("total_bytes"))
    return f"GPU {device.get('index')} {name} ({total})"


def header_line(report: Report) -> str:
    """One line naming the scope, how RAM and VRAM were measured, and the devices.

    The report's ``settings``, ``devices``, ``machine`` and ``tests``, whose records tell
    which methods and sources were used.
    """
    settings = report.get("settings", {})
    tests = report.get("tests", [])
    parts = [f"scope {settings.get('scope', 'call')}"]
    methods = sorted({t["ram"]["method"] for t in tests if t.get("ram")})
    interval = settings.get("interval_s")
    every = f" every {format_interval(interval)}" if isinstance(interval, (int, float)) else ""
    if methods:
        texts = []
        for m in methods:
            text = _RAM_METHODS.get(m, m)
            texts.append(text + every if m in ("sampled", "sidecar") else text)
        parts.append("RAM peak: " + ", ".join(dict.fromkeys(texts)))
        if settings.get("children"):
            parts[-1] += " (with child processes)"
    sources = sorted({source for t in tests if (source := t.get("vram", {}).get("source"))})
    devices = report.get("devices", [])
    device_wide = settings.get("vram_source") == "device" or any(
        t.get("vram", {}).get("attribution") == "device" for t in tests
    )
    if sources:
        kind = (
            "device-wide used (--hypomnesis-vram-source=device)" if device_wide else "per-process"
        )
        parts.append(f"VRAM: {'/'.join(s.upper() for s in sources)} {kind}{every}")
    elif devices:
        parts.append("VRAM: per-process figure unavailable")
    if devices:
        parts.append(", ".join(_device_text(d) for d in devices))
        drivers = sorted({driver for d in devices if (driver := d.get("driver_version"))})
        if drivers:
            parts.append("driver " + ", ".join(drivers))
    else:
        reason = report.get("machine", {}).get("gpu_unavailable_reason")
        where = "no GPU on this machine" if sources else "no GPU"
        parts.append(f"{where} ({reason})" if reason else where)
    waits = [t["admission_wait_s"] for t in tests if "admission_wait_s" in t]
    if waits:
        parts.append(f"admission wait {sum(waits):.2f}s total over {len(waits)} tests")
    return printable("hypomnesis: " + "; ".join(parts))


def run_peak_line(report: Report) -> str | None:
    """The header's second line: the whole run's RAM peak (the highest RSS of any of its
    processes), which the per-test reset of the kernel's mark hides from everything
    outside the run; ``None`` for a report without it."""
    run = report.get("run")
    peak = run.get("ram_peak_bytes") if isinstance(run, Mapping) else None
    if not isinstance(peak, int) or isinstance(peak, bool):
        return None
    by_worker = run.get("ram_peak_bytes_by_worker") if isinstance(run, Mapping) else None
    text = f"hypomnesis: run RAM peak {format_bytes_iec(peak)}"
    if isinstance(by_worker, Mapping) and len(by_worker) > 1:
        each = ", ".join(
            f"{name} {format_bytes_iec(value)}"
            for name, value in by_worker.items()
            if isinstance(value, int)
        )
        text += f" ({each})"
    return printable(text)


def header_notes(report: Report) -> list[str]:
    """Lines under the header: measurement caveats of this run (what
    ``--hypomnesis-cuda-warmup`` did, JAX's preallocated pool), from ``machine``."""
    notes: list[str] = []
    warmup = report.get("machine", {}).get("cuda_warmup")
    if warmup:
        notes.append(printable(f"hypomnesis: {warmup}"))
    fraction = report.get("machine", {}).get("jax_preallocation")
    if fraction:
        notes.append(
            f"hypomnesis: JAX preallocates {fraction} of each GPU: driver (NVML) figures "
            "show that pool, not what a test used; set XLA_PYTHON_CLIENT_PREALLOCATE=false "
            'or judge max_vram(..., source="allocator")'
        )
    return notes
