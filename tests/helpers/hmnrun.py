"""Running the installed ``hmn`` console script in a subprocess (pytest plugin module).

``run_hmn(env, *args)`` runs it; fixtures ``nvml_env`` (NVML answers, nvidia-smi present but
failing) and ``smi_env`` (only nvidia-smi answers; NVML points at a missing library) build the
environments from the ``fake_nvml`` and ``fake_smi`` fixtures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.fakenvml import FakeNvml
from tests.helpers.fakesmi import FakeSmi

__all__ = ["GHOST_PID", "HMN", "needs_hmn", "nvml_env", "run_hmn", "smi_env"]

HMN = Path(sys.executable).parent / ("hmn.exe" if sys.platform == "win32" else "hmn")
# Above the kernel's largest pid_max, so no real process can have it.
GHOST_PID = 4_194_399

needs_hmn = pytest.mark.skipif(not HMN.exists(), reason="hmn console script not installed")


def run_hmn(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HMN), *args],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


@pytest.fixture
def nvml_env(fake_nvml: FakeNvml, fake_smi: FakeSmi) -> dict[str, str]:
    """NVML answers; nvidia-smi is present but broken, so only NVML can."""
    fake_smi.set_gpu("", exit_code=9)
    fake_smi.set_apps("", exit_code=9)
    return {**fake_smi.env, **fake_nvml.env}


@pytest.fixture
def smi_env(fake_smi: FakeSmi, tmp_path: Path) -> dict[str, str]:
    """Only nvidia-smi answers: NVML points at a library that does not exist."""
    return {**fake_smi.env, "HYPOMNESIS_NVML_LIBRARY": str(tmp_path / "no-libnvidia-ml.so.1")}
