"""Acceptance: VRAM measurement and budgets through the ``fake_gpu`` fixture and through a
fake ``libnvidia-ml.so`` loaded by the real NVML backend."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.helpers.fakenvml import (
    SELF,
    FakeNvml,
    FakeNvmlDevice,
    FakeProcess,
    inner_writer,
)
from tests.helpers.units import GIB, MIB

pytestmark = pytest.mark.usefixtures("inner_pytester_run")

FAKE_GPU_SPIKE = """
import time
import pytest

def spike(fake_gpu, size, seconds):
    fake_gpu.set_process_vram(0, size)
    time.sleep(seconds)
    fake_gpu.set_process_vram(0, 0)

@pytest.fixture
def gpu(fake_gpu):
    fake_gpu.add_device(name="NVIDIA Fake", total="16GiB")
    return fake_gpu

@pytest.mark.max_vram("1GiB")
def test_spike_caught(gpu):
    time.sleep(0.03)
    spike(gpu, "2GiB", 0.05)  # five intervals of 10ms
    time.sleep(0.03)

@pytest.mark.max_vram("1GiB")
def test_budget_holds(gpu):
    spike(gpu, "512MiB", 0.05)

@pytest.mark.max_vram("2GiB", absolute=True)
def test_absolute_counts_memory_held_before(gpu):
    gpu.set_process_vram(0, "3GiB")
    time.sleep(0.02)

@pytest.mark.max_vram("1GiB")
def test_device_added_inside_the_test(fake_gpu):
    fake_gpu.add_device()
    spike(fake_gpu, "1.5GiB", 0.05)
"""


def test_fake_gpu_spike_is_caught_and_a_holding_budget_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(FAKE_GPU_SPIKE)
    result = pytester.runpytest("-v", "--hypomnesis", "--hypomnesis-json=out.json")
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines_random(
        [
            "*::test_spike_caught OVER BUDGET*",
            "*::test_budget_holds PASSED*",
            "*::test_absolute_counts_memory_held_before OVER BUDGET*",
            "*::test_device_added_inside_the_test OVER BUDGET*",
            "max_vram: test used 2.00 GiB VRAM on GPU 0 (peak increase, NVML) > limit 1.00 GiB",
            "max_vram: test used 3.00 GiB VRAM on GPU 0 (peak, NVML) > limit 2.00 GiB",
            "max_vram: test used 1.50 GiB VRAM on GPU 0 (peak increase, NVML) > limit 1.00 GiB",
        ]
    )
    report = json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))
    by_id = {t["nodeid"].split("::")[1]: t for t in report["tests"]}
    device = by_id["test_spike_caught"]["vram"]["devices"]["0"]
    assert device["start_bytes"] == 0
    assert device["peak_bytes"] == 2 * GIB
    assert device["end_bytes"] == 0
    assert device["increase_bytes"] == 2 * GIB
    assert device["samples"] >= 3
    assert by_id["test_spike_caught"]["vram"]["source"] == "nvml"
    assert by_id["test_budget_holds"]["budgets"][0]["passed"] is True


def test_fake_gpu_per_device_budget_and_device_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time
        import pytest

        @pytest.fixture
        def gpus(fake_gpu):
            fake_gpu.add_device()
            fake_gpu.add_device()
            return fake_gpu

        @pytest.mark.max_vram("1GiB", device=1)
        def test_second_gpu(gpus):
            gpus.set_process_vram(0, "4GiB")
            gpus.set_process_vram(1, "2GiB")
            time.sleep(0.03)

        @pytest.mark.max_vram("5GiB")
        def test_sum_of_gpus(gpus):
            gpus.set_process_vram(0, "3GiB")
            gpus.set_process_vram(1, "3GiB")
            time.sleep(0.03)
        """
    )
    result = pytester.runpytest("-rA")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "max_vram: test used 2.00 GiB VRAM on GPU 1 (peak increase, NVML) > limit 1.00 GiB",
            "max_vram: test used 6.00 GiB VRAM on GPUs 0, 1 (peak increase, NVML) > limit 5.00 GiB",
        ]
    )
    # Watching GPU 0 only: the device-1 budget cannot be checked, the sum is GPU 0 alone.
    result = pytester.runpytest("--hypomnesis-device=0", "-rA")
    result.assert_outcomes(passed=2, warnings=0)
    result.stdout.fnmatch_lines(["*max_vram: not checked: GPU 1 is not watched (watched: 0)*"])


def test_fake_gpu_is_visible_to_the_library_and_removed_after(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest_hypomnesis as hmn

        def test_fake(fake_gpu):
            fake_gpu.add_device(name="NVIDIA Fake", total="8GiB", used="1GiB")
            fake_gpu.set_process_vram(0, "256MiB")
            assert hmn.device_count() == 1
            info = hmn.device_info(0)
            assert (info.name, info.total_bytes) == ("NVIDIA Fake", 8 * 1024**3)
            assert hmn.process_gpu_info(0).used_bytes == 256 * 1024**2
            assert [p.used_bytes for p in hmn.gpu_processes(0)] == [256 * 1024**2]

        def test_after():
            from pytest_hypomnesis.probe import chain
            assert chain.current_fake() is None
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


def _gpu(self_used: int) -> list[FakeNvmlDevice]:
    # The device-wide figure moves with this process's usage, as on a real GPU.
    return [FakeNvmlDevice(used_bytes=GIB + self_used, processes=(FakeProcess(SELF, self_used),))]


NVML_SPIKE = """
@pytest.mark.max_vram("1GiB")
def test_nvml_spike():
    write(IDLE)
    time.sleep(0.03)
    write(SPIKE)
    time.sleep(0.06)  # six intervals of 10ms
    write(IDLE)
    time.sleep(0.03)

@pytest.mark.max_vram("1GiB")
def test_nvml_holds():
    write(IDLE)
    time.sleep(0.05)
"""


@pytest.fixture
def nvml_suite(pytester: pytest.Pytester, fake_nvml: FakeNvml) -> pytest.Pytester:
    fake_nvml.set([FakeNvmlDevice(processes=(FakeProcess(SELF, 100 * MIB),))])
    pytester.makepyfile(inner_writer(IDLE=_gpu(100 * MIB), SPIKE=_gpu(2 * GIB)) + NVML_SPIKE)
    return pytester


def test_fake_nvml_spike_is_caught(nvml_suite: pytest.Pytester) -> None:
    result = nvml_suite.runpytest("--hypomnesis", "--hypomnesis-json=out.json", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines_random(
        [
            "*::test_nvml_spike OVER BUDGET*",
            "*::test_nvml_holds PASSED*",
            "max_vram: test used 1.90 GiB VRAM on GPU 0 (peak increase, NVML) > limit 1.00 GiB",
            "hypomnesis: scope call; *; VRAM: NVML per-process every 10ms; "
            "GPU 0 NVIDIA Fake GPU (16.00 GiB); driver 555.42.06",
        ]
    )
    report = json.loads((nvml_suite.path / "out.json").read_text(encoding="utf-8"))
    assert report["devices"][0]["name"] == "NVIDIA Fake GPU"
    spike = next(t for t in report["tests"] if t["nodeid"].endswith("test_nvml_spike"))
    figures = spike["vram"]["devices"]["0"]
    assert figures["peak_bytes"] == 2 * GIB
    assert figures["start_bytes"] == figures["end_bytes"] == 100 * 1024**2
    assert figures["increase_bytes"] == 2 * GIB - 100 * 1024**2
    # The device-wide used peak (all processes) saw the spike too.
    assert figures["device_used_peak_bytes"] == GIB + 2 * GIB
    assert spike["vram"]["source"] == "nvml"


@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None, reason="no cc")
def test_fake_nvml_spike_is_caught_under_xdist(nvml_suite: pytest.Pytester) -> None:
    # Both workers read one fake config, and "self" is whoever reads it: keep the two GPU
    # tests on one worker (loadfile) and give the other worker a file of its own.
    nvml_suite.makepyfile(test_other_file="def test_other():\n    pass\n")
    result = nvml_suite.runpytest(
        "-n", "2", "--dist", "loadfile", "--hypomnesis", "--hypomnesis-json=out.json"
    )
    result.assert_outcomes(passed=2, failed=1)
    report = json.loads((nvml_suite.path / "out.json").read_text(encoding="utf-8"))
    assert {t["worker"] for t in report["tests"]} == {"gw0", "gw1"}
    outcomes = {t["nodeid"].split("::")[1]: t["outcome"] for t in report["tests"]}
    assert outcomes == {
        "test_nvml_spike": "failed",
        "test_nvml_holds": "passed",
        "test_other": "passed",
    }


def test_inner_config_writer_matches_helper() -> None:
    # The inner suites above write the fake library's config themselves; keep their text
    # in step with the helper's renderer.
    head = inner_writer(IDLE=[FakeNvmlDevice(used_bytes=GIB)], SPIKE=_gpu(5))
    assert "IDLE = 'driver 555.42.06\\ndevice " in head
    assert "SPIKE = 'driver 555.42.06\\ndevice " in head and "process 0 self 5" in head
