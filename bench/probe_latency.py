"""Median latency of the probe library's hot calls beside the raw floor, in one run.

    python bench/probe_latency.py [--calls N]

Rows: the raw floor (open+read+parse ``/proc/self/status``; one psutil
``memory_info()``), ``process_rss()``, ``Snapshot.now(0)`` with no GPU (first as a user
has it: the ordinary ``PATH``, no library override; then an empty ``PATH`` and a missing
library), and ``Snapshot.now(0)`` / the sampler's reader against the fake NVML library
compiled from ``tests/fake_nvml/fake_nvml.c`` (skipped when gcc is missing).

Run it with the package installed (not editable) to see what a user gets; the repository
is only appended to ``sys.path`` for the test helpers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # tests.helpers; an installed package still wins


def median_us(fn: Callable[[], object], calls: int) -> float:
    for _ in range(min(calls, 200)):
        fn()
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def ctypes_init_count(lib: Path) -> int:
    """nvmlInit calls the fake library counted: 1 means no per-call init."""
    import ctypes

    inits, shutdowns, calls = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint()
    refcount = ctypes.c_int()
    ctypes.CDLL(str(lib)).fake_nvml_stats(
        ctypes.byref(inits), ctypes.byref(shutdowns), ctypes.byref(calls), ctypes.byref(refcount)
    )
    return inits.value


def status_floor() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    args = parser.parse_args()
    calls: int = args.calls

    import psutil

    import pytest_hypomnesis as hmn
    from pytest_hypomnesis.probe import chain, nvml, smi

    proc = psutil.Process()
    rows: list[tuple[str, float]] = []
    if sys.platform.startswith("linux"):
        rows.append(("floor: open+parse /proc/self/status", median_us(status_floor, calls)))
    rows.append(
        ("floor: psutil memory_info().rss", median_us(lambda: proc.memory_info().rss, calls))
    )
    rows.append(("process_rss()", median_us(hmn.process_rss, calls)))

    # No GPU as a user has it: no library override, the ordinary PATH and sys.path (the
    # first, before anything imports pynvml: a scan of sys.path per call showed only here).
    if "pynvml" not in sys.modules and not os.environ.get("HYPOMNESIS_NVML_LIBRARY"):
        nvml._reset_for_tests()
        smi._reset_for_tests()
        snap = hmn.Snapshot.now(0)
        if snap.gpu is None:
            rows.append(
                (
                    "Snapshot.now(0), no GPU, ordinary PATH",
                    median_us(lambda: hmn.Snapshot.now(0), calls),
                )
            )

    # No GPU: point NVML at a library that does not exist and nvidia-smi at an empty PATH.
    os.environ["HYPOMNESIS_NVML_LIBRARY"] = "/nonexistent/libnvidia-ml.so.1"
    saved_path = os.environ.get("PATH", "")
    os.environ["PATH"] = tempfile.mkdtemp()
    nvml._reset_for_tests()
    smi._reset_for_tests()
    snap = hmn.Snapshot.now(0)
    assert snap.gpu is None, snap
    rows.append(("Snapshot.now(0), no GPU", median_us(lambda: hmn.Snapshot.now(0), calls)))
    os.environ["PATH"] = saved_path

    from tests.helpers import fakenvml

    try:
        lib: Path | None = fakenvml._compile(Path(tempfile.mkdtemp()), ())
    except BaseException as exc:  # pytest.skip() raises a BaseException when gcc is missing
        print(f"fake NVML library unavailable ({exc}): skipping the NVML rows", file=sys.stderr)
        lib = None
    if lib is not None:
        config = Path(tempfile.mkdtemp()) / "nvml.conf"
        device = fakenvml.FakeNvmlDevice(
            processes=(fakenvml.FakeProcess(pid=fakenvml.SELF, used_bytes=1 << 30),)
        )
        config.write_text(fakenvml.render_config([device], "555.42.06", {}), encoding="ascii")
        os.environ["HYPOMNESIS_NVML_LIBRARY"] = str(lib)
        os.environ["FAKE_NVML_CONFIG"] = str(config)
        nvml._reset_for_tests()
        snap = hmn.Snapshot.now(0)
        assert snap.gpu is not None and snap.gpu.source is hmn.GpuQuerySource.NVML, snap
        nvml_calls = max(calls // 10, 100)
        rows.append(
            ("Snapshot.now(0), fake NVML", median_us(lambda: hmn.Snapshot.now(0), nvml_calls))
        )
        reader = chain.vram_reader(0)
        assert reader is not None
        rows.append(("sampler reader, fake NVML", median_us(reader, nvml_calls)))
        inits = ctypes_init_count(lib)
        print(f"nvmlInit calls over {2 * nvml_calls + 200} NVML-backed reads: {inits}")

    width = max(len(name) for name, _ in rows)
    print(f"{'call'.ljust(width)}  median us")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value:9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
