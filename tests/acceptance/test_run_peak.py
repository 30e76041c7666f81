"""The run's true RAM peak: kept by the plugin although it resets the kernel's mark per
test, and left to the parent (``wait4``, ``/usr/bin/time``, CI) with ``--hypomnesis-keep-hwm``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.units import MIB

BIG_MIB = 300

SUITE = f"""
def test_big():
    data = b"x" * ({BIG_MIB} * 1024 * 1024)  # written, so every page is resident
    assert data[-1:] == b"x"
    del data

def test_small_after():
    pass

def test_small_last():
    pass
"""

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="wait4() and ru_maxrss in KiB: Linux"
)


# The child's peak as its parent sees it, from a small parent. Linux folds the exec'ing
# process's old memory into the child's ru_maxrss, and a child forked (or vforked) from
# this test process would start out with this process's RSS, which can exceed the suite's.
PARENT = """
import json, os, subprocess, sys
with open(sys.argv[1], "wb") as out:
    child = subprocess.Popen(sys.argv[2:], stdout=out, stderr=out)
    _, status, usage = os.wait4(child.pid, 0)
print(json.dumps([os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024]))
"""


def run_suite(tmp_path: Path, *args: str) -> tuple[int, dict[str, object], str]:
    """Run the suite in a child; return the child's peak RSS as its parent sees it
    (``wait4``), the JSON report and the output."""
    (tmp_path / "test_big.py").write_text(SUITE, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly"]
    command += ["--hypomnesis", f"--hypomnesis-json={report}", *args]
    out_path = tmp_path / "out.txt"
    parent = subprocess.run(
        [sys.executable, "-c", PARENT, str(out_path), *command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    returncode, parent_peak = json.loads(parent.stdout)
    text = out_path.read_text(encoding="utf-8", errors="replace")
    assert returncode == 0, text
    return int(parent_peak), json.loads(report.read_text(encoding="utf-8")), text


def test_keep_hwm_leaves_the_whole_peak_to_the_parent(tmp_path: Path) -> None:
    parent_peak, data, text = run_suite(tmp_path, "--hypomnesis-keep-hwm")
    assert parent_peak >= BIG_MIB * MIB
    run = data["run"]
    assert isinstance(run, dict)
    assert run["ram_peak_bytes"] >= BIG_MIB * MIB
    assert data["settings"]["keep_hwm"] is True  # type: ignore[index]
    assert {t["ram"]["method"] for t in data["tests"]} == {"sidecar"}  # type: ignore[attr-defined]
    assert "run RAM peak" in text


def test_reset_per_test_still_reports_the_runs_peak(tmp_path: Path) -> None:
    parent_peak, data, text = run_suite(tmp_path)
    run = data["run"]
    assert isinstance(run, dict)
    # Kept by the plugin across its per-test resets: the big test's peak, with the
    # interpreter under it.
    assert run["ram_peak_bytes"] >= BIG_MIB * MIB
    assert run["ram_peak_bytes_by_worker"].keys() == {"master"}
    methods = {t["ram"]["method"] for t in data["tests"]}  # type: ignore[attr-defined]
    if methods <= {"rusage", "hwm"}:
        # What docs/metrics.md warns about: the reset hides the peak from the parent.
        assert parent_peak < BIG_MIB * MIB <= run["ram_peak_bytes"]
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("hypomnesis: scope"))
    assert lines[header + 1] == f"hypomnesis: run RAM peak {_iec(run['ram_peak_bytes'])}"


def test_xdist_workers_send_their_peaks(tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    _, data, _ = run_suite(tmp_path, "-n", "2")
    run = data["run"]
    assert isinstance(run, dict)
    by_worker = run["ram_peak_bytes_by_worker"]
    # The controller is one of the run's processes too.
    assert "master" in by_worker and set(by_worker) - {"master"} <= {"gw0", "gw1"}
    assert max(by_worker[w] for w in by_worker if w != "master") >= BIG_MIB * MIB
    assert run["ram_peak_bytes"] == max(by_worker.values()) >= BIG_MIB * MIB


def _iec(value: int) -> str:
    from pytest_hypomnesis._units import format_bytes_iec

    return format_bytes_iec(value)
