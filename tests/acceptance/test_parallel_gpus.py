"""Parallel GPU runs end to end: xdist workers pinned to fake GPUs whose memory is really
limited (``tests.helpers.fakevram``), tests admitted by VRAM through the host-wide ledger.

Every inner run is a subprocess (``pytest -n 4``): the workers inherit the fake NVML and
the fake VRAM state through the environment, as a real suite inherits the driver.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import pytest

from pytest_hypomnesis.parallel.ledger import Ledger
from tests.helpers.fakenvml import posix_only
from tests.helpers.fakevram import FakeVram

GIB = 1024**3

pytestmark = posix_only


def _ledger_dir(pytester: pytest.Pytester) -> str:
    path = pytester.path / "ledger"
    path.mkdir(exist_ok=True)
    return f"--hypomnesis-ledger-dir={path}"


# -- pinning ---------------------------------------------------------------------------

_PIN_CONFTEST = """
import json, os
# Written at conftest import, before any test module: the pin is already in place.
with open(os.path.join(os.path.dirname(__file__), "seen-" + os.environ.get(
        "PYTEST_XDIST_WORKER", "master") + ".json"), "w") as fh:
    json.dump(os.environ.get("CUDA_VISIBLE_DEVICES"), fh)
"""

_PIN_TESTS = """
import os, pytest
from tests.helpers.fakevram import hold

@pytest.mark.parametrize("i", range(8))
def test_on_my_gpu(i):
    hold(1024, 0.05)  # cuda:0 resolves through CUDA_VISIBLE_DEVICES to the fake device
"""


def _seen(pytester: pytest.Pytester) -> dict[str, str | None]:
    return {
        path.stem.removeprefix("seen-"): json.loads(path.read_text())
        for path in pytester.path.glob("seen-gw*.json")
    }


@pytest.mark.parametrize("count", [1, 2, 4])
def test_pin_round_robin_with_four_workers(
    pytester: pytest.Pytester, fake_gpus: Callable[..., FakeVram], count: int
) -> None:
    vram = fake_gpus([10 * GIB] * count)
    pytester.makeconftest(_PIN_CONFTEST)
    pytester.makepyfile(_PIN_TESTS)
    result = pytester.runpytest_subprocess("-n", "4", "--hypomnesis-pin-gpus")
    result.assert_outcomes(passed=8)
    uuids = vram.uuids
    assert _seen(pytester) == {f"gw{w}": uuids[w % count] for w in range(4)}
    result.stdout.fnmatch_lines(
        [f"hypomnesis: pinned 4 worker(s) round-robin to {count} GPU(s): {', '.join(uuids)}"]
    )


@pytest.mark.parametrize("form", ["indices", "uuids"])
def test_pin_pool_is_the_controllers_visible_devices(
    pytester: pytest.Pytester,
    fake_gpus: Callable[..., FakeVram],
    monkeypatch: pytest.MonkeyPatch,
    form: str,
) -> None:
    vram = fake_gpus([10 * GIB] * 4)
    uuids = vram.uuids
    # A reordered list, as indices or as UUIDs (full and prefix): the controller's pool.
    value = "3,1" if form == "indices" else f"{uuids[3][:14]},{uuids[1]}"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    pytester.makeconftest(_PIN_CONFTEST)
    pytester.makepyfile(_PIN_TESTS)
    pytester.runpytest_subprocess("-n", "4", "--hypomnesis-pin-gpus").assert_outcomes(passed=8)
    assert _seen(pytester) == {
        "gw0": uuids[3],
        "gw1": uuids[1],
        "gw2": uuids[3],
        "gw3": uuids[1],
    }


def test_pin_without_a_gpu_says_so(
    pytester: pytest.Pytester, fake_gpus: Callable[..., FakeVram]
) -> None:
    fake_gpus([10 * GIB])
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest_subprocess(
        "-n", "2", "--hypomnesis-pin-gpus", "-o", "hypomnesis_pin_gpus=true"
    )
    result.assert_outcomes(passed=1)
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        result = pytester.runpytest_subprocess("-n", "2", "--hypomnesis-pin-gpus")
    finally:
        del os.environ["CUDA_VISIBLE_DEVICES"]
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["hypomnesis: --hypomnesis-pin-gpus: nothing pinned: *"])


# -- admission -------------------------------------------------------------------------


def _holders(name: str, count: int, gib: int, hold_s: float) -> str:
    """``count`` tests, each holding ``gib`` GiB of the fake VRAM for ``hold_s`` seconds
    under a ``max_vram`` budget of as much."""
    return f"""
import pytest
from tests.helpers.fakevram import hold
GIB = 1024**3

@pytest.mark.parametrize("i", range({count}))
@pytest.mark.max_vram("{gib}GiB")
def {name}(i):
    hold({gib} * GIB, {hold_s})
"""


_BUDGETED = _holders("test_big", count=8, gib=4, hold_s=0.4)


def test_admission_by_budget_prevents_oom(
    pytester: pytest.Pytester, fake_gpus: Callable[..., FakeVram]
) -> None:
    vram = fake_gpus([10 * GIB])
    pytester.makepyfile(_BUDGETED)
    plain = pytester.runpytest_subprocess("-n", "4")
    assert plain.ret == pytest.ExitCode.TESTS_FAILED  # four 4 GiB tests on a 10 GiB GPU
    assert vram.oom_count() > 0
    before = vram.oom_count()
    result = pytester.runpytest_subprocess(
        "-n", "4", "--hypomnesis-admit", "--hypomnesis-json=out.json", _ledger_dir(pytester)
    )
    result.assert_outcomes(passed=8)
    assert vram.oom_count() == before
    report = json.loads((pytester.path / "out.json").read_text())
    waits = [t["admission_wait_s"] for t in report["tests"]]
    assert len(waits) == 8 and all(w >= 0 for w in waits)
    assert max(waits) > 0.2  # two fit at a time: the others waited


def _intervals(pytester: pytest.Pytester) -> list[tuple[float, float, str]]:
    rows = []
    for path in pytester.path.glob("span-*.json"):
        start, end, name = json.loads(path.read_text())
        rows.append((start, end, name))
    return sorted(rows)


_EXCLUSIVE = """
import json, os, time, pytest
from tests.helpers.fakevram import hold
GIB = 1024**3

@pytest.mark.parametrize("i", range(6))
def test_unknown(i):
    start = time.time()
    hold(6 * GIB, 0.2)
    with open(f"span-{i}.json", "w") as fh:
        json.dump([start, time.time(), f"u{i}"], fh)
"""


def test_unknown_needs_run_alone(
    pytester: pytest.Pytester, fake_gpus: Callable[..., FakeVram]
) -> None:
    vram = fake_gpus([10 * GIB])
    pytester.makepyfile(_EXCLUSIVE)
    result = pytester.runpytest_subprocess("-n", "4", "--hypomnesis-admit", _ledger_dir(pytester))
    result.assert_outcomes(passed=6)
    assert vram.oom_count() == 0
    spans = _intervals(pytester)
    assert len(spans) == 6
    for (_, end, _), (start, _, _) in itertools.pairwise(spans):
        assert start >= end  # never two at once


def test_needs_from_a_report(pytester: pytest.Pytester, fake_gpus: Callable[..., FakeVram]) -> None:
    vram = fake_gpus([10 * GIB])
    pytester.makepyfile(_EXCLUSIVE)
    # Measured once serially; then the report's peaks (+10%) let two run side by side.
    pytester.runpytest_subprocess("--hypomnesis-json=needs.json").assert_outcomes(passed=6)
    needs = json.loads((pytester.path / "needs.json").read_text())
    assert {t["vram"]["devices"]["0"]["increase_bytes"] for t in needs["tests"]} == {6 * GIB}
    for path in pytester.path.glob("span-*.json"):
        path.unlink()
    result = pytester.runpytest_subprocess(
        "-n", "4", "--hypomnesis-admit", "--hypomnesis-needs=needs.json", _ledger_dir(pytester)
    )
    result.assert_outcomes(passed=6)
    assert vram.oom_count() == 0


def test_report_needs_pack_small_tests_side_by_side(
    pytester: pytest.Pytester, fake_gpus: Callable[..., FakeVram]
) -> None:
    fake_gpus([10 * GIB])
    pytester.makepyfile(_EXCLUSIVE.replace("6 * GIB", "2 * GIB"))
    pytester.runpytest_subprocess("--hypomnesis-json=needs.json").assert_outcomes(passed=6)
    for path in pytester.path.glob("span-*.json"):
        path.unlink()
    result = pytester.runpytest_subprocess(
        "-n", "4", "--hypomnesis-admit", "--hypomnesis-needs=needs.json", _ledger_dir(pytester)
    )
    result.assert_outcomes(passed=6)
    spans = _intervals(pytester)
    overlapping = any(b[0] < a[1] for a, b in itertools.pairwise(spans))
    assert overlapping  # known small needs are not serialised


def test_need_bigger_than_the_gpu_fails_at_once(
    pytester: pytest.Pytester, fake_gpus: Callable[..., FakeVram]
) -> None:
    fake_gpus([10 * GIB])
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.max_vram("12GiB")
        def test_huge():
            raise AssertionError("never runs")

        def test_small():
            pass
        """
    )
    started = time.monotonic()
    result = pytester.runpytest_subprocess("--hypomnesis-admit", _ledger_dir(pytester))
    assert time.monotonic() - started < 30
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*hypomnesis admission: test_need_bigger_than_the_gpu_fails_at_once.py::test_huge: "
            "needs 12.00 GiB of VRAM but the GPU has 10.00 GiB (9.50 GiB after the 5% headroom)*"
        ]
    )
    assert "never runs" not in result.stdout.str()


def test_timeout_names_who_held_the_memory(
    pytester: pytest.Pytester, fake_gpus: Callable[..., FakeVram]
) -> None:
    vram = fake_gpus([10 * GIB])
    ledger_dir = pytester.path / "ledger"
    ledger_dir.mkdir()
    # This process (alive, not the inner run) holds 8 GiB in the ledger.
    ledger = Ledger(str(ledger_dir), vram.uuids[0])
    with ledger.locked() as state:
        state.entries.append(ledger.entry("reserved", 8 * GIB, "other_job.py::test_hog"))
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.max_vram("4GiB")
        def test_waits():
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "--hypomnesis-admit",
        f"--hypomnesis-ledger-dir={ledger_dir}",
        "--hypomnesis-admit-timeout=1s",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*waited 1.* (--hypomnesis-admit-timeout) for 4.00 GiB on GPU "
            f"{vram.uuids[0]}, 1.50 GiB free; held by: pid {os.getpid()} "
            "(other_job.py::test_hog) reserved 8.00 GiB, no NVML row*"
        ]
    )


_SHARED = _holders("test_share", count=4, gib=6, hold_s=0.3)


def test_two_concurrent_runs_share_one_ledger(
    pytester: pytest.Pytester, fake_gpus: Callable[..., FakeVram]
) -> None:
    vram = fake_gpus([10 * GIB])
    ledger = _ledger_dir(pytester)
    runs = []
    for job in ("a", "b"):
        job_dir = pytester.path / job
        job_dir.mkdir()
        (job_dir / f"test_{job}.py").write_text(textwrap.dedent(_SHARED))
        runs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-p",
                    "no:cacheprovider",
                    "-n",
                    "2",
                    "--hypomnesis-admit",
                    ledger,
                    str(job_dir),
                ],
                cwd=job_dir,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [run.communicate(timeout=240)[0] for run in runs]
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output
        assert "4 passed" in output
    assert vram.oom_count() == 0


def test_a_killed_worker_frees_its_reservation(
    pytester: pytest.Pytester, fake_gpus: Callable[..., FakeVram]
) -> None:
    vram = fake_gpus([10 * GIB])
    pytester.makepyfile(
        f"""
        import os, signal, pytest
        from tests.helpers.fakevram import allocate, hold
        GIB = 1024**3

        @pytest.mark.max_vram("8GiB")
        def test_dies_holding():
            allocate(8 * GIB)
            os.kill(os.getpid(), {int(signal.SIGKILL)})

        @pytest.mark.parametrize("i", range(3))
        @pytest.mark.max_vram("8GiB")
        def test_after(i):
            hold(8 * GIB, 0.1)
        """
    )
    result = pytester.runpytest_subprocess(
        "-n", "2", "--hypomnesis-admit", "--hypomnesis-admit-timeout=60s", _ledger_dir(pytester)
    )
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*crashed while running*test_dies_holding*"])
    assert "admission" not in result.stdout.str()
    assert vram.oom_count() == 0
    assert vram.held() == {}
