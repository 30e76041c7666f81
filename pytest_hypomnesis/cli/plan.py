"""``hmn plan REPORT.json [--gpus N] [--gpu-memory SIZE]``: how many xdist workers per GPU,
and the predicted wall time serial vs packed, from an earlier ``--hypomnesis-json`` run."""

from __future__ import annotations

import argparse
import json
import sys

from pytest_hypomnesis.cli._args import UsageError

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    from pytest_hypomnesis._units import format_bytes_iec
    from pytest_hypomnesis.parallel.admission import headroom_bytes
    from pytest_hypomnesis.parallel.needs import needs_from_report
    from pytest_hypomnesis.parallel.plan import (
        PlanTest,
        lower_bound_s,
        simulate_wall_s,
        suggest_per_gpu,
    )
    from pytest_hypomnesis.plugin.options import DEFAULT_HEADROOM
    from pytest_hypomnesis.report.schema import ReportError, load_report

    try:
        report = load_report(args.file)
    except ReportError as exc:
        raise UsageError(str(exc)) from None
    devices = [d for d in report.get("devices", []) if isinstance(d, dict)]
    gpus = args.gpus if args.gpus is not None else len(devices)
    if gpus == 0:
        raise UsageError(f"{args.file}: the report lists no GPU; give --gpus N --gpu-memory SIZE")
    memory = args.gpu_memory
    if memory is None:
        totals = [d.get("total_bytes") for d in devices]
        memory = next((t for t in totals if isinstance(t, int) and t > 0), None)
        if memory is None:
            raise UsageError(f"{args.file}: the report has no GPU memory total; give --gpu-memory")
    headroom = DEFAULT_HEADROOM if args.headroom is None else args.headroom
    capacity = memory - headroom_bytes(memory, headroom)
    needs = needs_from_report(report)
    tests = [PlanTest(nodeid, n.planned_bytes, n.duration_s) for nodeid, n in needs.items()]
    never = [t for t in tests if t.need_bytes is not None and t.need_bytes > capacity]
    runnable = [t for t in tests if t not in never]
    serial = sum(t.duration_s for t in tests)
    per_gpu, packed = suggest_per_gpu(runnable, gpus, capacity)
    bound = lower_bound_s(runnable, gpus, capacity)
    known = [t.need_bytes for t in tests if t.need_bytes is not None]
    plan = {
        "tests": len(tests),
        "gpus": gpus,
        "gpu_memory_bytes": memory,
        "capacity_bytes": capacity,
        "unknown_needs": len(tests) - len(known),
        "never_fit": [t.nodeid for t in never],
        "per_gpu": per_gpu,
        "workers": per_gpu * gpus,
        "serial_s": round(serial, 3),
        "packed_s": round(packed, 3),
        "lower_bound_s": round(bound, 3),
        "one_per_gpu_s": round(simulate_wall_s(runnable, gpus, 1, capacity), 3),
    }
    if args.json:
        sys.stdout.write(json.dumps(plan, indent=2) + "\n")
        return 0
    out = sys.stdout.write
    out(
        f"hmn plan: {len(tests)} tests from {args.file}; {gpus} GPU(s) of "
        f"{format_bytes_iec(memory)}, {format_bytes_iec(capacity)} each after "
        f"{headroom:.0%} headroom\n"
    )
    spread = (
        f"{format_bytes_iec(min(known))} to {format_bytes_iec(max(known))}" if known else "none"
    )
    out(
        f"needs (max_vram limit, else peak VRAM increase + 10%): {len(known)} known ({spread}), "
        f"{len(tests) - len(known)} unknown (run alone on their GPU)\n"
    )
    for t in never:
        out(f"never fits: {t.nodeid} needs {format_bytes_iec(t.need_bytes)}\n")
    out(
        f"suggested: -n {per_gpu * gpus} ({per_gpu} per GPU) --hypomnesis-pin-gpus "
        f"--hypomnesis-admit --hypomnesis-needs={args.file}\n"
    )
    out(
        f"predicted wall: serial {serial:.2f}s, packed {packed:.2f}s "
        f"(lower bound {bound:.2f}s; one worker per GPU {plan['one_per_gpu_s']:.2f}s)\n"
    )
    return 0
