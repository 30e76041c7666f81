"""``memory_report()``'s attribute views (``RamFigures``, ``DeviceFigures``) spell out the
record's fields a second time, so that a type checker sees their precise types (no checker
turns TypedDict keys into attributes). This keeps the two from drifting apart."""

from __future__ import annotations

import dataclasses
import typing

from pytest_hypomnesis.plugin.block import DeviceFigures, RamFigures
from pytest_hypomnesis.record import RamRecord, VramDeviceRecord


def _fields(view: type) -> dict[str, object]:
    hints = typing.get_type_hints(view)
    return {f.name: hints[f.name] for f in dataclasses.fields(view)}


def test_device_view_has_every_field_of_the_device_record_with_its_type() -> None:
    assert _fields(DeviceFigures) == typing.get_type_hints(VramDeviceRecord)


def test_ram_view_has_the_ram_record_fields_but_the_traced_python_pair() -> None:
    record = typing.get_type_hints(RamRecord)
    # python_* exist only when Python allocations were traced; the view leaves them out.
    assert set(record) - set(_fields(RamFigures)) == {"python_peak_bytes", "python_increase_bytes"}
    assert _fields(RamFigures) == {k: v for k, v in record.items() if not k.startswith("python_")}
