"""The plugin's JSON report (``schema: "pytest-hypomnesis/2"``): layout, validation, writing.

A test record's shape, builder and accessors live in ``pytest_hypomnesis/record.py``;
this module checks and writes whole reports. Reports of schema 1 (no device identity in
``vram.devices``) still load: every field schema 2 added is optional when reading.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn, TypedDict, TypeGuard, cast

from pytest_hypomnesis._json import JsonObject, JsonValue
from pytest_hypomnesis._units import MAX_SIZE_BYTES, clip
from pytest_hypomnesis.plugin.timeline import parse_timeline
from pytest_hypomnesis.record import MeasuredTestRecord
from pytest_hypomnesis.report.atomicfile import write_text_atomic

__all__ = [
    "SCHEMA",
    "SCHEMAS_READ",
    "Report",
    "ReportDevice",
    "ReportError",
    "RunRecord",
    "build_report",
    "load_report",
    "report_text",
    "schemas_text",
    "shared_vram_reason",
    "validate_report",
    "validate_test_record",
    "write_report_atomic",
]

SCHEMA = "pytest-hypomnesis/2"
"""What this version writes. 2: ``vram.devices`` entries say which GPU they are (``uuid``,
``nvml_index``, ``pci_bus_id``, ``name``, ``parent_uuid``), as do the top-level ``devices``;
``vram.total`` holds the figures over all devices together (the peak of per-reading sums)."""
SCHEMAS_READ = ("pytest-hypomnesis/1", SCHEMA)
"""What this version reads: its own and every older schema."""


class ReportError(Exception):
    """A JSON report that cannot be used; the message names the file and what is wrong."""


# ---------------------------------------------------------------------------------------
# The layout, as ``validate_report`` guarantees it: a field it does not check is typed as
# the JSON it may be (``JsonValue``), not as what this version writes there.


class _RequiredReportDeviceFields(TypedDict):
    index: int


class ReportDevice(_RequiredReportDeviceFields, total=False):
    """One watched GPU in the top-level ``devices``: ``index`` is the CUDA ordinal (what
    records and budgets key by); the device-wide figures at the session's end
    (``GpuDeviceInfo``'s fields) and which GPU it is (``DeviceIdentity``'s, schema 2).
    Older and foreign reports may lack any of them."""

    name: str | None
    total_bytes: int | None
    free_bytes: int | None
    used_bytes: int | None
    reserved_bytes: int | None
    driver_version: str | None
    uuid: str | None
    nvml_index: int | None
    pci_bus_id: str | None
    parent_uuid: str | None


class _RequiredRunFields(TypedDict):
    ram_peak_bytes: int | None


class RunRecord(_RequiredRunFields, total=False):
    """The whole run's RAM peak (``run``): the highest RSS of any of its processes."""

    ram_peak_bytes_by_worker: JsonValue
    """Written as ``{"master": bytes, "gw0": bytes, ...}``; not checked when read."""


# The bases in the order of the keys in the text (``tests`` after the optional ones).
class _ReportHead(TypedDict):
    schema: str
    created: str
    versions: JsonObject
    machine: JsonObject
    settings: JsonObject
    devices: list[ReportDevice]


class _ReportOptional(TypedDict, total=False):
    run: RunRecord | None
    vram_unavailable_reason: str | None
    outcomes: dict[str, int]


class Report(_ReportHead, _ReportOptional):
    """A whole JSON report (``build_report`` writes it, ``load_report`` reads it back).
    ``versions``, ``machine`` and ``settings`` are objects whose fields a reader checks
    itself (``machine.gpu_unavailable_reason``, ``settings.scope``/``interval_s``/
    ``devices`` excepted). ``run`` is absent (or null) from reports older than it;
    ``vram_unavailable_reason`` is there when records without a GPU share one reason;
    ``outcomes`` (pytest's own counts) when the plugin wrote the report."""

    tests: list[MeasuredTestRecord]


# ---------------------------------------------------------------------------------------
# Validation. Each check names the JSON path of the offending field.

# Every integer a report holds is a byte count, an index or a count: never above 2^64-1
# (a 5000-digit one would also break every formatter downstream).
_INT = "an integer from 0 to 2^64-1"
_OPT_INT = "an integer from 0 to 2^64-1, or null"


def _fail(where: str, message: str) -> ReportError:
    return ReportError(f"{where}: {message}")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_obj(value: object, where: str) -> JsonObject:
    if not isinstance(value, dict):
        raise _fail(where, f"expected an object, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _field(obj: JsonObject, key: str, where: str) -> JsonValue:
    if key not in obj:
        raise _fail(where, f"missing field {key!r}")
    return obj[key]


def _wrong(obj: JsonObject, key: str, where: str, *, expect: str) -> NoReturn:
    raise _fail(f"{where}.{key}", f"expected {expect}, got {_kind(obj.get(key))}")


def _int_field(obj: JsonObject, key: str, where: str, *, optional: bool) -> None:
    value = _field(obj, key, where)
    if value is None and optional:
        return
    if not _is_int(value) or value < 0 or value > MAX_SIZE_BYTES:
        _wrong(obj, key, where, expect=_OPT_INT if optional else _INT)


def _present_int(obj: JsonObject, key: str, where: str) -> None:
    """An optional key (older or foreign reports may lack it) that, when there, is an
    integer or null."""
    if key in obj:
        _int_field(obj, key, where, optional=True)


def _present_str(obj: JsonObject, key: str, where: str) -> None:
    if key in obj:
        _str_field(obj, key, where, optional=True)


def _str_field(obj: JsonObject, key: str, where: str, *, optional: bool = False) -> None:
    value = _field(obj, key, where)
    if value is None and optional:
        return
    if not isinstance(value, str):
        _wrong(obj, key, where, expect="a string or null" if optional else "a string")


def _span_fields(obj: JsonObject, where: str) -> None:
    for key in ("start_bytes", "peak_bytes", "end_bytes", "increase_bytes"):
        _int_field(obj, key, where, optional=True)


def _allocators(value: object, where: str) -> None:
    for name, by_device in _check_obj(value, where).items():
        for key, figures in _check_obj(by_device, f"{where}[{name!r}]").items():
            awhere = f"{where}[{name!r}][{key!r}]"
            fig = _check_obj(figures, awhere)
            for field in ("start_bytes", "peak_bytes", "increase_bytes"):
                _int_field(fig, field, awhere, optional=False)
            for field in ("end_bytes", "reserved_peak_bytes"):
                _int_field(fig, field, awhere, optional=True)
            _str_field(fig, "peak_method", awhere)


def _identity_fields(dev: JsonObject, where: str) -> None:
    """Which GPU an entry is (schema 2); absent from schema-1 reports."""
    for key in ("uuid", "pci_bus_id", "name", "parent_uuid"):
        _present_str(dev, key, where)
    _present_int(dev, "nvml_index", where)


def validate_test_record(record: object, where: str = "test") -> MeasuredTestRecord:
    """Check one test record's structure and types; raises ``ReportError`` naming the field."""
    rec = _check_obj(record, where)
    for key in ("nodeid", "outcome", "worker", "scope"):
        _str_field(rec, key, where)
    duration = _field(rec, "duration_s", where)
    if (
        isinstance(duration, bool)
        or not isinstance(duration, (int, float))
        or not math.isfinite(duration)
        or duration < 0
    ):
        _wrong(rec, "duration_s", where, expect="a non-negative number")

    ram = _check_obj(_field(rec, "ram", where), f"{where}.ram")
    _span_fields(ram, f"{where}.ram")
    _str_field(ram, "method", f"{where}.ram")
    for key in ("python_peak_bytes", "python_increase_bytes"):
        if key in ram:
            _int_field(ram, key, f"{where}.ram", optional=False)

    vwhere = f"{where}.vram"
    vram = _check_obj(_field(rec, "vram", where), vwhere)
    _str_field(vram, "source", vwhere, optional=True)
    _str_field(vram, "unavailable_reason", vwhere, optional=True)
    if "attribution" in vram and vram["attribution"] not in ("process", "device"):
        _wrong(vram, "attribution", vwhere, expect="'process' or 'device'")
    devices = _check_obj(_field(vram, "devices", vwhere), f"{vwhere}.devices")
    for key, device in devices.items():
        dwhere = f"{vwhere}.devices[{key!r}]"
        if not (key.isascii() and key.isdigit()) or len(key) > 10:
            raise _fail(f"{vwhere}.devices", f"device key {clip(repr(key))} is not a device index")
        dev = _check_obj(device, dwhere)
        _span_fields(dev, dwhere)
        _int_field(dev, "device_used_peak_bytes", dwhere, optional=True)
        _int_field(dev, "samples", dwhere, optional=False)
        _present_int(dev, "failed_samples", dwhere)
        _present_str(dev, "unavailable_reason", dwhere)
        for key in ("cuda_context_bytes", "gross_increase_bytes"):
            if key in dev:  # absent from reports older than the CUDA context apart
                _int_field(dev, key, dwhere, optional=True)
        _identity_fields(dev, dwhere)
    if vram.get("total") is not None:  # absent without a GPU and from older reports
        _span_fields(_check_obj(vram["total"], f"{vwhere}.total"), f"{vwhere}.total")
    torch_peaks = _field(vram, "torch_peak_allocated_bytes", vwhere)
    if torch_peaks is not None:
        peaks = _check_obj(torch_peaks, f"{vwhere}.torch_peak_allocated_bytes")
        for key in peaks:
            _int_field(peaks, key, f"{vwhere}.torch_peak_allocated_bytes", optional=False)
    if vram.get("allocators") is not None:
        _allocators(vram["allocators"], f"{vwhere}.allocators")

    budgets = _field(rec, "budgets", where)
    if not isinstance(budgets, list):
        _wrong(rec, "budgets", where, expect="a list")
    for i, budget in enumerate(budgets):
        bwhere = f"{where}.budgets[{i}]"
        b = _check_obj(budget, bwhere)
        if _field(b, "kind", bwhere) not in ("max_ram", "max_vram"):
            _wrong(b, "kind", bwhere, expect="'max_ram' or 'max_vram'")
        _int_field(b, "limit_bytes", bwhere, optional=False)
        _int_field(b, "measured_bytes", bwhere, optional=True)
        _int_field(b, "device", bwhere, optional=True)
        if _field(b, "passed", bwhere) not in (True, False, None):
            _wrong(b, "passed", bwhere, expect="true, false or null")
        if not isinstance(_field(b, "absolute", bwhere), bool):
            _wrong(b, "absolute", bwhere, expect="a boolean")
        if _field(b, "origin", bwhere) not in ("marker", "option"):
            _wrong(b, "origin", bwhere, expect="'marker' or 'option'")
        _str_field(b, "message", bwhere, optional=True)
        if "limit_text" in b:
            _str_field(b, "limit_text", bwhere)
        for key in ("source", "figure"):
            if key in b:  # absent from reports older than budget sources
                _str_field(b, key, bwhere, optional=True)

    if "admission_wait_s" in rec:
        wait = rec["admission_wait_s"]
        if (
            isinstance(wait, bool)
            or not isinstance(wait, (int, float))
            or not math.isfinite(wait)
            or wait < 0
        ):
            _wrong(rec, "admission_wait_s", where, expect="a non-negative number")
    if "budget_failed" in rec and not isinstance(rec["budget_failed"], bool):
        _wrong(rec, "budget_failed", where, expect="a boolean")
    if "attempts" in rec:
        attempts = rec["attempts"]
        if not isinstance(attempts, list):
            _wrong(rec, "attempts", where, expect="a list")
        for i, attempt in enumerate(attempts):
            awhere = f"{where}.attempts[{i}]"
            one = _check_obj(attempt, awhere)
            if "attempts" in one or "nodeid" in one:
                raise _fail(awhere, "an attempt holds figures only, not a test record")
            # An attempt has a test record's fields but the test's identity.
            validate_test_record({**one, "nodeid": rec["nodeid"], "scope": rec["scope"]}, awhere)
    if rec.get("timeline") is not None:
        try:
            parse_timeline(rec["timeline"], f"{where}.timeline")
        except ValueError as exc:
            raise ReportError(str(exc)) from None
    # Where parsed JSON becomes a typed record: every field the type names was checked
    # above (the ones older reports may lack excepted, see record.py).
    return cast(MeasuredTestRecord, rec)


_TOP_OBJECTS = ("versions", "machine", "settings")


def schemas_text() -> str:
    """``'pytest-hypomnesis/2' or 'pytest-hypomnesis/1'``: what a report may say."""
    return " or ".join(repr(s) for s in reversed(SCHEMAS_READ))


def validate_report(data: object) -> Report:
    """Check a whole report (already parsed); raises ``ReportError`` without the file name."""
    report = _check_obj(data, "top level")
    schema = report.get("schema")
    if schema not in SCHEMAS_READ:
        if schema is None:
            raise _fail("top level", f"no 'schema' field (expected {SCHEMA!r})")
        raise _fail(
            "schema", f"{schema!r} is not {schemas_text()} (not a pytest-hypomnesis report)"
        )
    _str_field(report, "created", "top level")
    _, machine, settings = (
        _check_obj(_field(report, key, "top level"), key) for key in _TOP_OBJECTS
    )
    devices = _field(report, "devices", "top level")
    if not isinstance(devices, list):
        _wrong(report, "devices", "top level", expect="a list")
    for i, device in enumerate(devices):
        # Every field the header, the HTML report and the gate read, so a wrong type is
        # this one line at load time, not a crash after every test ran.
        dwhere = f"devices[{i}]"
        dev = _check_obj(device, dwhere)
        _int_field(dev, "index", dwhere, optional=False)
        for key in ("total_bytes", "free_bytes", "used_bytes", "reserved_bytes"):
            _present_int(dev, key, dwhere)
        for key in ("driver_version",):
            _present_str(dev, key, dwhere)
        _identity_fields(dev, dwhere)
    _present_str(machine, "gpu_unavailable_reason", "machine")
    _present_str(settings, "scope", "settings")
    interval = settings.get("interval_s")
    if interval is not None and (
        isinstance(interval, bool)
        or not isinstance(interval, (int, float))
        or not math.isfinite(interval)
        or interval <= 0
    ):
        _wrong(settings, "interval_s", "settings", expect="a positive number or null")
    watched = settings.get("devices")
    if watched is not None:
        if not isinstance(watched, list):
            _wrong(settings, "devices", "settings", expect="a list of GPU indices or null")
        for j, index in enumerate(watched):
            if not _is_int(index) or index < 0 or index > MAX_SIZE_BYTES:
                raise _fail(f"settings.devices[{j}]", f"expected {_INT}, got {_kind(index)}")
    _present_str(report, "vram_unavailable_reason", "top level")
    run = report.get("run")
    if run is not None:  # optional: reports written before it have none
        _int_field(_check_obj(run, "run"), "ram_peak_bytes", "run", optional=True)
    if "outcomes" in report:
        outcomes = _check_obj(report["outcomes"], "outcomes")
        for key in outcomes:
            _int_field(outcomes, key, "outcomes", optional=False)
    tests = _field(report, "tests", "top level")
    if not isinstance(tests, list):
        _wrong(report, "tests", "top level", expect="a list")
    shared = report.get("vram_unavailable_reason")  # a string or null, checked above
    for i, record in enumerate(tests):
        if isinstance(shared, str):
            _restore_reason(record, shared)
        validate_test_record(record, f"tests[{i}]")
    # Where parsed JSON becomes a typed report: the fields ``Report`` types beyond
    # ``JsonValue`` were checked above, each record by ``validate_test_record``.
    return cast(Report, report)


def _restore_reason(record: object, reason: str) -> None:
    """Give a record written without its ``vram.unavailable_reason`` (and its attempts)
    the report's ``vram_unavailable_reason``: what every reader of a loaded report sees."""
    if not isinstance(record, dict):
        return
    vram = record.get("vram")
    if isinstance(vram, dict) and "unavailable_reason" not in vram:
        vram["unavailable_reason"] = reason
    attempts = record.get("attempts")
    if isinstance(attempts, list):
        for attempt in attempts:
            _restore_reason(attempt, reason)


def load_report(path: str | os.PathLike[str]) -> Report:
    """Read and validate a report. Raises ``ReportError`` with one line naming ``path``."""
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ReportError(f"{name}: is a directory, not a JSON report") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{name}: cannot read: {exc}") from None
    if not text.strip():
        raise ReportError(f"{name}: empty file, not a JSON report")
    try:
        data: JsonValue = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(
            f"{name}: not valid JSON (truncated or corrupt?): {exc.msg} at line {exc.lineno}"
        ) from None
    except RecursionError:
        raise ReportError(f"{name}: not a JSON report: nested too deeply") from None
    except ValueError as exc:
        # int() refuses more than sys.get_int_max_str_digits() digits (4300 by default).
        raise ReportError(f"{name}: not a JSON report: {exc}") from None
    try:
        return validate_report(data)
    except ReportError as exc:
        raise ReportError(f"{name}: {exc}") from None


def write_report_atomic(path: str | os.PathLike[str], data: Report) -> None:
    """Write ``data`` as JSON so that ``path`` holds either the old file or the whole new
    one, never half of it."""
    write_text_atomic(path, report_text(data))


# One compact encoder for the records: at 20,000 tests ``indent=2`` over the whole report
# took 0.34 s of a 0.44 s write and 11 MiB; compact records, one per line, are a fifth of
# that time and still diff line by line.
_compact = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def report_text(data: Report) -> str:
    """The report as JSON text: the top-level objects indented, the ``tests`` records
    compact, one per line. Every JSON reader reads it; key order is the data's. A record's
    ``vram.unavailable_reason`` equal to the report's ``vram_unavailable_reason`` is left
    out of the text (``load_report`` puts it back): a run without a GPU would otherwise
    repeat the same reason in each of its 20,000 records."""
    tests = data.get("tests")
    if not isinstance(tests, list) or not tests:
        return json.dumps(data, indent=2) + "\n"
    shared = data.get("vram_unavailable_reason")
    parts = []
    for key, value in data.items():
        if key == "tests":
            body = ",\n    ".join(map(_compact, tests))
            if isinstance(shared, str):
                # Exact, on the compact text: the vram object's own key (a device entry's
                # reason is not followed by "allocators"), in records and their attempts.
                needle = f',"unavailable_reason":{_compact(shared)},"allocators":'
                body = body.replace(needle, ',"allocators":')
            parts.append(f'  "tests": [\n    {body}\n  ]')
        else:
            text = json.dumps(value, indent=2).replace("\n", "\n  ")
            parts.append(f"  {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def build_report(
    *,
    created: str,
    versions: Mapping[str, str],
    machine: Mapping[str, JsonValue],
    settings: Mapping[str, JsonValue],
    devices: Sequence[ReportDevice],
    tests: Sequence[MeasuredTestRecord],
    run: RunRecord | None = None,
) -> Report:
    """The SPEC's top-level layout, keys in the documented order; ``run`` (the whole run's
    RAM peak) is optional, as in reports written before it existed."""
    head: _ReportHead = {
        "schema": SCHEMA,
        "created": created,
        "versions": dict(versions),
        "machine": dict(machine),
        "settings": dict(settings),
        "devices": [d.copy() for d in devices],
    }
    optional: _ReportOptional = {}
    if run is not None:
        optional["run"] = run.copy()
    shared = shared_vram_reason(tests)
    if shared is not None:
        optional["vram_unavailable_reason"] = shared
    return {**head, **optional, "tests": [t.copy() for t in tests]}


def shared_vram_reason(tests: Sequence[MeasuredTestRecord]) -> str | None:
    """The reason most records without a GPU give (``vram.unavailable_reason``), written
    once at the report's top level; ``None`` when none gives one."""
    counts: dict[str, int] = {}
    for test in tests:
        vram = test.get("vram")
        if isinstance(vram, Mapping) and not vram.get("devices"):
            reason = vram.get("unavailable_reason")
            if isinstance(reason, str):
                counts[reason] = counts.get(reason, 0) + 1
    return max(counts, key=counts.__getitem__) if counts else None
