"""What ``max_ram(..., source="python")`` costs: one generated suite, every test with a RAM
budget, run with ``source="rss"`` (the default) and ``source="python"`` (tracemalloc runs
during each test's call), interleaved round by round.

    .venv/bin/python bench/tracing_cost.py [--tests 300] [--rounds 5] [--objects 20000]

Each test builds ``--objects`` small Python objects (tracing costs most on many small
allocations) and one 8 MiB buffer. Prints the median wall time of each variant and the
cost of tracing per test, in microseconds and relative to the RSS variant's per-test time.
Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_suite(directory: Path, count: int, objects: int, source: str) -> None:
    body = ["import pytest\n\n"]
    for i in range(count):
        body.append(
            f'@pytest.mark.max_ram("1GiB", source="{source}")\n'
            f"def test_{i}():\n"
            f"    items = [{{'k': n}} for n in range({objects})]\n"
            "    blob = bytearray(8 << 20)\n"
            "    del items, blob\n\n"
        )
    (directory / "test_gen.py").write_text("".join(body), encoding="utf-8")
    (directory / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")


def run_once(directory: Path) -> float:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTEST_ADDOPTS"] = "-p no:cacheprovider -p no:randomly -q"
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", str(directory)],
        cwd=directory,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--objects", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        for source in ("rss", "python"):
            d = Path(tmp) / source
            d.mkdir()
            write_suite(d, args.tests, args.objects, source)
            run_once(d)  # warm the byte-code caches
            dirs[source] = d
        times: dict[str, list[float]] = {s: [] for s in dirs}
        for _ in range(args.rounds):
            for source, d in dirs.items():
                times[source].append(run_once(d))
    medians = {s: statistics.median(t) for s, t in times.items()}
    per_test_rss = medians["rss"] / args.tests * 1e6
    extra = (medians["python"] - medians["rss"]) / args.tests * 1e6
    print(f"{args.tests} tests x {args.rounds} rounds, {args.objects} objects + 8 MiB each")
    for source, median in medians.items():
        print(f"  source={source:<6}  median {median:.3f} s")
    print(f"tracing costs {extra:.0f} us per test ({extra / per_test_rss:+.0%} of a test's time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
