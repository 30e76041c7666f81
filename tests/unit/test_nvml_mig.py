"""NVML on a GPU in MIG mode, through nvidia-ml-py against the compiled fake library, which
answers as nvml.h documents: the parent's process queries refused (NO_PERMISSION) to an
unprivileged caller, ``nvmlDeviceGetMaxMigDeviceCount`` 0 without MIG, NOT_FOUND for an
empty MIG slot; and the search for this process's MIG device by PID."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis.model import Snapshot
from pytest_hypomnesis.probe import cuda_devices, nvml
from tests.helpers.fakenvml import (
    A100_UUID,
    MIG_A_UUID,
    MIG_B_UUID,
    SELF,
    FakeMigDevice,
    FakeNvml,
    FakeNvmlDevice,
    FakeProcess,
    linux_only,
)
from tests.helpers.units import GIB, MIB

pytestmark = [pytest.mark.usefixtures("fresh_cuda_mapping"), linux_only]


def mig_gpu(self_on_b: bool) -> list[FakeNvmlDevice]:
    mine = (FakeProcess(SELF, 2 * GIB),) if self_on_b else ()
    return [
        FakeNvmlDevice(uuid="GPU-0000aaaa-0000-4000-8000-000000000000", mig_mode=None),
        FakeNvmlDevice(
            uuid=A100_UUID,
            mig_mode=True,
            mig_devices=(
                FakeMigDevice(MIG_A_UUID, 1, 0, processes=(FakeProcess(1, GIB),)),
                FakeMigDevice(MIG_B_UUID, 2, 0, processes=mine, mig_index=4),
            ),
        ),
    ]


def test_fake_answers_mig_queries_as_nvml_h_documents(fake_nvml: FakeNvml) -> None:
    fake_nvml.set(mig_gpu(self_on_b=True))
    import pynvml

    nvml.device_count()  # initialises NVML through the backend
    plain, parent = (pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(2))
    # "Returns zero if MIG is not supported or enabled."
    assert pynvml.nvmlDeviceGetMaxMigDeviceCount(plain) == 0
    assert pynvml.nvmlDeviceGetMaxMigDeviceCount(parent) == 7
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetMigDeviceHandleByIndex(plain, 0)
    # Slot 4 holds MIG_B; slots 1-3 and 5-6 are empty; 7 is past the count.
    mig_b = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, 4)
    assert pynvml.nvmlDeviceGetUUID(mig_b) == MIG_B_UUID
    assert pynvml.nvmlDeviceGetIndex(mig_b) == 4
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, 2)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, 7)
    # The parent's listing needs privileges in MIG mode; the MIG device's is its own, with
    # its GPU and compute instance ids.
    with pytest.raises(pynvml.NVMLError_NoPermission):
        pynvml.nvmlDeviceGetComputeRunningProcesses(parent)
    (row,) = pynvml.nvmlDeviceGetComputeRunningProcesses(mig_b)
    assert (row.pid, row.usedGpuMemory, row.gpuInstanceId, row.computeInstanceId) == (
        os.getpid(),
        2 * GIB,
        2,
        0,
    )


def test_parent_queries_keep_nvml_reason(fake_nvml: FakeNvml) -> None:
    fake_nvml.set(mig_gpu(self_on_b=True))
    with pytest.raises(BackendFailure) as caught:
        nvml.process_used_bytes(1, os.getpid())
    assert (caught.value.backend, caught.value.reason) == ("NVML", "Insufficient Permissions")
    info = Snapshot.now(1)
    assert info.gpu_unavailable_reason is not None
    assert "NVML: Insufficient Permissions" in info.gpu_unavailable_reason
    assert "NVML unavailable" not in info.gpu_unavailable_reason


def test_search_finds_this_process_on_a_sparse_slot(fake_nvml: FakeNvml) -> None:
    fake_nvml.set(mig_gpu(self_on_b=True))
    hit, refused = nvml.find_mig_device_of(os.getpid())
    assert hit is not None and refused == ()
    gpu, mig = hit
    assert (gpu.nvml_index, gpu.uuid, mig.uuid, mig.mig_index) == (1, A100_UUID, MIG_B_UUID, 4)
    assert nvml.find_mig_device_of(os.getpid() + 1_000_000)[0] is None


def test_mapping_moves_from_cudas_first_to_the_one_found(
    fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # the parent, named whole
    fake_nvml.set(mig_gpu(self_on_b=False))
    (first,) = cuda_devices.visible_devices().devices
    assert (first.uuid, first.mig_source) == (MIG_A_UUID, "first")
    assert cuda_devices.find_own_mig() is None  # no context yet: nothing moves
    fake_nvml.set(mig_gpu(self_on_b=True))
    found = cuda_devices.find_own_mig()
    assert found is not None
    assert (found.cuda_ordinal, found.uuid, found.parent_uuid, found.nvml_index) == (
        0,
        MIG_B_UUID,
        A100_UUID,
        1,
    )
    assert found.mig_source == "found" and found.mig_index == 4
    (now,) = cuda_devices.visible_devices().devices
    assert now == found
    assert cuda_devices.find_own_mig() is None  # found: never searched again


def test_named_mig_device_is_never_searched(
    fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", MIG_A_UUID)
    fake_nvml.set(mig_gpu(self_on_b=True))
    (named,) = cuda_devices.visible_devices().devices
    assert (named.uuid, named.mig_source) == (MIG_A_UUID, "named")
    calls = fake_nvml.stats().calls
    assert cuda_devices.find_own_mig() is None
    assert fake_nvml.stats().calls == calls


@pytest.mark.parametrize("defines", [(), ("NO_V3",)])
def test_search_through_a_long_listing_and_without_v3(
    fake_nvml_factory: Callable[..., FakeNvml], defines: tuple[str, ...]
) -> None:
    # 40 other processes before this one's row: the kept buffer grows; a driver without
    # the _v3 query is searched through the older ones.
    fake = fake_nvml_factory(defines=defines)
    crowd = (*(FakeProcess(1, MIB) for _ in range(40)), FakeProcess(SELF, GIB))
    fake.set(
        [
            FakeNvmlDevice(
                uuid=A100_UUID,
                mig_mode=True,
                mig_devices=(FakeMigDevice(MIG_A_UUID, 1, 0, processes=crowd),),
            )
        ]
    )
    hit, _ = nvml.find_mig_device_of(os.getpid())
    assert hit is not None and hit[1].uuid == MIG_A_UUID
    assert nvml.find_mig_device_of(os.getpid() + 1_000_000)[0] is None
