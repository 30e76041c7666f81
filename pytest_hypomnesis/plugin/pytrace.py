"""Traced Python allocations for ``max_ram(..., source="python")``: tracemalloc, started
only while a span that asks for it is open, so a suite without such a budget pays nothing.

RSS does not rise for memory the heap already holds (an earlier test grew it); the traced
peak counts every allocation the span made, whatever the heap held before, as an
allocation-based tool (pytest-memray) does. numpy's buffers are traced (numpy reports its
data allocations to tracemalloc); memory a C library allocates without telling Python is
not.
"""

from __future__ import annotations

import tracemalloc

__all__ = ["PythonTracer"]


class PythonTracer:
    """Reference-counted tracemalloc: the first ``acquire`` starts it unless it already
    runs (the user's own tracing is left running), the last ``release`` stops what this
    started. ``reset_peak`` and ``read`` give a span's peak; the caller folds the running
    peak into outer spans before an inner one resets it."""

    def __init__(self) -> None:
        self._users = 0
        self._started = False

    def acquire(self) -> None:
        if self._users == 0 and not tracemalloc.is_tracing():
            tracemalloc.start()
            self._started = True
        self._users += 1

    def release(self) -> None:
        self._users = max(self._users - 1, 0)
        if self._users == 0 and self._started:
            self._started = False
            tracemalloc.stop()

    @staticmethod
    def read() -> tuple[int, int]:
        """(traced now, traced peak since the last reset), in bytes."""
        return tracemalloc.get_traced_memory()

    @staticmethod
    def reset_peak() -> None:
        tracemalloc.reset_peak()
