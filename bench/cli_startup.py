"""CPU time of ``hmn``, ``hmn ps`` and ``hmn --help`` beside a bare ``python -c pass``, in one run.

    python bench/cli_startup.py [--runs N] [--venv DIR] [--keep]

Measured as a user has it: the package built as a wheel and installed (not editable) into a
scratch virtual environment, bytecode compiled and cached (``PYTHONDONTWRITEBYTECODE`` is
removed from the environment), no GPU (``HYPOMNESIS_NVML_LIBRARY`` unset, the ordinary
``PATH``). Each command runs once to warm the caches, then ``--runs`` times; the figure is
the median CPU time (user + system, from ``RUSAGE_CHILDREN``) and the median wall time,
and the difference from the bare interpreter. ``--venv DIR`` reuses (or creates) that
environment and reinstalls the package into it; the default is a temporary one.
POSIX only (``resource``).
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
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def install(venv: Path) -> Path:
    """A venv at ``venv`` with this checkout installed from a wheel; its bin directory."""
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bin_dir = venv / "bin"
    with tempfile.TemporaryDirectory() as wheels:
        subprocess.run(
            [
                str(bin_dir / "python"),
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "-w",
                wheels,
                str(REPO),
            ],
            check=True,
        )
        (wheel,) = Path(wheels).glob("pytest_hypomnesis-*.whl")
        subprocess.run(
            [
                str(bin_dir / "python"),
                "-m",
                "pip",
                "install",
                "-q",
                "--force-reinstall",
                str(wheel),
            ],
            check=True,
        )
    return bin_dir


def cpu_and_wall_s(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per command")
    parser.add_argument("--venv", type=Path, help="reuse or create this environment")
    args = parser.parse_args()

    scratch = None
    if args.venv is None:
        scratch = tempfile.mkdtemp(prefix="hmn-startup-")
        venv = Path(scratch) / "venv"
    else:
        venv = args.venv
    try:
        bin_dir = install(venv)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONDONTWRITEBYTECODE", "HYPOMNESIS_NVML_LIBRARY")
        }
        env["PATH"] = os.pathsep.join(
            p
            for p in env.get("PATH", "").split(os.pathsep)
            if Path(p).resolve() != bin_dir.resolve()
        )
        python, hmn = str(bin_dir / "python"), str(bin_dir / "hmn")
        commands = {
            "python -c pass": [python, "-c", "pass"],
            "hmn": [hmn],
            "hmn ps": [hmn, "ps"],
            "hmn --help": [hmn, "--help"],
        }
        # Interleaved, so a busy machine slows every command alike.
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for argv in commands.values():
            cpu_and_wall_s(argv, env)  # compile and cache the bytecode
        for _ in range(args.runs):
            for name, argv in commands.items():
                samples[name].append(cpu_and_wall_s(argv, env))
        cpu = {n: statistics.median(c for c, _ in s) * 1000 for n, s in samples.items()}
        wall = {n: statistics.median(w for _, w in s) * 1000 for n, s in samples.items()}
        floor = cpu["python -c pass"]
        print(
            f"{'command':<16}{'CPU ms':>9}{'over bare':>11}{'wall ms':>10}"
            f"   ({args.runs} runs, median)"
        )
        for name in commands:
            print(f"{name:<16}{cpu[name]:>9.1f}{cpu[name] - floor:>+11.1f}{wall[name]:>10.1f}")
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
