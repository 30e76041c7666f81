"""Byte-exact tests of the crate's format helpers (parity checklist 33-35, 38)."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import pytest

from pytest_hypomnesis import (
    GpuDeviceInfo,
    GpuDeviceInfoBuilder,
    GpuQuerySource,
    MemoryReport,
    ProcessGpuInfo,
    Snapshot,
)
from pytest_hypomnesis._format import compact_json, format_vram, render_table
from pytest_hypomnesis._units import format_bytes_iec
from tests.helpers.units import GIB, MIB


def _device(index: int = 0, name: str | None = "NVIDIA Test GPU") -> GpuDeviceInfo:
    return (
        GpuDeviceInfoBuilder()
        .index(index)
        .name(name)
        .total_bytes(16384 * MIB)
        .free_bytes(13284 * MIB)
        .used_bytes(3100 * MIB)
        .build()
    )


def test_format_free_with_and_without_name() -> None:
    assert _device().format_free() == "  GPU 0: free 13284 MB / 16384 MB [NVIDIA Test GPU]\n"
    unnamed = GpuDeviceInfoBuilder().index(1).total_bytes(8192 * MIB).free_bytes(4096 * MIB).build()
    assert unnamed.format_free() == "  GPU 1: free 4096 MB / 8192 MB\n"


def test_print_free_writes_exactly_format_free() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        _device().print_free()
    assert out.getvalue() == _device().format_free()


def test_format_total_and_used() -> None:
    assert _device().format_total() == "  GPU 0: total 16384 MB [NVIDIA Test GPU]\n"
    assert _device().format_used() == "  GPU 0: used 3100 MB [NVIDIA Test GPU]\n"
    idle = GpuDeviceInfoBuilder().index(2).name("Idle GPU").build()
    assert idle.format_used() == "  GPU 2: used 0 MB [Idle GPU]\n"


def test_mb_rounding_is_half_to_even() -> None:
    # 0.5 MiB rounds to 0 and 1.5 MiB to 2, as Rust's {:.0} does.
    half = GpuDeviceInfoBuilder().used_bytes(MIB // 2).build()
    one_half = GpuDeviceInfoBuilder().used_bytes(MIB + MIB // 2).build()
    assert half.format_used() == "  GPU 0: used 0 MB\n"
    assert one_half.format_used() == "  GPU 0: used 2 MB\n"


def test_name_or_unknown() -> None:
    assert _device().name_or_unknown() == "NVIDIA Test GPU"
    assert _device(name=None).name_or_unknown() == "unknown GPU"


def _snap(
    ram_mb: int, vram_mb: int | None, *, per_process: bool = True, device: bool = True
) -> Snapshot:
    gpu = None
    if vram_mb is not None:
        gpu = ProcessGpuInfo(
            used_bytes=vram_mb * MIB,
            is_per_process=per_process,
            source=GpuQuerySource.NVML if per_process else GpuQuerySource.NVIDIA_SMI,
        )
    return Snapshot(ram_bytes=ram_mb * MIB, gpu=gpu, gpu_device=_device() if device else None)


def test_format_delta_with_and_without_vram() -> None:
    report = MemoryReport(_snap(100, 500), _snap(200, 1000))
    assert report.format_delta("alloc") == "  alloc: RAM +100 MB  |  VRAM +500 MB [per-process]\n"
    cpu = MemoryReport(_snap(100, None), _snap(130, None))
    assert cpu.format_delta("cpu") == "  cpu: RAM +30 MB\n"
    free = MemoryReport(_snap(130, None), _snap(100, None))
    assert free.format_delta("free") == "  free: RAM -30 MB\n"


def test_format_delta_signs_of_zero() -> None:
    same = MemoryReport(_snap(100, None), _snap(100, None))
    assert same.format_delta("z") == "  z: RAM +0 MB\n"
    tiny_negative = MemoryReport(Snapshot(ram_bytes=100 * MIB), Snapshot(ram_bytes=100 * MIB - 1))
    assert tiny_negative.format_delta("t") == "  t: RAM -0 MB\n"


def test_format_delta_device_wide_qualifier() -> None:
    report = MemoryReport(_snap(1, 10, per_process=False), _snap(1, 20, per_process=False))
    assert report.format_delta("x") == "  x: RAM +0 MB  |  VRAM +10 MB [device-wide]\n"


def test_format_before_after_both_lines() -> None:
    report = MemoryReport(_snap(100, 500), _snap(200, 1000))
    assert report.format_before_after("l") == (
        "  l: RAM 100 MB → 200 MB (+100 MB)\n"
        "  l: VRAM 500 MB → 1000 MB (+500 MB / 16384 MB) [per-process] [NVIDIA Test GPU]\n"
    )


def test_format_before_after_without_device_or_gpu() -> None:
    no_device = MemoryReport(_snap(100, 500, device=False), _snap(200, 1000, device=False))
    assert no_device.format_before_after("l") == (
        "  l: RAM 100 MB → 200 MB (+100 MB)\n  l: VRAM 500 MB → 1000 MB (+500 MB) [per-process]\n"
    )
    one_sided = MemoryReport(_snap(100, None), _snap(200, 1000))
    assert one_sided.format_before_after("l") == "  l: RAM 100 MB → 200 MB (+100 MB)\n"
    assert one_sided.vram_delta_mb() is None


def test_print_helpers_write_format_strings() -> None:
    report = MemoryReport(_snap(100, 500), _snap(200, 1000))
    out = io.StringIO()
    with redirect_stdout(out):
        report.print_delta("a")
        report.print_before_after("b")
    assert out.getvalue() == report.format_delta("a") + report.format_before_after("b")


def test_mb_accessors() -> None:
    snap = _snap(3, 5)
    assert snap.ram_mb() == 3.0
    assert snap.vram_mb() == 5.0
    assert _snap(3, None).vram_mb() is None
    report = MemoryReport(_snap(3, 5), _snap(4, 7))
    assert report.ram_delta_mb() == 1.0
    assert report.vram_delta_mb() == 2.0


@pytest.mark.parametrize(
    ("num_bytes", "text"),
    [
        (0, "0 MiB"),
        (512 * MIB + 5, "512 MiB"),
        (GIB - 1, "1023 MiB"),
        (GIB, "1.0 GiB"),
        (int(8.2 * GIB), "8.2 GiB"),
    ],
)
def test_format_vram(num_bytes: int, text: str) -> None:
    assert format_vram(num_bytes) == text


@pytest.mark.parametrize(
    ("num_bytes", "text"),
    [
        (None, "-"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.00 KiB"),
        (int(2.31 * GIB), "2.31 GiB"),
        (1024 * GIB - 1, "1.00 TiB"),
    ],
)
def test_format_bytes_iec(num_bytes: int | None, text: str) -> None:
    assert format_bytes_iec(num_bytes) == text


def test_format_bytes_iec_signed() -> None:
    assert format_bytes_iec(MIB, signed=True) == "+1.00 MiB"
    assert format_bytes_iec(-MIB, signed=True) == "-1.00 MiB"


def test_compact_json_escaping() -> None:
    value = {"a": 'q"\\\n\r\t', "b": "\x01\x7f\x85é", "c": [1, None, True, False], "d": {}}
    assert compact_json(value) == (
        '{"a":"q\\"\\\\\\n\\r\\t","b":"\\u0001\\u007f\\u0085é","c":[1,null,true,false],"d":{}}'
    )


def test_render_table_pads_by_utf8_bytes() -> None:
    lines = render_table(["PID", "NAME"], [["1", "é"], ["22", "ab"]])
    # "é" is two bytes: the NAME column is 4 wide (header), "é" is padded in characters.
    assert lines == ["PID  NAME", "1    é   ", "22   ab  "]
