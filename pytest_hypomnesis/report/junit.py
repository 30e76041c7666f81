"""A test's figures as JUnit XML ``<property>`` pairs (with ``--junitxml``).

The names are a stable interface (CI dashboards parse them); see ``docs/reports.md``.
Figures that were not measured are left out rather than written as ``None``.

* ``hypomnesis_ram_{start,peak,end,increase}_bytes``
* ``hypomnesis_vram_{peak,increase}_bytes`` (over the watched devices together,
  ``record.vram_total_bytes``; left out when any device's figure is unknown)
* ``hypomnesis_gpu<N>_vram_{start,peak,end,increase}_bytes``,
  ``hypomnesis_gpu<N>_device_used_peak_bytes`` (per device)
* ``hypomnesis_vram_source`` (``nvml``, ``nvidia-smi``, ...)
* per budget: ``hypomnesis_<kind>[_gpu<N>]_{limit_bytes,measured_bytes,status}`` where kind is
  ``max_ram`` or ``max_vram`` and status is ``passed``, ``failed`` or ``not_checked``
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from pytest_hypomnesis.record import BudgetRecord, VramRecord, budget_status, vram_total_bytes

__all__ = ["PREFIX", "junit_properties"]

PREFIX = "hypomnesis_"
_SPAN = ("start_bytes", "peak_bytes", "end_bytes", "increase_bytes")


def _int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _device_sort_key(key: str) -> tuple[int, str]:
    return (int(key), key) if key.isdigit() else (1 << 30, key)


def junit_properties(record: Mapping[str, object]) -> list[tuple[str, str]]:
    """``[(name, value), ...]`` for one JSON test record, values as decimal strings.

    Tolerant: a missing or null ``ram``/``vram``/``budgets`` just yields fewer properties.
    """
    props: list[tuple[str, str]] = []

    def add(name: str, value: object) -> None:
        number = _int(value)
        if number is not None:
            props.append((PREFIX + name, str(number)))

    ram = record.get("ram")
    if isinstance(ram, Mapping):
        for key in _SPAN:
            add(f"ram_{key}", ram.get(key))

    vram = record.get("vram")
    devices: Mapping[str, object] = {}
    if isinstance(vram, Mapping) and isinstance(vram.get("devices"), Mapping):
        devices = vram["devices"]
    per_device = {str(k): d for k, d in devices.items() if isinstance(d, Mapping)}
    if per_device and len(per_device) == len(devices):
        shaped = cast(VramRecord, vram)
        add("vram_peak_bytes", vram_total_bytes(shaped, "peak_bytes"))
        add("vram_increase_bytes", vram_total_bytes(shaped, "increase_bytes"))
    for index in sorted(per_device, key=_device_sort_key):
        device = per_device[index]
        for key in _SPAN:
            add(f"gpu{index}_vram_{key}", device.get(key))
        add(f"gpu{index}_device_used_peak_bytes", device.get("device_used_peak_bytes"))
    if isinstance(vram, Mapping) and isinstance(vram.get("source"), str):
        props.append((PREFIX + "vram_source", vram["source"]))

    budgets = record.get("budgets")
    for budget in budgets if isinstance(budgets, list) else []:
        if not isinstance(budget, Mapping) or budget.get("kind") not in ("max_ram", "max_vram"):
            continue
        name = str(budget["kind"])
        budget_device = _int(budget.get("device"))
        if budget_device is not None:
            name += f"_gpu{budget_device}"
        add(f"{name}_limit_bytes", budget.get("limit_bytes"))
        add(f"{name}_measured_bytes", budget.get("measured_bytes"))
        if budget.get("passed") in (True, False, None):
            props.append((f"{PREFIX}{name}_status", budget_status(cast(BudgetRecord, budget))))
    return props
