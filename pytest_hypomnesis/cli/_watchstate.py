"""``hmn watch``'s pure parts: PID selection, the per-PID state machine and the formatters.

Nothing here touches a GPU, a clock or a stream, so every rule is unit-tested byte-exact:
deltas against the previous sample, a missing PID reading 0, first sighting as baseline,
peaks, re-entry resuming history, the PID-reuse reset, the one-shot unresolved-growth hint
and the ``--follow-new`` breadcrumb (parity §6.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from pytest_hypomnesis._format import compact_json, format_vram, render_table
from pytest_hypomnesis._units import MIB
from pytest_hypomnesis.cli._args import UsageError
from pytest_hypomnesis.cli._durations import format_secs
from pytest_hypomnesis.cli.ps import sort_key
from pytest_hypomnesis.cli.spill import format_spill_report
from pytest_hypomnesis.model import GpuProcessEntry, SpillReport

__all__ = [
    "HEADER_LINE",
    "UNRESOLVED_GROWTH_HINT_BYTES",
    "PidState",
    "PidSummary",
    "SampleRow",
    "Selection",
    "WatchState",
    "format_delta",
    "format_rows_json",
    "format_rows_text",
    "format_summary_json",
    "format_summary_text",
    "resolved_name",
]

UNRESOLVED_GROWTH_HINT_BYTES = 256 * MIB
TIME_WIDTH = 8
# Printed once; the crate's fixed widths 8,6,12,9,9,9,9,5. Interval rows size their own
# columns, so they need not line up under it (the crate's layout, kept as is).
HEADER_LINE = (
    "TIME      PID     NAME          COMMITTED  \u0394COMMIT    SHARED     \u0394SHARED    SPILL"
)
_ROW_HEADERS = ["PID", "NAME", "COMMITTED", "\u0394COMMIT", "SHARED", "\u0394SHARED", "SPILL"]
_SUMMARY_PREFIX = "hmn watch: per-PID  "
_SUMMARY_HEADERS = [
    "PID",
    "NAME",
    "BASELINE COMMIT",
    "PEAK COMMIT",
    "BASELINE SHARED",
    "PEAK SHARED",
]


def resolved_name(name: str | None) -> str | None:
    """A name that identifies a process: not ``None``, ``[protected]`` or ``[exited]``
    (which flicker without the process changing). ``[kernel]`` counts."""
    if name is None or name in ("[protected]", "[exited]"):
        return None
    return name


def format_delta(delta_bytes: int) -> str:
    """``+0 B`` only for exactly zero; otherwise the sign and ``format_vram`` of the size,
    so a small change reads ``+0 MiB`` or ``-0 MiB``."""
    if delta_bytes == 0:
        return "+0 B"
    sign = "-" if delta_bytes < 0 else "+"
    return sign + format_vram(abs(delta_bytes))


@dataclass
class PidState:
    """What the watch remembers about one PID for the whole run."""

    baseline_used_bytes: int
    baseline_shared_bytes: int
    prev_used_bytes: int
    prev_shared_bytes: int
    peak_used_bytes: int
    peak_shared_bytes: int
    last_name: str | None = None
    hint_fired: bool = False

    @classmethod
    def first_sighting(cls, used_bytes: int, shared_bytes: int) -> PidState:
        return cls(used_bytes, shared_bytes, used_bytes, shared_bytes, used_bytes, shared_bytes)

    def reset(self, used_bytes: int, shared_bytes: int) -> None:
        self.baseline_used_bytes = self.prev_used_bytes = self.peak_used_bytes = used_bytes
        self.baseline_shared_bytes = self.prev_shared_bytes = self.peak_shared_bytes = shared_bytes
        self.hint_fired = False


@dataclass(frozen=True, slots=True)
class SampleRow:
    """One PID in one interval."""

    pid: int
    name: str | None
    used_bytes: int
    used_delta_bytes: int
    shared_used_bytes: int
    shared_delta_bytes: int
    spilling: bool


@dataclass(frozen=True, slots=True)
class PidSummary:
    """One PID in the closing summary."""

    pid: int
    name: str | None
    baseline_used_bytes: int
    peak_used_bytes: int
    baseline_shared_bytes: int
    peak_shared_bytes: int

    def to_json_dict(self) -> dict[str, object]:
        return asdict(self)


class WatchState:
    """Per-PID state across samples, plus the order PIDs were first seen in."""

    def __init__(self) -> None:
        self.by_pid: dict[int, PidState] = {}
        self.seen_order: list[int] = []

    def _track(self, pid: int, used_bytes: int, shared_bytes: int) -> PidState:
        state = self.by_pid.get(pid)
        if state is None:
            state = PidState.first_sighting(used_bytes, shared_bytes)
            self.by_pid[pid] = state
            self.seen_order.append(pid)
        return state

    def fold(
        self, rows: Sequence[GpuProcessEntry], watched: Sequence[int], spilling: bool
    ) -> tuple[list[SampleRow], list[str]]:
        """Fold one listing in; returns the rows to print (in ``watched`` order) and the
        stderr notes it raised (PID reuse, unresolved growth)."""
        by_pid = {r.pid: r for r in rows}
        out: list[SampleRow] = []
        notes: list[str] = []
        for pid in watched:
            found = by_pid.get(pid)
            # A watched PID not listed reads 0: "exited" and "holds nothing" look alike.
            name = found.name if found is not None else None
            used = found.used_bytes if found is not None else 0
            shared = found.shared_used_bytes if found is not None else 0
            state = self._track(pid, used, shared)
            old, new = resolved_name(state.last_name), resolved_name(name)
            if old is not None and new is not None and old != new:
                state.reset(used, shared)
                notes.append(
                    f"hmn watch: pid={pid} name changed ({old} \u2192 {new}) \u2014 likely PID "
                    "reuse by the OS; baseline reset"
                )
            used_delta = used - state.prev_used_bytes
            shared_delta = shared - state.prev_shared_bytes
            state.prev_used_bytes, state.prev_shared_bytes = used, shared
            state.peak_used_bytes = max(state.peak_used_bytes, used)
            state.peak_shared_bytes = max(state.peak_shared_bytes, shared)
            if new is not None:
                state.last_name = new
            if not state.hint_fired and (name is None or name == "[protected]"):
                grown = max(
                    used - state.baseline_used_bytes, shared - state.baseline_shared_bytes, 0
                )
                if grown >= UNRESOLVED_GROWTH_HINT_BYTES:
                    state.hint_fired = True
                    notes.append(
                        f"hmn watch: unresolved pid={pid} grew +{format_vram(grown)} since "
                        "attach \u2014 re-run elevated to identify"
                    )
            out.append(SampleRow(pid, name, used, used_delta, shared, shared_delta, spilling))
        return out, notes

    def followed_change(
        self,
        previous: Sequence[int],
        current: Sequence[int],
        rows: Sequence[GpuProcessEntry],
        elapsed_s: float,
    ) -> str | None:
        """The ``--follow-new`` breadcrumb, or ``None`` when the followed set is unchanged.
        Names come from this sample, else from the last name the watch resolved."""
        entered = [p for p in current if p not in previous]
        left = [p for p in previous if p not in current]
        if not entered and not left:
            return None
        listed = {r.pid: r.name for r in rows}

        def label(pid: int) -> str:
            name = listed.get(pid)
            if name is None and pid in self.by_pid:
                name = self.by_pid[pid].last_name
            return f"pid={pid}" if name is None else f"pid={pid} ({name})"

        clauses = []
        if entered:
            clauses.append("entered " + ", ".join(label(p) for p in entered))
        if left:
            clauses.append("left " + ", ".join(label(p) for p in left))
        return f"hmn watch: +{format_secs(elapsed_s)} followed set changed: " + "; ".join(clauses)

    def summary(self) -> list[PidSummary]:
        """Every PID ever watched, in first-seen order, departed ones included."""
        return [
            PidSummary(
                pid=pid,
                name=self.by_pid[pid].last_name,
                baseline_used_bytes=self.by_pid[pid].baseline_used_bytes,
                peak_used_bytes=self.by_pid[pid].peak_used_bytes,
                baseline_shared_bytes=self.by_pid[pid].baseline_shared_bytes,
                peak_shared_bytes=self.by_pid[pid].peak_shared_bytes,
            )
            for pid in self.seen_order
        ]


class Selection:
    """Which PIDs to watch: the explicit list (deduplicated, in order), or the top N by
    committed VRAM under ``hmn ps``'s own comparator, once or (``--follow-new``) every
    interval."""

    def __init__(self, pids: Sequence[int], top: int, follow_new: bool) -> None:
        self.explicit = list(dict.fromkeys(pids))
        if self.explicit and follow_new:
            raise UsageError(
                "watch --follow-new only applies to auto-selection; drop --follow-new or the "
                "explicit PID list"
            )
        self.top = top
        self.follow_new = follow_new

    def select(self, rows: Sequence[GpuProcessEntry]) -> list[int]:
        if self.explicit:
            return list(self.explicit)
        return [r.pid for r in sorted(rows, key=sort_key("dedicated"))[: self.top]]

    def describe(self, count: int) -> str:
        if self.explicit:
            return f"watching {count} PID(s)"
        if self.follow_new:
            return (
                f"following top {self.top} by committed (re-selected every interval), "
                f"{count} initially"
            )
        return f"watching {count} PID(s) (top {self.top} by committed)"


def format_rows_text(elapsed_s: float, rows: Sequence[SampleRow]) -> list[str]:
    """One interval: each row led by the time padded to 8; widths fitted to this interval."""
    cells = [
        [
            str(r.pid),
            r.name if r.name is not None else "?",
            format_vram(r.used_bytes),
            format_delta(r.used_delta_bytes),
            format_vram(r.shared_used_bytes),
            format_delta(r.shared_delta_bytes),
            "SPILL" if r.spilling else "no",
        ]
        for r in rows
    ]
    lead = f"{'+' + format_secs(elapsed_s):<{TIME_WIDTH}}  "
    return [lead + line for line in render_table(_ROW_HEADERS, cells)[1:]]


def format_rows_json(t_ms: int, rows: Sequence[SampleRow]) -> list[str]:
    """One interval as JSON Lines, one ``"kind":"sample"`` object per PID."""
    return [
        compact_json(
            {
                "kind": "sample",
                "t_ms": t_ms,
                "pid": r.pid,
                "name": r.name,
                "used_bytes": r.used_bytes,
                "used_delta_bytes": r.used_delta_bytes,
                "shared_used_bytes": r.shared_used_bytes,
                "shared_delta_bytes": r.shared_delta_bytes,
                "spilling": r.spilling,
            }
        )
        for r in rows
    ]


def format_summary_text(report: SpillReport | None, per_pid: Sequence[PidSummary]) -> list[str]:
    """The closing summary: the spill block (all zeros when not measurable), or the
    no-tracker notice, then the per-PID table."""
    if report is None:
        lines = ["hmn watch: spill tracking unavailable for this run; per-PID VRAM below"]
    else:
        lines = format_spill_report("hmn watch", report)
    if per_pid:
        table = render_table(
            _SUMMARY_HEADERS,
            [
                [
                    str(p.pid),
                    p.name if p.name is not None else "?",
                    format_vram(p.baseline_used_bytes),
                    format_vram(p.peak_used_bytes),
                    format_vram(p.baseline_shared_bytes),
                    format_vram(p.peak_shared_bytes),
                ]
                for p in per_pid
            ],
        )
        lines.append(_SUMMARY_PREFIX + table[0])
        lines.extend(" " * len(_SUMMARY_PREFIX) + line for line in table[1:])
    return lines


def format_summary_json(report: SpillReport | None, per_pid: Sequence[PidSummary]) -> str:
    """``{"kind":"summary", <hmn spill --json fields>, "per_pid":[...]}``."""
    fields: dict[str, object] = {"kind": "summary"}
    fields.update((report or SpillReport()).to_dict())
    fields["per_pid"] = [p.to_json_dict() for p in per_pid]
    return compact_json(fields)
