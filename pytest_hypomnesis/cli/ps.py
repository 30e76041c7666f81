"""``hmn ps``: every process holding GPU memory, one row per process per device (parity §6.2)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from pytest_hypomnesis._errors import DeviceIndexOutOfRangeError, HypomnesisError
from pytest_hypomnesis._format import compact_json, format_vram, render_table
from pytest_hypomnesis.cli._args import device_arg, pid_arg
from pytest_hypomnesis.model import GpuProcessEntry
from pytest_hypomnesis.probe import chain

__all__ = [
    "SORT_KEYS",
    "PsRow",
    "add_parser",
    "collect_rows",
    "format_ps_json",
    "format_ps_summary",
    "format_ps_table",
    "is_protected",
    "out_of_range_message",
    "run",
    "sort_key",
    "sort_rows",
]

# The crate's aliases: "vram" and "committed" both mean the dedicated (used) figure.
SORT_KEYS = ("dedicated", "vram", "committed", "shared", "total")
_U64_MAX = 2**64 - 1


@dataclass(frozen=True, slots=True)
class PsRow:
    """One ``hmn ps`` row: a listing entry plus the device it was found on."""

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

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "name": self.name,
            "used_bytes": self.used_bytes,
            "shared_used_bytes": self.shared_used_bytes,
            "device_index": self.device_index,
            "device_name": self.device_name,
        }


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


def collect_rows(
    device_filter: int | None, pid_filter: int | None
) -> tuple[list[PsRow], DeviceIndexOutOfRangeError | None]:
    """Rows of every requested device, unsorted. A device whose listing fails is skipped,
    as in the crate; an explicit ``--device`` that does not exist is returned as an error."""
    if device_filter is not None:
        indices = [device_filter]
    else:
        try:
            indices = list(range(chain.device_count()))
        except HypomnesisError:
            indices = []
    rows: list[PsRow] = []
    for index in indices:
        try:
            device_name = chain.device_info(index).name
        except HypomnesisError:
            device_name = None
        try:
            entries = chain.gpu_processes(index)
        except DeviceIndexOutOfRangeError as exc:
            if device_filter is not None:
                return [], exc
            continue
        except HypomnesisError:
            continue
        rows.extend(
            PsRow.from_entry(e, index, device_name)
            for e in entries
            if pid_filter is None or e.pid == pid_filter
        )
    return rows, None


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "ps",
        help="list processes holding GPU memory",
        description=(
            "List processes holding GPU memory, biggest first. On Linux (NVML) the list is "
            "compute-only: processes with a CUDA context. A one-line summary goes to stderr. "
            "Exit status 0."
        ),
    )
    parser.add_argument("--pid", type=pid_arg, metavar="PID", help="keep only this PID")
    parser.add_argument(
        "--device",
        type=device_arg,
        metavar="INDEX",
        help="list only this GPU index (default: every visible device)",
    )
    parser.add_argument(
        "--sort",
        choices=SORT_KEYS,
        default="dedicated",
        metavar="KEY",
        help=(
            "order rows by dedicated VRAM (default; aliases vram, committed), shared "
            "memory, or total = dedicated + shared; ties by name, then PID"
        ),
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help=(
            "print a JSON array: pid, name, used_bytes, shared_used_bytes, device_index, "
            "device_name"
        ),
    )
    return parser


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    rows, missing = collect_rows(args.device, args.pid)
    if missing is not None:
        err.write(f"hmn: {out_of_range_message(missing)}\n")
        return 2
    rows = sort_rows(rows, args.sort)
    if args.json:
        out.write(format_ps_json(rows) + "\n")
    else:
        out.write("".join(line + "\n" for line in format_ps_table(rows)))
    out.flush()
    err.write(f"hmn: {format_ps_summary(rows, args.pid, args.device)}\n")
    return 0
