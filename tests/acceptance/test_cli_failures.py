"""``hmn`` never states a fact that was not measured: when a source fails it says what
failed on stderr and exits 1 (2 for ``hmn watch``, its hard-error status); where the source
answered, the output is the crate's byte for byte. Impossible device figures are failures
of the backend that gave them, never readings."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pytest_hypomnesis._errors import NoGpuSourceError
from pytest_hypomnesis.cli import build_parser, ps
from pytest_hypomnesis.model import GpuProcessEntry
from pytest_hypomnesis.probe import chain, nvml, smi
from tests.helpers.fakenvml import NOT_AVAILABLE, FakeNvml, FakeNvmlDevice, FakeProcess
from tests.helpers.fakesmi import FakeSmi
from tests.helpers.hmnrun import GHOST_PID, needs_hmn, run_hmn
from tests.helpers.units import GIB

SMI_BROKEN = "nvidia-smi: exited with status 9"


@pytest.fixture
def env(fake_nvml: FakeNvml, fake_smi: FakeSmi) -> dict[str, str]:
    """The fake NVML and the fake nvidia-smi, both answering until a test breaks one."""
    return {**fake_smi.env, **fake_nvml.env, "HYPOMNESIS_SMI_TIMEOUT": "1"}


def broken_smi(fake_smi: FakeSmi, how: str) -> str:
    """Break nvidia-smi as real ones break; the reason hmn should print."""
    if how == "absent":
        fake_smi.remove()
        return "nvidia-smi: not found on PATH"
    if how == "failing":
        fake_smi.set_gpu("", exit_code=9, stderr="NVIDIA-SMI has failed\n")
        fake_smi.set_apps("", exit_code=9, stderr="NVIDIA-SMI has failed\n")
        return "nvidia-smi: exited with status 9: NVIDIA-SMI has failed"
    if how == "garbage":
        fake_smi.set_gpu(b"\xff\xfe garbage\n")
        fake_smi.set_apps(b"\xff\xfe garbage\n")
        return "nvidia-smi: unparsable output: '\ufffd\ufffd garbage'"
    assert how == "hanging"
    fake_smi.set_gpu("1, 2, 3\n", hang_s=30)
    fake_smi.set_apps("", hang_s=30)
    return "nvidia-smi: timed out after 1.0 s"


SMI_FAILURES = ["absent", "failing", "garbage", "hanging"]


# --- hmn ps ------------------------------------------------------------------------------


@needs_hmn
@pytest.mark.parametrize("how", SMI_FAILURES)
def test_ps_with_nvml_init_failing_is_not_zero_processes(
    how: str, fake_nvml: FakeNvml, fake_smi: FakeSmi, env: dict[str, str]
) -> None:
    fake_nvml.fail("*", "DRIVER_NOT_LOADED")  # nvmlInit* fails first
    why = broken_smi(fake_smi, how)
    for argv in (["ps"], ["ps", "--json"], ["ps", "--device", "0"]):
        result = run_hmn(env, *argv)
        assert (result.returncode, result.stdout) == (1, ""), argv
        assert "0 GPU processes found" not in result.stderr
        assert "Driver Not Loaded" in result.stderr
        assert why in result.stderr
        assert result.stderr.count("\n") == 1 + (argv == ["ps"] or argv == ["ps", "--json"])


@needs_hmn
@pytest.mark.parametrize(
    ("function", "code", "reason"),
    [
        ("nvmlDeviceGetComputeRunningProcesses_v3", "GPU_IS_LOST", "GPU is lost"),
        ("nvmlDeviceGetComputeRunningProcesses_v3", "NOT_SUPPORTED", "Not Supported"),
        ("nvmlDeviceGetHandleByIndex_v2", "GPU_IS_LOST", "GPU is lost"),
    ],
)
@pytest.mark.parametrize("how", ["absent", "failing"])
def test_ps_with_the_listing_failing_is_not_zero_processes(
    function: str,
    code: str,
    reason: str,
    how: str,
    fake_nvml: FakeNvml,
    fake_smi: FakeSmi,
    env: dict[str, str],
) -> None:
    fake_nvml.set([FakeNvmlDevice(processes=(FakeProcess(GHOST_PID, GIB),))])
    fake_nvml.fail(function, code)
    why = broken_smi(fake_smi, how)
    result = run_hmn(env, "ps")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"hmn: GPU 0: could not list processes (NVML: {reason}; {why})\n"


@needs_hmn
def test_ps_lists_gpu_0_through_nvidia_smi_when_nvml_cannot_count(
    fake_nvml: FakeNvml, fake_smi: FakeSmi, env: dict[str, str]
) -> None:
    fake_nvml.fail("*", "DRIVER_NOT_LOADED")
    fake_smi.set_apps("42, trainer, 1024\n")
    result = run_hmn(env, "ps")
    assert result.returncode == 1
    assert result.stdout == (
        "PID  NAME     VRAM     SHARED  DEVICE\n42   trainer  1.0 GiB  0 MiB   GPU 0 \n"
    )
    assert result.stderr == (
        "hmn: 1 GPU process found (1.0 GiB committed total).\n"
        "hmn: could not count the GPUs (NVML: Driver Not Loaded); only GPU 0 was listed\n"
    )
    # Asked for GPU 0 only, nothing is missing: the crate's output and status.
    result = run_hmn(env, "ps", "--device", "0")
    assert (result.returncode, result.stderr) == (
        0,
        "hmn: 1 GPU process found matching device=0 (1.0 GiB committed total).\n",
    )


def test_ps_keeps_the_devices_that_answered_and_names_the_one_that_did_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def listing(index: int) -> list[GpuProcessEntry]:
        if index == 1:
            raise NoGpuSourceError(("NVML: GPU is lost", "nvidia-smi: not found on PATH"))
        return [GpuProcessEntry(pid=7, name="a", used_bytes=GIB, shared_used_bytes=0)]

    monkeypatch.setattr(chain, "counted_devices", lambda: (2, ()))
    monkeypatch.setattr(chain, "gpu_processes", listing)
    monkeypatch.setattr(chain, "device_info", lambda i: (_ for _ in ()).throw(NoGpuSourceError()))
    out, err = io.StringIO(), io.StringIO()
    args = build_parser().parse_args(["ps"])
    assert ps.run(args, out, err) == 1
    assert (
        out.getvalue() == "PID  NAME  VRAM     SHARED  DEVICE\n7    a     1.0 GiB  0 MiB   GPU 0 \n"
    )
    assert err.getvalue() == (
        "hmn: 1 GPU process found (1.0 GiB committed total).\n"
        "hmn: GPU 1: could not list processes (NVML: GPU is lost; nvidia-smi: not found on "
        "PATH); not included above\n"
    )


@needs_hmn
def test_ps_without_any_gpu_software_is_still_the_crates_zero(
    fake_smi: FakeSmi, tmp_path: Path
) -> None:
    # No driver library and no nvidia-smi: no GPU, so "0 GPU processes found." is measured.
    fake_smi.remove()
    env = {**fake_smi.env, "HYPOMNESIS_NVML_LIBRARY": str(tmp_path / "missing.so.1")}
    result = run_hmn(env, "ps")
    assert (result.returncode, result.stderr) == (0, "hmn: 0 GPU processes found.\n")
    result = run_hmn(env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "hmn: no visible GPUs.\n", "")


# --- hmn (device summary) ----------------------------------------------------------------


@needs_hmn
def test_summary_shows_the_gpu_nvidia_smi_reads_when_nvml_fails(
    fake_nvml: FakeNvml, fake_smi: FakeSmi, env: dict[str, str]
) -> None:
    fake_nvml.fail("*", "DRIVER_NOT_LOADED")
    fake_smi.set_gpu("1024, 16311, 610.88\n")
    result = run_hmn(env)
    assert result.returncode == 1
    assert result.stdout == "GPU 0: free 15287 MiB / 16311 MiB, driver 610.88\n"
    assert result.stderr == (
        "hmn: could not count the GPUs (NVML: Driver Not Loaded); only GPU 0 is shown\n"
    )
    result = run_hmn(env, "--json")
    assert result.returncode == 1
    assert result.stdout.startswith('[{"index":0,"name":null,"total_bytes":17103323136,')


@needs_hmn
@pytest.mark.parametrize("how", SMI_FAILURES)
def test_summary_with_every_source_failing_is_not_no_visible_gpus(
    how: str, fake_nvml: FakeNvml, fake_smi: FakeSmi, env: dict[str, str]
) -> None:
    fake_nvml.fail("*", "DRIVER_NOT_LOADED")
    why = broken_smi(fake_smi, how)
    for argv in ([], ["--json"]):
        result = run_hmn(env, *argv)
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == f"hmn: could not read any GPU: NVML: Driver Not Loaded; {why}\n"


# --- impossible device figures -----------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "free", "used", "problem"),
    [
        (8 * GIB, 0, 9 * GIB, "used 9663676416 B exceeds total 8589934592 B"),
        (8 * GIB, 2**64 - GIB, 9 * GIB, "used 9663676416 B exceeds total"),
        (8 * GIB, 0, NOT_AVAILABLE, "device memory not available (NVML returned 2^64-1)"),
        (8 * GIB, 9 * GIB, GIB, "free 9663676416 B exceeds total 8589934592 B"),
    ],
)
def test_nvml_impossible_device_figures_are_unknown_with_a_reason(
    total: int, free: int, used: int, problem: str, fake_nvml: FakeNvml
) -> None:
    fake_nvml.set([FakeNvmlDevice(total_bytes=total, free_bytes=free, used_bytes=used)])
    with pytest.raises(Exception, match="GPU 0: ") as info:
        nvml.device_query(0)
    assert problem in str(info.value)
    # The sampler's device-wide figure is unknown too, never the garbage.
    assert nvml.self_reader(0)().device_used_bytes is None


def test_nvml_possible_device_figures_still_read(fake_nvml: FakeNvml) -> None:
    fake_nvml.set([FakeNvmlDevice(total_bytes=8 * GIB, free_bytes=0, used_bytes=8 * GIB)])
    assert nvml.device_query(0).used_bytes == 8 * GIB
    assert nvml.self_reader(0)().device_used_bytes == 8 * GIB


@needs_hmn
def test_summary_with_impossible_nvml_figures_says_why(
    fake_nvml: FakeNvml, fake_smi: FakeSmi, env: dict[str, str]
) -> None:
    fake_nvml.set([FakeNvmlDevice(total_bytes=8 * GIB, free_bytes=0, used_bytes=NOT_AVAILABLE)])
    broken_smi(fake_smi, "failing")
    result = run_hmn(env)
    assert result.returncode == 1
    assert "free 17592186040320 MiB" not in result.stdout
    assert result.stdout == "hmn: 1 GPU(s) enumerated but none readable.\n"
    assert result.stderr == (
        "hmn: GPU 0 not readable: NVML: GPU 0: device memory not available (NVML returned "
        "2^64-1); nvidia-smi: exited with status 9: NVIDIA-SMI has failed\n"
    )
    # nvidia-smi's figures, when it answers, are the reading.
    fake_smi.set_gpu("1024, 8192, 610.88\n")
    result = run_hmn(env)
    assert (result.returncode, result.stdout) == (
        0,
        "GPU 0: free 7168 MiB / 8192 MiB, driver 610.88\n",
    )


@pytest.mark.usefixtures("no_nvml")
@pytest.mark.parametrize(
    ("stdout", "reason"),
    [
        ("20, 10, 610.88\n", "impossible device figures: used 20 MiB exceeds total 10 MiB"),
        # Parses as u64 MiB (the crate's type) but is past 2^64-1 bytes: saturated, no reading.
        (f"1, {2**64 // 2**20 + 5}, x\n", "device memory figure out of range"),
    ],
)
def test_smi_impossible_device_figures_are_a_failure(
    stdout: str, reason: str, fake_smi: FakeSmi
) -> None:
    fake_smi.set_gpu(stdout)
    with pytest.raises(Exception, match=reason):
        smi.device_query(0)
    with pytest.raises(NoGpuSourceError):
        chain.device_info(0)


# --- hmn watch ---------------------------------------------------------------------------


@needs_hmn
@pytest.mark.parametrize(
    ("apps", "reason"),
    [
        (b"\xff\xfe garbage\n", "unparsable output: '\ufffd\ufffd garbage'"),
        ("42, python, [N/A]\n", "per-process memory not available: '42, python, [N/A]'"),
    ],
)
def test_watch_with_a_garbage_listing_is_a_hard_error_not_zero_rows(
    apps: str | bytes, reason: str, fake_smi: FakeSmi, smi_env: dict[str, str]
) -> None:
    fake_smi.set_apps(apps)
    result = run_hmn(smi_env, "watch", "42", "--interval", "1s", "--duration", "1s")
    assert (result.returncode, result.stdout) == (2, "")
    assert "0 MiB" not in result.stdout
    assert result.stderr.startswith("hmn: watch failed to query device 0: ")
    assert reason in result.stderr


@needs_hmn
@pytest.mark.parametrize(
    ("function", "code", "reason"),
    [
        ("nvmlDeviceGetMemoryInfo", "GPU_IS_LOST", "GPU is lost"),
        ("nvmlDeviceGetHandleByIndex_v2", "GPU_IS_LOST", "GPU is lost"),
    ],
)
def test_summary_with_the_gpu_lost_says_so(
    function: str,
    code: str,
    reason: str,
    fake_nvml: FakeNvml,
    fake_smi: FakeSmi,
    env: dict[str, str],
) -> None:
    fake_nvml.fail(function, code)
    why = broken_smi(fake_smi, "absent")
    for argv, stdout in (
        ([], "hmn: 1 GPU(s) enumerated but none readable.\n"),
        (["--json"], "[]\n"),
    ):
        result = run_hmn(env, *argv)
        assert (result.returncode, result.stdout) == (1, stdout)
        assert result.stderr.endswith(f"hmn: GPU 0 not readable: NVML: {reason}; {why}\n")
