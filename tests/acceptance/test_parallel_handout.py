"""The handout by fit, end to end: ``-n 4 --hypomnesis-pin-gpus --hypomnesis-admit`` on two
fake GPUs whose memory is really limited, without a needs report."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import pytest

from tests.helpers.fakevram import FakeVram
from tests.helpers.units import GIB

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the fake NVML is a .so")

_SUITE = """
import pytest
from tests.helpers.fakevram import hold
GIB = 1024**3
# Big and small by turns: xdist's own handout deals them out in collection order, a big
# test to every worker, so each GPU's two workers start with an 8 GiB test each.
GIBS = [8, 1, 8, 1, 8, 1, 8, 1, 1, 1, 1, 1]

@pytest.mark.parametrize(
    "gib",
    [pytest.param(g, marks=pytest.mark.max_vram(f"{g}GiB"), id=f"t{k:02d}") for k, g in
     enumerate(GIBS)],
)
def test_hold(gib):
    hold(gib * GIB, 0.3 if gib == 8 else 0.1)
"""
BIG = ["t00", "t02", "t04", "t06"]
GPU_OF = {"gw0": "A", "gw2": "A", "gw1": "B", "gw3": "B"}  # pinned round-robin


def _run(pytester: pytest.Pytester, *extra: str) -> tuple[pytest.RunResult, dict[str, str]]:
    ledger = pytester.path / "ledger"
    ledger.mkdir(exist_ok=True)
    result = pytester.runpytest_subprocess(
        "-p", "no:randomly", "-n", "4", "--hypomnesis-pin-gpus", "--hypomnesis-admit",
        "--hypomnesis-json=out.json", f"--hypomnesis-ledger-dir={ledger}", *extra,
    )  # fmt: skip
    report = json.loads((pytester.path / "out.json").read_text())
    return result, {t["nodeid"].split("[")[-1][:-1]: t["worker"] for t in report["tests"]}


def test_fit_handout_deals_big_tests_to_one_worker_per_gpu(
    pytester: pytest.Pytester, fake_gpus: Callable[..., FakeVram]
) -> None:
    vram = fake_gpus([10 * GIB, 10 * GIB])
    pytester.makepyfile(_SUITE)
    result, workers = _run(pytester)
    result.assert_outcomes(passed=12)
    assert vram.oom_count() == 0
    result.stdout.fnmatch_lines(
        ["hypomnesis: handout by fit, as tests end: 12 of 12 test(s) with a known VRAM need *"]
    )
    # 12 tests, 4 workers holding 3 each: all dealt at the start, largest first, each
    # beside what the GPU's other worker holds: on each GPU one worker takes both 8 GiB
    # tests and its neighbour, beside 8 GiB, 1 GiB ones that fit at once.
    big_workers = sorted(workers[name] for name in BIG)
    assert len(set(big_workers)) == 2 and big_workers[0] == big_workers[1]
    assert {GPU_OF[w] for w in big_workers} == {"A", "B"}


def test_xdist_handout_by_blocking_the_scheduler_by_name(
    pytester: pytest.Pytester, fake_gpus: Callable[..., FakeVram]
) -> None:
    vram = fake_gpus([10 * GIB, 10 * GIB])
    pytester.makepyfile(_SUITE)
    result, workers = _run(pytester, "-p", "no:hypomnesis-scheduler")
    result.assert_outcomes(passed=12)
    assert vram.oom_count() == 0  # admission still guards every start
    assert "hypomnesis: handout" not in result.stdout.str()
    assert set(workers.values()) == set(GPU_OF)


def test_fit_handout_keeps_other_dist_modes(
    pytester: pytest.Pytester, fake_gpus: Callable[..., FakeVram]
) -> None:
    fake_gpus([10 * GIB, 10 * GIB])
    pytester.makepyfile(_SUITE)
    result, _ = _run(pytester, "--dist", "loadfile")
    result.assert_outcomes(passed=12)
    result.stdout.fnmatch_lines(
        ["hypomnesis: --hypomnesis-admit: --dist loadfile keeps its own order"]
    )


_UNMARKED = """
import time

def test_a(): time.sleep(0.1)
def test_b(): time.sleep(0.1)
def test_c(): time.sleep(0.1)
def test_d(): time.sleep(0.1)
def test_e(): time.sleep(0.1)
def test_f(): time.sleep(0.1)
"""


def _admit(pytester: pytest.Pytester, *extra: str) -> pytest.RunResult:
    ledger = pytester.path / "ledger"
    ledger.mkdir(exist_ok=True)
    return pytester.runpytest_subprocess(
        "-p", "no:randomly", "--hypomnesis-admit", f"--hypomnesis-ledger-dir={ledger}", *extra,
        timeout=120,
    )  # fmt: skip


def test_a_worker_dying_in_collection_is_replaced_and_the_run_completes(
    pytester: pytest.Pytester, fake_gpus: Callable[..., FakeVram]
) -> None:
    fake_gpus([10 * GIB])
    pytester.makeconftest(
        """
import os, time
def pytest_collection_modifyitems(config, items):
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker == "gw0":
        os._exit(3)  # the worker asked to pass the needs on, before it wrote them
    if worker == "gw1":
        time.sleep(2)
"""
    )
    pytester.makepyfile(_UNMARKED)
    result = _admit(pytester, "-n", "2")
    result.assert_outcomes(passed=6)
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    # Its replacement wrote the needs: all six unknown (no max_vram).
    result.stdout.fnmatch_lines(["*handout by fit, as tests end: 0 of 6 test(s) with a known*"])


def test_unknown_needs_run_on_a_smaller_gpu_too(
    pytester: pytest.Pytester, fake_gpus: Callable[..., FakeVram]
) -> None:
    fake_gpus([10 * GIB, 12 * GIB])
    pytester.makepyfile(_UNMARKED)
    _admit(pytester, "-n", "2", "--hypomnesis-pin-gpus", "--hypomnesis-json=out.json")
    report = json.loads((pytester.path / "out.json").read_text())
    # An unknown need is the whole of whichever GPU runs it: both workers get tests.
    assert {t["worker"] for t in report["tests"]} == {"gw0", "gw1"}


def test_each_worker_runs_its_tests_in_collection_order(
    pytester: pytest.Pytester, fake_gpus: Callable[..., FakeVram]
) -> None:
    fake_gpus([10 * GIB])
    for module in ("test_m1", "test_m2"):
        pytester.makepyfile(**{module: "\n".join(f"def test_{i}(): pass" for i in range(6))})
    result = _admit(pytester, "-n", "2", "-v")
    result.assert_outcomes(passed=12)
    order = [f"test_m{m}.py::test_{i}" for m in (1, 2) for i in range(6)]
    by_worker: dict[str, list[int]] = {}
    for line in result.stdout.lines:
        if " PASSED " in line:  # "[gw0] [  8%] PASSED test_m1.py::test_0"
            worker, nodeid = line.split("]")[0].lstrip("["), line.split()[-1]
            by_worker.setdefault(worker, []).append(order.index(nodeid))
    assert sorted(i for ran in by_worker.values() for i in ran) == list(range(12))
    for ran in by_worker.values():  # module fixtures are not set up twice by a worker
        assert ran == sorted(ran)


def test_a_conftests_own_scheduler_is_kept(
    pytester: pytest.Pytester, fake_gpus: Callable[..., FakeVram]
) -> None:
    fake_gpus([10 * GIB])
    pytester.makeconftest(
        """
import pathlib
from xdist.scheduler import LoadScheduling

class Mine(LoadScheduling):
    def schedule(self):
        pathlib.Path("mine-used").write_text("yes")
        super().schedule()

def pytest_xdist_make_scheduler(config, log):
    return Mine(config, log)
"""
    )
    pytester.makepyfile(_UNMARKED)
    result = _admit(pytester, "-n", "2")
    result.assert_outcomes(passed=6)
    assert (pytester.path / "mine-used").exists()
    result.stdout.fnmatch_lines(["*--hypomnesis-admit: another plugin's xdist scheduler kept*"])
