"""``--hypomnesis-children`` on the VRAM side: a descendant's NVML row (the fake library's
per-process rows) is summed into this process's figure; a stranger's row is not."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from pytest_hypomnesis.plugin.engine import Engine
from pytest_hypomnesis.probe.children import descendants_used_bytes
from pytest_hypomnesis.record import SpanRecord
from tests.helpers.fakenvml import (
    NOT_AVAILABLE,
    SELF,
    FakeNvml,
    FakeNvmlDevice,
    FakeProcess,
    posix_only,
)
from tests.helpers.units import MIB

OWN = 10 * MIB
CHILD = 100 * MIB
STRANGER_PID = 1  # init: never our descendant


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def span_with_child(
    fake_nvml: FakeNvml, child: subprocess.Popen[bytes]
) -> Callable[..., SpanRecord]:
    """``span_with_child(children=..., child_used=...)``: one engine span in which the child's
    row (``child_used`` bytes) and a stranger's appear beside this process's own."""

    def span(*, children: bool, child_used: int) -> SpanRecord:
        fake_nvml.set([FakeNvmlDevice(processes=(FakeProcess(SELF, OWN),))])
        engine = Engine(interval_s=0.005, children=children)
        try:
            begun = engine.begin()
            rows = (
                FakeProcess(SELF, OWN),
                FakeProcess(child.pid, child_used),
                FakeProcess(STRANGER_PID, 1000 * MIB),
            )
            fake_nvml.set([FakeNvmlDevice(processes=rows)])
            return engine.end(begun)
        finally:
            engine.close()

    return span


@posix_only
def test_a_childs_row_counts_with_children(span_with_child: Callable[..., SpanRecord]) -> None:
    record = span_with_child(children=True, child_used=CHILD)
    device = record["vram"]["devices"]["0"]
    assert device["start_bytes"] == OWN
    assert device["peak_bytes"] == OWN + CHILD  # the stranger's 1000 MiB is not ours
    assert device["increase_bytes"] == CHILD
    assert record["ram"]["method"] == "sidecar"


@posix_only
def test_without_children_only_the_own_row(span_with_child: Callable[..., SpanRecord]) -> None:
    device = span_with_child(children=False, child_used=CHILD)["vram"]["devices"]["0"]
    assert device["peak_bytes"] == OWN
    assert device["increase_bytes"] == 0


@posix_only
def test_a_childs_sentinel_row_makes_the_figure_unknown(
    span_with_child: Callable[..., SpanRecord], child: subprocess.Popen[bytes]
) -> None:
    device = span_with_child(children=True, child_used=NOT_AVAILABLE)["vram"]["devices"]["0"]
    assert device["peak_bytes"] is None
    reason = device.get("unavailable_reason")
    assert reason is not None and f"child pid {child.pid} not available" in reason


def test_the_sum_takes_each_pids_first_row_and_refuses_impossible_ones() -> None:
    rows: list[tuple[int, int | None]] = [(5, 10), (5, 99), (6, 20), (7, 1000)]
    assert descendants_used_bytes(rows, 10_000, frozenset({5, 6})) == 30
    assert descendants_used_bytes(rows, 10_000, frozenset({8})) == 0
    from pytest_hypomnesis._errors import BackendFailure

    with pytest.raises(BackendFailure, match="exceeds the total"):
        descendants_used_bytes(rows, 500, frozenset({7}))
    with pytest.raises(BackendFailure, match="not available"):
        descendants_used_bytes([(5, None)], 500, frozenset({5}))
