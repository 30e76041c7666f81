"""NVIDIA's own ``libnvidia-ml.so.1`` and ``nvidia-smi`` (Debian non-free's 535.x packages,
unpacked by ``.ci/run`` into a private folder named by ``HYPOMNESIS_REAL_NVIDIA_ROOT``), on
a machine without the kernel driver: every path says "Driver Not Loaded" (nvidia-smi its own
failure text), never a crash. Skipped, with the reason, where the folder is absent (a
developer run without it) or where a driver is loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis.probe import cuda_devices, nvml, smi
from tests.helpers.hmnrun import needs_hmn, run_hmn

ROOT_ENV = "HYPOMNESIS_REAL_NVIDIA_ROOT"
_root = os.environ.get(ROOT_ENV)
ROOT = Path(_root) if _root else None
LIB_DIR = None if ROOT is None else ROOT / "usr/lib/x86_64-linux-gnu/nvidia/current"
SMI_DIR = None if ROOT is None else ROOT / "usr/lib/nvidia/current"

pytestmark = [
    pytest.mark.skipif(
        LIB_DIR is None or not (LIB_DIR / "libnvidia-ml.so.1").exists(),
        reason=f"{ROOT_ENV} does not name an unpacked libnvidia-ml1 + nvidia-smi (.ci/run sets it)",
    ),
    pytest.mark.skipif(
        os.path.exists("/proc/driver/nvidia/version"),
        reason="an NVIDIA kernel driver is loaded here: this checks a machine without one",
    ),
]

SMI_TEXT = "couldn't communicate with the NVIDIA driver"


@pytest.fixture
def real_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    assert LIB_DIR is not None and SMI_DIR is not None
    env = {
        "HYPOMNESIS_NVML_LIBRARY": str(LIB_DIR / "libnvidia-ml.so.1"),
        # nvidia-smi finds the library by the loader's path; it is not installed.
        "LD_LIBRARY_PATH": str(LIB_DIR),
        "PATH": f"{SMI_DIR}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nvml._reset_for_tests()
    smi._reset_for_tests()
    cuda_devices._reset_for_tests()
    yield {**os.environ, **env}
    nvml._reset_for_tests()
    smi._reset_for_tests()
    cuda_devices._reset_for_tests()


def test_library_says_driver_not_loaded(real_env: dict[str, str]) -> None:
    with pytest.raises(BackendFailure) as info:
        nvml.device_count()
    assert info.value.reason == "Driver Not Loaded"
    visible = cuda_devices.visible_devices(real_env)
    assert not visible.mapped and visible.reason == "NVML: Driver Not Loaded"


def test_nvidia_smi_fails_with_its_own_text(real_env: dict[str, str]) -> None:
    with pytest.raises(BackendFailure) as info:
        smi.device_query(0)
    assert "exited with status 9" in info.value.reason
    assert SMI_TEXT in info.value.reason


def test_plugin_header_names_both_failures(real_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text(
        "import pytest\n\n@pytest.mark.max_vram('1GiB')\ndef test_x():\n    pass\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--hypomnesis", str(tmp_path)],
        env=real_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Traceback" not in out and "INTERNALERROR" not in out
    assert "no GPU (" in out and "NVML: Driver Not Loaded" in out, out
    assert SMI_TEXT in out, out
    assert "max_vram: not checked" in out, out


@needs_hmn
@pytest.mark.parametrize("args", [(), ("ps",)])
def test_hmn_says_driver_not_loaded(real_env: dict[str, str], args: tuple[str, ...]) -> None:
    done = run_hmn(real_env, *args)
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    assert "Driver Not Loaded" in done.stderr, done.stderr
