"""The probe chain's device count and device info on every platform, driven through
the public functions with every backend call scripted."""

from __future__ import annotations

import pytest

import pytest_hypomnesis as hmn
from pytest_hypomnesis.probe.readings import SmiDeviceReading
from tests.helpers.chainmachine import (
    SMI_ALL,
    Machine,
    device,
    nvml_reading,
)
from tests.helpers.units import GIB, MIB

# --- checklist 10: device_count -------------------------------------------------------------


def test_device_count_apple_mac_is_one_without_nvml(chain_machine: Machine) -> None:
    chain_machine.apple()
    chain_machine.forbid("nvml.device_count", "dxgi.nvidia_adapter_count", *SMI_ALL)
    assert hmn.device_count() == 1


@pytest.mark.parametrize(
    ("platform", "nvml_count", "dxgi_count", "expected", "dxgi_asked"),
    [
        pytest.param("linux", 2, None, 2, False, id="linux-nvml"),
        pytest.param("linux", None, 3, 0, False, id="linux-no-dxgi"),
        pytest.param("darwin", None, 3, 0, False, id="intel-mac-nothing"),
        pytest.param("win32", 3, 1, 3, False, id="windows-nvml-first"),
        pytest.param("win32", None, 2, 2, True, id="windows-dxgi"),
        pytest.param("win32", None, 0, 0, True, id="windows-dxgi-zero"),
        pytest.param("win32", None, None, 0, True, id="windows-nothing"),
    ],
)
def test_device_count_chain_never_uses_smi(
    chain_machine: Machine,
    platform: str,
    nvml_count: int | None,
    dxgi_count: int | None,
    expected: int,
    dxgi_asked: bool,
) -> None:
    chain_machine.platform(platform)
    chain_machine.forbid(*SMI_ALL)
    if nvml_count is not None:
        chain_machine.returns("nvml.device_count", nvml_count)
    if dxgi_count is not None:
        chain_machine.returns("dxgi.nvidia_adapter_count", dxgi_count)
    assert hmn.device_count() == expected
    assert chain_machine.called("nvml.device_count")
    assert chain_machine.called("dxgi.nvidia_adapter_count") is dxgi_asked


# --- checklist 11: device_info --------------------------------------------------------------


def test_device_info_macos_metal_first_for_index_zero_only(chain_machine: Machine) -> None:
    chain_machine.apple()
    apple = device(0, "Apple M3 Pro")
    chain_machine.returns("metal.device_info", apple)
    chain_machine.forbid("nvml.device_query", *SMI_ALL)
    assert hmn.device_info(0) == apple

    # Index 1 of a Mac is never Metal's: the chain goes straight to the NVIDIA backends.
    chain_machine.returns("nvml.device_query", nvml_reading())
    chain_machine.calls.clear()
    chain_machine.forbid("metal.device_info")
    chain_machine.allow("nvml.device_query")
    assert hmn.device_info(1).name == "NVIDIA GeForce RTX 4090"
    assert not chain_machine.called("dxgi.adapter_name")


def test_device_info_macos_metal_failure_falls_to_nvml(chain_machine: Machine) -> None:
    chain_machine.apple()
    chain_machine.returns("nvml.device_query", nvml_reading())
    info = hmn.device_info(0)
    assert (info.name, info.reserved_bytes) == ("NVIDIA GeForce RTX 4090", 300 * MIB)
    assert chain_machine.order() == ["metal.device_info", "nvml.device_query"]


def test_device_info_windows_dxgi_name_replaces_nvml_name(chain_machine: Machine) -> None:
    chain_machine.platform("win32")
    chain_machine.returns("nvml.device_query", nvml_reading("NVIDIA GeForce RTX 4090 (NVML)"))
    chain_machine.answers("dxgi.adapter_name", lambda index: f"DXGI adapter {index}")
    chain_machine.forbid("dxgi.device_info", *SMI_ALL)
    info = hmn.device_info(1)
    assert info == hmn.GpuDeviceInfo(
        index=1,
        name="DXGI adapter 1",
        total_bytes=24 * GIB,
        free_bytes=20 * GIB,
        used_bytes=4 * GIB,
        reserved_bytes=300 * MIB,
        driver_version="566.36",
    )
    assert chain_machine.args_of("dxgi.adapter_name") == [(1,)]


def test_device_info_windows_dxgi_name_failure_keeps_nvml_name(chain_machine: Machine) -> None:
    chain_machine.platform("win32")
    chain_machine.returns("nvml.device_query", nvml_reading())
    info = hmn.device_info(0)
    assert (info.name, info.reserved_bytes, info.driver_version) == (
        "NVIDIA GeForce RTX 4090",
        300 * MIB,
        "566.36",
    )
    assert chain_machine.order() == ["nvml.device_query", "dxgi.adapter_name"]


def test_device_info_linux_never_asks_dxgi_for_a_name(chain_machine: Machine) -> None:
    chain_machine.returns("nvml.device_query", nvml_reading())
    chain_machine.returns("dxgi.adapter_name", "must not be used")
    assert hmn.device_info(0).name == "NVIDIA GeForce RTX 4090"
    assert chain_machine.order() == ["nvml.device_query"]


def test_device_info_windows_dxgi_only_when_nvml_fails(chain_machine: Machine) -> None:
    chain_machine.platform("win32")
    only_dxgi = device(0, "NVIDIA RTX A2000", used_bytes=512 * MIB)
    chain_machine.returns("dxgi.device_info", only_dxgi)
    chain_machine.forbid(*SMI_ALL)
    assert hmn.device_info(0) == only_dxgi
    assert chain_machine.order() == ["nvml.device_query", "dxgi.device_info"]


@pytest.mark.parametrize("platform", ["linux", "win32"])
def test_device_info_smi_is_last(chain_machine: Machine, platform: str) -> None:
    chain_machine.platform(platform)
    chain_machine.returns("smi.device_query", SmiDeviceReading(3 * GIB, 8 * GIB, "566.36"))
    info = hmn.device_info(0)
    assert info == hmn.GpuDeviceInfo(
        index=0,
        name=None,
        total_bytes=8 * GIB,
        free_bytes=5 * GIB,
        used_bytes=3 * GIB,
        reserved_bytes=None,
        driver_version="566.36",
    )
    expected = ["nvml.device_query", "smi.device_query"]
    if platform == "win32":
        expected.insert(1, "dxgi.device_info")
    assert chain_machine.order() == expected
