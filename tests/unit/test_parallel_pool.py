"""The pinning pool: whole GPUs and MIG devices from ``CUDA_VISIBLE_DEVICES``, and one
device's figures for admission (a MIG device's are its slice's)."""

from __future__ import annotations

import pytest

from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis.parallel.gpus import Gpu, GpuPoolError, read_device, visible_gpus
from pytest_hypomnesis.probe.cuda_devices import visible_devices
from tests.helpers.fakenvml import (
    MIG_A_UUID,
    MIG_B_UUID,
    FakeMigDevice,
    FakeNvml,
    FakeNvmlDevice,
    FakeProcess,
    posix_only,
)
from tests.helpers.units import GIB

pytestmark = posix_only

U0 = "GPU-11111111-aaaa-4bbb-8ccc-000000000000"
U1 = "GPU-22222222-aaaa-4bbb-8ccc-000000000001"


def _mig_machine(fake_nvml: FakeNvml) -> None:
    """GPU 0 in MIG mode with two 5 GiB slices (pid 4242 holds 1 GiB on the second), and
    GPU 1 whole."""
    migs = (
        FakeMigDevice(MIG_A_UUID, 1, 0, total_bytes=5 * GIB, used_bytes=0, mig_index=0),
        FakeMigDevice(
            MIG_B_UUID,
            2,
            0,
            total_bytes=5 * GIB,
            used_bytes=GIB,
            processes=(FakeProcess(4242, GIB),),
            mig_index=1,
        ),
    )
    fake_nvml.set(
        [
            FakeNvmlDevice(uuid=U0, total_bytes=20 * GIB, mig_mode=True, mig_devices=migs),
            FakeNvmlDevice(uuid=U1, total_bytes=16 * GIB),
        ]
    )


def test_mig_devices_in_the_list_are_a_pool_each_resolved_alone(
    fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    _mig_machine(fake_nvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{MIG_B_UUID},{MIG_A_UUID},{U1}")
    # One CUDA process sees only the first MIG device; each worker gets one entry alone.
    assert [d.uuid for d in visible_devices().devices] == [MIG_B_UUID]
    assert visible_gpus() == [
        Gpu(0, MIG_B_UUID, mig=True),
        Gpu(0, MIG_A_UUID, mig=True),
        Gpu(1, U1),
    ]


def test_a_visible_gpu_in_mig_mode_is_its_first_mig_device(
    fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    _mig_machine(fake_nvml)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpus() == [Gpu(0, MIG_A_UUID, mig=True)]  # as CUDA shows it, hiding GPU 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (f"{MIG_A_UUID},{MIG_A_UUID}", f"names {MIG_A_UUID} twice"),
        (
            f"{MIG_A_UUID},MIG-00000000-0000-0000-0000-000000000009",
            "names no GPU or MIG device here",
        ),
    ],
)
def test_a_mig_pool_that_cannot_be_shared_out_says_why(
    fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    _mig_machine(fake_nvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    with pytest.raises(GpuPoolError, match=message):
        visible_gpus()


def test_a_mig_device_is_read_as_its_own_slice(fake_nvml: FakeNvml) -> None:
    _mig_machine(fake_nvml)
    slice_b = read_device(0, MIG_B_UUID)
    assert (slice_b.total_bytes, slice_b.used_bytes) == (5 * GIB, GIB)
    assert slice_b.process_bytes == {4242: GIB}
    assert read_device(0, MIG_A_UUID).process_bytes == {}
    # The parent GPU in MIG mode does not list processes to an unprivileged caller.
    with pytest.raises(BackendFailure, match="Insufficient Permissions"):
        read_device(0)
