"""What reading framework figures and the RAM sidecar cost, per test and per sample.

    .venv/bin/python bench/framework_cost.py [--pairs 3000] [--samples 20000] [--pytest 2000]

In-process, through the engine itself (``Engine.begin``/``Engine.end`` is what the plugin
adds to each measured test; ``Engine._sample`` is one beat of the sampler):

- **per test**: the median wall time of a ``begin``/``end`` pair, for each variant:
  no framework (the plain path), a stand-in ``torch`` loaded with CUDA initialised
  (``tests/helpers/standins.py``: the allocator figures are read at start, end and on the
  sampler's beat), the same with the fake NVML library (when gcc exists), and the RAM
  paths: the exact kernel reset, the sidecar process (``keep_hwm``: the mark left alone),
  the sampling thread it replaces, and ``children``.
- **per sample**: ``frameworks.read_allocators()`` alone, and one ``_sample`` of an open
  span, with and without the stand-in torch.

With ``--pytest N``, also whole pytest runs of N trivial tests (CPU time of the run, the
sidecar's included), each variant against plain ``--hypomnesis``.

Pairs are timed in interleaved rounds (variant A, B, C, ... then again) so a noisy machine
hits every variant alike. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_hypomnesis.plugin import frameworks  # noqa: E402
from pytest_hypomnesis.plugin.engine import Engine  # noqa: E402
from pytest_hypomnesis.probe import nvml, sidecar  # noqa: E402
from tests.helpers import standins  # noqa: E402

INTERVAL_S = 0.010


def build_fake_nvml(directory: Path) -> Path | None:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return None
    library = directory / "libnvidia-ml.so.1"
    source = ROOT / "tests" / "fake_nvml" / "fake_nvml.c"
    command = [compiler, "-shared", "-fPIC", "-O2", "-pthread", "-o", str(library), str(source)]
    subprocess.run(command, check=True)
    return library


def load_torch_standin() -> types.ModuleType:
    """The stand-in ``torch`` of the tests, CUDA initialised with a 100 MiB tensor live."""
    idle, busy = standins.nvml_template()
    source = standins._COMMON.format(context=standins.CONTEXT_BYTES, idle=idle, busy=busy)
    namespace: dict[str, object] = {}
    exec(source + standins._TORCH, namespace)  # installs sys.modules["torch"]
    torch = sys.modules["torch"]
    namespace["keep"] = torch.empty(100 << 20)
    return torch


def unload_torch() -> None:
    sys.modules.pop("torch", None)


def pair_cost(engine: Engine, pairs: int) -> float:
    """Median µs of a begin/end pair, in batches of 50 (one clock read per batch)."""
    batch = 50
    times = []
    for _ in range(max(1, pairs // batch)):
        t0 = time.perf_counter()
        for _ in range(batch):
            engine.end(engine.begin())
        times.append((time.perf_counter() - t0) / batch * 1e6)
    return statistics.median(times)


def per_call(fn: Callable[[], object], calls: int) -> float:
    batch = 100
    times = []
    for _ in range(max(1, calls // batch)):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        times.append((time.perf_counter() - t0) / batch * 1e6)
    return statistics.median(times)


class Variant:
    def __init__(
        self,
        name: str,
        *,
        torch: bool = False,
        gpu: bool = False,
        keep_hwm: bool = False,
        thread: bool = False,
        children: bool = False,
    ) -> None:
        self.name, self.torch, self.gpu = name, torch, gpu
        self.keep_hwm, self.thread, self.children = keep_hwm, thread, children
        self.times: list[float] = []

    def run(self, pairs: int, nvml_env: dict[str, str] | None) -> None:
        saved = dict(os.environ)
        if self.gpu and nvml_env is not None:
            os.environ.update(nvml_env)
        else:
            os.environ.pop("HYPOMNESIS_NVML_LIBRARY", None)
        nvml._reset_for_tests()  # this variant's library (or none) is loaded afresh
        sidecar.DISABLED = "thread variant" if self.thread else None
        if self.torch:
            load_torch_standin()
        engine = Engine(interval_s=INTERVAL_S, keep_hwm=self.keep_hwm, children=self.children)
        try:
            engine.prepare()
            engine.end(engine.begin())  # calibration, the sidecar's start, readers
            self.times.append(pair_cost(engine, pairs))
        finally:
            engine.close()
            unload_torch()
            sidecar.DISABLED = None
            os.environ.clear()
            os.environ.update(saved)


def sample_costs(samples: int) -> list[tuple[str, float]]:
    out = []
    out.append(("read_allocators(), no framework", per_call(frameworks.read_allocators, samples)))
    load_torch_standin()
    try:
        out.append(
            ("read_allocators(), stand-in torch", per_call(frameworks.read_allocators, samples))
        )
    finally:
        unload_torch()
    for label, with_torch in (("no framework", False), ("stand-in torch", True)):
        if with_torch:
            load_torch_standin()
        engine = Engine(interval_s=60.0)  # a sampler thread asleep: only our calls count
        try:
            span = engine.begin(timeline=False)
            sample = functools.partial(engine._sample, final=False)
            out.append((f"Engine._sample, {label}", per_call(sample, samples)))
            engine.end(span)
        finally:
            engine.close()
            unload_torch()
    return out


TORCH_CONFTEST = """
import os
exec(compile(open({standin!r}).read(), "standin_torch", "exec"))
import torch
KEEP = torch.empty(100 << 20)  # CUDA initialised, a 100 MiB tensor live
"""
NO_SIDECAR_CONFTEST = """
from pytest_hypomnesis.probe import sidecar
sidecar.DISABLED = "bench: the thread variant"
"""


def _children_cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pytest_costs(tests: int, rounds: int, tmp: Path) -> list[tuple[str, float, float]]:
    """CPU µs per test of whole pytest runs (the sidecar's CPU included: it is reaped by
    pytest, pytest by us), each variant against plain ``--hypomnesis``."""
    idle, busy = standins.nvml_template()
    standin = tmp / "standin_torch.py"
    source = standins._COMMON.format(context=standins.CONTEXT_BYTES, idle=idle, busy=busy)
    standin.write_text(source + standins._TORCH, encoding="utf-8")
    # Two sizes per variant: the slope between them is the per-test cost, start-up (the
    # sidecar's 60 ms, the interpreter) cancelled.
    sizes = (tests, 3 * tests)
    suites = {}
    for name, conftest in (
        ("base", ""),
        ("torch", TORCH_CONFTEST.format(standin=str(standin))),
        ("thread", NO_SIDECAR_CONFTEST),
    ):
        for size in sizes:
            d = tmp / f"suite-{name}-{size}"
            d.mkdir()
            body = "".join(f"def test_{i}():\n    pass\n\n" for i in range(size))
            (d / "test_gen.py").write_text(body, encoding="utf-8")
            (d / "conftest.py").write_text(conftest, encoding="utf-8")
            (d / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
            suites[f"{name}-{size}"] = d
    variants = {
        "--hypomnesis (exact RAM, no framework)": ("base", []),
        "--hypomnesis, stand-in torch loaded": ("torch", []),
        "--hypomnesis-keep-hwm: sidecar": ("base", ["--hypomnesis-keep-hwm"]),
        "--hypomnesis-keep-hwm: thread (sidecar off)": ("thread", ["--hypomnesis-keep-hwm"]),
        "--hypomnesis-children": ("base", ["--hypomnesis-children"]),
    }
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("HYPOMNESIS_NVML_LIBRARY", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    times: dict[tuple[str, int], list[float]] = {(n, z): [] for n in variants for z in sizes}
    for round_no in range(rounds + 1):  # round 0 warms the caches
        for (name, size), spent in times.items():
            suite, args = variants[name]
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
            command += ["-p", "no:randomly", "--hypomnesis", *args]
            cwd = suites[f"{suite}-{size}"]
            before = _children_cpu_s()
            subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
            if round_no:
                spent.append(_children_cpu_s() - before)
    slope = {
        name: (statistics.median(times[name, sizes[1]]) - statistics.median(times[name, sizes[0]]))
        / (sizes[1] - sizes[0])
        * 1e6
        for name in variants
    }
    base = slope["--hypomnesis (exact RAM, no framework)"]
    return [(name, per_test, per_test - base) for name, per_test in slope.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--pytest", type=int, default=0, metavar="N", help="also whole pytest runs of N tests"
    )
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "fake_nvml.conf"
        # The stand-in writes its row here; without the library nothing reads it.
        os.environ["FAKE_NVML_CONFIG"] = str(config)
        config.write_text(standins.nvml_template()[0], encoding="ascii")
        library = build_fake_nvml(Path(tmp))
        nvml_env = None
        if library is not None:
            nvml_env = {"HYPOMNESIS_NVML_LIBRARY": str(library), "FAKE_NVML_CONFIG": str(config)}
        chosen = [
            Variant("no framework, exact RAM (plain path)"),
            Variant("stand-in torch, exact RAM", torch=True),
            Variant("RAM: sidecar (mark left alone)", keep_hwm=True),
            Variant("RAM: thread (sidecar off)", keep_hwm=True, thread=True),
            Variant("RAM: sidecar, --hypomnesis-children", children=True),
        ]
        if nvml_env is not None:
            chosen[2:2] = [
                Variant("fake NVML, no framework", gpu=True),
                Variant("fake NVML, stand-in torch", gpu=True, torch=True),
            ]
        for _ in range(options.rounds):
            for variant in chosen:
                variant.run(options.pairs, nvml_env)
        samples = sample_costs(options.samples)
        runs = pytest_costs(options.pytest, options.rounds, Path(tmp)) if options.pytest else []
    print(f"per test (a begin/end pair; median of {options.rounds} interleaved rounds)")
    print("| variant | µs per test |")
    print("|---|---|")
    for variant in chosen:
        print(f"| {variant.name} | {statistics.median(variant.times):.1f} |")
    print()
    print("per sample")
    print("| call | µs |")
    print("|---|---|")
    for label, cost in samples:
        print(f"| {label} | {cost:.2f} |")
    if runs:
        print()
        print(
            f"whole pytest runs of {options.pytest} and {3 * options.pytest} trivial tests: "
            "CPU per test (the slope), the sidecar's included"
        )
        print("| variant | CPU µs per test | over --hypomnesis |")
        print("|---|---|---|")
        for label, per_test, extra in runs:
            print(f"| {label} | {per_test:.1f} | {extra:+.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
