"""What a user sees when a test uses two GPUs one after the other: the summary, a budget
without ``device=``, the JSON's ``vram.total`` and JUnit's total all say the most the test
held at once (1 GiB), not the sum of the two devices' own peaks (2 GiB)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from tests.helpers.units import GIB

STAGGERED = """
import time
import pytest

@pytest.fixture
def gpus(fake_gpu):
    fake_gpu.add_device(name="NVIDIA Fake", total="16GiB")
    fake_gpu.add_device(name="NVIDIA Fake", total="16GiB")
    return fake_gpu

@pytest.mark.max_vram("1.5GiB")
def test_one_gpu_then_the_other(gpus):
    gpus.set_process_vram(0, "1GiB")
    time.sleep(0.3)
    gpus.set_process_vram(0, 0)
    gpus.set_process_vram(1, "1GiB")
    time.sleep(0.3)
    gpus.set_process_vram(1, 0)
"""


@pytest.mark.usefixtures("inner_pytester_run")
def test_a_budget_over_both_gpus_judges_what_was_held_at_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(STAGGERED)
    result = pytester.runpytest(
        "--hypomnesis", "--hypomnesis-json=out.json", "--junitxml=junit.xml", "-rA"
    )
    result.assert_outcomes(passed=1)  # 2 GiB (the sum of peaks) would fail 1.5 GiB
    result.stdout.fnmatch_lines(["*test_one_gpu_then_the_other*1.00 GiB*1.00 GiB*"])
    report = json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))
    (record,) = report["tests"]
    devices = record["vram"]["devices"]
    assert devices["0"]["peak_bytes"] == devices["1"]["peak_bytes"] == GIB
    assert record["vram"]["total"]["peak_bytes"] == GIB
    assert record["vram"]["total"]["increase_bytes"] == GIB
    assert record["budgets"][0]["measured_bytes"] == GIB
    props = {
        p.get("name"): p.get("value")
        for p in ET.parse(pytester.path / "junit.xml").getroot().iter("property")
    }
    assert props["hypomnesis_vram_peak_bytes"] == str(GIB)
    assert props["hypomnesis_vram_increase_bytes"] == str(GIB)
