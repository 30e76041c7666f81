"""Sharing GPUs between pytest-xdist workers: out-of-memory failures and wall time of one
simulated GPU suite, run serially, with plain ``-n 4``, and with ``-n 4
--hypomnesis-pin-gpus --hypomnesis-admit`` (xdist's default handout, needs from the
tests' ``max_vram`` budgets) and with ``--hypomnesis-needs`` (the largest-first scheduler).

    .venv/bin/python bench/gpu_share.py [--gpus 2] [--gpu-memory-gib 10] [--tests 24] [--seed 7]
                                        [-n 4] [--repeat 1]

The GPUs are fake and their memory really limited (``tests/helpers/fakevram.py`` behind
the fake NVML library): each test holds 1-8 GiB on its ``cuda:0`` for 0.2-1 s, and an
allocation past a device's total fails as CUDA's would. The packing lower bound is the
larger of sum(need x time) over the total capacity and the longest test; with -n workers
no run beats the sum of the durations over the workers either (printed beside it), nor,
with pinning, the plan the needs scheduler makes (printed too: "x bound" of a plan is what
scheduling alone could reach). "tests wall" is from the first test's start to the last
test's end (what scheduling decides); "run wall" adds pytest and worker start-up. Tests
run in collection order (pytest-randomly, if installed, is switched off). --repeat runs
every parallel variant that many times and prints each run. Targets: 0 OOM; tests wall
within 1.5x the lower bound with the default handout and 1.3x with --hypomnesis-needs; at
least 2x faster than serial.
Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers.fakevram import FakeVram  # noqa: E402

GIB = 1024**3
FAKE_NVML_SOURCE = ROOT / "tests" / "fake_nvml" / "fake_nvml.c"

SUITE = """
import json, os, time, pytest
from tests.helpers.fakevram import hold

CASES = {cases!r}

@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.max_vram(f"{{CASES[n][0]}}GiB")) for n in sorted(CASES)],
)
def test_gpu(name):
    gib, seconds = CASES[name]
    start = time.time()
    hold(gib * 1024**3, seconds)
    with open(os.path.join(os.environ["BENCH_SPANS"], name + ".json"), "w") as fh:
        json.dump([start, time.time()], fh)
"""


def _cases(count: int, seed: int) -> dict[str, tuple[int, float]]:
    rng = random.Random(seed)
    return {f"t{i:02d}": (rng.randint(1, 8), round(rng.uniform(0.2, 1.0), 2)) for i in range(count)}


def _build_fake_nvml(directory: Path) -> Path:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        sys.exit("needs gcc or cc to build the fake NVML library")
    library = directory / "libnvidia-ml.so.1"
    command = [compiler, "-shared", "-fPIC", "-O2", "-pthread", "-o", str(library)]
    subprocess.run([*command, str(FAKE_NVML_SOURCE)], check=True)
    return library


def _run(
    work: Path, library: Path, totals: list[int], args: list[str], name: str, tag: str = "0"
) -> dict[str, float | int | str]:
    import pytest

    from tests.helpers.fakenvml import FakeNvml

    spans = work / f"spans-{tag}"
    spans.mkdir()
    ledger = work / f"ledger-{tag}"
    ledger.mkdir()
    fake = FakeNvml(library, work / f"nvml-{tag}.conf", pytest.MonkeyPatch())
    vram = FakeVram.create(fake, work / f"vram-{tag}.json", totals)
    env = {**os.environ, **vram.env, "BENCH_SPANS": str(spans)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.pop("PYTEST_ADDOPTS", None)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        *args,
    ]
    if any(a.startswith("--hypomnesis-admit") for a in args):
        command.append(f"--hypomnesis-ledger-dir={ledger}")
    started = time.perf_counter()
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    run_wall = time.perf_counter() - started
    intervals = [json.loads(p.read_text()) for p in spans.glob("*.json")]
    tests_wall = (
        max(end for _, end in intervals) - min(start for start, _ in intervals)
        if intervals
        else float("nan")
    )
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-200:]
    return {
        "variant": name,
        "oom": vram.oom_count(),
        "passed": len(intervals),
        "tests_wall_s": tests_wall,
        "run_wall_s": run_wall,
        "summary": last,
    }


def _hmn_plan(report: Path, gpus: int, gib: int) -> dict[str, object]:
    """What ``hmn plan`` predicts from the serial run's report."""
    import contextlib
    import io

    from pytest_hypomnesis.cli import main as hmn

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        hmn(["plan", str(report), "--gpus", str(gpus), "--gpu-memory", f"{gib}GiB", "--json"])
    result: dict[str, object] = json.loads(out.getvalue())
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--gpu-memory-gib", type=int, default=10)
    parser.add_argument("--tests", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("-n", "--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1)
    options = parser.parse_args()
    cases = _cases(options.tests, options.seed)
    totals = [options.gpu_memory_gib * GIB] * options.gpus
    capacity = options.gpus * options.gpu_memory_gib
    area = sum(gib * seconds for gib, seconds in cases.values())
    bound = max(area / capacity, max(s for _, s in cases.values()))
    serial_sum = sum(s for _, s in cases.values())
    n = str(options.workers)
    with tempfile.TemporaryDirectory(prefix="hmn-gpu-share-") as tmp:
        work = Path(tmp)
        library = _build_fake_nvml(work)
        (work / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        (work / "test_gpu_suite.py").write_text(SUITE.format(cases=cases), encoding="utf-8")
        admit = ["-n", n, "--hypomnesis-pin-gpus", "--hypomnesis-admit"]
        variants = [
            (["-n", n], f"-n {n}"),
            ([*admit, "-p", "no:hypomnesis-scheduler"], "  ... xdist's handout (-p no:...)"),
            (admit, f"-n {n} --hypomnesis-pin-gpus --hypomnesis-admit"),
            ([*admit, "--hypomnesis-needs=needs.json"], "  ... --hypomnesis-needs=needs.json"),
        ]
        rows = [_run(work, library, totals, ["--hypomnesis-json=needs.json"], "serial")]
        plan = _hmn_plan(work / "needs.json", options.gpus, options.gpu_memory_gib)
        for repeat in range(options.repeat):
            for args, name in variants:
                rows.append(_run(work, library, totals, args, name, f"{repeat}-{len(rows)}"))
    print(
        f"{options.tests} tests of 1-8 GiB holding 0.2-1 s on {options.gpus} fake GPUs of "
        f"{options.gpu_memory_gib} GiB; sum of durations {serial_sum:.2f}s"
    )
    print(
        f"packing lower bound {bound:.2f}s (need x time {area:.1f} GiB*s / {capacity} GiB = "
        f"{area / capacity:.2f}s; longest test {max(s for _, s in cases.values()):.2f}s)"
    )
    from pytest_hypomnesis.parallel.admission import headroom_bytes
    from pytest_hypomnesis.parallel.plan import PlanTest, best_pack

    total = options.gpu_memory_gib * GIB
    per_gpu_capacity = total - headroom_bytes(total, 0.05)
    packing = best_pack(
        [PlanTest(k, gib * GIB, s) for k, (gib, s) in cases.items()],
        [w % options.gpus for w in range(options.workers)],
        [per_gpu_capacity] * options.gpus,
    )
    print(
        f"with -n {n}: sum of durations / {n} workers = {serial_sum / options.workers:.2f}s; "
        f"the needs scheduler's plan ({options.workers // options.gpus} per GPU, "
        f"{per_gpu_capacity / GIB:.1f} GiB after headroom): {packing.wall_s:.2f}s "
        f"= {packing.wall_s / bound:.2f}x bound"
    )
    print(
        f"hmn plan from the serial report: -n {plan['workers']} ({plan['per_gpu']} per GPU), "
        f"packed {plan['packed_s']}s, serial {plan['serial_s']}s, lower bound "
        f"{plan['lower_bound_s']}s"
    )
    serial_wall = float(rows[0]["tests_wall_s"])
    header = (
        f"{'variant':58} {'OOM':>4} {'passed':>6} {'tests wall':>10} {'x bound':>7} "
        f"{'x faster':>8} {'run wall':>8}"
    )
    print(header)
    for row in rows:
        wall = float(row["tests_wall_s"])
        print(
            f"{row['variant']!s:58} {row['oom']:>4} {row['passed']:>6} {wall:>9.2f}s "
            f"{wall / bound:>7.2f} {serial_wall / wall:>8.2f} {float(row['run_wall_s']):>7.2f}s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
