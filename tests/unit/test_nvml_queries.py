"""The NVML backend's queries against a fake ``pynvml``: failures, fields, listings."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import pytest

from pytest_hypomnesis.probe import nvml
from tests.helpers.fakepynvml import (
    DRIVER_NOT_LOADED,
    FUNCTION_NOT_FOUND,
    GPU_IS_LOST,
    NAMES,
    NO_PERMISSION,
    NOT_SUPPORTED,
    PUBLIC,
    SENTINEL,
    TOTAL,
    V1,
    V2,
    V3,
    FakePynvml,
    Row,
    failure,
)
from tests.helpers.units import GIB


@pytest.mark.parametrize("call", PUBLIC.values(), ids=PUBLIC.keys())
def test_missing_nvidia_ml_py(monkeypatch: pytest.MonkeyPatch, call: Callable[[], object]) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    nvml._reset_for_tests()
    assert failure(call).reason == "nvidia-ml-py not installed"


@pytest.mark.parametrize("call", PUBLIC.values(), ids=PUBLIC.keys())
@pytest.mark.parametrize("code", [DRIVER_NOT_LOADED, NO_PERMISSION, GPU_IS_LOST, NOT_SUPPORTED])
def test_every_call_failing_degrades_with_reason(
    fake_pynvml: FakePynvml, code: int, call: Callable[[], object]
) -> None:
    fake_pynvml.errors["*"] = code
    assert failure(call).reason == NAMES[code]


REQUIRED = {
    "nvmlDeviceGetHandleByIndex_v2": [
        "device_query",
        "process_used_bytes",
        "list_processes",
        "self_reader",
    ],
    "nvmlDeviceGetMemoryInfo": [
        "device_query",
        "process_used_bytes",
        "list_processes",
        "self_reader",
    ],
    V3: ["process_used_bytes", "list_processes", "self_reader"],
    "nvmlDeviceGetCount_v2": ["device_count"],
    "nvmlInit": list(PUBLIC),
}


@pytest.mark.parametrize(
    ("function", "public"),
    [(f, p) for f, publics in REQUIRED.items() for p in publics],
)
@pytest.mark.parametrize("code", [DRIVER_NOT_LOADED, NO_PERMISSION, GPU_IS_LOST, NOT_SUPPORTED])
def test_each_required_call_failing_degrades(
    fake_pynvml: FakePynvml, function: str, public: str, code: int
) -> None:
    fake_pynvml.errors[function] = code
    assert failure(PUBLIC[public]).reason == NAMES[code]


def test_library_not_found_reason(fake_pynvml: FakePynvml) -> None:
    fake_pynvml.errors["nvmlInit"] = 12
    assert failure(nvml.device_count).reason == "NVML Shared Library Not Found"


@pytest.mark.parametrize(
    "function", ["nvmlDeviceGetName", "nvmlDeviceGetMemoryInfo_v2", "nvmlSystemGetDriverVersion"]
)
@pytest.mark.parametrize("code", [NO_PERMISSION, NOT_SUPPORTED, FUNCTION_NOT_FOUND, GPU_IS_LOST])
def test_best_effort_fields_become_none(fake_pynvml: FakePynvml, function: str, code: int) -> None:
    fake_pynvml.errors[function] = code
    reading = nvml.device_query(0)
    assert reading.total_bytes == TOTAL
    assert reading.used_bytes == 2 * GIB
    assert reading.free_bytes == TOTAL - 2 * GIB
    fields = {
        "nvmlDeviceGetName": reading.name,
        "nvmlDeviceGetMemoryInfo_v2": reading.reserved_bytes,
        "nvmlSystemGetDriverVersion": reading.driver_version,
    }
    assert fields.pop(function) is None
    assert None not in fields.values()


def test_device_query_fields(fake_pynvml: FakePynvml) -> None:
    reading = nvml.device_query(0)
    assert reading.name == "NVIDIA Fake GPU"
    assert reading.reserved_bytes == 256 * 1024**2
    assert reading.driver_version == "555.42.06"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", None),
        (b"", None),
        ("NVIDIA A100\0garbage", "NVIDIA A100"),
        (b"NVIDIA \xff GPU", "NVIDIA \ufffd GPU"),
    ],
)
def test_strings_nul_trimmed_lossy_empty_none(
    fake_pynvml: FakePynvml, raw: object, expected: str | None
) -> None:
    fake_pynvml.name = raw
    fake_pynvml.driver = raw
    reading = nvml.device_query(0)
    assert reading.name == expected
    assert reading.driver_version == expected


def test_strict_decode_error_from_pynvml_is_decoded_lossily(
    fake_pynvml: FakePynvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    def strict(handle: object) -> str:
        return b"Tesla \xfe".decode()  # what pynvml's convertStrBytes does to bad bytes

    monkeypatch.setattr(sys.modules["pynvml"], "nvmlDeviceGetName", strict)
    assert nvml.device_query(0).name == "Tesla \ufffd"


def test_device_count(fake_pynvml: FakePynvml) -> None:
    assert nvml.device_count() == 1


def test_listing_filters_and_sorts(fake_pynvml: FakePynvml) -> None:
    fake_pynvml.rows = [
        Row(30, 5),
        Row(10, None),  # pynvml's form of the 2^64-1 sentinel
        Row(11, SENTINEL),  # the raw form, should a pynvml not convert it
        Row(12, TOTAL + 1),
        Row(13, TOTAL),  # == total is kept
        Row(2, 0),
        Row(30, 7),  # MIG: one row per instance, kept as the crate keeps them
    ]
    assert nvml.list_processes(0) == [(2, 0), (13, TOTAL), (30, 5), (30, 7)]


def test_listing_empty_is_a_valid_answer(fake_pynvml: FakePynvml) -> None:
    assert nvml.list_processes(0) == []


def test_listing_past_64_processes(fake_pynvml: FakePynvml) -> None:
    fake_pynvml.rows = [Row(pid, pid * 1024) for pid in range(1000, 1100)]
    rows = nvml.list_processes(0)
    assert len(rows) == 100
    assert rows[-1] == (1099, 1099 * 1024)


def test_listing_retries_a_table_that_grew_between_calls(fake_pynvml: FakePynvml) -> None:
    fake_pynvml.rows = [Row(pid, 1) for pid in range(1, 200)]
    fake_pynvml.insufficient = 2
    assert len(nvml.list_processes(0)) == 199
    assert fake_pynvml.count(V3) == 3


def test_listing_that_never_fits_fails_instead_of_truncating(fake_pynvml: FakePynvml) -> None:
    fake_pynvml.rows = [Row(1, 1)]
    fake_pynvml.insufficient = 100
    assert failure(lambda: nvml.list_processes(0)).reason == "Insufficient Size"


@pytest.mark.parametrize(
    ("rows", "reason_part"),
    [
        ([Row(1, 5)], "has no compute context"),
        ([Row(-1, None)], "not available"),
        ([Row(-1, SENTINEL)], "not available"),
        ([Row(-1, TOTAL + 1)], "exceeds device total"),
    ],
)
def test_own_pid_rejections(fake_pynvml: FakePynvml, rows: list[Row], reason_part: str) -> None:
    fake_pynvml.rows = [Row(os.getpid() if r.pid == -1 else r.pid, r.usedGpuMemory) for r in rows]
    assert reason_part in failure(lambda: nvml.process_used_bytes(0, os.getpid())).reason


def test_own_pid_first_row_and_total_kept(fake_pynvml: FakePynvml) -> None:
    fake_pynvml.rows = [Row(7, 1), Row(4242, TOTAL), Row(4242, 3)]
    assert nvml.process_used_bytes(0, 4242) == TOTAL
    assert nvml.process_used_bytes(0, 7) == 1


def test_process_query_falls_back_v3_to_v2(fake_pynvml: FakePynvml) -> None:
    fake_pynvml.missing = {V3}
    fake_pynvml.rows = [Row(5, 50)]
    assert nvml.list_processes(0) == [(5, 50)]
    assert nvml.list_processes(0) == [(5, 50)]
    assert fake_pynvml.count(V3) == 1  # a missing symbol is remembered, not probed every call
    assert fake_pynvml.count(V2) == 2


def test_process_query_falls_back_to_v1(fake_pynvml: FakePynvml) -> None:
    fake_pynvml.missing = {V3, V2}
    fake_pynvml.rows = [Row(9, 90), Row(5, 50), Row(6, None)]
    assert nvml.list_processes(0) == [(5, 50), (9, 90)]
    assert nvml.process_used_bytes(0, 9) == 90
    assert fake_pynvml.count(V1) == 4  # size probe + fetch, twice


def test_process_query_all_versions_missing(fake_pynvml: FakePynvml) -> None:
    fake_pynvml.missing = {V3, V2, V1}
    assert failure(lambda: nvml.list_processes(0)).reason == "Function Not Found"


def test_v1_with_no_processes(fake_pynvml: FakePynvml) -> None:
    fake_pynvml.missing = {V3, V2}
    assert nvml.list_processes(0) == []


def test_pynvml_without_versioned_wrapper_falls_back(
    fake_pynvml: FakePynvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(sys.modules["pynvml"], V3)
    fake_pynvml.rows = [Row(5, 50)]
    assert nvml.list_processes(0) == [(5, 50)]
    assert fake_pynvml.count(V2) == 1
