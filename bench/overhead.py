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

Figures are CPU time (user + sys) of the pytest process and its children, from
``getrusage(RUSAGE_CHILDREN)``: on a shared machine wall time measures the neighbours.
Each variant's cost per test is the median over rounds of its paired difference from the
same round's ``plain`` run, minus the start-up difference a one-test suite shows, divided
by the number of tests. Run it with the package installed (not editable) and bytecode
cached, as a user has it. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
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

# The shape of our per-test hooks: a setup hook, a call wrapper, a makereport wrapper that
# puts a dict on the call report, and the controller's teststatus/logreport hooks.
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

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    pass

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

@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report, config):
    if report.when != "call" or not report.failed:
        return None
    return None

def pytest_runtest_logreport(report):
    getattr(report, "bench", None)
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


def run_once(suite: Path, plugins: Path, args: list[str], extra_env: dict[str, str]) -> float:
    """CPU seconds of one pytest run, its xdist workers included."""
    env = {**os.environ, **extra_env}
    env.pop("PYTEST_ADDOPTS", None)
    # As on a user's machine: bytecode cached (an installed package ships it).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugins), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["-p", "no:randomly", *args, str(suite)]
    before = _children_cpu_s()
    result = subprocess.run(command, cwd=suite, env=env, capture_output=True, text=True)
    spent = _children_cpu_s() - before
    if result.returncode != 0:
        raise SystemExit(f"pytest {' '.join(args)} failed:\n{result.stdout[-2000:]}")
    return spent


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
        write_suite(single, 1)  # the fixed start-up and end-of-session cost
        write_shape_plugins(plugins)
        fake = build_fake_nvml(Path(tmp))
        chosen = variants(fake, memray=not options.no_memray, xdist=not options.no_xdist)
        full: dict[str, list[float]] = {name: [] for name in chosen}
        fixed: dict[str, list[float]] = {name: [] for name in chosen}
        for args, env in chosen.values():  # warm-up: bytecode, page cache
            run_once(single, plugins, args, env)
        for round_no in range(options.rounds):
            for name, (args, env) in chosen.items():
                full[name].append(run_once(suite, plugins, args, env))
                fixed[name].append(run_once(single, plugins, args, env))
            print(f"round {round_no + 1}/{options.rounds} done", file=sys.stderr)
    n = options.tests
    print(f"{n} trivial tests, {options.rounds} interleaved rounds, CPU time (user+sys)")
    print(
        f"{'variant':<22}{'CPU s':>8}{'x plain':>9}{'start-up ms':>13}{'per test us':>13}"
        f"{'IQR us':>15}"
    )
    for name in chosen:
        # Paired per round against the plain run of the same round (the -n2 variants
        # against plain -n2), start-up taken out.
        base = "plain -n2" if name.endswith("-n2") else "plain"
        startup = [a - b for a, b in zip(fixed[name], fixed[base], strict=True)]
        per_test = [
            ((a - b) - s) / n * 1e6 for a, b, s in zip(full[name], full[base], startup, strict=True)
        ]
        quartiles = statistics.quantiles(per_test, n=4) if len(per_test) > 1 else per_test * 3
        median = statistics.median(full[name])
        ratio = median / statistics.median(full[base])
        print(
            f"{name:<22}{median:>8.2f}{ratio:>9.3f}{statistics.median(startup) * 1e3:>13.1f}"
            f"{statistics.median(per_test):>13.1f}"
            f"{f'{quartiles[0]:.0f}..{quartiles[2]:.0f}':>15}"
        )
    if fake is None:
        print("(no C compiler: the fake NVML variant was skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
