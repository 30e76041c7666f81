"""``hmn`` with no subcommand: one line per visible GPU (parity §6.1)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from pytest_hypomnesis._errors import HypomnesisError
from pytest_hypomnesis._format import compact_json
from pytest_hypomnesis._iec import MIB
from pytest_hypomnesis.cli._failures import (
    SOURCE_FAILED,
    failure_text,
    nothing_installed,
    reasons_text,
)
from pytest_hypomnesis.probe import chain

if TYPE_CHECKING:
    from pytest_hypomnesis.model import GpuDeviceInfo, Snapshot

__all__ = ["format_device_line", "format_summary_json", "format_summary_lines", "run"]


def format_device_line(dev: GpuDeviceInfo) -> str:
    """``GPU 0 [NAME]: free F MiB / T MiB (R MiB reserved), driver V`` with floor MiB."""
    name = f" [{dev.name}]" if dev.name is not None else ""
    line = f"GPU {dev.index}{name}: free {dev.free_bytes // MIB} MiB / {dev.total_bytes // MIB} MiB"
    if dev.reserved_bytes is not None:
        line += f" ({dev.reserved_bytes // MIB} MiB reserved)"
    if dev.driver_version is not None:
        line += f", driver {dev.driver_version}"
    return line


def _devices(snapshots: Sequence[Snapshot]) -> list[GpuDeviceInfo]:
    return [s.gpu_device for s in snapshots if s.gpu_device is not None]


def _none_readable(count: int) -> str:
    return f"hmn: {count} GPU(s) enumerated but none readable."


def format_summary_lines(snapshots: Sequence[Snapshot]) -> list[str]:
    """Text mode: device lines, or the crate's "no visible GPUs" / "none readable" line."""
    if not snapshots:
        return ["hmn: no visible GPUs."]
    devices = _devices(snapshots)
    if not devices:
        return [_none_readable(len(snapshots))]
    return [format_device_line(d) for d in devices]


def format_summary_json(snapshots: Sequence[Snapshot]) -> tuple[str, str | None]:
    """JSON mode: the array, and the "none readable" line for stderr when it applies."""
    devices = _devices(snapshots)
    note = _none_readable(len(snapshots)) if snapshots and not devices else None
    return compact_json([d.to_dict() for d in devices]), note


def _unreadable_lines(snapshots: Sequence[Snapshot]) -> list[str]:
    """``hmn: GPU i not readable: <reasons>`` for every snapshot without device figures."""
    lines = []
    for index, snap in enumerate(snapshots):
        if snap.gpu_device is not None:
            continue
        try:
            chain.device_info(index)
        except HypomnesisError as exc:
            why = failure_text(exc)
        else:  # it answered on the second try: say what failed the first time
            why = snap.gpu_unavailable_reason or "no GPU backend answered"
        lines.append(f"hmn: GPU {index} not readable: {why}")
    return lines


def _uncounted(
    json_mode: bool, count_reasons: Sequence[str], out: TextIO, err: TextIO
) -> int | None:
    """Nothing could count the GPUs. ``None`` when nothing is installed (the crate's "no
    visible GPUs" stands); otherwise GPU 0 if a fallback reads it, and the failure."""
    try:
        first = chain.device_info(0)
    except HypomnesisError as exc:
        reasons = list(dict.fromkeys([*count_reasons, *getattr(exc, "reasons", ())]))
        if nothing_installed(reasons):
            return None
        out.flush()
        err.write(f"hmn: could not read any GPU: {reasons_text(reasons)}\n")
        return SOURCE_FAILED
    if json_mode:
        out.write(compact_json([first.to_dict()]) + "\n")
    else:
        out.write(format_device_line(first) + "\n")
    out.flush()
    err.write(
        f"hmn: could not count the GPUs ({reasons_text(count_reasons)}); only GPU 0 is shown\n"
    )
    return SOURCE_FAILED


def run(json_mode: bool, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        chain.process_rss()  # the crate's Snapshot::all reads it first and exits 1 on failure
        count, count_reasons = chain.counted_devices()
        if count is None:
            code = _uncounted(json_mode, count_reasons, out, err)
            if code is not None:
                return code
        snapshots: list[Snapshot] = []
        if count is not None:
            from pytest_hypomnesis.model import Snapshot

            snapshots = Snapshot.all()
    except HypomnesisError as exc:
        # Only an RSS failure gets here; the crate exits 1 for it.
        err.write(f"hmn: {exc}\n")
        return 1
    if json_mode:
        text, note = format_summary_json(snapshots)
        out.write(text + "\n")
        if note is not None:
            out.flush()
            err.write(note + "\n")
    else:
        out.write("".join(line + "\n" for line in format_summary_lines(snapshots)))
    unreadable = _unreadable_lines(snapshots)
    if unreadable:
        out.flush()
        err.write("".join(line + "\n" for line in unreadable))
        return SOURCE_FAILED
    return 0
