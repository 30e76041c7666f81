"""The plugin's fixtures, including a fake GPU so VRAM budgets run on any machine."""

from __future__ import annotations

import mmap
import time
from collections.abc import Callable

import pytest

import pytest_hypomnesis as hmn
from pytest_hypomnesis import MeasuredBlock


def test_snapshot(memory_snapshot: Callable[..., hmn.Snapshot]) -> None:
    snap = memory_snapshot()
    assert snap.ram_bytes > 0


def test_measure_a_block(memory_report: Callable[[], MeasuredBlock]) -> None:
    size = 48 * 1024 * 1024
    with memory_report() as r:
        # Fresh pages from the OS, touched so they become resident. (A plain bytes object
        # may reuse heap memory an earlier test freed, which RSS already counts: see
        # "Why a repeated allocation can show an increase of 0 B" in docs/metrics.md.)
        block = mmap.mmap(-1, size)
        for offset in range(0, size, mmap.PAGESIZE):
            block[offset] = 1
        block.close()
    assert r.ram_increase_bytes is not None
    assert r.ram_increase_bytes >= 40 * 1024 * 1024


@pytest.mark.max_vram("2GiB")
def test_model_fits_on_a_fake_gpu(fake_gpu: hmn.FakeGpu) -> None:
    fake_gpu.add_device(name="NVIDIA Fake", total="16GiB")
    fake_gpu.set_process_vram(0, "1.5GiB")  # what loading a model would hold
    time.sleep(0.05)
    fake_gpu.set_process_vram(0, 0)
