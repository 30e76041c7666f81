"""Budget markers parsed into ``Budget`` values (``plugin/budgets.py``), without a run:
a node that answers ``iter_markers`` closest first, as pytest's items do."""

from __future__ import annotations

from typing import cast

import pytest

from pytest_hypomnesis.plugin.budgets import Budget, BudgetError, budgets_for

MIB = 1024 * 1024
GIB = 1024 * MIB


class _Item:
    nodeid = "t.py::test_x"

    def __init__(self, *marks: pytest.MarkDecorator) -> None:
        self._marks = [m.mark for m in marks]

    def iter_markers(self) -> list[pytest.Mark]:
        return self._marks


def _budgets(
    *marks: pytest.MarkDecorator, ram: int | None = None, vram: int | None = None
) -> list[Budget]:
    return budgets_for(cast(pytest.Item, _Item(*marks)), max_ram_bytes=ram, max_vram_bytes=vram)


def test_marker_forms() -> None:
    assert _budgets(pytest.mark.max_ram("512MiB")) == [Budget("max_ram", 512 * MIB)]
    assert _budgets(pytest.mark.max_ram(limit=4096, absolute=True)) == [
        Budget("max_ram", 4096, absolute=True)
    ]
    assert _budgets(pytest.mark.max_vram("2GiB", device=1)) == [
        Budget("max_vram", 2 * GIB, device=1)
    ]


def test_closest_marker_wins_and_vram_is_per_device() -> None:
    budgets = _budgets(
        pytest.mark.max_ram("1MiB"),  # the function's
        pytest.mark.max_ram("1GiB"),  # its module's
        pytest.mark.max_vram("1GiB", device=0),
        pytest.mark.max_vram("2GiB"),
        pytest.mark.max_vram("3GiB", device=0),
    )
    assert budgets == [
        Budget("max_ram", MIB),
        Budget("max_vram", GIB, device=0),
        Budget("max_vram", 2 * GIB),
    ]


def test_options_are_defaults_a_marker_replaces() -> None:
    assert _budgets(ram=MIB, vram=GIB) == [
        Budget("max_ram", MIB, origin="option"),
        Budget("max_vram", GIB, origin="option"),
    ]
    assert _budgets(pytest.mark.max_ram("2MiB"), ram=MIB) == [Budget("max_ram", 2 * MIB)]


@pytest.mark.parametrize(
    ("mark", "problem"),
    [
        (pytest.mark.max_ram(), "missing the limit"),
        (pytest.mark.max_ram("1MiB", "2MiB"), "takes one limit, got 2 positional arguments"),
        (pytest.mark.max_ram("1MiB", limit="2MiB"), "limit given twice"),
        (pytest.mark.max_ram("1MiB", device=0), "unknown keyword 'device'"),
        (pytest.mark.max_ram("1MiB", absolute="yes"), "absolute must be True or False"),
        (pytest.mark.max_vram("1MiB", device=-1), "device must be a CUDA ordinal"),
        (pytest.mark.max_vram("lots"), "max_vram('lots') on t.py::test_x"),
    ],
)
def test_bad_markers_name_marker_test_and_forms(mark: pytest.MarkDecorator, problem: str) -> None:
    with pytest.raises(BudgetError) as info:
        _budgets(mark)
    assert problem in str(info.value)
    assert "valid forms:" in str(info.value)


def test_an_overridden_bad_marker_is_still_an_error() -> None:
    with pytest.raises(BudgetError, match="max_ram\\('oops'\\)"):
        _budgets(pytest.mark.max_ram("1MiB"), pytest.mark.max_ram("oops"))
