"""Per-test overhead of the plugin: one generated suite of trivial tests, run as plain
pytest, with ``--hypomnesis`` (no GPU), with ``--hypomnesis`` against a fake NVML library,
and with ``pytest-memray --memray``, interleaved round by round.

    .venv/bin/python bench/overhead.py [--tests 2000] [--rounds 5]

Prints the median wall time of each variant and the overhead per test in microseconds
against plain pytest. Targets: at most 50 us per test without a GPU, 100 us with the fake
NVML library. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAKE_NVML_SOURCE = ROOT / "tests" / "fake_nvml" / "fake_nvml.c"
TARGETS_US = {"hypomnesis": 50.0, "hypomnesis+fake-nvml": 100.0}


def write_suite(directory: Path, count: int) -> None:
    per_file = 200
    for start in range(0, count, per_file):
        body = "".join(
            f"def test_{i}():\n    pass\n\n" for i in range(start, min(start + per_file, count))
        )
        (directory / f"test_gen_{start // per_file:03d}.py").write_text(body, encoding="utf-8")
    # An empty ini keeps the repository's pyproject (addopts, filterwarnings) out of it.
    (directory / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")


def build_fake_nvml(directory: Path) -> Path | None:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None or not FAKE_NVML_SOURCE.exists():
        return None
    library = directory / "libnvidia-ml.so.1"
    command = [
        compiler,
        "-shared",
        "-fPIC",
        "-O2",
        "-pthread",
        "-o",
        str(library),
        str(FAKE_NVML_SOURCE),
    ]
    if subprocess.run(command, capture_output=True, check=False).returncode != 0:
        return None
    config = directory / "fake_nvml.conf"
    config.write_text(
        "driver 555.42.06\n"
        f"device {16 * 2**30} {15 * 2**30} {2**30} {256 * 2**20} NVIDIA Fake GPU\n"
        f"process 0 self {512 * 2**20}\n",
        encoding="ascii",
    )
    return library


def variants(fake_nvml: Path | None) -> dict[str, tuple[list[str], dict[str, str]]]:
    out: dict[str, tuple[list[str], dict[str, str]]] = {
        "plain": (["-p", "no:hypomnesis"], {}),
        "hypomnesis": (["--hypomnesis"], {}),
    }
    if fake_nvml is not None:
        env = {
            "HYPOMNESIS_NVML_LIBRARY": str(fake_nvml),
            "FAKE_NVML_CONFIG": str(fake_nvml.parent / "fake_nvml.conf"),
        }
        out["hypomnesis+fake-nvml"] = (["--hypomnesis"], env)
    try:
        import pytest_memray  # noqa: F401

        out["memray"] = (["-p", "no:hypomnesis", "--memray"], {})
    except ImportError:
        pass
    return out


def run_once(suite: Path, args: list[str], extra_env: dict[str, str]) -> float:
    env = {**os.environ, **extra_env}
    env.pop("PYTEST_ADDOPTS", None)
    # As on a user's machine: bytecode cached (an installed package ships it). Without this
    # (PYTHONDONTWRITEBYTECODE is set on some CI images) every run recompiles this package
    # from source, ~100 ms charged to the plugin that a real install never pays.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    start = time.perf_counter()
    result = subprocess.run(
        [*command, *args, str(suite)], cwd=suite, env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"pytest {' '.join(args)} failed:\n{result.stdout[-2000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-memray", action="store_true", help="skip the slow memray runs")
    options = parser.parse_args(argv)
    compileall.compile_dir(str(ROOT / "pytest_hypomnesis"), quiet=1)
    with tempfile.TemporaryDirectory(prefix="hmn-bench-") as tmp:
        suite = Path(tmp) / "suite"
        suite.mkdir()
        write_suite(suite, options.tests)
        # One test: the fixed start-up and end-of-session cost of each variant.
        single = Path(tmp) / "single"
        single.mkdir()
        write_suite(single, 1)
        fake = build_fake_nvml(Path(tmp))
        chosen = variants(fake)
        if options.no_memray:
            chosen.pop("memray", None)
        times: dict[str, list[float]] = {name: [] for name in chosen}
        fixed: dict[str, list[float]] = {name: [] for name in chosen}
        for args, env in chosen.values():  # warm-up: imports, page cache
            run_once(suite, args, env)
        for round_no in range(options.rounds):
            for name, (args, env) in chosen.items():
                times[name].append(run_once(suite, args, env))
                fixed[name].append(run_once(single, args, env))
            print(f"round {round_no + 1}/{options.rounds} done", file=sys.stderr)
    plain = statistics.median(times["plain"])
    plain_fixed = statistics.median(fixed["plain"])
    print(f"{options.tests} trivial tests, median of {options.rounds} interleaved rounds")
    print(
        f"{'variant':<22}{'median s':>10}{'overhead/test':>16}{'start-up ms':>13}"
        f"{'per test w/o start-up':>24}  target (overhead/test)"
    )
    for name, samples in times.items():
        median = statistics.median(samples)
        per_test_us = (median - plain) / options.tests * 1e6
        startup_ms = (statistics.median(fixed[name]) - plain_fixed) * 1e3
        marginal_us = per_test_us - startup_ms * 1e3 / options.tests
        target = TARGETS_US.get(name)
        verdict = (
            ""
            if target is None
            else f"<= {target:.0f} us " + ("ok" if per_test_us <= target else "MISSED")
        )
        print(
            f"{name:<22}{median:>10.3f}{per_test_us:>13.1f} us{startup_ms:>10.1f} ms"
            f"{marginal_us:>21.1f} us  {verdict}"
        )
    if fake is None:
        print("(no C compiler: the fake NVML variant was skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
