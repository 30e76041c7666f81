"""Budgets: one that fails on purpose, one that passes, and per-case budgets.

``test_over_budget`` is meant to fail: it shows the letter ``M``, the word
``OVER BUDGET`` and the budget line in the report.
"""

from __future__ import annotations

import pytest

MIB = 1024 * 1024


@pytest.mark.max_ram("32MiB")
def test_over_budget() -> None:
    blob = b"x" * (96 * MIB)  # resident while it lives; the exact peak catches it
    del blob


@pytest.mark.max_ram("32MiB")
def test_within_budget() -> None:
    blob = b"x" * (4 * MIB)
    del blob


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param(1_000, marks=pytest.mark.max_ram("16MiB"), id="small"),
        pytest.param(100_000, marks=pytest.mark.max_ram("256MiB"), id="large"),
    ],
)
def test_per_case_budget(rows: int) -> None:
    data = [bytes(512) for _ in range(rows)]
    assert len(data) == rows
