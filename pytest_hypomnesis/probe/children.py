"""VRAM of this process's descendants, added to its own NVML reading (``--hypomnesis-children``).

NVML lists one row per process with a CUDA context; a DataLoader worker or a
``multiprocessing`` child that uses the GPU has its own row. With children counted, each
reading of this process's row also sums the rows of the PIDs the RAM sidecar last saw as
descendants. Sampled like everything else: a child that starts and ends between two
readings is not seen. NVML's PIDs are the host's: in a foreign PID namespace the own
figure is already unknown (probe/pidns.py), and so is this sum.
"""

from __future__ import annotations

from collections.abc import Callable

from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis.gpumodel import GpuQuerySource
from pytest_hypomnesis.probe import nvml
from pytest_hypomnesis.probe.readings import VramReading

__all__ = ["with_descendants"]


def descendants_used_bytes(
    rows: list[tuple[int, int | None]], total: int, pids: frozenset[int]
) -> int:
    """The sum of the first row of each PID in ``pids`` (absent: no CUDA context, 0 B).
    Raises ``BackendFailure`` for a row NVML could not fill in (2^64-1) or one above the
    device total: the sum would then understate or invent what the children hold."""
    found: dict[int, int | None] = {}
    for pid, used in rows:
        if pid in pids and pid not in found:
            found[pid] = used
    for pid, used in found.items():
        if used is None or used == nvml.NOT_AVAILABLE:
            raise BackendFailure("NVML", f"per-process memory of child pid {pid} not available")
        if used > total:
            raise BackendFailure(
                "NVML", f"per-process figure {used} B of child pid {pid} exceeds the total"
            )
    return sum(used for used in found.values() if used is not None)


def with_descendants(
    reader: Callable[[], VramReading],
    index: int,
    uuid: str | None,
    pids: Callable[[], tuple[int, ...]],
) -> Callable[[], VramReading]:
    """``reader``'s readings with the descendants' NVML rows added to the own figure."""

    def read() -> VramReading:
        reading = reader()
        own = reading.process_used_bytes
        if own is None or reading.source is not GpuQuerySource.NVML:
            return reading  # unknown stays unknown; other backends have no child rows
        kids = frozenset(pids())
        if not kids:
            return reading
        try:
            rows, total = nvml.rows_and_total(index, uuid)
            children = descendants_used_bytes(rows, total, kids)
        except BackendFailure as exc:
            failure = f"{exc.backend}: child processes: {exc.reason}"
            return VramReading(None, reading.device_used_bytes, reading.source, failure=failure)
        except Exception as exc:  # a backend bug: this reading is unknown, never a crash
            failure = f"NVML: child processes: {type(exc).__name__}: {exc}"
            return VramReading(None, reading.device_used_bytes, reading.source, failure=failure)
        return VramReading(own + children, reading.device_used_bytes, reading.source)

    return read
