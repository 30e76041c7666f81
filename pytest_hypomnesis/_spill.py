"""WDDM spill detection. CONTRACT STUB: to be implemented (parity doc §3.4)."""

from __future__ import annotations

from pytest_hypomnesis._records import SpillReport

__all__ = [
    "DEFAULT_DEDICATED_THRESHOLD_PCT",
    "DEFAULT_SHARED_GROWTH_BYTES",
    "SpillTracker",
    "is_spill_measurable",
]

DEFAULT_DEDICATED_THRESHOLD_PCT = 85
DEFAULT_SHARED_GROWTH_BYTES = 268435456


def is_spill_measurable() -> bool:
    return False


class SpillTracker:
    def __init__(self, device_index: int = 0) -> None:
        self.device_index = device_index

    def observe(self, label: str) -> None:
        pass

    def is_spilling(self) -> bool:
        return False

    def has_spilled(self) -> bool:
        return False

    def is_measurable(self) -> bool:
        return False

    def into_report(self) -> SpillReport:
        return SpillReport()
