"""``hmn`` imports only what the command it runs needs (start-up is measured in
``bench/cli_startup.py``; this checks the import discipline that keeps it low)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_PROBE = """
import io, json, sys
before = set(sys.modules)  # the interpreter's and site's (an editable install's finder)
sys.argv = ["hmn", *json.loads(sys.argv[1])]
sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
from pytest_hypomnesis.cli import main
try:
    main()
except SystemExit:
    pass
sys.stdout = sys.__stdout__
print(json.dumps(sorted(set(sys.modules) - before)))
"""

# Report and HTML code, the other commands, and what only a real GPU call needs.
NEVER_FOR_PS = {
    "pytest_hypomnesis.report",
    "pytest_hypomnesis.report.html",
    "pytest_hypomnesis.report.schema",
    "pytest_hypomnesis.cli.report",
    "pytest_hypomnesis.cli.watch",
    "pytest_hypomnesis.cli.spill",
    "pytest_hypomnesis.plugin",
    "pytest_hypomnesis.probe.fake",
    "pytest",
    "pynvml",
    "psutil",
    "shutil",
    "subprocess",
    # Nothing to build without a GPU: no records, so no dataclasses; no size parsing.
    "dataclasses",
    "pytest_hypomnesis.model",
    "pytest_hypomnesis.probe.readings",
    "fractions",
    "decimal",
}


def modules_after(tmp_path: object, *argv: str, env: dict[str, str]) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(argv)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(result.stdout))


@pytest.fixture
def no_gpu_env(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """No NVML library and no nvidia-smi: a machine without a GPU."""
    import os

    env = dict(os.environ)
    env["HYPOMNESIS_NVML_LIBRARY"] = ""
    env["PATH"] = os.path.dirname(sys.executable)
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux probe path")
@pytest.mark.parametrize("argv", [["ps"], ["ps", "--json"], [], ["--help"]])
def test_no_report_code_nor_gpu_libraries_without_a_gpu(
    tmp_path: object, no_gpu_env: dict[str, str], argv: list[str]
) -> None:
    loaded = modules_after(tmp_path, *argv, env=no_gpu_env)
    assert not loaded & NEVER_FOR_PS, sorted(loaded & NEVER_FOR_PS)


def test_help_loads_no_probe_code(tmp_path: object, no_gpu_env: dict[str, str]) -> None:
    loaded = modules_after(tmp_path, "--help", env=no_gpu_env)
    assert "pytest_hypomnesis.probe.chain" not in loaded
    assert "pytest_hypomnesis.model" not in loaded
