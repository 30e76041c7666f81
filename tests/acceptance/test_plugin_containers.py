"""What a user sees in a container whose NVML lists this process under a host PID (no
``--pid=host``): per-process VRAM unknown with the reason, never 0, so a budget is not
checked (an error under ``--hypomnesis-strict``); a process with no CUDA context is truly
0; ``--hypomnesis-vram-source=device`` charges each test the device-wide used increase
instead, for a job that owns its GPU. Runs the real NVML backend against the compiled fake
library."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers.fakenvml import (
    GPU0_UUID,
    FakeNvml,
    FakeNvmlDevice,
    FakeProcess,
    inner_writer,
    linux_only,
    unseen_pid,
)
from tests.helpers.pluginrun import assert_strict_fails, assert_usage_error
from tests.helpers.units import GIB, MIB

pytestmark = [pytest.mark.usefixtures("inner_pytester_run", "fresh_cuda_mapping"), linux_only]

SUITE = """
@pytest.mark.max_vram("1GiB")
def test_grows_the_gpu_by_3gib():
    write(SPIKE)
    time.sleep(0.06)
    write(IDLE)
    time.sleep(0.03)
"""


def blind_gpu(used: int) -> list[FakeNvmlDevice]:
    # This process is listed under its host PID only (NVML's listing inside a container
    # without the host's PID namespace): its own row is never found.
    row = FakeProcess(unseen_pid(), used - 512 * MIB)
    return [FakeNvmlDevice(uuid=GPU0_UUID, used_bytes=used, processes=(row,))]


def suite(pytester: pytest.Pytester, fake_nvml: FakeNvml) -> None:
    idle, spike = blind_gpu(1 * GIB), blind_gpu(4 * GIB)
    fake_nvml.set(idle)
    pytester.makepyfile(inner_writer(IDLE=idle, SPIKE=spike) + SUITE)


def record_of(pytester: pytest.Pytester) -> Any:
    (record,) = json.loads((pytester.path / "out.json").read_text("utf-8"))["tests"]
    return record


def test_device_source_judges_the_device_wide_increase(
    pytester: pytest.Pytester, fake_nvml: FakeNvml
) -> None:
    suite(pytester, fake_nvml)
    result = pytester.runpytest(
        "--hypomnesis", "--hypomnesis-vram-source=device", "--hypomnesis-json=out.json"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines_random(
        [
            "hypomnesis: VRAM attribution: device-wide used increase charged to each test*",
            "*max_vram: test used 3.00 GiB VRAM on GPU 0 (peak increase, NVML device-wide used)"
            " > limit 1.00 GiB*",
            "hypomnesis: scope call;*VRAM: NVML device-wide used "
            "(--hypomnesis-vram-source=device)*",
        ]
    )
    # Nothing to be blind to: the device figure needs no row for this process's PID.
    assert "per-process VRAM unavailable" not in result.stdout.str()
    record = record_of(pytester)
    assert record["vram"]["attribution"] == "device"
    assert record["vram"]["devices"]["0"]["increase_bytes"] == 3 * GIB
    assert record["vram"]["devices"]["0"]["start_bytes"] == 1 * GIB


def test_process_source_there_is_not_checked_and_names_the_option(
    pytester: pytest.Pytester, fake_nvml: FakeNvml
) -> None:
    suite(pytester, fake_nvml)
    result = pytester.runpytest("--hypomnesis", "--hypomnesis-json=out.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines_random(
        [
            "hypomnesis: per-process VRAM unavailable: NVML cannot see this process on GPU 0*"
            "--hypomnesis-vram-source=device (the device-wide used increase)",
            "*max_vram: not checked: NVML cannot see this process*",
        ]
    )
    assert record_of(pytester)["vram"]["attribution"] == "process"
    assert_strict_fails(pytester, "*could not be checked (NVML cannot see this process*")


def test_ini_twin_and_bad_values(pytester: pytest.Pytester, fake_nvml: FakeNvml) -> None:
    suite(pytester, fake_nvml)
    pytester.makeini("[pytest]\nhypomnesis_vram_source = device\n")
    pytester.runpytest("--hypomnesis").assert_outcomes(failed=1)
    bad = pytester.runpytest("--hypomnesis", "--hypomnesis-vram-source=gpu")
    assert_usage_error(bad, "ERROR: --hypomnesis-vram-source=gpu: expected 'process' or 'device'")
    pytester.makeini("[pytest]\nhypomnesis_vram_source = both\n")
    ini = pytester.runpytest("--hypomnesis")
    assert_usage_error(ini, "ERROR: *hypomnesis_vram_source=both: expected 'process' or 'device'")


# --- without --hypomnesis-vram-source=device -------------------------------------------

CONTAINER = """
import pytest

@pytest.mark.max_vram("1GiB")
def test_grows():
    pass
"""


def test_container_without_host_pids_is_unavailable_not_zero(
    pytester: pytest.Pytester, fake_nvml: FakeNvml
) -> None:
    # NVML lists the host's PIDs (this process's among them, under a PID we cannot see);
    # no row carries our own PID. Before, that read as 0 bytes and any budget passed.
    host_pid = unseen_pid()
    fake_nvml.set([FakeNvmlDevice(uuid=GPU0_UUID, processes=(FakeProcess(host_pid, 3 * GIB),))])
    pytester.makepyfile(CONTAINER)
    result = pytester.runpytest("--hypomnesis", "--hypomnesis-json=out.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines_random(
        [
            f"hypomnesis: per-process VRAM unavailable: NVML cannot see this process on GPU 0: "
            f"it lists PIDs of another PID namespace ({host_pid}) and not this one's (*)*"
            "--pid=host (Kubernetes: hostPID: true) or use a driver >= 565*",
            "*max_vram*not checked*NVML cannot see this process*",
        ]
    )
    report = json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))
    (record,) = report["tests"]
    assert record["vram"]["devices"]["0"]["peak_bytes"] is None
    assert "another PID namespace" in record["vram"]["unavailable_reason"]
    assert record["budgets"][0]["passed"] is None
    assert_strict_fails(pytester, "*could not be checked (NVML cannot see this process*")


def test_a_process_without_a_cuda_context_is_really_zero(
    pytester: pytest.Pytester, fake_nvml: FakeNvml
) -> None:
    # Other processes of this PID namespace on the GPU, none of ours: 0 bytes, truly.
    fake_nvml.set([FakeNvmlDevice(uuid=GPU0_UUID, processes=(FakeProcess(1, 3 * GIB),))])
    pytester.makepyfile(CONTAINER)
    result = pytester.runpytest("--hypomnesis", "--hypomnesis-json=out.json")
    result.assert_outcomes(passed=1)
    report = json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))
    (record,) = report["tests"]
    assert record["vram"]["devices"]["0"]["peak_bytes"] == 0
    assert record["budgets"][0]["passed"] is True
    assert "per-process VRAM unavailable" not in result.stdout.str()
