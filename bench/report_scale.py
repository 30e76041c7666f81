"""The reports at scale: 20,000 test records made by the engine as the plugin makes them,
sent through JSON as xdist sends them, then the controller's figures.

    python bench/report_scale.py [--tests 20000] [--rounds 3] [--no-chromium]
        [--timeline-points 200] [--timeline-gpus 0]

Prints: the memory the controller's records retain per test (tracemalloc, records as they
arrive from an xdist worker and as kept in-process), the JSON report's write time (median
CPU seconds of ``write_report_atomic``) and size, the time to load it back, and the HTML
report's render time and size, without and with timelines (``--timeline-points`` samples
per test, the most ``--hypomnesis-timeline`` keeps; RSS plus ``--timeline-gpus`` VRAM
series). With Debian's ``chromium`` on PATH, each HTML page is then opened in headless
Chromium (``chromium_cdp.py``, DevTools protocol) and timed from inside the page: first
rows laid out, first frame, and a click sorting the RAM peak column until its frame.
Targets: JSON under 0.1 s, under 0.5 KiB retained per test; the page interactive in under
2 s, under 5 s with timelines. Not a test: timings depend on the machine (CPU time for
Python; Chromium's figures are wall time in the page, shared machines vary).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_hypomnesis.record import MeasuredTestRecord
    from pytest_hypomnesis.report.schema import Report

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # an installed package still wins


def make_records(count: int) -> list[MeasuredTestRecord]:
    """One record per test from real spans (no GPU here: the plain path), as the call
    phase builds them."""
    from pytest_hypomnesis.plugin.engine import Engine
    from pytest_hypomnesis.record import measured_test_record

    engine = Engine(interval_s=0.01)
    records: list[MeasuredTestRecord] = []
    for i in range(count):
        span = engine.begin()
        figures = engine.end(span)
        nodeid = f"tests/test_gen_{i // 200:03d}.py::test_{i}"
        record = measured_test_record(
            figures, nodeid=nodeid, outcome="passed", worker="gw0", scope="call", budgets=[]
        )
        records.append(record.copy())
    engine.close()
    return records


def add_timelines(records: list[MeasuredTestRecord], points: int, gpus: int) -> None:
    """A timeline per record as a 10 ms sampler records one: jittered times rounded to the
    microsecond, RSS and VRAM moving by whole pages, now and then a spike."""
    rng = random.Random(14)
    for record in records:
        t, rss, vram = 0.0, 60 * 2**20 + rng.randrange(0, 2**24, 4096), [2**30] * gpus
        ts: list[float] = []
        rss_s: list[int | None] = []
        vram_s: list[list[int | None]] = [[] for _ in range(gpus)]
        for _ in range(points):
            ts.append(round(t, 6))
            rss += rng.choice((0, 0, 0, 4096, -4096, 65536, -65536))
            rss_s.append(rss + (2**25 if rng.random() < 0.01 else 0))
            for g in range(gpus):
                vram[g] += rng.choice((0, 0, 2**20, -(2**20)))
                vram_s[g].append(vram[g])
            t += 0.01 + rng.random() * 0.002
        record["timeline"] = {
            "t_s": ts,
            "rss_bytes": rss_s,
            "vram_bytes": {str(g): v for g, v in enumerate(vram_s)},
        }


def retained_per_test(build: Any, count: int) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return (after - before) / count


def cpu_median(fn: Any, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        gc.collect()
        start = time.process_time()
        fn()
        samples.append(time.process_time() - start)
    return statistics.median(samples)


def html_pages(data: Report, args: Any, tmp: Path) -> list[tuple[str, Path, float, int]]:
    """The HTML page without and with timelines: (label, file, render CPU s, bytes)."""
    from pytest_hypomnesis.report.html import render_html

    out = []
    for label, points in (("no timelines", 0), (f"{args.timeline_points}-pt timelines", 1)):
        if points:
            add_timelines(data["tests"], args.timeline_points, args.timeline_gpus)
        start = time.process_time()
        page = render_html(data)
        render_s = time.process_time() - start
        path = tmp / f"report-{points}.html"
        path.write_text(page, encoding="utf-8")
        out.append((label, path, render_s, len(page.encode("utf-8"))))
        del page
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeline-points", type=int, default=200)
    parser.add_argument("--timeline-gpus", type=int, default=0)
    parser.add_argument("--no-chromium", action="store_true", help="skip the browser timings")
    args = parser.parse_args()
    count: int = args.tests

    from pytest_hypomnesis.report.html import render_html
    from pytest_hypomnesis.report.schema import build_report, load_report, write_report_atomic

    records = make_records(count)
    wire = [json.dumps(r) for r in records]  # what crosses the xdist boundary

    from pytest_hypomnesis.report.recordstore import RecordStore

    def as_from_xdist() -> RecordStore:
        # The controller's store, fed records as pytest-xdist delivers them.
        store = RecordStore()
        for w in wire:
            record = json.loads(w)
            store[record["nodeid"]] = record
        return store

    def in_process() -> RecordStore:
        store = RecordStore()
        for record in make_records(count):
            store[record["nodeid"]] = record
        return store

    in_process_b = retained_per_test(in_process, count)
    xdist_b = retained_per_test(as_from_xdist, count)
    plain_dicts_b = retained_per_test(lambda: [json.loads(w) for w in wire], count)

    data = build_report(
        created="2026-01-01T00:00:00+00:00",
        versions={"plugin": "bench", "pytest": "bench", "python": "bench"},
        machine={"gpu_unavailable_reason": records[0]["vram"]["unavailable_reason"]},
        settings={"scope": "call", "interval_s": 0.01},
        devices=[],
        tests=records,
    )
    with tempfile.TemporaryDirectory(prefix="hmn-scale-") as tmp:
        path = os.path.join(tmp, "report.json")
        write_s = cpu_median(lambda: write_report_atomic(path, data), args.rounds)
        size = os.path.getsize(path)
        load_s = cpu_median(lambda: load_report(path), args.rounds)
        pages = html_pages(data, args, Path(tmp))
        browser = [] if args.no_chromium or not shutil.which("chromium") else pages
        if browser:  # the floor: Chromium opening a one-test page
            floor = Path(tmp) / "floor.html"
            floor.write_text(render_html({**data, "tests": data["tests"][:1]}), "utf-8")
            browser = [("floor, one test", floor, 0.0, 0), *browser]

        from chromium_cdp import page_timings

        timings = [(label, page_timings(path)) for label, path, _, _ in browser]

    print(f"{count} test records (CPU time, median of {args.rounds}; a shared machine varies)")
    print(f"retained per test, in-process records      {in_process_b:8.0f} B  (target < 512 B)")
    print(f"retained per test, records from xdist      {xdist_b:8.0f} B  (target < 512 B)")
    print(f"  (the same records kept as dicts          {plain_dicts_b:8.0f} B)")
    print(f"JSON write_report_atomic                   {write_s:8.3f} s  (target < 0.1 s)")
    print(f"JSON size                                  {size / 2**20:8.2f} MiB")
    print(f"JSON load_report (validated)               {load_s:8.3f} s")
    for label, _, render_s, size_b in pages:
        print(f"HTML render_html, {label:<21}{render_s:8.3f} s, {size_b / 2**20:.2f} MiB")
    if not browser:
        print("headless Chromium: skipped (--no-chromium, or no chromium on PATH)")
    for label, t in timings:
        print(
            f"Chromium, {label:<18} first rows {t['first_rows_ms'] / 1e3:.2f} s "
            f"({t['first_rows']} rows in the DOM), first frame {t['painted_ms'] / 1e3:.2f} s, "
            f"sort by RAM peak {t['sort_ms'] / 1e3:.2f} s, wall {t['wall_s']:.2f} s"
            + (f", open a timeline {t['timeline_ms'] / 1e3:.2f} s" if "timeline_ms" in t else "")
            + (f", ERRORS {t['errors']}" if t["errors"] else "")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
