"""The macOS backend (ledger footprint, sysctl, proc_listpids) and ``phys_footprint`` RSS,
driven through fake libSystem calls on any OS (parity §4.7, checklist 8, 10-12, 24)."""

from __future__ import annotations

import ctypes
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_hypomnesis import GpuQuerySource, RamError
from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis.probe import metal, rss_macos
from tests.helpers.units import GIB, MIB

TEMPLATE = ["cpu_time", "phys_mem", "graphics_footprint", "neural_footprint"]


@pytest.fixture(autouse=True)
def _fresh_index() -> Iterator[None]:
    metal._reset_for_tests()
    yield
    metal._reset_for_tests()


@dataclass
class FakeLib:
    brand: str | None = "Apple M3 Pro"
    memsize: int | None = 36 * GIB
    template: list[str] | None = field(default_factory=lambda: list(TEMPLATE))
    ledgers: dict[int, list[int] | int] = field(default_factory=dict)
    pids: list[int] | None = field(default_factory=list)
    paths: dict[int, str] = field(default_factory=dict)
    working_set: int | None = 28 * GIB
    template_calls: int = 0

    def sysctl_string(self, name: str) -> str | None:
        assert name == "machdep.cpu.brand_string"
        return self.brand

    def sysctl_u64(self, name: str) -> int | None:
        assert name == "hw.memsize"
        return self.memsize

    def ledger_template(self) -> list[str] | None:
        self.template_calls += 1
        return self.template

    def ledger_balances(self, pid: int) -> tuple[list[int] | None, int]:
        found = self.ledgers.get(pid, metal.ESRCH)
        if isinstance(found, int):
            return None, found
        return found, 0

    def list_pids(self) -> list[int] | None:
        return self.pids

    def pid_path(self, pid: int) -> str | None:
        return self.paths.get(pid)

    def recommended_max_working_set(self) -> int | None:
        return self.working_set


def _ledger(footprint: int) -> list[int]:
    return [11, 22, footprint, 44]


def test_decode_template_rows() -> None:
    raw = b"".join(
        name.encode().ljust(32, b"\0") + b"group".ljust(32, b"\0") + b"bytes".ljust(32, b"\0")
        for name in TEMPLATE
    )
    assert metal.decode_template_names(raw, 4) == TEMPLATE
    assert metal.decode_template_names(raw, 99) == TEMPLATE  # count larger than the buffer
    assert metal.decode_template_names(raw, -1) == []
    assert metal.find_entry_index(TEMPLATE) == 2
    assert metal.find_entry_index(["graphics_footprint_x"]) is None


def test_decode_entry_v2_rows() -> None:
    rows = b"".join(struct.pack("=q", v) + b"\x07" * 80 for v in (5, -3, 2**40))
    assert metal.decode_balances(rows, 3) == [5, -3, 2**40]
    assert metal.decode_balances(rows, 2) == [5, -3]


def test_apple_silicon_detection() -> None:
    assert metal.is_apple_silicon(FakeLib())
    assert not metal.is_apple_silicon(FakeLib(brand="Intel(R) Core(TM) i9-9880H"))
    assert not metal.is_apple_silicon(FakeLib(brand=None))


def test_device_info_unified_memory() -> None:
    info = metal.device_info(FakeLib())
    assert info.index == 0
    assert info.name == "Apple M3 Pro"
    assert (info.total_bytes, info.free_bytes, info.used_bytes) == (36 * GIB, 28 * GIB, 8 * GIB)
    assert info.reserved_bytes is None and info.driver_version is None


def test_device_info_without_metal_free_is_total() -> None:
    info = metal.device_info(FakeLib(working_set=None))
    assert (info.free_bytes, info.used_bytes) == (36 * GIB, 0)
    assert metal.device_info(FakeLib(working_set=99 * GIB)).used_bytes == 0


def test_device_info_failures() -> None:
    with pytest.raises(BackendFailure, match="not an Apple Silicon Mac"):
        metal.device_info(FakeLib(brand="Intel"))
    with pytest.raises(BackendFailure, match=r"hw\.memsize"):
        metal.device_info(FakeLib(memsize=None))


def test_footprint_index_looked_up_once_by_name() -> None:
    lib = FakeLib(ledgers={7: _ledger(3 * MIB)})
    assert metal.process_footprint(7, lib) == 3 * MIB
    assert metal.process_footprint(7, lib) == 3 * MIB
    assert lib.template_calls == 1


@pytest.mark.parametrize(
    ("ledgers", "reason"),
    [
        ({7: metal.EPERM}, "denied (EPERM)"),
        ({7: metal.ESRCH}, "exited (ESRCH)"),
        ({7: 22}, "failed (errno 22)"),
        ({7: [1, 2]}, "has 2 entries, none at 2"),
        ({7: _ledger(-1)}, "negative graphics_footprint"),
    ],
)
def test_footprint_failures(ledgers: dict[int, list[int] | int], reason: str) -> None:
    with pytest.raises(BackendFailure) as info:
        metal.process_footprint(7, FakeLib(ledgers=ledgers))
    assert info.value.backend == "Metal"
    assert reason in info.value.reason


def test_footprint_without_entry() -> None:
    with pytest.raises(BackendFailure, match="no graphics_footprint entry"):
        metal.process_footprint(7, FakeLib(template=["cpu_time"]))
    metal._reset_for_tests()
    with pytest.raises(BackendFailure, match="no graphics_footprint entry"):
        metal.process_footprint(7, FakeLib(template=None))


def test_listing_skips_zero_denied_exited_and_sorts() -> None:
    lib = FakeLib(
        pids=[0, 900, 12, 13, 14, 15, 12],
        ledgers={
            900: _ledger(2 * GIB),
            12: _ledger(5 * MIB),
            13: _ledger(0),
            14: metal.EPERM,
            16: _ledger(1),
        },
        paths={900: "/Applications/Safari.app/Contents/MacOS/Safari"},
    )
    rows = metal.list_processes(lib)
    assert [(r.pid, r.name, r.used_bytes) for r in rows] == [
        (12, None, 5 * MIB),
        (900, "Safari", 2 * GIB),
    ]
    assert all(r.source is GpuQuerySource.METAL and r.shared_used_bytes == 0 for r in rows)


def test_listing_failures() -> None:
    with pytest.raises(BackendFailure, match="proc_listpids failed"):
        metal.list_processes(FakeLib(pids=None))
    assert metal.list_processes(FakeLib(pids=[])) == []


def test_default_api_is_macos_only() -> None:
    if sys.platform == "darwin":
        pytest.skip("checks the non-macOS refusal")
    assert metal.is_apple_silicon() is False
    with pytest.raises(BackendFailure, match="only on macOS"):
        metal.device_info()


# --- phys_footprint ---------------------------------------------------------------------


def test_task_vm_info_offset() -> None:
    assert rss_macos.PHYS_FOOTPRINT_OFFSET == 144
    assert rss_macos.TASK_VM_INFO_PURGEABLE == 22


def test_phys_footprint_read_from_buffer() -> None:
    def fake_task_info(task: object, flavor: int, buf: Any, count: Any) -> int:
        assert flavor == 22
        words = ctypes.cast(buf, ctypes.POINTER(ctypes.c_uint32))
        value = 987 * MIB
        words[36], words[37] = value & 0xFFFFFFFF, value >> 32
        words[4] = 1  # resident_size, ignored
        ctypes.cast(count, ctypes.POINTER(ctypes.c_uint32))[0] = 93
        return 0

    assert rss_macos.phys_footprint_from(fake_task_info, 259) == 987 * MIB


def test_phys_footprint_error_texts() -> None:
    with pytest.raises(RamError) as info:
        rss_macos.phys_footprint_from(lambda *a: 5, 259)
    assert str(info.value) == (
        "RAM query failed: task_info(TASK_VM_INFO_PURGEABLE) failed (kern_return = 5)"
    )

    def old_kernel(task: object, flavor: int, buf: Any, count: Any) -> int:
        ctypes.cast(count, ctypes.POINTER(ctypes.c_uint32))[0] = 37
        return 0

    with pytest.raises(RamError, match="too few for phys_footprint"):
        rss_macos.phys_footprint_from(old_kernel, 259)
