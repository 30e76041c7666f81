"""Pinned xdist workers end to end, on fake GPUs whose memory is really limited: a worker's
own figures and ``device=`` budgets follow its GPU, and MIG devices are pinned and admitted
one slice per worker."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.fakevram import FakeVram, allocate, free
from tests.helpers.units import GIB

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the fake NVML is a .so")

_SEEN = """
import json, os
from pathlib import Path

def seen():
    name = "seen-" + os.environ.get("PYTEST_XDIST_WORKER", "master") + ".json"
    Path(name).write_text(json.dumps(os.environ.get("CUDA_VISIBLE_DEVICES")))
"""


def _seen(path: Path) -> dict[str, str | None]:
    return {p.stem.removeprefix("seen-"): json.loads(p.read_text()) for p in path.glob("seen-*")}


def test_a_pinned_workers_records_and_device_budgets_follow_its_gpu(
    pytester: pytest.Pytester,
    fake_gpus: Callable[..., FakeVram],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vram = fake_gpus([10 * GIB, 10 * GIB])
    gpu1 = vram.uuids[1]
    # This process holds 5 GiB on fake GPU 0: a worker that read GPU 0 for its cuda:0
    # would see 5 GiB of device use there and none of its own.
    allocate(5 * GIB)
    try:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # the pool: GPU 1 alone
        pytester.makepyfile(seen=_SEEN)
        pytester.makepyfile(
            """
            import pytest
            from seen import seen
            from tests.helpers.fakevram import hold
            GIB = 1024**3

            @pytest.mark.max_vram("4GiB", device=0)
            def test_within():
                seen()
                hold(3 * GIB, 0.4)

            @pytest.mark.max_vram("2GiB", device=0)
            def test_over():
                hold(3 * GIB, 0.4)
            """
        )
        result = pytester.runpytest_subprocess(
            "-n", "1", "--hypomnesis-pin-gpus", "--hypomnesis-json=out.json"
        )
    finally:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
        free()
    result.assert_outcomes(passed=1, failed=1)
    assert _seen(pytester.path) == {"gw0": gpu1}
    report = json.loads((pytester.path / "out.json").read_text())
    records = {t["nodeid"].rpartition("::")[2]: t for t in report["tests"]}
    for record in records.values():
        # Its GPU is its cuda:0: recorded under ordinal "0", with that GPU's figures.
        (figures,) = record["vram"]["devices"].values()
        assert list(record["vram"]["devices"]) == ["0"]
        assert figures["increase_bytes"] == 3 * GIB
        assert figures["device_used_peak_bytes"] == 3 * GIB  # GPU 1's use, not GPU 0's 8 GiB
    (within,) = records["test_within"]["budgets"]
    (over,) = records["test_over"]["budgets"]
    assert (within["device"], within["measured_bytes"], within["passed"]) == (0, 3 * GIB, True)
    assert (over["device"], over["measured_bytes"], over["passed"]) == (0, 3 * GIB, False)


_MIG_TESTS = """
import pytest
from seen import seen
from tests.helpers.fakevram import hold
GIB = 1024**3

@pytest.mark.parametrize("i", range(8))
@pytest.mark.max_vram("3GiB")
def test_slice(i):
    seen()
    hold(3 * GIB, 0.2)
"""


def test_mig_devices_are_pinned_one_per_worker_and_admitted_by_slice(
    pytester: pytest.Pytester,
    fake_gpus: Callable[..., FakeVram],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One 20 GiB GPU in MIG mode: two 5 GiB slices; two 3 GiB tests never fit one slice.
    vram = fake_gpus([20 * GIB], migs=[[5 * GIB, 5 * GIB]])
    slices = vram.mig_uuids[0]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ",".join(slices))
    pytester.makepyfile(seen=_SEEN)
    pytester.makepyfile(_MIG_TESTS)
    ledger = pytester.path / "ledger"
    ledger.mkdir()
    plain = pytester.runpytest_subprocess("-n", "4", "--hypomnesis-pin-gpus")
    assert plain.ret == pytest.ExitCode.TESTS_FAILED and vram.oom_count() > 0
    before = vram.oom_count()
    result = pytester.runpytest_subprocess(
        "-n",
        "4",
        "--hypomnesis-pin-gpus",
        "--hypomnesis-admit",
        f"--hypomnesis-ledger-dir={ledger}",
    )
    result.assert_outcomes(passed=8)
    assert vram.oom_count() == before
    assert _seen(pytester.path) == {f"gw{w}": slices[w % 2] for w in range(4)}
    result.stdout.fnmatch_lines(
        [f"hypomnesis: pinned 4 worker(s) round-robin to 2 GPU(s): {', '.join(slices)}"]
    )
    # The ledger is per slice.
    assert sorted(p.name for p in ledger.glob("*.json")) == sorted(
        f"hypomnesis-gpu-{uuid}.json" for uuid in slices
    )


_PACKED = """
import json, os, time, pytest
from tests.helpers.fakevram import hold
GIB = 1024**3
SIZES = {"big0": 7, "big1": 7, "big2": 7, "big3": 7, **{f"small{i}": 1 for i in range(8)}}

@pytest.mark.parametrize("name", sorted(SIZES))
def test_packed(name):
    gib = SIZES[name]
    start = time.time()
    hold(gib * GIB, 0.6 if gib == 7 else 0.3)
    with open(f"span-{name}.json", "w") as fh:
        json.dump([start, time.time(), os.environ.get("CUDA_VISIBLE_DEVICES")], fh)
"""


def test_the_needs_scheduler_packs_small_tests_beside_big_ones_on_pinned_gpus(
    pytester: pytest.Pytester, fake_gpus: Callable[..., FakeVram]
) -> None:
    # Two 10 GiB GPUs, two workers each; four 7 GiB tests, eight 1 GiB ones (needs 7.7 and
    # 1.1 GiB from the report: two big ones never share a GPU, a big and a small one do).
    # The plan puts each GPU's big tests on one worker and the small ones beside them on
    # the other; admission finds them fitting.
    vram = fake_gpus([10 * GIB, 10 * GIB])
    pytester.makepyfile(_PACKED)
    pytester.runpytest_subprocess("--hypomnesis-json=needs.json").assert_outcomes(passed=12)
    for path in pytester.path.glob("span-*.json"):
        path.unlink()
    result = pytester.runpytest_subprocess(
        "-n",
        "4",
        "--hypomnesis-pin-gpus",
        "--hypomnesis-admit",
        "--hypomnesis-needs=needs.json",
        f"--hypomnesis-ledger-dir={pytester.path}",
    )
    result.assert_outcomes(passed=12)
    assert vram.oom_count() == 0
    spans = {
        p.stem.removeprefix("span-"): json.loads(p.read_text())
        for p in pytester.path.glob("span-*.json")
    }
    for name, (start, end, gpu) in spans.items():
        if name.startswith("big"):
            beside = [
                other
                for other, (s, e, g) in spans.items()
                if other.startswith("small") and g == gpu and s < end and e > start
            ]
            assert beside, f"{name} ran alone on {gpu}"
    # Each GPU ran two big tests, one after the other.
    per_gpu = sorted(g for n, (_, _, g) in spans.items() if n.startswith("big"))
    assert per_gpu == sorted(vram.uuids * 2)
