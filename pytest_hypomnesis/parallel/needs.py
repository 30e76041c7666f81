"""A test's VRAM need: its ``max_vram`` limit, else its measured peak from an earlier
report plus 10%, else unknown (``None``: the test runs alone on its GPU)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_hypomnesis.plugin.budgets import Budget
from pytest_hypomnesis.record import VramRecord, vram_devices_sum_bytes

__all__ = [
    "MARGIN",
    "Need",
    "RecordedNeed",
    "need_of",
    "needs_from_report",
    "read_worker_needs",
    "record_need",
    "write_worker_needs",
]

MARGIN = 0.10
"""Added to a measured peak: runs vary, and a need too small OOMs a neighbour."""


@dataclass(frozen=True, slots=True)
class RecordedNeed:
    """What an earlier run measured for one test: the need (``None``: unknown) and how
    long it ran."""

    need_bytes: int | None
    duration_s: float
    budget_bytes: int | None = None
    """The tightest ``max_vram`` limit the test had on its ``cuda:0`` in that run: what
    admission will use as its need again, so what the scheduler plans with."""

    @property
    def planned_bytes(self) -> int | None:
        return self.budget_bytes if self.budget_bytes is not None else self.need_bytes


@dataclass(frozen=True, slots=True)
class Need:
    need_bytes: int | None
    source: str
    """``max_vram``, ``report`` or the reason the need is unknown."""


def record_need(record: Mapping[str, Any]) -> int | None:
    """The measured peak VRAM increase of a validated report record, its devices' own
    increases added up, plus the margin; ``None`` when any device's figure is unknown or
    no GPU was watched."""
    vram: VramRecord | None = record.get("vram")
    total = None if vram is None else vram_devices_sum_bytes(vram, "increase_bytes")
    return None if total is None else math.ceil(total * (1 + MARGIN))


def needs_from_report(report: Mapping[str, Any]) -> dict[str, RecordedNeed]:
    """nodeid -> ``RecordedNeed`` for every test in a validated report."""
    needs: dict[str, RecordedNeed] = {}
    for record in report.get("tests", []):
        needs[record["nodeid"]] = RecordedNeed(
            record_need(record), float(record["duration_s"]), _recorded_limit(record)
        )
    return needs


def _recorded_limit(record: Mapping[str, Any]) -> int | None:
    """The tightest ``max_vram`` limit on ``cuda:0`` (no ``device`` or ``device=0``) the
    record's budgets list, as ``need_of`` picks it from the live markers."""
    budgets = record.get("budgets")
    limits = [
        b["limit_bytes"]
        for b in (budgets if isinstance(budgets, list) else ())
        if isinstance(b, Mapping)
        and b.get("kind") == "max_vram"
        and b.get("device") in (None, 0)
        and isinstance(b.get("limit_bytes"), int)
    ]
    return min(limits, default=None)


def need_of(
    nodeid: str, budgets: list[Budget], report_needs: Mapping[str, RecordedNeed] | None
) -> Need:
    """The need of one test on its GPU (``cuda:0``): the tightest ``max_vram`` limit
    without ``device`` or with ``device=0``; else the report's figure; else unknown."""
    limits = [b.limit_bytes for b in budgets if b.kind == "max_vram" and b.device in (None, 0)]
    if limits:
        return Need(min(limits), "max_vram")
    if report_needs is None:
        return Need(None, "no max_vram limit and no --hypomnesis-needs report")
    known = report_needs.get(nodeid)
    if known is None:
        return Need(None, "not in the --hypomnesis-needs report")
    if known.need_bytes is None:
        return Need(None, "the --hypomnesis-needs report has no VRAM figure for it")
    return Need(known.need_bytes, "report")


def write_worker_needs(path: str | os.PathLike[str], needs: Mapping[str, int | None]) -> None:
    """On the first xdist worker, after collection: each test's need as admission will
    take it (``None``: unknown), for the controller's scheduler, which never collects."""
    from pytest_hypomnesis.report.atomicfile import write_text_atomic

    write_text_atomic(path, json.dumps({"needs": dict(needs)}))


def read_worker_needs(path: str | os.PathLike[str]) -> dict[str, int | None] | None:
    """What ``write_worker_needs`` wrote; ``None`` when there is no such file (a worker on
    another host) or it is not what we write."""
    try:
        with open(path, encoding="utf-8") as fh:
            loaded: object = json.load(fh)
    except (OSError, ValueError):
        return None
    needs = loaded.get("needs") if isinstance(loaded, dict) else None
    if not isinstance(needs, dict):
        return None
    out: dict[str, int | None] = {}
    for nodeid, need in needs.items():
        if need is not None and (not isinstance(need, int) or isinstance(need, bool)):
            return None
        out[str(nodeid)] = need
    return out
