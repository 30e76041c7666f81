"""CUDA device numbering: ``CUDA_VISIBLE_DEVICES`` / ``CUDA_DEVICE_ORDER`` onto NVML GPUs.

The parser and ``resolve`` are pure; ``visible_devices`` runs the real NVML backend
(nvidia-ml-py + ctypes) against the compiled fake library, which is also a fake libcuda
for the fastest-first order asked of the CUDA driver in a helper process.
"""

from __future__ import annotations

import os

import pytest

from pytest_hypomnesis.probe import nvml
from pytest_hypomnesis.probe.cuda_devices import (
    ParsedVisibleDevices,
    VisibleEntry,
    parse_cuda_visible_devices,
    resolve,
    visible_devices,
)
from pytest_hypomnesis.probe.nvml import NvmlGpu, NvmlMigDevice
from tests.helpers.fakenvml import (
    MIG_A_UUID,
    MIG_B_UUID,
    FakeMigDevice,
    FakeNvml,
    FakeNvmlDevice,
    default_uuid,
    linux_only,
)

# The CUDA-ordinal mapping is cached per process: read afresh for every test here.
pytestmark = pytest.mark.usefixtures("fresh_cuda_mapping")

U0 = "GPU-11111111-aaaa-4bbb-8ccc-000000000000"
U1 = "GPU-22222222-aaaa-4bbb-8ccc-000000000001"
U2 = "GPU-22223333-aaaa-4bbb-8ccc-000000000002"
U3 = "GPU-44444444-aaaa-4bbb-8ccc-000000000003"


def gpu(index: int, uuid: str, name: str = "NVIDIA A100", **kw: object) -> NvmlGpu:
    defaults: dict[str, object] = {
        "pci_bus_id": f"00000000:{index + 1:02X}:00.0",
        "mig_enabled": False,
        "mig_devices": (),
    }
    defaults.update(kw)
    return NvmlGpu(index, uuid, name=name, **defaults)  # type: ignore[arg-type]


FOUR = [gpu(0, U0), gpu(1, U1), gpu(2, U2), gpu(3, U3)]


def visible(value: str | None, gpus: list[NvmlGpu] = FOUR) -> tuple[list[str | None], str | None]:
    devices, note = resolve(parse_cuda_visible_devices(value), gpus)
    assert [d.cuda_ordinal for d in devices] == list(range(len(devices)))
    return [d.uuid for d in devices], note


# ---- the parser ---------------------------------------------------------------------------


def test_unset_means_every_gpu_and_empty_means_none() -> None:
    assert parse_cuda_visible_devices(None) is None
    assert parse_cuda_visible_devices("") == ParsedVisibleDevices(())
    assert parse_cuda_visible_devices("  ") == ParsedVisibleDevices(())


def test_parser_reads_each_form_and_stops_at_the_first_malformed_entry() -> None:
    parsed = parse_cuda_visible_devices(" 3, 1 ")
    assert parsed == ParsedVisibleDevices(
        (VisibleEntry("index", "3", 3), VisibleEntry("index", "1", 1))
    )
    parsed = parse_cuda_visible_devices(f"GPU-2222,{MIG_A_UUID},MIG-{U1}/7/0,foo,0")
    assert parsed is not None
    assert [e.kind for e in parsed.entries] == ["gpu_uuid", "mig_uuid", "mig_legacy"]
    assert parsed.entries[2] == VisibleEntry("mig_legacy", U1, None, 7, 0)
    assert parsed.stopped_at == "foo"
    # CUDA's documented example: "0,2,-1,1" makes 0 and 2 visible, 1 invisible.
    parsed = parse_cuda_visible_devices("0,2,-1,1")
    assert parsed is not None
    assert [e.index for e in parsed.entries] == [0, 2]
    assert parsed.stopped_at == "-1"
    # An entry that starts with digits is the integer they spell.
    parsed = parse_cuda_visible_devices("1abc")
    assert parsed is not None and parsed.entries == (VisibleEntry("index", "1", 1),)
    for bad in ("GPU-", "MIG-", "MIG-GPU-x/1", "MIG-GPU-/1/0", "gpu-1111", ",0"):
        parsed = parse_cuda_visible_devices(bad)
        assert parsed is not None and parsed.entries == () and parsed.stopped_at is not None, bad


# ---- resolve: what a CUDA program started with that value sees ------------------------


def test_reordered_indices_number_gpus_in_the_listed_order() -> None:
    assert visible("3,1") == ([U3, U1], None)
    assert visible(None) == ([U0, U1, U2, U3], None)
    uuids, note = visible("")
    assert uuids == [] and note is not None and "empty" in note


def test_an_invalid_entry_hides_it_and_everything_after_it() -> None:
    uuids, note = visible("0,2,-1,1")
    assert uuids == [U0, U2]
    assert note is not None and "'-1'" in note and "later entries are ignored" in note
    uuids, note = visible("1,7,0")  # out of range
    assert uuids == [U1] and note is not None and "'7'" in note


def test_uuid_prefixes_must_name_one_gpu() -> None:
    assert visible("GPU-4444,GPU-11111111-aaaa")[0] == [U3, U0]
    uuids, note = visible("GPU-4444,GPU-2222,GPU-1111")  # GPU-2222 matches U1 and U2
    assert uuids == [U3]
    assert note is not None and "GPU-2222" in note and "names no single GPU" in note


def test_duplicates_hide_every_gpu_and_indices_do_not_mix_with_uuids() -> None:
    uuids, note = visible("1,1")
    assert uuids == [] and note is not None and "twice" in note
    uuids, note = visible(f"0,{U2}")
    assert uuids == [U0] and note is not None and "mixes" in note


def test_mig_devices_by_uuid_legacy_form_and_mig_mode() -> None:
    migs = (
        NvmlMigDevice(MIG_A_UUID, 0, 1, 0, "A100 MIG 3g.40gb"),
        NvmlMigDevice(MIG_B_UUID, 1, 2, 0, "A100 MIG 3g.40gb"),
    )
    gpus = [gpu(0, U0), gpu(1, U1, mig_enabled=True, mig_devices=migs)]
    devices, note = resolve(parse_cuda_visible_devices(MIG_B_UUID), gpus)
    assert note is None
    (mig,) = devices
    assert (mig.cuda_ordinal, mig.uuid, mig.nvml_index, mig.parent_uuid, mig.mig_index) == (
        0,
        MIG_B_UUID,
        1,
        U1,
        1,
    )
    assert mig.is_mig and mig.pci_bus_id == "00000000:02:00.0"
    assert visible(f"MIG-{U1}/1/0", gpus)[0] == [MIG_A_UUID]
    # CUDA enumerates one MIG device: the second named one is not visible.
    uuids, note = visible(f"{MIG_A_UUID},{MIG_B_UUID}", gpus)
    assert uuids == [MIG_A_UUID] and note is not None and "one MIG device" in note
    # A GPU in MIG mode named whole shows as its first MIG device, and hides the others.
    uuids, note = visible("0,1", gpus)
    assert uuids == [MIG_A_UUID] and note is not None and "MIG mode" in note
    assert visible(None, [gpus[1]]) == ([MIG_A_UUID], None)
    empty_mig = [gpu(0, U0, mig_enabled=True)]
    uuids, note = visible(None, empty_mig)
    assert uuids == [] and note is not None and "no MIG device" in note


# ---- visible_devices through the fake NVML (and fake libcuda) --------------------------


def env(**values: str) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")
    }
    base.update(values)
    return base


@linux_only
def test_nvml_inventory_reads_uuid_pci_and_mig(fake_nvml: FakeNvml) -> None:
    fake_nvml.set(
        [
            FakeNvmlDevice(name="NVIDIA L4", uuid=U0, pci_bus_id="00000000:3B:00.0"),
            FakeNvmlDevice(
                name="NVIDIA A100",
                mig_mode=True,
                mig_devices=(FakeMigDevice(MIG_A_UUID, 1, 0), FakeMigDevice(MIG_B_UUID, 2, 0)),
            ),
            FakeNvmlDevice(name="NVIDIA A100", mig_mode=False),
        ]
    )
    first, second, third = nvml.inventory()
    assert (first.uuid, first.pci_bus_id, first.name, first.mig_enabled) == (
        U0,
        "00000000:3B:00.0",
        "NVIDIA L4",
        False,
    )
    assert second.uuid == default_uuid(1) and second.pci_bus_id == "00000000:02:00.0"
    assert second.mig_enabled
    assert [
        (m.uuid, m.mig_index, m.gpu_instance_id, m.compute_instance_id) for m in second.mig_devices
    ] == [
        (MIG_A_UUID, 0, 1, 0),
        (MIG_B_UUID, 1, 2, 0),
    ]
    assert not third.mig_enabled and third.mig_devices == ()


@linux_only
def test_identical_gpus_go_in_pci_order_without_asking_cuda(fake_nvml: FakeNvml) -> None:
    # NVML index 0 sits on a later bus than index 1: CUDA ordinal 0 is NVML 1.
    fake_nvml.set(
        [
            FakeNvmlDevice(uuid=U0, pci_bus_id="00000000:81:00.0"),
            FakeNvmlDevice(uuid=U1, pci_bus_id="00000000:0A:00.0"),
        ]
    )
    result = visible_devices(env())
    assert [(d.cuda_ordinal, d.nvml_index, d.uuid) for d in result.devices] == [
        (0, 1, U1),
        (1, 0, U0),
    ]
    assert result.order == "fastest first = PCI bus order (identical GPUs)"
    assert result.note is None
    assert "0=GPU-22222222 (NVML 1)" in result.describe()
    pinned = visible_devices(env(CUDA_VISIBLE_DEVICES="1"))
    assert [(d.cuda_ordinal, d.nvml_index) for d in pinned.devices] == [(0, 0)]


@linux_only
def test_different_gpus_ask_the_cuda_driver_for_fastest_first(fake_nvml: FakeNvml) -> None:
    devices = [
        FakeNvmlDevice(name="NVIDIA T4", uuid=U0),
        FakeNvmlDevice(name="NVIDIA H100", uuid=U1),
    ]
    fake_nvml.set(devices, cuda_order=[1, 0])
    result = visible_devices(env())
    assert result.order == "fastest first (CUDA driver)"
    assert [(d.nvml_index, d.name) for d in result.devices] == [
        (1, "NVIDIA H100"),
        (0, "NVIDIA T4"),
    ]
    # Integer entries count in CUDA's order: "0" is the H100.
    assert [d.nvml_index for d in visible_devices(env(CUDA_VISIBLE_DEVICES="0")).devices] == [1]
    by_pci = visible_devices(env(CUDA_DEVICE_ORDER="PCI_BUS_ID", CUDA_VISIBLE_DEVICES="0"))
    assert by_pci.order == "PCI bus order (CUDA_DEVICE_ORDER=PCI_BUS_ID)"
    assert [d.nvml_index for d in by_pci.devices] == [0]


@linux_only
def test_without_libcuda_pci_order_is_assumed_and_said(
    fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    fake_nvml.set([FakeNvmlDevice(name="NVIDIA T4"), FakeNvmlDevice(name="NVIDIA H100")])
    result = visible_devices(env(HYPOMNESIS_CUDA_LIBRARY="/nonexistent/libcuda.so.1"))
    assert result.order == "PCI bus order (assumed)"
    assert [d.nvml_index for d in result.devices] == [0, 1]
    assert result.note is not None
    assert "CUDA's fastest-first order unknown" in result.note
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in result.note
    # A driver that answers with no device (cuInit: CUDA_ERROR_NO_DEVICE) is said too.
    fake_nvml.set([FakeNvmlDevice(name="NVIDIA T4"), FakeNvmlDevice(name="NVIDIA H100")])
    no_device = visible_devices(env(HYPOMNESIS_CUDA_LIBRARY=str(fake_nvml.library)))
    assert no_device.note is not None
    assert "cuInit CUDA_ERROR_NO_DEVICE" in no_device.note


@linux_only
def test_mig_uuid_in_cuda_visible_devices_maps_to_the_mig_handle(fake_nvml: FakeNvml) -> None:
    fake_nvml.set(
        [
            FakeNvmlDevice(uuid=U0),
            FakeNvmlDevice(uuid=U1, mig_mode=True, mig_devices=(FakeMigDevice(MIG_A_UUID, 3, 0),)),
        ]
    )
    (mig,) = visible_devices(env(CUDA_VISIBLE_DEVICES=MIG_A_UUID)).devices
    assert (mig.uuid, mig.parent_uuid, mig.nvml_index, mig.mig_index) == (MIG_A_UUID, U1, 1, 0)
    (legacy,) = visible_devices(env(CUDA_VISIBLE_DEVICES=f"MIG-{U1}/3/0")).devices
    assert legacy.uuid == MIG_A_UUID


@linux_only
def test_without_nvml_nothing_is_mapped_and_the_reason_is_kept(fake_nvml: FakeNvml) -> None:
    fake_nvml.fail("*", "DRIVER_NOT_LOADED")
    result = visible_devices(env(CUDA_VISIBLE_DEVICES="0"))
    assert not result.mapped and result.devices == ()
    assert result.reason == "NVML: Driver Not Loaded"
    assert "not mapped (NVML: Driver Not Loaded)" in result.describe()
