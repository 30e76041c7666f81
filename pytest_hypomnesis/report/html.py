"""The HTML report: one self-contained file (inline CSS, JS and SVG; nothing fetched).

``render_html(report)`` returns the page; ``write_html_atomic(path, html)`` writes it so that
``path`` never holds half a page. Every string from the report is escaped: node ids can hold
``<``, ``&``, quotes and any Unicode. A Content-Security-Policy forbids every network fetch,
so even a bug here cannot make the page load something.

Opening the page with the fragment ``#selftest`` runs a small in-page check (sorts columns,
verifies the order, collects script errors) and writes its verdict as JSON into
``<pre id="hmn-selftest">``; the headless-Chromium test reads it back.
"""

from __future__ import annotations

import functools
import html
import json
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import TypeAlias, TypedDict, TypeGuard

from pytest_hypomnesis._units import format_bytes_iec
from pytest_hypomnesis.plugin.timeline import Timeline, parse_timeline
from pytest_hypomnesis.record import heaviness_key, over_budget
from pytest_hypomnesis.report.atomicfile import write_text_atomic
from pytest_hypomnesis.report.compare import (
    METRIC_TITLES,
    CompareError,
    Comparison,
    compare,
    format_change,
    metric_bytes,
)

__all__ = ["render_html", "write_html_atomic"]

HEAVY_TOP = 15
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
# Table column order of the four metrics (peak before increase, as in the terminal summary).
_TABLE_METRICS = ("ram_peak", "ram", "vram_peak", "vram")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | int | None) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------------------
# Input checks: strict about what the page needs, tolerant of everything else.


def _tests_of(report: Mapping[str, object]) -> list[Mapping[str, object]]:
    if not isinstance(report, Mapping):
        raise CompareError("report: expected a report object")
    tests = report.get("tests")
    if not isinstance(tests, list):
        raise CompareError("report: 'tests' must be a list")
    for i, test in enumerate(tests):
        if not isinstance(test, Mapping) or not isinstance(test.get("nodeid"), str):
            raise CompareError(f"report: tests[{i}] has no string 'nodeid'")
    return tests


def _nodeid(test: Mapping[str, object]) -> str:
    nodeid = test["nodeid"]
    assert isinstance(nodeid, str)  # _tests_of checked every record's
    return nodeid


def _timeline_of(test: Mapping[str, object], i: int) -> Timeline | None:
    data = test.get("timeline")
    if data is None:
        return None
    try:
        return parse_timeline(data, f"tests[{i}].timeline")
    except ValueError as exc:
        raise CompareError(f"report: {exc}") from None


def _budget_status(test: Mapping[str, object]) -> tuple[int, str]:
    """(severity for sorting: -1 none, 0 within, 1 not checked, 2 over; text)."""
    budgets = test.get("budgets")
    parts: list[str] = []
    severity = -1
    for budget in budgets if isinstance(budgets, list) else []:
        if not isinstance(budget, Mapping):
            continue
        label = "ram" if budget.get("kind") == "max_ram" else "vram"
        if isinstance(budget.get("device"), int):
            label += f"[{budget['device']}]"
        limit, measured, passed = (
            budget.get("limit_bytes"),
            budget.get("measured_bytes"),
            budget.get("passed"),
        )
        if passed is None or not isinstance(measured, int) or not isinstance(limit, int):
            parts.append(f"{label} not checked")
            severity = max(severity, 1)
            continue
        share = f" {measured * 100 / limit:.0f}%" if limit > 0 else ""
        parts.append(f"{label}{share}{'' if passed else ' OVER'}")
        severity = max(severity, 0 if passed else 2)
    return severity, ", ".join(parts) if parts else "-"


def _heaviness(test: Mapping[str, object]) -> tuple[int, int, str]:
    # Tolerant of a record without ram/vram (metric_bytes names a malformed field).
    return heaviness_key(metric_bytes(test, "vram"), metric_bytes(test, "ram"), _nodeid(test))


# ---------------------------------------------------------------------------------------
# SVG charts.


def chart_label(nodeid: str, limit: int = 52) -> str:
    """A chart label that keeps the file's name and the test's: the directories go first,
    then the middle of what follows the file (``test_a.py::…st_x[case]``)."""
    if len(nodeid) <= limit:
        return nodeid
    path, sep, rest = nodeid.partition("::")
    name = path.rsplit("/", 1)[-1] + sep
    if len(name) + len(rest) <= limit:
        return name + rest
    room = limit - len(name) - 1
    if room < 12:  # a very long file name: keep the test's end
        return "…" + nodeid[-(limit - 1) :]
    return f"{name}…{rest[-room:]}"


def _heavy_chart(tests: Sequence[Mapping[str, object]], top: int) -> str:
    heaviest = sorted(tests, key=_heaviness)[:top]
    bars = [(_nodeid(t), metric_bytes(t, "ram"), metric_bytes(t, "vram")) for t in heaviest]
    scale = max([v for _, r, g in bars for v in (r, g) if v is not None] + [0])
    label_w, bar_w, row_h = 380, 440, 30
    height = 30 + row_h * max(len(bars), 1)
    legend = (
        f'<rect x="{label_w}" y="6" width="10" height="10" fill="{_COLORS[0]}"/>'
        f'<text x="{label_w + 14}" y="15">RAM increase</text>'
    )
    if any(vram is not None for _, _, vram in bars):  # no VRAM legend without a GPU
        legend += (
            f'<rect x="{label_w + 130}" y="6" width="10" height="10" fill="{_COLORS[1]}"/>'
            f'<text x="{label_w + 144}" y="15">VRAM increase</text>'
        )
    out = [
        f'<svg class="heavy-chart" role="img" width="{label_w + bar_w + 120}" height="{height}">',
        "<title>Heaviest tests by VRAM increase, then RAM increase</title>",
        legend,
    ]
    if scale <= 0:
        out.append('<text x="4" y="45">no memory increase measured</text>')
    for row, (nodeid, ram, vram) in enumerate(bars if scale > 0 else []):
        y = 26 + row * row_h
        short = chart_label(nodeid)
        out.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">'
            f"<title>{_e(nodeid)}</title>{_e(short)}</text>"
        )
        for offset, value, color in ((0, ram, _COLORS[0]), (12, vram, _COLORS[1])):
            if value is None:
                continue
            width = max(value, 0) * bar_w / scale
            out.append(
                f'<rect x="{label_w}" y="{y + offset}" width="{width:.1f}" height="11" '
                f'fill="{color}"><title>{_e(format_bytes_iec(value))}</title></rect>'
                f'<text class="small" x="{label_w + width + 4:.1f}" y="{y + offset + 10}">'
                f"{_e(format_bytes_iec(value))}</text>"
            )
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------------------------------
# Page sections.


def _meta(report: Mapping[str, object]) -> str:
    def pairs(obj: object) -> str:
        if not isinstance(obj, Mapping):
            return ""
        return "".join(
            f"<dt>{_e(k)}</dt><dd>{_e(v if isinstance(v, str) else json.dumps(v))}</dd>"
            for k, v in obj.items()
        )

    blocks = [
        f"<p>created {_e(report.get('created', '?'))}</p>",
        f"<details><summary>versions, machine, settings</summary><dl>"
        f"{pairs(report.get('versions'))}{pairs(report.get('machine'))}"
        f"{pairs(report.get('settings'))}</dl></details>",
    ]
    listed = report.get("devices")
    devices = [d for d in listed if isinstance(d, Mapping)] if isinstance(listed, list) else []
    if devices:
        rows = "".join(
            f"<tr><td>{_e(d.get('index', '?'))}</td><td>{_e(d.get('name') or 'unknown GPU')}</td>"
            f"<td>{_e(format_bytes_iec(d.get('total_bytes')))}</td>"
            f"<td>{_e(format_bytes_iec(d.get('used_bytes')))}</td>"
            f"<td>{_e(d.get('driver_version') or '-')}</td></tr>"
            for d in devices
        )
        blocks.append(
            '<table class="devices"><thead><tr><th>GPU</th><th>name</th><th>total</th>'
            f"<th>used at start</th><th>driver</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    else:
        blocks.append("<p>no GPU</p>")
    return "".join(blocks)


def _comparison_section(comparison: Comparison) -> str:
    limits = ", ".join(t.text for t in comparison.thresholds) or "no thresholds"
    n = len(comparison.regressions)
    verdict = f"{n} regression{'s' if n != 1 else ''}" if n else "no regression"
    out = [
        '<section id="comparison"><h2>Comparison with the baseline</h2>',
        f'<p class="{"bad" if n else "good"}">{len(comparison.rows)} tests compared '
        f"({_e(limits)}): {verdict}</p>",
    ]
    out.extend(f'<p class="warn">warning: {_e(w)}</p>' for w in comparison.warnings)
    if comparison.regressions:
        items = "".join(
            f"<li><code>{_e(r.nodeid)}</code> {_e(r.change.metric)} "
            f"{_e(format_change(r.change))} &gt; {_e(r.threshold.text)}</li>"
            for r in comparison.regressions
        )
        out.append(f'<ul class="regressions">{items}</ul>')
    for title, nodeids, cls in (
        ("only in the baseline", comparison.only_in_base, "only-base"),
        ("only in this run", comparison.only_in_new, "only-new"),
    ):
        if nodeids:
            items = "".join(f"<li><code>{_e(x)}</code></li>" for x in nodeids)
            out.append(
                f"<details><summary>{_e(title)} ({len(nodeids)})</summary>"
                f'<ul class="{cls}">{items}</ul></details>'
            )
    out.append("</section>")
    return "".join(out)


def _columns(compared: bool) -> list[tuple[str, str, str]]:
    """(key, title, "text" or "num") of every table column, in order."""
    cells = [
        ("test", "test", "text"),
        ("outcome", "outcome", "text"),
        ("worker", "worker", "text"),
        ("duration", "duration", "num"),
    ]
    for metric in _TABLE_METRICS:
        cells.append((metric, METRIC_TITLES[metric], "num"))
        if compared:
            cells.append((f"{metric}_base", f"{METRIC_TITLES[metric]} (baseline)", "num"))
            cells.append((f"{metric}_change", f"{METRIC_TITLES[metric]} change", "num"))
    cells.append(("budget", "budget", "num"))
    return cells


def _header_cells(compared: bool) -> str:
    return "".join(
        f'<th data-key="{key}" data-type="{kind}" tabindex="0" '
        f'title="click to sort">{_e(title)}</th>'
        for key, title, kind in _columns(compared)
    )


Cell: TypeAlias = "str | list[str | int | float | None]"
"""One table cell in the page's data: a string is a text cell whose sort key is its text;
``[text, sort]`` or ``[text, sort, css_class]``, where ``sort`` is a number, a string, or
``null`` (a missing figure, sorted last)."""
Row: TypeAlias = "list[int | Cell]"
"""One table row in the page's data: the test's index in the report, its timeline's slot
(``-1``: none), then its cells."""


def _row_cells(test: Mapping[str, object], comparison: Comparison | None) -> list[Cell]:
    nodeid = _nodeid(test)
    duration = test.get("duration_s")
    duration_s = duration if isinstance(duration, (int, float)) else None
    cells: list[Cell] = [
        nodeid,
        str(test.get("outcome", "")),
        str(test.get("worker", "")),
        ["-" if duration_s is None else f"{duration_s:.2f}s", duration_s],
    ]
    compared = comparison.row(nodeid) if comparison is not None else None
    for metric in _TABLE_METRICS:
        value = metric_bytes(test, metric, f"test {nodeid!r}")
        cells.append([format_bytes_iec(value), value])
        if comparison is None:
            continue
        change = compared.changes[metric] if compared is not None else None
        before = change.before_bytes if change is not None else None
        delta = change.change_bytes if change is not None else None
        percent = change.change_percent if change is not None else None
        text = format_bytes_iec(delta, signed=True) if delta is not None else "-"
        if percent is not None:
            text += f" ({percent:+.1f}%)"
        cells.append([format_bytes_iec(before), before])
        change_cell: list[str | int | float | None] = [text, delta]
        if comparison.regressed(nodeid, metric):
            change_cell.append("regressed")
        cells.append(change_cell)
    severity, budget_text = _budget_status(test)
    cells.append(
        [budget_text, severity, "budget over"] if severity == 2 else [budget_text, severity]
    )
    return cells


def _all_known(values: Sequence[int | None]) -> TypeGuard[Sequence[int]]:
    return None not in values  # at C speed


def _deltas(values: Sequence[int | None]) -> list[int | None]:
    """Each known value as its difference from the previous known one (the first known one
    as itself); a gap stays ``None``. Samples change little: this keeps the page small."""
    if _all_known(values):  # the common case
        return [b - a for a, b in zip([0, *values], values, strict=False)]
    out: list[int | None] = []
    last = 0
    for v in values:
        if v is None:
            out.append(None)
        else:
            out.append(v - last)
            last = v
    return out


def _peak(values: Sequence[int | None]) -> int | None:
    if _all_known(values):
        return max(values, default=None)
    return max((v for v in values if v is not None), default=None)


class _RequiredSpecFields(TypedDict):
    """What the page's script draws one timeline chart from (``html_table.js``)."""

    t_us: list[int | None]
    t_max: str
    y_top: float
    ticks: list[str]
    series: list[tuple[str, str, list[int | None]]]
    """(label, legend text, delta-encoded values) per series."""


class _TimelineSpec(_RequiredSpecFields, total=False):
    exact: tuple[int, str]
    """(bytes, label) of the exact RAM peak the samples missed."""


def _timeline_spec(timeline: Timeline, exact_peak: int | None) -> _TimelineSpec:
    """What the page's script needs to draw one timeline chart: the series (delta-encoded),
    the scale, and every label already formatted here (one formatter for the whole report).
    ``exact_peak`` (the record's RAM peak, from the kernel's high-water mark) is drawn as a
    dashed line when the samples missed it."""
    t_max = max(timeline.t_s) if timeline.t_s else 0.0
    series = [("RSS", timeline.rss_bytes)]
    series += [(f"VRAM GPU {k}", v) for k, v in sorted(timeline.vram_bytes.items())]
    peaks = [_peak(values) for _, values in series]
    sampled_rss = peaks[0]
    missed = exact_peak is not None and (sampled_rss is None or exact_peak > sampled_rss)
    y_max = max([p for p in peaks if p is not None] + [exact_peak if missed and exact_peak else 0])
    y_top = y_max * 1.05 or 1
    drawn: list[tuple[str, str, list[int | None]]] = []
    for n, ((label, values), peak) in enumerate(zip(series, peaks, strict=True)):
        text = f"{label} (peak {format_bytes_iec(peak)})"
        if n == 0 and missed:
            text = f"RSS (sampled peak {format_bytes_iec(peak)})"
        drawn.append((label, text, _deltas(values)))
    spec: _TimelineSpec = {
        "t_us": _deltas([round(t * 1e6) for t in timeline.t_s]),
        "t_max": f"{t_max:.3g} s",
        "y_top": y_top,
        "ticks": [format_bytes_iec(round(y_top * k / 4)) for k in range(5)],
        "series": drawn,
    }
    if missed and exact_peak is not None:
        spec["exact"] = (
            exact_peak,
            f"exact peak {format_bytes_iec(exact_peak)} (kernel high-water mark, between samples)",
        )
    return spec


NOSCRIPT_ROWS = 100


def _static_cell(cell: int | Cell) -> str:
    if not isinstance(cell, list):
        return f"<td>{_e(cell)}</td>"
    if len(cell) > 2:
        return f'<td class="{_e(cell[2])}">{_e(cell[0])}</td>'
    return f"<td>{_e(cell[0])}</td>"


def _noscript(rows: Sequence[Row], compared: bool) -> str:
    """What a reader without JavaScript gets instead of the table: why, and the first
    ``NOSCRIPT_ROWS`` rows as served (failures first, then heaviest), unsortable."""
    n = len(rows)
    shown = rows[:NOSCRIPT_ROWS]
    head = "".join(f"<th>{_e(title)}</th>" for _, title, _ in _columns(compared))
    body = "".join("<tr>" + "".join(map(_static_cell, row[2:])) + "</tr>" for row in shown)
    which = f"all {n}" if n <= NOSCRIPT_ROWS else f"the first {len(shown)} of {n}"
    return (
        f'<noscript><p class="warn">Sorting, the filter, the pages and the timelines need '
        "this page's script (it fetches nothing): allow JavaScript for this file to use them. "
        f"Below, {which} tests as served (failures first, then heaviest); every figure is "
        "also in the JSON report (<code>--hypomnesis-json</code>, <code>hmn report</code>)."
        f'</p><div class="scroll"><table class="static"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div></noscript>"
    )


def _json_for_script(data: object, *, ascii_only: bool = False) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``<``, ``>`` or ``&`` at
    all, so neither ``</script>`` nor ``<!--`` can end or bend the element."""
    text = json.dumps(data, ensure_ascii=ascii_only, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(
    report: Mapping[str, object],
    *,
    baseline: Mapping[str, object] | None = None,
    comparison: Comparison | None = None,
    title: str = "pytest-hypomnesis report",
    heavy_top: int = HEAVY_TOP,
) -> str:
    """The whole page for ``report``. With ``baseline`` (and optionally a precomputed
    ``comparison``) the table carries the baseline's figures and the changes beside the
    new ones. Raises ``CompareError`` (a ``ValueError``) naming a malformed field.

    The table's rows and the timeline charts are not in the HTML: the page carries them as
    data (``<script type="application/json">``) and its script builds one page of rows at a
    time and a chart when its row is opened, so a 20,000-test report opens at once."""
    tests = _tests_of(report)
    if comparison is None and baseline is not None:
        comparison = compare(baseline, report)
    timelines = [_timeline_of(t, i) for i, t in enumerate(tests)]
    # Failures first, then the heaviest: what a reader opens the page for.
    order = sorted(
        range(len(tests)),
        key=lambda i: (tests[i].get("outcome") != "failed", _heaviness(tests[i])),
    )
    rows: list[Row] = []
    timeline_lines: list[str] = []
    for i in order:
        timeline = timelines[i]
        slot = -1
        if timeline is not None:
            slot = len(timeline_lines)
            spec = _timeline_spec(timeline, _exact_peak(tests[i]))
            timeline_lines.append(_json_for_script(spec, ascii_only=True))
        rows.append([i, slot, *_row_cells(tests[i], comparison)])
    data = _json_for_script({"rows": rows})
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_asset('html.css')}</style>",
        f"<script>{_asset('html_errors.js')}</script>",
        f"</head><body><h1>{_e(title)}</h1>",
        f'<p class="counts">{_e(heading_counts(report, tests))}</p>',
        _meta(report),
        _comparison_section(comparison) if comparison is not None else "",
        f'<section id="heaviest"><h2>Heaviest tests</h2>{_heavy_chart(tests, heavy_top)}</section>',
        '<section id="all-tests"><h2>All tests</h2>',
        _noscript(rows, comparison is not None),
        # Shown by the script: without it, the noscript table above stands in.
        '<div id="hmn-live" hidden><p class="small">Click a column title to sort; sizes in '
        "IEC units; a missing figure sorts last. The filter keeps the tests whose id, "
        "outcome, worker or budget contains its text (any case)."
        + (" Click a test's name to draw its timeline under it." if timeline_lines else "")
        + "</p>",
        '<div class="controls"><input id="hmn-filter" type="search" placeholder="filter" '
        'aria-label="filter the tests"> <button id="hmn-prev" type="button">&lsaquo; '
        'previous</button> <span id="hmn-range"></span> <button id="hmn-next" type="button">'
        'next &rsaquo;</button> <label>rows per page <select id="hmn-size">'
        "<option>100</option><option>500</option><option>2000</option></select></label></div>",
        f'<div class="scroll"><table id="tests" class="sortable"><thead><tr>'
        f"{_header_cells(comparison is not None)}</tr></thead><tbody></tbody></table>"
        "</div></div></section>",
        '<section id="timelines"><h2>Timelines</h2>',
        f"<p>{len(timeline_lines)} tests have a memory timeline (RSS and VRAM per device, "
        "sampled): click a test's name in the table to draw its chart under its row.</p>"
        if timeline_lines
        else _NO_TIMELINES,
        "</section>",
        f'<script type="application/json" id="hmn-data">{data}</script>',
        # One timeline per line: the script splits them and parses only the charts drawn.
        '<script type="application/json" id="hmn-timelines">',
        "\n".join(timeline_lines),
        f"</script><script>{_asset('html_table.js')}</script></body></html>\n",
    ]
    return "".join(parts)


@functools.cache
def _asset(name: str) -> str:
    """The page's CSS or script, shipped beside this module (package data)."""
    return resources.files("pytest_hypomnesis.report").joinpath(name).read_text(encoding="utf-8")


_COUNT_ORDER = ("failed", "passed", "skipped", "xfailed", "xpassed", "error", "rerun")


def heading_counts(report: Mapping[str, object], tests: Sequence[Mapping[str, object]]) -> str:
    """The page's heading: pytest's own counts when the report carries them (``outcomes``,
    errors included), then how many tests were measured and how many a budget failed."""
    over = sum(1 for t in tests if over_budget(t))
    outcomes = report.get("outcomes")
    if isinstance(outcomes, Mapping) and outcomes:
        parts = []
        for key in (*_COUNT_ORDER, *sorted(set(outcomes) - set(_COUNT_ORDER))):
            n = outcomes.get(key)
            if isinstance(n, int) and n > 0:
                word = "errors" if key == "error" and n != 1 else key
                parts.append(f"{n} {word}")
        return f"{', '.join(parts)}; {len(tests)} measured; {over} over budget"
    failed = sum(1 for t in tests if t.get("outcome") == "failed")
    return f"{len(tests)} tests; {failed} failed; {over} over budget"


def _exact_peak(test: Mapping[str, object]) -> int | None:
    ram = test.get("ram")
    if not isinstance(ram, Mapping) or ram.get("method") not in ("rusage", "hwm"):
        return None
    peak = ram.get("peak_bytes")
    return peak if isinstance(peak, int) and not isinstance(peak, bool) else None


def write_html_atomic(path: str | os.PathLike[str], page: str) -> None:
    """Write ``page`` so that ``path`` holds the old file or the whole new one."""
    write_text_atomic(path, page)


_NO_TIMELINES = "<p>no timelines recorded (run with --hypomnesis-timeline)</p>"
