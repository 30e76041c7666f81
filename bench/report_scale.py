"""The reports at scale: 20,000 test records made by the engine as the plugin makes them,
sent through JSON as xdist sends them, then the controller's figures.

    python bench/report_scale.py [--tests 20000] [--rounds 3]

Prints: the memory the controller's records retain per test (tracemalloc, records as they
arrive from an xdist worker and as kept in-process), the JSON report's write time (median
CPU seconds of ``write_report_atomic``) and size, the time to load it back, and the HTML
report's render time and size. Targets: JSON under 0.1 s, under 0.5 KiB retained per test.
Not a test: timings depend on the machine (CPU time, shared machines vary).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # an installed package still wins


def make_records(count: int) -> list[dict[str, Any]]:
    """One record per test from real spans (no GPU here: the plain path), as the call
    phase builds them."""
    from pytest_hypomnesis.plugin.engine import Engine
    from pytest_hypomnesis.record import measured_test_record

    engine = Engine(interval_s=0.01)
    records: list[dict[str, Any]] = []
    for i in range(count):
        span = engine.begin()
        figures = engine.end(span)
        nodeid = f"tests/test_gen_{i // 200:03d}.py::test_{i}"
        record = measured_test_record(
            figures, nodeid=nodeid, outcome="passed", worker="gw0", scope="call", budgets=[]
        )
        records.append(dict(record))
    engine.close()
    return records


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    count: int = args.tests

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
            store[record["nodeid"]] = record  # type: ignore[assignment]
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
        from pytest_hypomnesis.report.html import render_html

        html_s = cpu_median(lambda: render_html(data), 1)
        html_size = len(render_html(data).encode("utf-8"))

    print(f"{count} test records (CPU time, median of {args.rounds}; a shared machine varies)")
    print(f"retained per test, in-process records      {in_process_b:8.0f} B  (target < 512 B)")
    print(f"retained per test, records from xdist      {xdist_b:8.0f} B  (target < 512 B)")
    print(f"  (the same records kept as dicts          {plain_dicts_b:8.0f} B)")
    print(f"JSON write_report_atomic                   {write_s:8.3f} s  (target < 0.1 s)")
    print(f"JSON size                                  {size / 2**20:8.2f} MiB")
    print(f"JSON load_report (validated)               {load_s:8.3f} s")
    print(
        f"HTML render_html                           {html_s:8.3f} s, {html_size / 2**20:.2f} MiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
