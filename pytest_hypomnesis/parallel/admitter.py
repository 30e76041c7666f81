"""Waiting for VRAM: one test's admission on its GPU through the host-wide ledger."""

from __future__ import annotations

import time
from collections.abc import Callable

from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis.parallel.admission import DeviceNow, Verdict, decide
from pytest_hypomnesis.parallel.ledger import Ledger

__all__ = ["AdmissionFailed", "Admitter"]

POLL_S = 0.02
YIELD_S = 1.0
"""How long a test leaves the memory to tests queued before it that fit: they take it at
their next poll (``POLL_S``), unless their process is stuck."""


class AdmissionFailed(Exception):
    """The test cannot be admitted (never fits, or the wait timed out): one line."""


class Admitter:
    """Admits this process's tests on one GPU (``uuid``, NVML ``nvml_index``)."""

    def __init__(
        self,
        ledger: Ledger,
        nvml_index: int,
        *,
        headroom_fraction: float,
        timeout_s: float,
        read_device: Callable[[int], DeviceNow],
        poll_s: float = POLL_S,
    ) -> None:
        self.ledger = ledger
        self.nvml_index = nvml_index
        self.headroom_fraction = headroom_fraction
        self.timeout_s = timeout_s
        self._read_device = read_device
        self.poll_s = poll_s

    def admit(self, nodeid: str, need_bytes: int | None) -> float:
        """Wait until the need fits and reserve it; the seconds waited. Raises
        ``AdmissionFailed``."""
        start = time.monotonic()
        queued_since: float | None = None
        me = self.ledger.pid
        verdict = Verdict(False)
        problem: str | None = None
        while True:
            with self.ledger.locked() as state:
                try:
                    device = self._read_device(self.nvml_index)
                    problem = None
                except BackendFailure as failure:
                    problem = f"GPU figures unreadable: {failure.reason}"
                if problem is None:
                    verdict = decide(
                        need_bytes,
                        me,
                        state.entries,
                        device,
                        self.headroom_fraction,
                        queued_since=queued_since,
                        yield_ahead=time.monotonic() - start < YIELD_S,
                    )
                    if verdict.never_fits is not None:
                        state.remove(me, nodeid)
                        raise AdmissionFailed(f"{verdict.never_fits} (GPU {self.ledger.uuid})")
                    if verdict.admit:
                        state.remove(me, nodeid)
                        base = device.process_bytes.get(me, 0)
                        state.entries.append(
                            self.ledger.entry("reserved", need_bytes, nodeid, base)
                        )
                        return time.monotonic() - start
                    if verdict.queue and queued_since is None:
                        entry = self.ledger.entry("waiting", need_bytes, nodeid)
                        queued_since = entry.since
                        state.entries.append(entry)
            waited = time.monotonic() - start
            if waited >= self.timeout_s:
                self.release(nodeid)
                raise AdmissionFailed(self._timeout_text(need_bytes, waited, verdict, problem))
            time.sleep(self.poll_s)

    def release(self, nodeid: str) -> None:
        """Drop this process's entries for ``nodeid`` (its reservation or its place in the
        exclusive queue)."""
        me = self.ledger.pid
        with self.ledger.locked() as state:
            state.remove(me, nodeid)

    def _timeout_text(
        self, need_bytes: int | None, waited: float, verdict: Verdict, problem: str | None
    ) -> str:
        from pytest_hypomnesis._units import format_bytes_iec

        what = "the GPU to itself" if need_bytes is None else format_bytes_iec(need_bytes)
        free_bytes = verdict.free_bytes
        free = "" if free_bytes is None else f", {format_bytes_iec(free_bytes)} free"
        held = "; ".join(verdict.holders) or "nobody listed"
        if problem is not None:
            held = problem
        return (
            f"waited {waited:.1f}s (--hypomnesis-admit-timeout) for {what} on GPU "
            f"{self.ledger.uuid}{free}; held by: {held}"
        )
