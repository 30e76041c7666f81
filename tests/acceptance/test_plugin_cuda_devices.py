"""What a user sees when CI pins GPUs with ``CUDA_VISIBLE_DEVICES``: ``device=N``,
``--hypomnesis-device`` and the summary's ``GPU N`` are CUDA ordinals (``cuda:N``), read
through the NVML GPU each ordinal maps to, and GPUs the process cannot use are not watched.
Runs the real NVML backend against the compiled fake library."""

from __future__ import annotations

import json

import pytest

from pytest_hypomnesis.report.schema import load_report
from tests.helpers.fakenvml import (
    GPU0_UUID,
    GPU1_UUID,
    SELF,
    FakeNvml,
    FakeNvmlDevice,
    FakeProcess,
    inner_writer,
    linux_only,
)
from tests.helpers.units import GIB, MIB

pytestmark = [pytest.mark.usefixtures("inner_pytester_run", "fresh_cuda_mapping"), linux_only]


def two_gpus(self_on_0: int, self_on_1: int) -> list[FakeNvmlDevice]:
    return [
        FakeNvmlDevice(uuid=GPU0_UUID, processes=(FakeProcess(SELF, self_on_0),)),
        FakeNvmlDevice(
            uuid=GPU1_UUID, total_bytes=24 * GIB, processes=(FakeProcess(SELF, self_on_1),)
        ),
    ]


SPIKE_TEST = """
@pytest.mark.max_vram("1GiB", device=0)
def test_uses_cuda_0():
    write(IDLE)
    time.sleep(0.03)
    write(SPIKE)
    time.sleep(0.06)
    write(IDLE)
    time.sleep(0.03)
"""


def spike_suite(pytester: pytest.Pytester, fake_nvml: FakeNvml) -> None:
    idle = two_gpus(100 * MIB, 100 * MIB)
    # The spike: 2 GiB more on NVML GPU 1, 3 GiB more on NVML GPU 0.
    spike = two_gpus(3 * GIB, 2 * GIB + 100 * MIB)
    fake_nvml.set(idle)
    pytester.makepyfile(inner_writer(IDLE=idle, SPIKE=spike) + SPIKE_TEST)


@pytest.mark.parametrize(
    ("visible", "option", "outcomes", "lines", "watched", "increase_bytes", "total_bytes"),
    [
        pytest.param(
            "1",
            "-v",
            {"failed": 1},
            [
                # device=0 is what cuda:0 is in this process: NVML GPU 1, grown by 2 GiB.
                "max_vram: test used 2.00 GiB VRAM on GPU 0 (peak increase, NVML) > limit 1.00 GiB",
                "hypomnesis: *GPU 0 NVIDIA Fake GPU (24.00 GiB)*",
            ],
            # NVML GPU 0 (3 GiB growth) is not usable by this process, so not watched.
            "0",
            2 * GIB,
            24 * GIB,
            id="pinned-gpu-is-cuda-0-and-the-only-one-watched",
        ),
        pytest.param(
            # cuda:0 is NVML 1 (2 GiB growth), cuda:1 is NVML 0 (3 GiB growth).
            "1,0",
            "--hypomnesis-device=1",
            # The budget names cuda:0, which this run does not watch: not checked, said so.
            {"passed": 1},
            [
                "*max_vram: not checked: GPU 0 is not watched (watched: 1)*",
                "*GPU 1 NVIDIA Fake GPU (16.00 GiB)*",
            ],
            "1",
            3 * GIB - 100 * MIB,
            16 * GIB,
            id="reordered-list-and-device-option-count-in-cuda-order",
        ),
    ],
)
def test_cuda_visible_devices_numbers_and_chooses_the_watched_gpus(
    pytester: pytest.Pytester,
    fake_nvml: FakeNvml,
    monkeypatch: pytest.MonkeyPatch,
    visible: str,
    option: str,
    outcomes: dict[str, int],
    lines: list[str],
    watched: str,
    increase_bytes: int,
    total_bytes: int,
) -> None:
    spike_suite(pytester, fake_nvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    result = pytester.runpytest("--hypomnesis", "--hypomnesis-json=out.json", option)
    result.assert_outcomes(**outcomes)
    result.stdout.fnmatch_lines_random(lines)
    report = json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))
    (record,) = report["tests"]
    assert list(record["vram"]["devices"]) == [watched]
    assert record["vram"]["devices"][watched]["increase_bytes"] == increase_bytes
    assert [d["total_bytes"] for d in report["devices"]] == [total_bytes]


def test_empty_cuda_visible_devices_watches_no_gpu_and_says_why(
    pytester: pytest.Pytester, fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    spike_suite(pytester, fake_nvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    result = pytester.runpytest("--hypomnesis", "--hypomnesis-json=out.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines_random(["*not checked*CUDA_VISIBLE_DEVICES is empty*"])
    report = load_report(pytester.path / "out.json")  # puts the shared reason back
    (record,) = report["tests"]
    assert record["vram"]["devices"] == {}
    reason = record["vram"]["unavailable_reason"]
    assert reason is not None and "CUDA_VISIBLE_DEVICES is empty" in reason


def test_header_names_the_mapping_and_an_assumed_order(
    pytester: pytest.Pytester, fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two different models, no libcuda: CUDA's fastest-first order cannot be asked for.
    fake_nvml.set(
        [
            FakeNvmlDevice(name="NVIDIA T4", uuid=GPU0_UUID),
            FakeNvmlDevice(name="NVIDIA H100", uuid=GPU1_UUID),
        ]
    )
    monkeypatch.setenv("HYPOMNESIS_CUDA_LIBRARY", str(pytester.path / "no-libcuda.so.1"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest("--hypomnesis")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "hypomnesis: CUDA devices (CUDA_VISIBLE_DEVICES '1,0', PCI bus order (assumed)): "
            "0=GPU-1b1b1b1b (NVML 1), 1=GPU-0a0a0a0a (NVML 0); CUDA's fastest-first order "
            "unknown (*): PCI bus order assumed, set CUDA_DEVICE_ORDER=PCI_BUS_ID to make it so",
            "collected 1 item",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "hypomnesis: scope call;*GPU 0 NVIDIA H100*GPU 1 NVIDIA T4*",
            "hypomnesis: note: CUDA's fastest-first order unknown*",
        ]
    )
