"""The JSON report: layout, validation of every kind of bad file, atomic writing."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from pytest_hypomnesis.report.schema import (
    SCHEMA,
    Report,
    ReportError,
    load_report,
    validate_test_record,
    write_report_atomic,
)
from tests.helpers.reports import load_error
from tests.helpers.typedrecords import make_record, make_report


def test_build_report_has_the_spec_layout() -> None:
    report = make_report()
    assert list(report) == [
        "schema",
        "created",
        "versions",
        "machine",
        "settings",
        "devices",
        "tests",
    ]
    assert report["schema"] == SCHEMA == "pytest-hypomnesis/2"


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    report = make_report()
    write_report_atomic(path, report)
    assert load_report(path) == report
    assert load_report(str(path))["tests"][0]["vram"]["devices"]["0"]["samples"] == 7


def test_atomic_write_leaves_no_temp_file_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("old", encoding="utf-8")
    write_report_atomic(path, make_report())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    assert json.loads(path.read_text(encoding="utf-8"))["schema"] == SCHEMA


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"old": true}', encoding="utf-8")
    with pytest.raises(TypeError):
        write_report_atomic(path, {"schema": SCHEMA, "bad": object()})  # type: ignore[typeddict-item, typeddict-unknown-key]
    assert path.read_text(encoding="utf-8") == '{"old": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("", "empty file"),
        ("   \n", "empty file"),
        ('{"schema": "pytest-hypomnesis/1", "tests": [', "not valid JSON"),
        ("not json at all", "not valid JSON"),
        ("[1, 2]", "expected an object"),
        ('{"schema": "pytest-benchmark/4"}', "not a pytest-hypomnesis report"),
        ("{}", "no 'schema' field"),
    ],
)
def test_bad_files_give_one_line_naming_the_file(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "bad.json"
    message = load_error(path, content, load_report, ReportError)
    assert message.startswith(str(path))
    assert expected in message


def test_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="is a directory"):
        load_report(tmp_path)


def _mutate(report: Report, dotted: str, value: Any) -> object:
    """A copy of ``report`` with one field changed: no longer a ``Report``."""
    out = copy.deepcopy(report)
    target: Any = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is KeyError:
        del target[parts[-1]]
    else:
        target[parts[-1]] = value
    return out


@pytest.mark.parametrize(
    ("dotted", "value", "where"),
    [
        ("tests", {}, "top level.tests"),
        ("devices", None, "top level.devices"),
        ("machine", [], "machine"),
        ("created", KeyError, "missing field 'created'"),
        ("tests.0.nodeid", 3, "tests[0].nodeid"),
        ("tests.0.duration_s", "1s", "tests[0].duration_s"),
        ("tests.0.ram.peak_bytes", 1.5, "tests[0].ram.peak_bytes"),
        ("tests.0.ram.peak_bytes", -1, "tests[0].ram.peak_bytes"),
        ("tests.0.ram.peak_bytes", True, "tests[0].ram.peak_bytes"),
        ("tests.0.vram.devices", [], "tests[0].vram.devices"),
        ("tests.0.budgets.0.passed", "yes", "tests[0].budgets[0].passed"),
        ("tests.0.budgets.0.kind", "max_disk", "tests[0].budgets[0].kind"),
        ("tests.0.budgets.0.limit_bytes", None, "tests[0].budgets[0].limit_bytes"),
        ("tests.0.vram.torch_peak_allocated_bytes", {"0": "x"}, "torch_peak_allocated_bytes"),
    ],
)
def test_wrong_field_types_name_the_field(
    tmp_path: Path, dotted: str, value: Any, where: str
) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_mutate(make_report(), dotted, value)), encoding="utf-8")
    with pytest.raises(ReportError) as info:
        load_report(path)
    assert where in str(info.value)


def test_device_keys_must_be_indices() -> None:
    record = make_record()
    record["vram"]["devices"] = {"gpu0": record["vram"]["devices"]["0"]}
    with pytest.raises(ReportError, match="not a device index"):
        validate_test_record(record)


def test_nulls_are_allowed_where_a_figure_is_unknown() -> None:
    record = make_record()
    record["ram"]["peak_bytes"] = None
    record["vram"] = {
        "source": None,
        "devices": {},
        "torch_peak_allocated_bytes": None,
        "unavailable_reason": "NVML: Driver Not Loaded",
        "allocators": None,
    }
    record["budgets"][0]["passed"] = None
    record["budgets"][0]["measured_bytes"] = None
    assert validate_test_record(record) is record


def test_unreadable_file(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    path = tmp_path / "r.json"
    path.write_text("{}", encoding="utf-8")
    path.chmod(0)
    with pytest.raises(ReportError, match="cannot read"):
        load_report(path)


def test_records_from_before_allocators_and_budget_sources_still_load() -> None:
    # Baselines written by earlier versions lack the allocator, CUDA-context and
    # budget-source fields; comparing against them must keep working.
    record: dict[str, Any] = json.loads(json.dumps(make_record()))
    del record["vram"]["allocators"]
    for key in ("cuda_context_bytes", "gross_increase_bytes"):
        del record["vram"]["devices"]["0"][key]
    for key in ("source", "figure"):
        del record["budgets"][0][key]
    assert validate_test_record(record) is record


def test_allocator_figures_are_validated() -> None:
    record = make_record()
    record["vram"]["allocators"] = {
        "torch": {
            "0": {
                "start_bytes": 0,
                "peak_bytes": 5,
                "end_bytes": None,
                "increase_bytes": 5,
                "reserved_peak_bytes": 8,
                "peak_method": "counter",
            }
        }
    }
    assert validate_test_record(record) is record
    allocators = record["vram"]["allocators"]
    assert allocators is not None
    allocators["torch"]["0"]["peak_bytes"] = -1
    with pytest.raises(ReportError, match=r"allocators\['torch'\]\['0'\]\.peak_bytes"):
        validate_test_record(record)
