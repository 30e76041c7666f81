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

import html
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

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


def _tests_of(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if not isinstance(report, Mapping):
        raise CompareError("report: expected a report object")
    tests = report.get("tests")
    if not isinstance(tests, list):
        raise CompareError("report: 'tests' must be a list")
    for i, test in enumerate(tests):
        if not isinstance(test, Mapping) or not isinstance(test.get("nodeid"), str):
            raise CompareError(f"report: tests[{i}] has no string 'nodeid'")
    return tests


def _timeline_of(test: Mapping[str, Any], i: int) -> Timeline | None:
    data = test.get("timeline")
    if data is None:
        return None
    try:
        return parse_timeline(data, f"tests[{i}].timeline")
    except ValueError as exc:
        raise CompareError(f"report: {exc}") from None


def _budget_status(test: Mapping[str, Any]) -> tuple[int, str]:
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


def _heaviness(test: Mapping[str, Any]) -> tuple[int, int, str]:
    # Tolerant of a record without ram/vram (metric_bytes names a malformed field).
    return heaviness_key(metric_bytes(test, "vram"), metric_bytes(test, "ram"), test["nodeid"])


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


def _heavy_chart(tests: Sequence[Mapping[str, Any]], top: int) -> str:
    heaviest = sorted(tests, key=_heaviness)[:top]
    bars = [(t["nodeid"], metric_bytes(t, "ram"), metric_bytes(t, "vram")) for t in heaviest]
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


def _series_path(ts: Sequence[float], values: Sequence[int | None], x: Any, y: Any) -> str:
    """An SVG path through the known values; a gap (``None``) breaks the line."""
    parts: list[str] = []
    pen_down = False
    for t, v in zip(ts, values, strict=True):
        if v is None:
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{x(t):.1f},{y(v):.1f}")
        pen_down = True
    return " ".join(parts)


def _timeline_chart(timeline: Timeline, nodeid: str, exact_peak: int | None = None) -> str:
    """The sampled series; ``exact_peak`` (the record's RAM peak, from the kernel's
    high-water mark) is drawn as a dashed line when the samples missed it."""
    width, height, left, right, top, bottom = 720, 210, 78, 12, 26, 26
    t_max = max(timeline.t_s) if timeline.t_s else 0.0
    sampled_rss = max((v for v in timeline.rss_bytes if v is not None), default=None)
    missed = exact_peak is not None and (sampled_rss is None or exact_peak > sampled_rss)
    y_max = max(timeline.max_bytes() or 0, exact_peak if missed and exact_peak else 0)
    y_top = y_max * 1.05 or 1

    def x(t: float) -> float:
        return left + (t / t_max if t_max > 0 else 0.0) * (width - left - right)

    def y(v: float) -> float:
        return height - bottom - (v / y_top) * (height - top - bottom)

    out = [
        f'<svg class="timeline-chart" role="img" width="{width}" height="{height}" '
        f"><title>Memory over time: {_e(nodeid)}</title>"
    ]
    for k in range(5):
        level = y_top * k / 4
        out.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(level):.1f}" '
            f'y2="{y(level):.1f}"/><text class="small" x="{left - 4}" y="{y(level) + 4:.1f}" '
            f'text-anchor="end">{_e(format_bytes_iec(round(level)))}</text>'
        )
    out.append(
        f'<text class="small" x="{left}" y="{height - 8}">0 s</text>'
        f'<text class="small" x="{width - right}" y="{height - 8}" text-anchor="end">'
        f"{t_max:.3g} s</text>"
    )
    series = [("RSS", timeline.rss_bytes)]
    series += [(f"VRAM GPU {k}", v) for k, v in sorted(timeline.vram_bytes.items())]
    for n, (label, values) in enumerate(series):
        color = _COLORS[n % len(_COLORS)]
        path = _series_path(timeline.t_s, values, x, y)
        if path:
            out.append(
                f'<path d="{path}" fill="none" stroke="{color}" stroke-width="1.5">'
                f"<title>{_e(label)}</title></path>"
            )
        peak = max((v for v in values if v is not None), default=None)
        text = f"{label} (peak {format_bytes_iec(peak)})"
        if n == 0 and missed:
            text = f"RSS (sampled peak {format_bytes_iec(peak)})"
        out.append(
            f'<text class="small" x="{left + 4 + n * 190}" y="14" fill="{color}">{_e(text)}</text>'
        )
    if missed and exact_peak is not None:
        level = y(exact_peak)
        label = (
            f"exact peak {format_bytes_iec(exact_peak)} (kernel high-water mark, between samples)"
        )
        out.append(
            f'<line class="exact-peak" x1="{left}" x2="{width - right}" y1="{level:.1f}" '
            f'y2="{level:.1f}" stroke="{_COLORS[0]}" stroke-dasharray="5,4">'
            f"<title>{_e(label)}</title></line>"
            f'<text class="small exact-peak" x="{width - right - 4}" y="{level - 4:.1f}" '
            f'text-anchor="end" fill="{_COLORS[0]}">{_e(label)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------------------------------
# Page sections.


def _meta(report: Mapping[str, Any]) -> str:
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
    devices = [d for d in report.get("devices") or [] if isinstance(d, Mapping)]
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


def _header_cells(compared: bool) -> str:
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
    return "".join(
        f'<th data-key="{key}" data-type="{kind}" tabindex="0" '
        f'title="click to sort">{_e(title)}</th>'
        for key, title, kind in cells
    )


def _row(
    index: int, test: Mapping[str, Any], comparison: Comparison | None, has_timeline: bool
) -> str:
    nodeid = test["nodeid"]
    name = f'<a href="#tl-{index}">{_e(nodeid)}</a>' if has_timeline else _e(nodeid)
    outcome = str(test.get("outcome", ""))
    duration = test.get("duration_s")
    duration_s = duration if isinstance(duration, (int, float)) else None
    cells = [
        f'<td class="nodeid" data-sort="{_e(nodeid)}">{name}</td>',
        f'<td class="outcome-{_e(outcome)}">{_e(outcome)}</td>',
        f"<td>{_e(test.get('worker', ''))}</td>",
        f'<td data-sort="{_num(duration_s)}">'
        f"{'-' if duration_s is None else f'{duration_s:.2f}s'}</td>",
    ]
    compared = comparison.row(nodeid) if comparison is not None else None
    for metric in _TABLE_METRICS:
        value = metric_bytes(test, metric, f"test {nodeid!r}")
        cells.append(f'<td data-sort="{_num(value)}">{_e(format_bytes_iec(value))}</td>')
        if comparison is None:
            continue
        change = compared.changes[metric] if compared is not None else None
        before = change.before_bytes if change is not None else None
        delta = change.change_bytes if change is not None else None
        percent = change.change_percent if change is not None else None
        regressed = comparison.regressed(nodeid, metric)
        text = format_bytes_iec(delta, signed=True) if delta is not None else "-"
        if percent is not None:
            text += f" ({percent:+.1f}%)"
        cells.append(
            f'<td class="base" data-sort="{_num(before)}">{_e(format_bytes_iec(before))}</td>'
        )
        cells.append(
            f'<td class="{"regressed" if regressed else "change"}" data-sort="{_num(delta)}">'
            f"{_e(text)}</td>"
        )
    severity, budget_text = _budget_status(test)
    cells.append(
        f'<td class="budget{" over" if severity == 2 else ""}" data-sort="{severity}">'
        f"{_e(budget_text)}</td>"
    )
    return f'<tr data-nodeid="{_e(nodeid)}">{"".join(cells)}</tr>'


def render_html(
    report: Mapping[str, Any],
    *,
    baseline: Mapping[str, Any] | None = None,
    comparison: Comparison | None = None,
    title: str = "pytest-hypomnesis report",
    heavy_top: int = HEAVY_TOP,
) -> str:
    """The whole page for ``report``. With ``baseline`` (and optionally a precomputed
    ``comparison``) the table carries the baseline's figures and the changes beside the
    new ones. Raises ``CompareError`` (a ``ValueError``) naming a malformed field."""
    tests = _tests_of(report)
    if comparison is None and baseline is not None:
        comparison = compare(baseline, report)
    timelines = [_timeline_of(t, i) for i, t in enumerate(tests)]
    # Failures first, then the heaviest: what a reader opens the page for.
    order = sorted(
        range(len(tests)),
        key=lambda i: (tests[i].get("outcome") != "failed", _heaviness(tests[i])),
    )
    rows = "".join(_row(i, tests[i], comparison, timelines[i] is not None) for i in order)
    figures = "".join(
        f'<figure class="timeline" id="tl-{i}"><figcaption><code>{_e(tests[i]["nodeid"])}'
        f"</code></figcaption>"
        f"{_timeline_chart(tl, tests[i]['nodeid'], _exact_peak(tests[i]))}</figure>"
        for i, tl in enumerate(timelines)
        if tl is not None
    )
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style><script>{_JS_ERRORS}</script>",
        f"</head><body><h1>{_e(title)}</h1>",
        f'<p class="counts">{_e(heading_counts(report, tests))}</p>',
        _meta(report),
        _comparison_section(comparison) if comparison is not None else "",
        f'<section id="heaviest"><h2>Heaviest tests</h2>{_heavy_chart(tests, heavy_top)}</section>',
        '<section id="all-tests"><h2>All tests</h2><p class="small">Click a column title '
        "to sort; sizes in IEC units; a missing figure sorts last.</p>",
        f'<div class="scroll"><table id="tests" class="sortable"><thead><tr>'
        f"{_header_cells(comparison is not None)}</tr></thead><tbody>{rows}</tbody></table>"
        "</div></section>",
        '<section id="timelines"><h2>Timelines</h2>'
        f'<div class="timelines">{figures or _NO_TIMELINES}</div></section>',
        f"<script>{_JS_SORT}</script></body></html>\n",
    ]
    return "".join(parts)


_COUNT_ORDER = ("failed", "passed", "skipped", "xfailed", "xpassed", "error", "rerun")


def heading_counts(report: Mapping[str, Any], tests: Sequence[Mapping[str, Any]]) -> str:
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


def _exact_peak(test: Mapping[str, Any]) -> int | None:
    ram = test.get("ram")
    if not isinstance(ram, Mapping) or ram.get("method") not in ("rusage", "hwm"):
        return None
    peak = ram.get("peak_bytes")
    return peak if isinstance(peak, int) and not isinstance(peak, bool) else None


def write_html_atomic(path: str | os.PathLike[str], page: str) -> None:
    """Write ``page`` so that ``path`` holds the old file or the whole new one."""
    write_text_atomic(path, page)


_NO_TIMELINES = "<p>no timelines recorded (run with --hypomnesis-timeline)</p>"

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.5em}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f4f4f4;cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td.nodeid,td:nth-child(2),td:nth-child(3),td.budget{text-align:left}
td.nodeid{white-space:normal;word-break:break-all;min-width:22em;max-width:40em}
th{white-space:normal;min-width:5em}th[data-type=text]{text-align:left}.scroll{overflow-x:auto}
div.timelines{display:flex;flex-wrap:wrap;gap:0 2em}
td.base{color:#666}td.regressed,td.over,.bad{color:#b00020;font-weight:bold}
.good{color:#1b7f2a}.warn{color:#8a5a00}td.outcome-failed{color:#b00020}
.small,svg text.small{font-size:11px}svg text{font-size:12px;fill:#222}
svg line.grid{stroke:#e4e4e4}figure.timeline{margin:1em 0}
dl{display:grid;grid-template-columns:max-content auto;gap:0 1em}
dt{font-weight:bold}dd{margin:0;word-break:break-all}
"""

# Installed first, in <head>, so that errors of any later script are caught too.
_JS_ERRORS = """
window.__hmnErrors=[];
window.addEventListener("error",function(e){window.__hmnErrors.push("error: "+e.message);});
document.addEventListener("securitypolicyviolation",function(e){
window.__hmnErrors.push("blocked by CSP: "+e.violatedDirective+" "+e.blockedURI);});
(function(){var orig=console.error;console.error=function(){
window.__hmnErrors.push("console.error: "+Array.prototype.join.call(arguments," "));
return orig.apply(console,arguments);};})();
"""

_JS_SORT = """
(function(){
"use strict";
function key(cell,numeric){
  var raw=cell.getAttribute("data-sort");
  if(raw===null){raw=cell.textContent;}
  if(!numeric){return raw;}
  if(raw===""){return null;}
  var n=Number(raw);return isNaN(n)?null:n;
}
function sortBy(th){
  var table=th.closest("table"),body=table.tBodies[0];
  var index=Array.prototype.indexOf.call(th.parentNode.children,th);
  var numeric=th.getAttribute("data-type")==="num";
  var now=th.getAttribute("aria-sort");
  // Sizes read best heaviest-first, names A-Z; a second click reverses.
  var asc=now?now==="descending":!numeric;
  var rows=Array.prototype.slice.call(body.rows);
  rows.sort(function(a,b){
    var ka=key(a.cells[index],numeric),kb=key(b.cells[index],numeric);
    if(ka===null||kb===null){return ka===kb?0:(ka===null?1:-1);}
    var c=ka<kb?-1:(ka>kb?1:0);return asc?c:-c;
  });
  rows.forEach(function(r){body.appendChild(r);});
  Array.prototype.forEach.call(th.parentNode.children,function(h){h.removeAttribute("aria-sort");});
  th.setAttribute("aria-sort",asc?"ascending":"descending");
}
Array.prototype.forEach.call(document.querySelectorAll("table.sortable th"),function(th){
  th.addEventListener("click",function(){sortBy(th);});
  th.addEventListener("keydown",function(e){if(e.key==="Enter"){sortBy(th);}});
});
function column(k,numeric){
  var th=document.querySelector('#tests th[data-key="'+k+'"]');
  var i=Array.prototype.indexOf.call(th.parentNode.children,th);
  return Array.prototype.map.call(document.querySelectorAll("#tests tbody tr"),
    function(r){return key(r.cells[i],numeric);});
}
function ordered(values,asc){
  for(var i=1;i<values.length;i++){
    var a=values[i-1],b=values[i];
    if(a===null){if(b!==null){return false;}continue;}
    if(b===null){continue;}
    if(asc?a>b:a<b){return false;}
  }
  return true;
}
function selftest(){
  var checks=[];
  try{
    var th=document.querySelector('#tests th[data-key="ram_peak"]');
    th.click();checks.push({name:"ram_peak descending",ok:ordered(column("ram_peak",true),false)});
    th.click();checks.push({name:"ram_peak ascending",ok:ordered(column("ram_peak",true),true)});
    document.querySelector('#tests th[data-key="test"]').click();
    checks.push({name:"test ascending",ok:ordered(column("test",false),true)});
  }catch(e){window.__hmnErrors.push("selftest: "+e);}
  var errors=window.__hmnErrors.slice();
  var ok=errors.length===0&&checks.length===3&&checks.every(function(c){return c.ok;});
  var pre=document.createElement("pre");pre.id="hmn-selftest";
  pre.textContent=JSON.stringify({ok:ok,checks:checks,errors:errors,
    rows:document.querySelectorAll("#tests tbody tr").length});
  document.body.appendChild(pre);
}
// After load and one more turn, so late script errors and blocked loads are counted too.
if(location.hash==="#selftest"){
  window.addEventListener("load",function(){setTimeout(selftest,0);});
}
})();
"""
