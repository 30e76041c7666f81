"""What a user sees on a GPU sliced with MIG: budgets read this process's own MIG device
(named by ``CUDA_VISIBLE_DEVICES``, or found by its PID on every MIG device), never the
parent GPU's listing (refused to an unprivileged caller, and shared by every tenant), and
NVML's own reason when it refuses. Runs the real NVML backend against the compiled fake
library, whose parent handle answers NO_PERMISSION in MIG mode as the real one does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from pytest_hypomnesis.report.schema import load_report
from tests.helpers.fakenvml import (
    A100_UUID,
    MIG_A_UUID,
    MIG_B_UUID,
    SELF,
    FakeMigDevice,
    FakeNvml,
    FakeNvmlDevice,
    FakeProcess,
    inner_writer,
    linux_only,
)
from tests.helpers.pluginrun import assert_strict_fails
from tests.helpers.units import GIB, MIB

pytestmark = [pytest.mark.usefixtures("inner_pytester_run", "fresh_cuda_mapping"), linux_only]

OTHER_TENANT = 1  # PID 1 exists here: a real process of this namespace, not ours


def a100(self_on_b: int | None, *, refused: bool = False) -> list[FakeNvmlDevice]:
    """One A100 in MIG mode: MIG_A (slot 0, another tenant's 5 GiB) and MIG_B (slot 3;
    slots 1 and 2 are empty), this process on MIG_B when ``self_on_b`` is given."""
    errors = {"nvmlDeviceGetComputeRunningProcesses_v3": "NO_PERMISSION"} if refused else {}
    mine: Sequence[FakeProcess] = () if self_on_b is None else (FakeProcess(SELF, self_on_b),)
    return [
        FakeNvmlDevice(
            name="NVIDIA A100-SXM4-80GB",
            total_bytes=80 * GIB,
            used_bytes=12 * GIB,
            uuid=A100_UUID,
            mig_mode=True,
            mig_devices=(
                FakeMigDevice(
                    MIG_A_UUID,
                    1,
                    0,
                    name="NVIDIA A100-SXM4-80GB MIG 2g.20gb",
                    total_bytes=20 * GIB,
                    used_bytes=5 * GIB,
                    processes=(FakeProcess(OTHER_TENANT, 5 * GIB),),
                    errors=errors,
                ),
                FakeMigDevice(
                    MIG_B_UUID,
                    2,
                    0,
                    name="NVIDIA A100-SXM4-80GB MIG 3g.40gb",
                    total_bytes=40 * GIB,
                    used_bytes=self_on_b or 0,
                    processes=mine,
                    errors=errors,
                    mig_index=3,
                ),
            ),
        )
    ]


SPIKE_TEST = """
@pytest.mark.max_vram("1GiB")
def test_grows_3gib():
    write(SPIKE)
    time.sleep(0.06)
    write(IDLE)
    time.sleep(0.03)
"""


def suite(
    pytester: pytest.Pytester,
    idle: list[FakeNvmlDevice],
    body: str,
    spike: list[FakeNvmlDevice] | None = None,
) -> None:
    """The inner test file: ``body`` switching between ``idle`` and ``spike`` (default: this
    process 3 GiB up on MIG_B)."""
    spike = a100(3 * GIB + 100 * MIB) if spike is None else spike
    pytester.makepyfile(inner_writer(IDLE=idle, SPIKE=spike) + body)


def report(pytester: pytest.Pytester) -> Any:
    # load_report puts a reason the report gives once (no GPU measured) back in each record.
    return load_report(pytester.path / "out.json")


def caught_on_mig_b(pytester: pytest.Pytester, cuda_devices_line: str) -> Any:
    """Run SPIKE_TEST: its 3 GiB on MIG_B fail the 1 GiB budget, read on the MIG device the
    header names (``cuda_devices_line``). The report."""
    result = pytester.runpytest("--hypomnesis", "--hypomnesis-json=out.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines_random(
        [
            cuda_devices_line,
            "*max_vram: test used 3.00 GiB VRAM on GPU 0 (peak increase, NVML) > limit 1.00 GiB*",
        ]
    )
    data = report(pytester)
    (record,) = data["tests"]
    assert record["vram"]["devices"]["0"]["increase_bytes"] == 3 * GIB
    return data


def test_mig_uuid_in_cuda_visible_devices_is_read_on_that_mig_device(
    pytester: pytest.Pytester, fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    idle = a100(100 * MIB)
    fake_nvml.set(idle)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", MIG_B_UUID)
    suite(pytester, idle, SPIKE_TEST)
    data = caught_on_mig_b(
        pytester,
        f"hypomnesis: CUDA devices (CUDA_VISIBLE_DEVICES '{MIG_B_UUID}', *): "
        "0=MIG-bbbbbbbb (NVML 0, MIG)",
    )
    # The slice's own figures: its 40 GiB, its name, not the parent's 80 GiB.
    assert [(d["name"], d["total_bytes"]) for d in data["devices"]] == [
        ("NVIDIA A100-SXM4-80GB MIG 3g.40gb", 40 * GIB)
    ]


def test_mig_device_found_by_this_process_pid(
    pytester: pytest.Pytester, fake_nvml: FakeNvml
) -> None:
    # CUDA_VISIBLE_DEVICES unset: CUDA gives this process one MIG device, and NVML's first
    # (MIG_A, another tenant's 5 GiB) is not necessarily it. Read MIG_A and this test's
    # 3 GiB passed a 1 GiB budget as 0 B; the parent's listing refuses (Insufficient
    # Permissions) and would mix tenants.
    idle = a100(100 * MIB)
    fake_nvml.set(idle)
    suite(pytester, idle, SPIKE_TEST)
    data = caught_on_mig_b(
        pytester,
        "hypomnesis: CUDA devices (CUDA_VISIBLE_DEVICES unset, *): "
        "0=MIG-bbbbbbbb (NVML 0, MIG: found by this process's PID)",
    )
    assert [d["total_bytes"] for d in data["devices"]] == [40 * GIB]


MID_SESSION = """
def test_creates_its_cuda_context():
    write(IDLE_AFTER)
    time.sleep(0.03)

""" + SPIKE_TEST.replace("write(IDLE)", "write(IDLE_AFTER)")


def test_cuda_context_created_mid_session_is_found_at_the_next_span(
    pytester: pytest.Pytester, fake_nvml: FakeNvml
) -> None:
    # At session start this process has no CUDA context: no MIG device lists it. The first
    # test creates one on MIG_B; from the next test on, MIG_B is read.
    before = a100(None)
    fake_nvml.set(before)
    after = a100(100 * MIB)
    pytester.makepyfile(
        inner_writer(
            IDLE=before,
            SPIKE=a100(3 * GIB + 100 * MIB),
            IDLE_AFTER=after,
        )
        + MID_SESSION
    )
    result = pytester.runpytest("--hypomnesis", "--hypomnesis-json=out.json", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines_random(
        [
            "hypomnesis: CUDA devices (CUDA_VISIBLE_DEVICES unset, *): 0=MIG-aaaaaaaa "
            "(NVML 0, MIG: CUDA's first, this process not seen on any MIG device yet)",
            "*test_grows_3gib*max_vram: test used 3.00 GiB VRAM on GPU 0*",
        ]
    )
    first, second = report(pytester)["tests"]
    # The span that read MIG_A while the context appeared on MIG_B: unknown, said why.
    assert first["vram"]["devices"]["0"]["peak_bytes"] is None
    assert f"appeared on {MIG_B_UUID} during the span" in first["vram"]["unavailable_reason"]
    assert second["vram"]["devices"]["0"]["increase_bytes"] == 3 * GIB


def test_refused_mig_listings_keep_nvml_reason(
    pytester: pytest.Pytester, fake_nvml: FakeNvml
) -> None:
    # Every listing refused (a container without the MIG capability files): the budget is
    # not checked, with NVML's own words, never "NVML unavailable" or a silent 0.
    refused = a100(100 * MIB, refused=True)
    fake_nvml.set(refused)
    pytester.makepyfile(
        inner_writer(IDLE=refused, SPIKE=refused) + SPIKE_TEST.replace("write(SPIKE)", "pass")
    )
    result = pytester.runpytest("--hypomnesis", "--hypomnesis-json=out.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines_random(["*max_vram: not checked*Insufficient Permissions*"])
    assert "NVML unavailable" not in result.stdout.str()
    (record,) = report(pytester)["tests"]
    assert "Insufficient Permissions" in record["vram"]["unavailable_reason"]
    assert_strict_fails(pytester, "*could not be checked*Insufficient Permissions*")


def test_container_given_one_slice_reads_it_though_the_first_is_refused(
    pytester: pytest.Pytester, fake_nvml: FakeNvml
) -> None:
    # A Kubernetes pod given MIG_B only: NVML refuses MIG_A's listing (no capability for
    # that slice), and CUDA_VISIBLE_DEVICES is unset. Found by PID on MIG_B, it is read
    # there; the refusal of MIG_A does not make the budget "not checked".
    def pod(self_on_b: int) -> list[FakeNvmlDevice]:
        (gpu,) = a100(self_on_b)
        mig_a, mig_b = gpu.mig_devices
        refused = {"nvmlDeviceGetComputeRunningProcesses_v3": "NO_PERMISSION"}
        return [replace(gpu, mig_devices=(replace(mig_a, errors=refused), mig_b))]

    idle = pod(100 * MIB)
    fake_nvml.set(idle)
    suite(pytester, idle, SPIKE_TEST, spike=pod(3 * GIB + 100 * MIB))
    caught_on_mig_b(
        pytester,
        "hypomnesis: CUDA devices (*): 0=MIG-bbbbbbbb (NVML 0, MIG: found by this process's PID)",
    )
