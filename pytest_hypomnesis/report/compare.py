"""The regression gate: compare a report with a baseline report and apply thresholds.

Used by ``--hypomnesis-compare`` / ``--hypomnesis-compare-fail`` and by
``hmn report NEW.json --compare BASE.json --fail EXPR``. Pure functions over report dicts.

Rules (also in ``docs/reports.md``):

* ``EXPR`` is ``METRIC:N%`` or ``METRIC:SIZE``; several are joined with commas and each is
  checked on its own (any one exceeded is a regression). Metrics: ``ram`` (RSS increase),
  ``ram_peak``, ``vram`` (per-process VRAM increase over the watched devices together),
  ``vram_peak`` (their total peak: the highest per-reading sum, ``record.vram_total_bytes``).
* ``METRIC:SIZE`` fails when ``after - before > SIZE``.
* ``METRIC:N%`` fails when ``after - before > before * N / 100`` **and** the growth is above
  ``NOISE_FLOOR_BYTES`` (1 MiB). The floor keeps RSS jitter of a few pages from failing
  tiny tests, and gives a zero baseline a meaning: any growth above 1 MiB.
* A figure missing on either side (no GPU, a skipped test) is never a regression.
* Tests are matched by node id. A node id recorded more than once in one report (merged
  shards, reruns) counts with the largest figure of each metric: the gate errs towards
  reporting. Tests on one side only are listed, never failures.
* GPUs are matched by UUID where both reports have one (schema 2), else by device key
  (``pair_devices``): ``vram``/``vram_peak`` cover the GPUs both sides watched. When those
  are all of a side's GPUs, that side's figure is its record's total; otherwise it is the
  sum of the common GPUs' own figures (for the peak an upper bound). Both sides with GPUs
  but none in common: not compared ("no GPU in common").
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Literal, cast

from pytest_hypomnesis._units import SIZE_FORMS, SizeError, format_bytes_iec, parse_size
from pytest_hypomnesis.record import VramRecord, vram_total_bytes
from pytest_hypomnesis.report.printable import printable
from pytest_hypomnesis.report.schema import (
    SCHEMAS_READ,
    Report,
    ReportError,
    load_report,
    schemas_text,
)

__all__ = [
    "METRICS",
    "NOISE_FLOOR_BYTES",
    "BaselineError",
    "CompareError",
    "ComparedTest",
    "Comparison",
    "MetricChange",
    "Regression",
    "Threshold",
    "ThresholdError",
    "compare",
    "format_change",
    "format_comparison",
    "load_baseline",
    "metric_bytes",
    "not_compared_lines",
    "pair_devices",
    "parse_fail_exprs",
]

METRICS = ("ram", "ram_peak", "vram", "vram_peak")
METRIC_TITLES = {
    "ram": "RAM increase",
    "ram_peak": "RAM peak",
    "vram": "VRAM increase",
    "vram_peak": "VRAM peak",
}
NOISE_FLOOR_BYTES = 1024 * 1024

EXPR_FORMS = (
    "expected METRIC:N% or METRIC:SIZE, METRIC one of ram, ram_peak, vram, vram_peak "
    "(e.g. ram:10%, vram_peak:64MiB)"
)
_PERCENT_RE = re.compile(r"(?P<num>\d+(?:\.\d+)?)\s?%")


class ThresholdError(ValueError):
    """A ``--fail`` expression that does not parse; one line naming it and the valid forms."""


class CompareError(ValueError):
    """A report that lacks a field the comparison needs; the message names the field."""


class BaselineError(ValueError):
    """A baseline that is missing, unreadable or not a pytest-hypomnesis report."""


@dataclass(frozen=True)
class Threshold:
    """One parsed ``EXPR``: exactly one of ``percent`` and ``size_bytes`` is set."""

    metric: str
    percent: Decimal | None = None
    size_bytes: int | None = None
    text: str = ""

    def exceeded(self, before_bytes: int, after_bytes: int, noise_floor_bytes: int) -> bool:
        growth = after_bytes - before_bytes
        if self.size_bytes is not None:
            return growth > self.size_bytes
        assert self.percent is not None
        # Fraction: a Decimal product rounds to 28 digits and would lose bytes.
        return growth > noise_floor_bytes and growth * 100 > before_bytes * Fraction(self.percent)


def parse_fail_exprs(text: str) -> list[Threshold]:
    """``"ram:10%,vram:64MiB"`` → thresholds. Raises ``ThresholdError`` on any bad part."""
    if not isinstance(text, str) or not text.strip():
        raise ThresholdError(f"invalid threshold {text!r}: empty; {EXPR_FORMS}")
    thresholds: list[Threshold] = []
    for raw in text.split(","):
        expr = raw.strip()
        metric, sep, amount = expr.partition(":")
        metric, amount = metric.strip(), amount.strip()
        if not sep or not amount:
            raise ThresholdError(f"invalid threshold {expr!r}: {EXPR_FORMS}")
        if metric not in METRICS:
            raise ThresholdError(
                f"invalid threshold {expr!r}: unknown metric {metric!r}; {EXPR_FORMS}"
            )
        if amount.endswith("%"):
            match = _PERCENT_RE.fullmatch(amount)
            if match is None:
                raise ThresholdError(
                    f"invalid threshold {expr!r}: {amount!r} is not a percentage "
                    f"such as 10% or 2.5%; {EXPR_FORMS}"
                )
            thresholds.append(Threshold(metric, percent=Decimal(match["num"]), text=expr))
            continue
        try:
            size_bytes = parse_size(amount)
        except SizeError:
            raise ThresholdError(
                f"invalid threshold {expr!r}: {amount!r} is neither N% nor a size "
                f"({SIZE_FORMS}); {EXPR_FORMS}"
            ) from None
        thresholds.append(Threshold(metric, size_bytes=size_bytes, text=expr))
    return thresholds


# ---------------------------------------------------------------------------------------
# Reading figures out of test records.


def _int_or_none(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise CompareError(f"{where}: expected an integer or null, got {value!r}")
    return value


def _sum_devices(
    record: Mapping[str, object], key: Literal["peak_bytes", "increase_bytes"], where: str
) -> int | None:
    vram = record.get("vram")
    if vram is None:
        return None
    if not isinstance(vram, Mapping):
        raise CompareError(f"{where}.vram: expected an object or null")
    devices = vram.get("devices")
    if devices is None:
        return None
    if not isinstance(devices, Mapping):
        raise CompareError(f"{where}.vram.devices: expected an object")
    for index, device in devices.items():
        if not isinstance(device, Mapping):
            raise CompareError(f"{where}.vram.devices[{index!r}]: expected an object")
        _int_or_none(device.get(key), f"{where}.vram.devices[{index!r}].{key}")
    # ``compare`` takes reports unvalidated: the device figures the total is made of were
    # checked just above; ``vram.total`` is read as written (``validate_report`` checks it).
    return vram_total_bytes(cast(VramRecord, vram), key)


def metric_bytes(record: Mapping[str, object], metric: str, where: str = "test") -> int | None:
    """The figure ``metric`` names for one test record; ``None`` when not measured."""
    if metric in ("ram", "ram_peak"):
        ram = record.get("ram")
        if ram is None:
            return None
        if not isinstance(ram, Mapping):
            raise CompareError(f"{where}.ram: expected an object or null")
        key = "increase_bytes" if metric == "ram" else "peak_bytes"
        return _int_or_none(ram.get(key), f"{where}.ram.{key}")
    if metric in ("vram", "vram_peak"):
        return _sum_devices(record, "increase_bytes" if metric == "vram" else "peak_bytes", where)
    raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")


# (where it is in its report, the record), for the error messages.
_Located = tuple[str, Mapping[str, object]]


def _records_by_nodeid(report: Mapping[str, object], side: str) -> dict[str, list[_Located]]:
    """nodeid → its records (with where they are), in report order."""
    if not isinstance(report, Mapping):
        raise CompareError(f"{side}: expected a report object")
    if report.get("schema") not in SCHEMAS_READ:
        raise CompareError(f"{side}: schema {report.get('schema')!r} is not {schemas_text()}")
    tests = report.get("tests")
    if not isinstance(tests, list):
        raise CompareError(f"{side}: 'tests' must be a list")
    records: dict[str, list[_Located]] = {}
    for i, test in enumerate(tests):
        nodeid = test.get("nodeid") if isinstance(test, Mapping) else None
        if not isinstance(nodeid, str):
            raise CompareError(f"{side}: tests[{i}] has no string 'nodeid'")
        records.setdefault(nodeid, []).append((f"{side}: tests[{i}]", test))
    return records


def _devices(record: Mapping[str, object]) -> Mapping[str, object]:
    vram = record.get("vram")
    devices = vram.get("devices") if isinstance(vram, Mapping) else None
    return devices if isinstance(devices, Mapping) else {}


def _uuid(device: object) -> str | None:
    uuid = device.get("uuid") if isinstance(device, Mapping) else None
    return uuid if isinstance(uuid, str) and uuid else None


def pair_devices(base: Mapping[str, object], new: Mapping[str, object]) -> list[tuple[str, str]]:
    """(baseline key, new key) of the same GPU in two ``vram.devices``: by UUID where both
    entries have one (a GPU that was ``cuda:1`` in the baseline and is ``cuda:0`` now is
    one GPU), else by key (schema-1 reports carry no UUID)."""
    pairs: list[tuple[str, str]] = []
    base_by_uuid = {u: k for k, d in base.items() if (u := _uuid(d)) is not None}
    for key, device in new.items():
        uuid = _uuid(device)
        if uuid is not None and uuid in base_by_uuid:
            pairs.append((base_by_uuid[uuid], key))
    taken_base = {b for b, _ in pairs}
    taken_new = {n for _, n in pairs}
    for key, device in new.items():
        if key in taken_new or key not in base or key in taken_base:
            continue
        if _uuid(device) is None or _uuid(base[key]) is None:
            pairs.append((key, key))
    return pairs


def _common_figure(
    record: Mapping[str, object], metric: str, keys: Sequence[str], where: str
) -> int | None:
    """``metric`` over the GPUs of ``keys``: the record's own total when they are all its
    GPUs, else the sum of those devices' figures (for the peak an upper bound, as the
    devices may have peaked at different times)."""
    devices = _devices(record)
    if len(keys) == len(devices):
        return metric_bytes(record, metric, where)
    key: Literal["peak_bytes", "increase_bytes"] = (
        "increase_bytes" if metric == "vram" else "peak_bytes"
    )
    total = 0
    for index in keys:
        device = devices[index]
        value = _int_or_none(
            device.get(key) if isinstance(device, Mapping) else None,
            f"{where}.vram.devices[{index!r}].{key}",
        )
        if value is None:
            return None
        total += value
    return total


_NO_COMMON_GPU = "no GPU in common"


def _largest(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _pair_figures(
    before: list[_Located], after: list[_Located]
) -> tuple[dict[str, int | None], dict[str, int | None], bool]:
    """Each metric's figure on both sides of one test (a node id recorded more than once
    counts with its largest), the VRAM ones over the GPUs both sides watched; and whether
    both had GPUs but none in common."""
    ref_before, ref_after = _devices(before[-1][1]), _devices(after[-1][1])
    no_common = bool(ref_before) and bool(ref_after) and not pair_devices(ref_before, ref_after)
    figures: list[dict[str, int | None]] = []
    for records, is_base in ((before, True), (after, False)):
        other = ref_after if is_base else ref_before
        side: dict[str, int | None] = {}
        for metric in METRICS:
            values = []
            for where, record in records:
                value = metric_bytes(record, metric, where)  # checks the record's fields
                mine = _devices(record)
                if metric in ("vram", "vram_peak") and mine and other:
                    pairs = pair_devices(mine, other) if is_base else pair_devices(other, mine)
                    keys = [b if is_base else a for b, a in pairs]
                    value = _common_figure(record, metric, keys, where) if keys else None
                values.append(value)
            side[metric] = _largest(values)
        figures.append(side)
    return figures[0], figures[1], no_common


# ---------------------------------------------------------------------------------------
# The comparison.


@dataclass(frozen=True)
class MetricChange:
    metric: str
    before_bytes: int | None
    after_bytes: int | None

    @property
    def change_bytes(self) -> int | None:
        if self.before_bytes is None or self.after_bytes is None:
            return None
        return self.after_bytes - self.before_bytes

    @property
    def change_percent(self) -> float | None:
        """``None`` when a side is missing or the baseline is 0 (no finite percentage)."""
        change = self.change_bytes
        if change is None or not self.before_bytes:
            return None
        return change * 100.0 / self.before_bytes


@dataclass(frozen=True)
class ComparedTest:
    nodeid: str
    changes: dict[str, MetricChange]


@dataclass(frozen=True)
class Regression:
    nodeid: str
    change: MetricChange
    threshold: Threshold


@dataclass(frozen=True)
class Comparison:
    """``rows`` holds the tests present on both sides, in the new report's order."""

    rows: tuple[ComparedTest, ...]
    regressions: tuple[Regression, ...]
    only_in_base: tuple[str, ...]
    only_in_new: tuple[str, ...]
    warnings: tuple[str, ...]
    thresholds: tuple[Threshold, ...]
    # (threshold text, node id, which side had no figure) for every check a threshold asked
    # for but an unknown figure prevented: a gate must say what it did not check.
    not_compared: tuple[tuple[str, str, str], ...] = ()
    _by_nodeid: dict[str, ComparedTest] = field(default_factory=dict, repr=False)
    _regressed: frozenset[tuple[str, str]] = field(default=frozenset(), repr=False)

    @property
    def failed(self) -> bool:
        """True when any threshold was exceeded: the run should exit non-zero."""
        return bool(self.regressions)

    def row(self, nodeid: str) -> ComparedTest | None:
        return self._by_nodeid.get(nodeid)

    def regressed(self, nodeid: str, metric: str) -> bool:
        return (nodeid, metric) in self._regressed


def _setting_text(value: object) -> str:
    # settings.devices is null when every visible device was watched.
    return "all visible" if value is None else repr(value)


def _object(value: object) -> Mapping[str, object]:
    """``value`` if it is a JSON object, else an empty one (an older or foreign report)."""
    return value if isinstance(value, Mapping) else {}


def _settings_warnings(base: Mapping[str, object], new: Mapping[str, object]) -> list[str]:
    warnings: list[str] = []
    base_settings = _object(base.get("settings"))
    new_settings = _object(new.get("settings"))
    labels = {"scope": "scope", "devices": "watched devices", "interval_s": "sampling interval"}
    for key, label in labels.items():
        if key not in base_settings or key not in new_settings:
            continue  # an older or foreign report: nothing to say
        before, after = base_settings[key], new_settings[key]
        if before != after:
            warnings.append(
                f"settings differ: {label} {_setting_text(before)} in the baseline, "
                f"{_setting_text(after)} in this run; figures may not be comparable"
            )

    def gpus(report: Mapping[str, object]) -> dict[str, Mapping[str, object]]:
        devices = report.get("devices")
        listed = devices if isinstance(devices, list) else []
        return {str(d.get("index")): d for d in listed if isinstance(d, Mapping)}

    base_gpus, new_gpus = gpus(base), gpus(new)
    for before_key, after_key in sorted(pair_devices(base_gpus, new_gpus), key=lambda p: p[1]):
        before_name = base_gpus[before_key].get("name")
        after_name = new_gpus[after_key].get("name")
        if before_key != after_key:
            warnings.append(
                f"GPU {_uuid(new_gpus[after_key])} is GPU {after_key} in this run, "
                f"GPU {before_key} in the baseline; its figures are compared as one GPU"
            )
        elif before_name != after_name:
            warnings.append(
                f"GPU {after_key} differs: {before_name!r} in the baseline, "
                f"{after_name!r} in this run"
            )
    return warnings


def compare(
    base: Mapping[str, object],
    new: Mapping[str, object],
    thresholds: Iterable[Threshold] = (),
    *,
    noise_floor_bytes: int = NOISE_FLOOR_BYTES,
) -> Comparison:
    """Compare ``new`` with ``base``. Raises ``CompareError`` if a report lacks what the
    comparison needs (schema, tests with node ids, integer figures)."""
    limits = tuple(thresholds)
    before_all = _records_by_nodeid(base, "baseline")
    after_all = _records_by_nodeid(new, "new report")
    rows: list[ComparedTest] = []
    regressions: list[Regression] = []
    not_compared: list[tuple[str, str, str]] = []
    for nodeid, after_records in after_all.items():
        before_records = before_all.get(nodeid)
        if before_records is None:
            continue
        before, after, no_common = _pair_figures(before_records, after_records)
        changes = {m: MetricChange(m, before[m], after[m]) for m in METRICS}
        rows.append(ComparedTest(nodeid, changes))
        for threshold in limits:
            change = changes[threshold.metric]
            if change.before_bytes is None or change.after_bytes is None:
                side = "the baseline" if change.before_bytes is None else "this run"
                if change.before_bytes is None and change.after_bytes is None:
                    side = "both reports"
                if no_common and threshold.metric in ("vram", "vram_peak"):
                    side = _NO_COMMON_GPU
                not_compared.append((threshold.text, nodeid, side))
                continue
            if threshold.exceeded(change.before_bytes, change.after_bytes, noise_floor_bytes):
                regressions.append(Regression(nodeid, change, threshold))
    return Comparison(
        rows=tuple(rows),
        regressions=tuple(regressions),
        only_in_base=tuple(n for n in before_all if n not in after_all),
        only_in_new=tuple(n for n in after_all if n not in before_all),
        warnings=tuple(_settings_warnings(base, new)),
        thresholds=limits,
        not_compared=tuple(not_compared),
        _by_nodeid={r.nodeid: r for r in rows},
        _regressed=frozenset((r.nodeid, r.change.metric) for r in regressions),
    )


def _percent_text(change: MetricChange) -> str:
    percent = change.change_percent
    if percent is None:
        return "(from 0)" if change.before_bytes == 0 else ""
    return f"({percent:+.1f}%)"


def format_change(change: MetricChange) -> str:
    """``+52.00 MiB: 10.00 MiB → 62.00 MiB (+520.0%)``."""
    delta = change.change_bytes
    text = (
        f"{format_bytes_iec(delta, signed=True) if delta is not None else '-'}: "
        f"{format_bytes_iec(change.before_bytes)} → {format_bytes_iec(change.after_bytes)}"
    )
    percent = _percent_text(change)
    return f"{text} {percent}" if percent else text


def _listing(title: str, nodeids: Sequence[str], max_listed: int | None) -> list[str]:
    if not nodeids:
        return []
    shown = nodeids if max_listed is None else nodeids[:max_listed]
    lines = [f"{title} ({len(nodeids)}):"]
    lines.extend(f"  {n}" for n in shown)
    if len(shown) < len(nodeids):
        lines.append(f"  ... and {len(nodeids) - len(shown)} more")
    return lines


def not_compared_lines(not_compared: Sequence[tuple[str, str, str]]) -> list[str]:
    """One line per threshold and side: ``not compared: vram:0B for 2 tests (unknown in this
    run)``, so "no regression" never stands for checks that were not made."""
    counts: dict[tuple[str, str], int] = {}
    for text, _nodeid, side in not_compared:
        counts[(text, side)] = counts.get((text, side), 0) + 1
    return [
        f"not compared: {text} for {n} test{'s' if n != 1 else ''} "
        f"({side if side == _NO_COMMON_GPU else 'unknown in ' + side})"
        for (text, side), n in counts.items()
    ]


def format_comparison(comparison: Comparison, *, max_listed: int | None = 20) -> list[str]:
    """Readable lines: a verdict, warnings, one line per regression, then the tests found
    on one side only (at most ``max_listed`` each; ``None`` lists all)."""
    limits = ", ".join(t.text for t in comparison.thresholds) or "no thresholds"
    count = len(comparison.regressions)
    verdict = f"{count} regression{'s' if count != 1 else ''}" if count else "no regression"
    lines = [
        f"compared {len(comparison.rows)} test{'s' if len(comparison.rows) != 1 else ''} "
        f"with the baseline ({limits}): {verdict}"
    ]
    lines.extend(f"warning: {w}" for w in comparison.warnings)
    lines.extend(not_compared_lines(comparison.not_compared))
    for reg in comparison.regressions:
        lines.append(
            f"{printable(reg.nodeid)}  {reg.change.metric} {format_change(reg.change)} "
            f"> {reg.threshold.text}"
        )
    lines.extend(_listing("only in the baseline", comparison.only_in_base, max_listed))
    lines.extend(_listing("only in this run", comparison.only_in_new, max_listed))
    return lines


def load_baseline(path: str | os.PathLike[str]) -> Report:
    """Read and validate a baseline report; one-line ``BaselineError`` naming the file."""
    try:
        return load_report(path)
    except ReportError as exc:
        raise BaselineError(f"cannot use baseline {exc}") from None
