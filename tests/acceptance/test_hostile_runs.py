"""Whole runs on hostile ground (issue 11): a budget on a GPU lost mid-test is not checked
(an error under ``--hypomnesis-strict``), never passed on the readings before the loss; a
test that closes every fd does not break the measurement of the tests after it."""

from __future__ import annotations

import json

import pytest

from tests.helpers.fakenvml import (
    SELF,
    FakeNvml,
    FakeNvmlDevice,
    FakeProcess,
    inner_writer,
    render_config,
)
from tests.helpers.units import GIB, MIB

pytestmark = pytest.mark.usefixtures("inner_pytester_run")

V3 = "nvmlDeviceGetComputeRunningProcesses_v3"


def _device(self_used: int) -> FakeNvmlDevice:
    return FakeNvmlDevice(used_bytes=GIB, processes=(FakeProcess(SELF, self_used),))


# --- budgets on a GPU lost mid-test: not checked, an error under --hypomnesis-strict -------

LOST_MID_TEST = """
@pytest.mark.max_vram("1GiB")
def test_lost(memory_report):
    write(SPIKE)
    write(LOST)
"""


@pytest.mark.parametrize("strict", [False, True])
def test_a_gpu_lost_mid_test_leaves_the_budget_not_checked(
    pytester: pytest.Pytester, fake_nvml: FakeNvml, strict: bool
) -> None:
    fake_nvml.set([_device(100 * MIB)])
    lost = render_config([_device(900 * MIB)], errors={V3: "GPU_IS_LOST"})
    pytester.makepyfile(inner_writer(LOST=lost, SPIKE=[_device(900 * MIB)]) + LOST_MID_TEST)
    args = ["--hypomnesis", "--hypomnesis-json=out.json", "-p", "no:randomly"]
    result = pytester.runpytest(*args, *(["--hypomnesis-strict"] if strict else []))
    if strict:
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["*max_vram: could not be checked (*GPU is lost*"])
    else:
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["*max_vram: not checked: *GPU is lost*"])
    data = json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))
    (budget,) = data["tests"][0]["budgets"]
    assert budget["measured_bytes"] is None
    assert budget["passed"] is (False if strict else None)
    assert "GPU is lost" in budget["message"]


# --- a test that closes fds -------------------------------------------------------------------


def test_a_test_that_closes_fds_does_not_break_later_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_a="import os\n\n"
        "def test_closes(tmp_path):\n"
        "    os.closerange(3, 1024)\n"
        "    keep = []\n"
        "    for i in range(40):\n"
        "        p = tmp_path / f'f{i}'\n"
        "        p.write_text('mine')\n"
        "        keep.append((p, os.open(p, os.O_RDWR)))\n"
        "    globals()['KEEP'] = keep\n\n"
        "def test_later():\n"
        "    blob = bytearray(64 * 1024 * 1024)\n"
        "    for p, fd in KEEP:\n"
        "        assert p.read_text() == 'mine', p\n"
    )
    # -s: the test closes pytest's own capture fds too.
    result = pytester.runpytest_subprocess(
        "-s",
        "--hypomnesis",
        "--hypomnesis-json=out.json",
        "-p",
        "no:faulthandler",
        "-p",
        "no:randomly",  # the second test reads what the first left
    )
    result.assert_outcomes(passed=2)
    data = json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))
    later = next(t for t in data["tests"] if t["nodeid"].endswith("test_later"))
    assert later["ram"]["increase_bytes"] >= 60 * 1024 * 1024
