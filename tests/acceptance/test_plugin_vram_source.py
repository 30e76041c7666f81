"""What a user sees with ``--hypomnesis-vram-source=device``: the device-wide used increase
charged to each test, for a CI job that owns its GPU, or a container where NVML lists this
process under a host PID. Runs the real NVML backend against the compiled fake library."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from pytest_hypomnesis.probe import cuda_devices
from tests.helpers.fakenvml import GIB, FakeNvml, FakeNvmlDevice, FakeProcess, render_config

pytestmark = [
    pytest.mark.usefixtures("inner_pytester_run"),
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="the fake library is an ELF .so"
    ),
]

UUID = "GPU-0a0a0a0a-0000-4000-8000-000000000000"

SUITE = """
import os, time
import pytest

def write(text):
    path = os.environ["FAKE_NVML_CONFIG"]
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)

@pytest.mark.max_vram("1GiB")
def test_grows_the_gpu_by_3gib():
    write({spike!r})
    time.sleep(0.06)
    write({idle!r})
    time.sleep(0.03)
"""


@pytest.fixture(autouse=True)
def _fresh_mapping() -> object:
    cuda_devices._reset_for_tests()
    yield
    cuda_devices._reset_for_tests()


def _host_pid() -> int:
    """A PID no process here can have (beyond the kernel's pid_max): NVML's listing inside
    a container without the host's PID namespace."""
    with open("/proc/sys/kernel/pid_max", encoding="ascii") as f:
        return int(f.read()) + 17


def blind_gpu(used: int) -> list[FakeNvmlDevice]:
    # This process is listed under its host PID only: its own row is never found.
    row = FakeProcess(_host_pid(), used - 512 * 2**20)
    return [FakeNvmlDevice(uuid=UUID, used_bytes=used, processes=(row,))]


def suite(pytester: pytest.Pytester, fake_nvml: FakeNvml) -> None:
    idle, spike = blind_gpu(1 * GIB), blind_gpu(4 * GIB)
    fake_nvml.set(idle)
    pytester.makepyfile(
        SUITE.format(
            idle=render_config(idle, "555.42.06", {}), spike=render_config(spike, "555.42.06", {})
        )
    )


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
    strict = pytester.runpytest("--hypomnesis", "--hypomnesis-strict")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines_random(["*could not be checked (NVML cannot see this process*"])


def test_ini_twin_and_bad_values(pytester: pytest.Pytester, fake_nvml: FakeNvml) -> None:
    suite(pytester, fake_nvml)
    pytester.makeini("[pytest]\nhypomnesis_vram_source = device\n")
    pytester.runpytest("--hypomnesis").assert_outcomes(failed=1)
    bad = pytester.runpytest("--hypomnesis", "--hypomnesis-vram-source=gpu")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(
        ["ERROR: --hypomnesis-vram-source=gpu: expected 'process' or 'device'"]
    )
    assert "Traceback" not in bad.stderr.str() + bad.stdout.str()
    pytester.makeini("[pytest]\nhypomnesis_vram_source = both\n")
    ini = pytester.runpytest("--hypomnesis")
    assert ini.ret == pytest.ExitCode.USAGE_ERROR
    ini.stderr.fnmatch_lines(
        ["ERROR: *hypomnesis_vram_source=both: expected 'process' or 'device'"]
    )
