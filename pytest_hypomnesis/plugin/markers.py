"""The budget markers' names and help, and the cheap check for them: what the plugin
needs in every run, measured or not, without importing the budget parser or the engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest
    from _pytest.nodes import Node

__all__ = ["MARKERS", "has_budget_marker"]

# Marker help, registered in pytest_configure; also the "valid forms" in error messages.
MARKERS: dict[str, str] = {
    "max_ram": (
        "max_ram(limit, *, absolute=False, source='rss'): fail the test when its RSS "
        "increase (with absolute=True: its RSS peak) exceeds limit, e.g. '512MiB'; "
        "source='python' judges the peak of traced Python allocations instead"
    ),
    "max_vram": (
        "max_vram(limit, *, device=None, absolute=False, source=None): fail the test when "
        "its VRAM increase (absolute=True: peak), summed over the watched GPUs or on "
        "`device` (a CUDA ordinal: cuda:N in this process), exceeds limit, e.g. '2GiB'; "
        "source 'driver' (NVML per-process, net of a CUDA context), 'allocator' "
        "(torch/CuPy/JAX) or 'auto' (the larger)"
    ),
}

_BUDGET_MARKERS = frozenset(MARKERS)


def has_budget_marker(item: pytest.Item) -> bool:
    # One walk over the node chain for all markers, rather than one per marker name; the
    # same marks, closest first, as item.iter_markers() without its nested generators.
    node: Node | None = item
    while node is not None:
        for mark in node.own_markers:
            if mark.name in _BUDGET_MARKERS:
                return True
        node = node.parent
    return False
