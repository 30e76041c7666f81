"""The real ``hmn`` executable in a subprocess, against the fake NVML library and a fake
``nvidia-smi`` on ``PATH``: wiring, exit codes, stdout/stderr split, SIGINT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_hypomnesis import __version__
from tests.helpers.fakenvml import SELF, FakeNvml, FakeNvmlDevice, FakeProcess
from tests.helpers.fakesmi import FakeSmi
from tests.helpers.hmnrun import GHOST_PID, HMN, needs_hmn, run_hmn
from tests.helpers.reports import make_report, make_test, write_report
from tests.helpers.units import GIB, MIB

pytestmark = needs_hmn


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr


# --- summary (checklist 39/40) -----------------------------------------------------------


def test_summary_several_devices(fake_nvml: FakeNvml, nvml_env: dict[str, str]) -> None:
    fake_nvml.set(
        [
            FakeNvmlDevice(name="NVIDIA Fake A", total_bytes=16 * GIB, used_bytes=GIB),
            FakeNvmlDevice(name="Fake B", total_bytes=8 * GIB, used_bytes=0, reserved_bytes=None),
        ]
    )
    result = run_hmn(nvml_env)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "GPU 0 [NVIDIA Fake A]: free 15360 MiB / 16384 MiB (256 MiB reserved), driver 555.42.06\n"
        "GPU 1 [Fake B]: free 8192 MiB / 8192 MiB, driver 555.42.06\n"
    )
    result = run_hmn(nvml_env, "--json")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        '[{"index":0,"name":"NVIDIA Fake A","total_bytes":17179869184,"free_bytes":16106127360,'
        '"used_bytes":1073741824,"reserved_bytes":268435456,"driver_version":"555.42.06"},'
        '{"index":1,"name":"Fake B","total_bytes":8589934592,"free_bytes":8589934592,'
        '"used_bytes":0,"reserved_bytes":null,"driver_version":"555.42.06"}]\n'
    )


def test_summary_zero_devices(fake_nvml: FakeNvml, nvml_env: dict[str, str]) -> None:
    fake_nvml.set([])
    assert run_hmn(nvml_env).stdout == "hmn: no visible GPUs.\n"
    assert run_hmn(nvml_env, "--json").stdout == "[]\n"


# --- ps (checklist 41-43) ----------------------------------------------------------------


def test_ps_nvml_rows(fake_nvml: FakeNvml, nvml_env: dict[str, str]) -> None:
    fake_nvml.set(
        [
            FakeNvmlDevice(
                name="NVIDIA Fake",
                processes=(FakeProcess(GHOST_PID, 2 * GIB), FakeProcess(SELF, 300 * MIB)),
            )
        ]
    )
    result = run_hmn(nvml_env, "ps")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "PID      NAME  VRAM     SHARED  DEVICE     "
    assert lines[1] == f"{GHOST_PID}  ?     2.0 GiB  0 MiB   NVIDIA Fake"
    # The second row is hmn itself: its name is whatever /proc/<pid>/comm says.
    assert lines[2].endswith("300 MiB  0 MiB   NVIDIA Fake")
    assert result.stderr == (
        "hmn: 2 GPU processes found (2.3 GiB committed total; 1 protected — re-run elevated "
        "for names).\n"
    )
    result = run_hmn(nvml_env, "ps", "--json", "--pid", str(GHOST_PID))
    assert result.stdout == (
        f'[{{"pid":{GHOST_PID},"name":null,"used_bytes":2147483648,"shared_used_bytes":0,'
        '"device_index":0,"device_name":"NVIDIA Fake"}]\n'
    )
    assert result.stderr == (
        f"hmn: 1 GPU process found matching pid={GHOST_PID} (2.0 GiB committed total; "
        "1 protected — re-run elevated for names).\n"
    )


def test_ps_smi_names_with_commas_question_marks_and_unicode(
    fake_smi: FakeSmi, smi_env: dict[str, str]
) -> None:
    fake_smi.set_apps("42, weird,name.exe, 8\n7, ?, 1024\n9, Ünïcødé, 3000\n")
    result = run_hmn(smi_env, "ps", "--device", "0")
    assert result.returncode == 0
    assert result.stdout == (
        "PID  NAME            VRAM     SHARED  DEVICE\n"
        "9    Ünïcødé         2.9 GiB  0 MiB   GPU 0 \n"
        "7    ?               1.0 GiB  0 MiB   GPU 0 \n"
        "42   weird,name.exe  8 MiB    0 MiB   GPU 0 \n"
    )
    assert result.stderr == (
        "hmn: 3 GPU processes found matching device=0 (3.9 GiB committed total; 1 protected — "
        "re-run elevated for names).\n"
    )
    result = run_hmn(smi_env, "ps", "--device", "0", "--json", "--sort", "total")
    assert result.stdout == (
        '[{"pid":9,"name":"Ünïcødé","used_bytes":3145728000,"shared_used_bytes":0,'
        '"device_index":0,"device_name":null},'
        '{"pid":7,"name":"?","used_bytes":1073741824,"shared_used_bytes":0,'
        '"device_index":0,"device_name":null},'
        '{"pid":42,"name":"weird,name.exe","used_bytes":8388608,"shared_used_bytes":0,'
        '"device_index":0,"device_name":null}]\n'
    )


def test_ps_without_any_gpu(smi_env: dict[str, str], fake_smi: FakeSmi) -> None:
    fake_smi.remove()
    result = run_hmn(smi_env, "ps")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "PID  NAME  VRAM  SHARED  DEVICE\n",
        "hmn: 0 GPU processes found.\n",
    )


# --- watch (checklist 47-57) -------------------------------------------------------------


def test_watch_bounded_by_duration(fake_nvml: FakeNvml, nvml_env: dict[str, str]) -> None:
    fake_nvml.set([FakeNvmlDevice(processes=(FakeProcess(GHOST_PID, GIB),))])
    result = run_hmn(nvml_env, "watch", "--interval", "200ms", "--duration", "1s", "--json")
    _no_traceback(result)
    assert result.returncode == 0
    assert result.stderr == (
        "hmn watch: device 0 [NVIDIA Fake GPU], interval 0.2s, watching 1 PID(s) "
        "(top 5 by committed)\n"
    )
    records = [json.loads(line) for line in result.stdout.splitlines()]
    samples, summary = records[:-1], records[-1]
    assert 3 <= len(samples) <= 6
    assert samples[0]["t_ms"] == 0
    assert all(s["pid"] == GHOST_PID and s["used_bytes"] == GIB for s in samples)
    assert summary["kind"] == "summary"
    assert summary["measurable"] is False
    assert summary["per_pid"] == [
        {
            "pid": GHOST_PID,
            "name": None,
            "baseline_used_bytes": GIB,
            "peak_used_bytes": GIB,
            "baseline_shared_bytes": 0,
            "peak_shared_bytes": 0,
        }
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_watch_sigint_prints_the_closing_summary(
    fake_nvml: FakeNvml, nvml_env: dict[str, str]
) -> None:
    fake_nvml.set([FakeNvmlDevice(processes=(FakeProcess(GHOST_PID, GIB),))])
    proc = subprocess.Popen(
        [str(HMN), "watch", str(GHOST_PID), "--interval", "1h"],
        env=nvml_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    try:
        assert proc.stdout is not None
        header = proc.stdout.readline()
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert header.startswith("TIME      PID     NAME")
    assert first == f"+0.0s     {GHOST_PID}  ?     1.0 GiB    +0 B      0 MiB   +0 B      no   \n"
    assert out == (
        "hmn watch: peak dedicated 0 MiB\n"
        "           peak shared    0 MiB (baseline 0 MiB)\n"
        "           episodes       0 — no spill observed\n"
        "hmn watch: per-PID  PID      NAME  BASELINE COMMIT  PEAK COMMIT  BASELINE SHARED  "
        "PEAK SHARED\n"
        f"                    {GHOST_PID}  ?     1.0 GiB          1.0 GiB      0 MiB            "
        "0 MiB      \n"
    )
    assert err == "hmn watch: device 0 [NVIDIA Fake GPU], interval 3600.0s, watching 1 PID(s)\n"


def test_watch_hard_errors_exit_2(fake_nvml: FakeNvml, nvml_env: dict[str, str]) -> None:
    result = run_hmn(nvml_env, "watch", "1", "--device", "3")
    _no_traceback(result)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "hmn: watch failed to query device 3: device index 3 out of range (have 1 devices)\n"
    )
    result = run_hmn(nvml_env, "watch")
    assert result.returncode == 2
    assert result.stderr.startswith("hmn: watch found no GPU processes on device 0")


# --- spill (checklist 44-46) -------------------------------------------------------------


def test_spill_passes_the_exit_code_through(nvml_env: dict[str, str]) -> None:
    code = "import sys; print('child says hi'); sys.exit(3)"
    result = run_hmn(nvml_env, "spill", "--", sys.executable, "-c", code)
    _no_traceback(result)
    assert result.returncode == 3
    assert result.stdout == "child says hi\n"
    if sys.platform != "win32":
        assert result.stderr == "hmn spill: spill not measurable on this platform\n"
    result = run_hmn(
        nvml_env, "spill", "--json", "--interval", "10", "--", sys.executable, "-c", ""
    )
    assert result.returncode == 0
    assert json.loads(result.stdout)["measurable"] is (sys.platform == "win32")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_spill_child_killed_by_a_signal_is_exit_1(nvml_env: dict[str, str]) -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    result = run_hmn(nvml_env, "spill", "--", sys.executable, "-c", code)
    assert result.returncode == 1


def test_spill_unknown_program_is_exit_1(nvml_env: dict[str, str]) -> None:
    result = run_hmn(nvml_env, "spill", "--", "no-such-program-hmn-test")
    assert result.returncode == 1
    assert result.stderr.startswith('hmn: failed to spawn "no-such-program-hmn-test": ')


# --- usage errors, version, python -m ----------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["--nope"], ["ps", "--pid", "x"], ["watch", "--interval", "0"], ["ps", "--device", "7"]],
)
def test_bad_input_is_one_line_exit_2(nvml_env: dict[str, str], argv: list[str]) -> None:
    result = run_hmn(nvml_env, *argv)
    _no_traceback(result)
    assert result.returncode == 2
    assert result.stderr.startswith("hmn: ")
    assert result.stderr.count("\n") == 1


def test_version_and_python_dash_m(nvml_env: dict[str, str]) -> None:
    assert run_hmn(nvml_env, "--version").stdout == f"hmn {__version__}\n"
    result = subprocess.run(
        [sys.executable, "-m", "pytest_hypomnesis", "--version"],
        env=nvml_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (0, f"hmn {__version__}\n")


def test_report_files(tmp_path: Path, nvml_env: dict[str, str]) -> None:
    good = write_report(tmp_path / "good.json", make_report([make_test("t.py::a")]))
    result = run_hmn(nvml_env, "report", str(good))
    assert result.returncode == 0
    assert "t.py::a" in result.stdout
    truncated = tmp_path / "cut.json"
    truncated.write_text(good.read_text(encoding="utf-8")[:40], encoding="utf-8")
    result = run_hmn(nvml_env, "report", str(good), str(truncated))
    _no_traceback(result)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"hmn: {os.fspath(truncated)}: not valid JSON")
