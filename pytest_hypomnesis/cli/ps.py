"""``hmn ps``: every process holding GPU memory, one row per process per device (parity §6.2)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple, TextIO

from pytest_hypomnesis._errors import DeviceIndexOutOfRangeError, HypomnesisError
from pytest_hypomnesis._format import compact_json, format_vram, render_table
from pytest_hypomnesis.cli._args import SORT_KEYS
from pytest_hypomnesis.cli._failures import (
    SOURCE_FAILED,
    failure_text,
    nothing_installed,
    reasons_text,
)
from pytest_hypomnesis.probe import chain

if TYPE_CHECKING:
    from pytest_hypomnesis.model import GpuProcessEntry

__all__ = [
    "SORT_KEYS",
    "Collected",
    "PsRow",
    "collect_rows",
    "failure_lines",
    "format_ps_json",
    "format_ps_summary",
    "format_ps_table",
    "is_protected",
    "out_of_range_message",
    "run",
    "sort_key",
    "sort_rows",
]

_U64_MAX = 2**64 - 1


class PsRow(NamedTuple):
    """One ``hmn ps`` row: a listing entry plus the device it was found on. (A named
    tuple, not a dataclass: ``hmn ps`` without a GPU should not pay for importing
    ``dataclasses``.)"""

    pid: int
    name: str | None
    used_bytes: int
    shared_used_bytes: int
    device_index: int
    device_name: str | None

    @classmethod
    def from_entry(cls, entry: GpuProcessEntry, index: int, device_name: str | None) -> PsRow:
        return cls(
            pid=entry.pid,
            name=entry.name,
            used_bytes=entry.used_bytes,
            shared_used_bytes=entry.shared_used_bytes,
            device_index=index,
            device_name=device_name,
        )

    def to_json_dict(self) -> dict[str, object]:
        return self._asdict()  # the fields, in order: the crate's JSON keys


def _metric(row: PsRow | GpuProcessEntry, key: str) -> int:
    if key == "shared":
        return row.shared_used_bytes
    if key == "total":
        return min(row.used_bytes + row.shared_used_bytes, _U64_MAX)
    return row.used_bytes


def sort_key(key: str) -> Callable[[PsRow | GpuProcessEntry], tuple[int, bool, str, int]]:
    """The crate's comparator as a sort key: the metric descending, then name ascending
    with no name first, then pid ascending. ``hmn watch`` auto-selection shares it."""
    if key not in SORT_KEYS:
        raise ValueError(f"unknown sort key {key!r}")

    def key_fn(row: PsRow | GpuProcessEntry) -> tuple[int, bool, str, int]:
        # Python compares str by code point, which is the order of their UTF-8 bytes,
        # so this matches Rust's String ordering.
        return (-_metric(row, key), row.name is not None, row.name or "", row.pid)

    return key_fn


def sort_rows(rows: Sequence[PsRow], key: str = "dedicated") -> list[PsRow]:
    return sorted(rows, key=sort_key(key))


def format_ps_table(rows: Sequence[PsRow]) -> list[str]:
    """The table lines (header always), widths in UTF-8 bytes as the crate measures them."""
    cells = [
        [
            str(r.pid),
            r.name if r.name is not None else "?",
            format_vram(r.used_bytes),
            format_vram(r.shared_used_bytes),
            r.device_name if r.device_name is not None else f"GPU {r.device_index}",
        ]
        for r in rows
    ]
    return render_table(["PID", "NAME", "VRAM", "SHARED", "DEVICE"], cells)


def format_ps_json(rows: Sequence[PsRow]) -> str:
    """One compact JSON array, without the trailing newline."""
    return compact_json([r.to_json_dict() for r in rows])


def is_protected(name: str | None) -> bool:
    """Rows elevation could name: no name, ``[protected]``, or nvidia-smi's literal ``?``.
    ``[exited]`` (gone) and ``[kernel]`` (pid 4) do not count."""
    return name is None or name in ("[protected]", "?")


def format_ps_summary(
    rows: Sequence[PsRow], pid_filter: int | None, device_filter: int | None
) -> str:
    """The stderr line after ``hmn: ``, e.g. ``1 GPU process found (0 MiB committed total).``"""
    count = len(rows)
    noun = "GPU process" if count == 1 else "GPU processes"
    out = f"{count} {noun} found"
    filters = []
    if pid_filter is not None:
        filters.append(f"pid={pid_filter}")
    if device_filter is not None:
        filters.append(f"device={device_filter}")
    if filters:
        out += " matching " + " ".join(filters)
    if count:
        committed = min(sum(r.used_bytes for r in rows), _U64_MAX)
        protected = sum(1 for r in rows if is_protected(r.name))
        out += f" ({format_vram(committed)} committed total"
        if protected:
            out += f"; {protected} protected — re-run elevated for names"
        out += ")"
    return out + "."


def out_of_range_message(exc: DeviceIndexOutOfRangeError) -> str:
    """A readable, pluralised line built from the error's fields (the crate's own text
    says "1 devices")."""
    noun = "device" if exc.count == 1 else "devices"
    return f"device index {exc.index} out of range (have {exc.count} {noun})"


class Collected:
    """What the listing found: rows of the devices that answered, the devices that did not
    (``(index, reason)``), and why the devices could not be counted, if they could not."""

    __slots__ = ("failed", "missing", "rows", "uncounted")

    def __init__(self, uncounted: str | None) -> None:
        self.rows: list[PsRow] = []
        self.failed: list[tuple[int, str]] = []
        self.uncounted = uncounted
        self.missing: DeviceIndexOutOfRangeError | None = None


def _indices(device_filter: int | None) -> tuple[list[int], str | None, tuple[str, ...]]:
    if device_filter is not None:
        return [device_filter], None, ()
    count, reasons = chain.counted_devices()
    if count is not None:
        return list(range(count)), None, ()
    # Nothing could count: GPU 0 may still be listed by a fallback (nvidia-smi).
    return [0], reasons_text(reasons), reasons


def collect_rows(device_filter: int | None, pid_filter: int | None) -> Collected:
    """Rows of every requested device, unsorted. The crate skips a device whose listing
    fails and reads a failed count as no devices; here both are kept as failures, so the
    output never states a count that was not measured. An explicit ``--device`` that does
    not exist is ``missing``."""
    indices, uncounted, count_reasons = _indices(device_filter)
    found = Collected(uncounted)
    for index in indices:
        try:
            entries = chain.gpu_processes(index)
        except DeviceIndexOutOfRangeError as exc:
            if device_filter is not None:
                found.missing = exc
                return found
            found.failed.append((index, failure_text(exc)))
            continue
        except HypomnesisError as exc:
            reasons = list(dict.fromkeys([*count_reasons, *getattr(exc, "reasons", ())]))
            if uncounted is not None and nothing_installed(reasons):
                # No driver library and no nvidia-smi: no GPU, so no GPU processes.
                found.uncounted = None
                continue
            found.failed.append((index, failure_text(exc)))
            continue
        try:
            device_name = chain.device_info(index).name
        except HypomnesisError:
            device_name = None
        found.rows.extend(
            PsRow.from_entry(e, index, device_name)
            for e in entries
            if pid_filter is None or e.pid == pid_filter
        )
    return found


def failure_lines(found: Collected) -> list[str]:
    """The stderr lines after the summary that say what the listing is missing."""
    lines = []
    if found.uncounted is not None and not found.failed:
        lines.append(f"could not count the GPUs ({found.uncounted}); only GPU 0 was listed")
    elif found.uncounted is not None:
        lines.append(f"could not count the GPUs ({found.uncounted})")
    lines.extend(
        f"GPU {index}: could not list processes ({why}); not included above"
        if found.rows
        else f"GPU {index}: could not list processes ({why})"
        for index, why in found.failed
    )
    return lines


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    found = collect_rows(args.device, args.pid)
    if found.missing is not None:
        err.write(f"hmn: {out_of_range_message(found.missing)}\n")
        return 2
    problems = failure_lines(found)
    if found.failed and not found.rows:
        # Every device failed: an empty table and "0 GPU processes found" would be a claim.
        err.write("".join(f"hmn: {line}\n" for line in problems))
        return SOURCE_FAILED
    rows = sort_rows(found.rows, args.sort)
    if args.json:
        out.write(format_ps_json(rows) + "\n")
    else:
        out.write("".join(line + "\n" for line in format_ps_table(rows)))
    out.flush()
    err.write(f"hmn: {format_ps_summary(rows, args.pid, args.device)}\n")
    if problems:
        err.write("".join(f"hmn: {line}\n" for line in problems))
        return SOURCE_FAILED
    return 0
