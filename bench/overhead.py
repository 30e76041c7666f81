"""Per-test overhead of the plugin beside plain pytest and plugins of the same shape.

    python bench/overhead.py [--tests 2000] [--rounds 5] [--no-memray] [--no-xdist]

One generated suite of trivial tests, run round by round (interleaved, so a machine that
gets busier slows every variant alike) as:

- ``plain``: ``-p no:hypomnesis``; ``off``: the plugin installed, nothing asked for;
- ``noop-shape``: a plugin with our per-test hooks that does nothing in them;
- ``floor-shape``: the same hooks doing exactly our Linux syscalls (reset the RSS
  high-water mark, two ``/proc/self/statm`` reads, one ``getrusage``, a dict on the report);
- ``hypomnesis`` (no GPU) and ``hypomnesis+fake-nvml`` (the fake NVML library from
  ``tests/fake_nvml``, built with gcc when one is there);
- with ``-n 2``: ``plain -n2`` and ``hypomnesis -n2``;
- ``memray`` (pytest-memray ``--memray``) when installed.

Two figures, both CPU time (user + sys): on a shared machine wall time measures the
neighbours.

- **per test, in-process** (``per test us``): a timing plugin loaded in every in-process
  variant wraps each test's whole protocol (setup, call, teardown, reports, every plugin's
  hooks) and reads the process's CPU clock around it; the variant's figure is the 10th
  percentile over its tests (neighbours only ever add CPU time: stolen cycles, cold
  caches), minus ``plain``'s in the same round (paired), and the table gives the median
  over rounds and their range. A quantile over thousands of tests shrugs off the
  neighbours' bursts that whole-process totals cannot.
- **whole process** (``x plain``): CPU of the pytest process and its children (xdist
  workers), from ``getrusage(RUSAGE_CHILDREN)``, as a ratio to ``plain`` (``-n2``
  variants to ``plain -n2``), median over rounds. ``-n2 per test`` is the paired
  difference from ``plain -n2`` divided by the number of tests (start-up included).

``fake NVML reading`` is the fake library's own cost: the median of the very reader the
plugin calls twice per test, timed alone. Run it with the package installed (not
editable) and bytecode cached, as a user has it. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAKE_NVML_SOURCE = ROOT / "tests" / "fake_nvml" / "fake_nvml.c"

# The shape of our per-test hooks: a call wrapper, a makereport wrapper that puts a dict
# on the call report, and the controller's logreport hook (7 calls per test).
SHAPE_PLUGIN = """
import os, resource
import pytest

FLOOR = {floor}

def _ram():
    # Our syscalls: one statm read (RSS).
    return int(os.pread(_statm, 64, 0).split()[1]) * 4096

if FLOOR:
    _clear = os.open("/proc/self/clear_refs", os.O_WRONLY)
    _statm = os.open("/proc/self/statm", os.O_RDONLY)

@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item):
    if FLOOR:
        os.write(_clear, b"5")
        start = _ram()
    try:
        return (yield)
    finally:
        if FLOOR:
            end = _ram()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            item._bench = {{"start_bytes": start, "end_bytes": end, "peak_bytes": peak}}

@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        report.bench = getattr(item, "_bench", None)
    return report

def pytest_runtest_logreport(report):
    getattr(report, "bench", None)
"""


# Loaded in every in-process variant: each test's protocol timed on the process CPU clock
# (the sampler thread's work included), outermost, so every plugin's hooks are inside.
TIMER_PLUGIN = """
import json, os, time
import pytest

_clock = time.process_time_ns
_spent = []

@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    start = _clock()
    try:
        return (yield)
    finally:
        _spent.append(_clock() - start)

def pytest_unconfigure(config):
    out = os.environ.get("HMN_BENCH_OUT")
    if out and _spent:
        # The first tests pay for first-use work (imports, backends): left out.
        # The 10th percentile: on a shared machine the neighbours only ever add CPU time
        # (stolen cycles, cold caches), so the low quantile is the test's own cost.
        kept = sorted(_spent[len(_spent) // 20:])
        with open(out, "w") as fh:
            json.dump({"p10_ns": kept[len(kept) // 10], "tests": len(kept)}, fh)
"""

# The fake NVML reader the plugin calls at each span's start and end, timed alone.
FAKE_READER_COST = """
import statistics, sys, time
from pytest_hypomnesis.plugin.engine import Engine

engine = Engine(interval_s=0.01)
engine.prepare()
readers, _ = engine.readers()
if not readers:
    raise SystemExit("the fake NVML gave no reader: " + str(engine.unavailable_reason()))
read = readers[0][1]
for _ in range(500):
    read()
spent = []
for _ in range(int(sys.argv[1])):
    start = time.process_time_ns()
    read()
    spent.append(time.process_time_ns() - start)
print(statistics.median(spent) / 1000)
"""


def write_suite(directory: Path, count: int) -> None:
    per_file = 200
    for start in range(0, count, per_file):
        body = "".join(
            f"def test_{i}():\n    pass\n\n" for i in range(start, min(start + per_file, count))
        )
        (directory / f"test_gen_{start // per_file:03d}.py").write_text(body, encoding="utf-8")
    # An empty ini keeps the repository's pyproject (addopts, filterwarnings) out of it.
    (directory / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")


def write_shape_plugins(directory: Path) -> None:
    for name, floor in (("hmn_bench_noop", False), ("hmn_bench_floor", True)):
        (directory / f"{name}.py").write_text(SHAPE_PLUGIN.format(floor=floor), encoding="utf-8")
    (directory / "hmn_bench_timer.py").write_text(TIMER_PLUGIN, encoding="utf-8")


def build_fake_nvml(directory: Path) -> Path | None:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None or not FAKE_NVML_SOURCE.exists():
        return None
    library = directory / "libnvidia-ml.so.1"
    command = [compiler, "-shared", "-fPIC", "-O2", "-pthread", "-o", str(library)]
    if subprocess.run([*command, str(FAKE_NVML_SOURCE)], capture_output=True).returncode:
        return None
    config = directory / "fake_nvml.conf"
    config.write_text(
        "driver 555.42.06\n"
        f"device {16 * 2**30} {15 * 2**30} {2**30} {256 * 2**20} NVIDIA Fake GPU\n"
        f"process 0 self {512 * 2**20}\n",
        encoding="ascii",
    )
    return library


Variant = tuple[list[str], dict[str, str]]


def variants(fake_nvml: Path | None, *, memray: bool, xdist: bool) -> dict[str, Variant]:
    off = ["-p", "no:hypomnesis"]
    out: dict[str, Variant] = {
        "plain": (off, {}),
        "off": ([], {}),
        "noop-shape": ([*off, "-p", "hmn_bench_noop"], {}),
        "floor-shape": ([*off, "-p", "hmn_bench_floor"], {}),
        "hypomnesis": (["--hypomnesis"], {}),
    }
    if fake_nvml is not None:
        env = {
            "HYPOMNESIS_NVML_LIBRARY": str(fake_nvml),
            "FAKE_NVML_CONFIG": str(fake_nvml.parent / "fake_nvml.conf"),
        }
        out["hypomnesis+fake-nvml"] = (["--hypomnesis"], env)
    if xdist and _installed("xdist"):
        out["plain -n2"] = ([*off, "-n", "2"], {})
        out["hypomnesis -n2"] = (["--hypomnesis", "-n", "2"], {})
    if memray and _installed("pytest_memray"):
        out["memray"] = ([*off, "--memray"], {})
    return out


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _env(plugins: Path, extra_env: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **extra_env}
    env.pop("PYTEST_ADDOPTS", None)
    # As on a user's machine: bytecode cached (an installed package ships it).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugins), env.get("PYTHONPATH")]))
    return env


def run_once(
    suite: Path, plugins: Path, args: list[str], extra_env: dict[str, str]
) -> tuple[float, float | None]:
    """CPU seconds of one pytest run, its xdist workers included, and (in-process runs)
    the CPU microseconds of one test's protocol (10th percentile over its tests)."""
    env = _env(plugins, extra_env)
    timed = "-n" not in args
    out = suite / "timer.json"
    out.unlink(missing_ok=True)
    if timed:
        env["HMN_BENCH_OUT"] = str(out)
        args = ["-p", "hmn_bench_timer", *args]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["-p", "no:randomly", *args, str(suite)]
    before = _children_cpu_s()
    result = subprocess.run(command, cwd=suite, env=env, capture_output=True, text=True)
    spent = _children_cpu_s() - before
    if result.returncode != 0:
        raise SystemExit(f"pytest {' '.join(args)} failed:\n{result.stdout[-2000:]}")
    per_test = json.loads(out.read_text())["p10_ns"] / 1000 if timed else None
    return spent, per_test


def fake_reader_us(plugins: Path, env: dict[str, str], calls: int = 5000) -> float | None:
    result = subprocess.run(
        [sys.executable, "-c", FAKE_READER_COST, str(calls)],
        env=_env(plugins, env),
        capture_output=True,
        text=True,
    )
    return float(result.stdout) if result.returncode == 0 else None


def _spread(values: list[float]) -> str:
    return f"{min(values):.0f}..{max(values):.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-memray", action="store_true", help="skip the slow memray runs")
    parser.add_argument("--no-xdist", action="store_true", help="skip the -n 2 runs")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hmn-bench-") as tmp:
        suite, single, plugins = Path(tmp) / "suite", Path(tmp) / "single", Path(tmp) / "p"
        for directory in (suite, single, plugins):
            directory.mkdir()
        write_suite(suite, options.tests)
        write_suite(single, 1)  # warm-up runs
        write_shape_plugins(plugins)
        fake = build_fake_nvml(Path(tmp))
        chosen = variants(fake, memray=not options.no_memray, xdist=not options.no_xdist)
        cpu: dict[str, list[float]] = {name: [] for name in chosen}
        per_test: dict[str, list[float]] = {name: [] for name in chosen}
        for args, env in chosen.values():  # warm-up: bytecode, page cache
            run_once(single, plugins, args, env)
        for round_no in range(options.rounds):
            for name, (args, env) in chosen.items():
                spent, median_us = run_once(suite, plugins, args, env)
                cpu[name].append(spent)
                if median_us is not None:
                    per_test[name].append(median_us)
            print(f"round {round_no + 1}/{options.rounds} done", file=sys.stderr)
        reader_us = fake_reader_us(plugins, chosen["hypomnesis+fake-nvml"][1]) if fake else None
    n = options.tests
    print(f"{n} trivial tests, {options.rounds} interleaved rounds, CPU time (user+sys)")
    print(f"{'variant':<22}{'x plain':>9}{'range':>13}{'per test us':>13}{'range':>13}")
    for name in chosen:
        base = "plain -n2" if name.endswith("-n2") else "plain"
        ratios = [a / b for a, b in zip(cpu[name], cpu[base], strict=True)]
        if per_test[name]:
            # Paired: the same round's plain run, test for test.
            diffs = [a - b for a, b in zip(per_test[name], per_test[base], strict=True)]
            if name == "plain":
                diffs = per_test[name]  # plain's own cost per test, for scale
        else:
            diffs = [(a - b) / n * 1e6 for a, b in zip(cpu[name], cpu[base], strict=True)]
        print(
            f"{name:<22}{statistics.median(ratios):>9.3f}"
            f"{f'{min(ratios):.2f}..{max(ratios):.2f}':>13}"
            f"{statistics.median(diffs):>13.1f}{_spread(diffs):>13}"
        )
    print(
        "per test: in-process, the 10th-percentile test's CPU minus plain's (plain: its own);"
        " -n2 rows: whole-process CPU over plain -n2 per test"
    )
    if reader_us is not None:
        print(f"fake NVML reading (the plugin takes 2 per test): {reader_us:.1f} us")
    if fake is None:
        print("(no C compiler: the fake NVML variant was skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
