"""Whole runs: the RAM sidecar where the kernel refuses the reset (an LD_PRELOAD shim
refusing ``clear_refs``), and ``--hypomnesis-children``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.units import MIB

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the shim and the spike are Linux builds"
)

SPIKE_MIB = 64

SPIKE_TEST = """
import ctypes

def test_spike_inside_a_c_call():
    fn = ctypes.PyDLL({library!r}).hold_spike  # PyDLL: the GIL is held throughout
    fn.argtypes = [ctypes.c_size_t, ctypes.c_uint]
    assert fn({spike} * 1024 * 1024, 1000) == 0
"""

NO_SIDECAR = """
from pytest_hypomnesis.probe import sidecar
sidecar.DISABLED = "switched off by conftest"
"""


def _run_spike(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    library: Path,
    shim: Path,
    *,
    conftest: str | None = None,
    extra: tuple[str, ...] = (),
) -> tuple[dict[str, Any], str]:
    pytester.makepyfile(test_spike=SPIKE_TEST.format(library=str(library), spike=SPIKE_MIB))
    if conftest is not None:
        pytester.makeconftest(conftest)
    monkeypatch.setenv("LD_PRELOAD", str(shim))
    result = pytester.runpytest_subprocess(
        "-p", "no:randomly", "--hypomnesis", "--hypomnesis-interval=5ms",
        "--hypomnesis-json=r.json", *extra,
    )  # fmt: skip
    monkeypatch.delenv("LD_PRELOAD")
    assert result.ret == 0, result.stdout.str()
    data = json.loads((pytester.path / "r.json").read_text(encoding="utf-8"))
    return data["tests"][0]["ram"], result.stdout.str()


def test_a_refused_reset_uses_the_sidecar_and_catches_the_spike(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    gil_spike_library: Path,
    refuse_clear_refs: Path,
) -> None:
    ram, out = _run_spike(pytester, monkeypatch, gil_spike_library, refuse_clear_refs)
    assert ram["method"] == "sidecar"
    assert ram["increase_bytes"] >= SPIKE_MIB * MIB * 9 // 10
    assert "RAM peak: sampled by a sidecar process every 5ms" in out


def test_the_thread_it_replaces_misses_the_spike(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    gil_spike_library: Path,
    refuse_clear_refs: Path,
) -> None:
    ram, out = _run_spike(
        pytester, monkeypatch, gil_spike_library, refuse_clear_refs, conftest=NO_SIDECAR
    )
    assert ram["method"] == "sampled"
    assert ram["increase_bytes"] < SPIKE_MIB * MIB // 2
    assert "the RAM sidecar could not start: switched off by conftest" in out


def test_a_workers_sidecar_failure_reaches_the_controllers_summary(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    gil_spike_library: Path,
    refuse_clear_refs: Path,
) -> None:
    # The tests run in the workers, and only theirs fails: only they know.
    in_workers = "import os\nif os.environ.get('PYTEST_XDIST_WORKER'):\n" + "".join(
        f"    {line}\n" for line in NO_SIDECAR.strip().splitlines()
    )
    ram, out = _run_spike(
        pytester, monkeypatch, gil_spike_library, refuse_clear_refs, conftest=in_workers,
        extra=("-n", "2"),
    )  # fmt: skip
    assert ram["method"] == "sampled"
    assert out.count("the RAM sidecar could not start: switched off by conftest") == 1, out


CHILD_TEST = """
import subprocess, sys

CHILD = (
    "import sys, time\\n"
    "data = b'x' * (100 * 1024 * 1024)\\n"  # written: every page resident
    "print('held', flush=True)\\n"
    "time.sleep(0.5)\\n"
)

def test_child_allocates():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    assert child.wait() == 0
"""


@pytest.mark.usefixtures("inner_pytester_run")
@pytest.mark.parametrize("children", [True, False])
def test_children_counts_a_childs_memory_only_when_asked(
    pytester: pytest.Pytester, children: bool
) -> None:
    pytester.makepyfile(test_child=CHILD_TEST)
    args = ["--hypomnesis", "--hypomnesis-interval=5ms", "--hypomnesis-json=r.json"]
    if children:
        args.append("--hypomnesis-children")
    result = pytester.runpytest(*args)
    assert result.ret == 0, result.stdout.str()
    data = json.loads((pytester.path / "r.json").read_text(encoding="utf-8"))
    ram = data["tests"][0]["ram"]
    assert data["settings"]["children"] is children
    if children:
        assert ram["method"] == "sidecar"
        assert ram["increase_bytes"] >= 100 * MIB
        assert "(with child processes)" in result.stdout.str()
    else:
        assert ram["increase_bytes"] < 50 * MIB


def _footprint_conftest(library: Path) -> str:
    # macOS's reading, played on Linux: the sidecar reads through the fake proc_pid_rusage.
    switch = f"sidecar.FOOTPRINT_LIBRARY = {str(library)!r}\n"
    return "from pytest_hypomnesis.probe import sidecar\n" + switch


@pytest.mark.parametrize("refused", [False, True])
def test_a_macos_run_reads_the_footprint_or_says_what_it_read(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    gil_spike_library: Path,
    refuse_clear_refs: Path,
    fake_libproc: Path,
    refused: bool,
) -> None:
    extra_bytes = 3 * 1024 * MIB  # the fake's footprint is RSS plus this
    monkeypatch.setenv("FAKE_LIBPROC_EXTRA_BYTES", str(extra_bytes))
    if refused:  # the sidecar may not read its parent (a sandbox, another user)
        monkeypatch.setenv("FAKE_LIBPROC_EPERM", "others")
    ram, out = _run_spike(
        pytester, monkeypatch, gil_spike_library, refuse_clear_refs,
        conftest=_footprint_conftest(fake_libproc),
    )  # fmt: skip
    assert ram["method"] == "sidecar"
    assert ram["increase_bytes"] >= SPIKE_MIB * MIB * 9 // 10
    note = "RAM figures of the spans the sidecar samples are psutil's resident size"
    if refused:
        assert ram["start_bytes"] < extra_bytes
        assert out.count(note) == 1, out
        assert "failed: EPERM (Operation not permitted)" in out
    else:
        assert ram["start_bytes"] >= extra_bytes
        assert ram["peak_bytes"] >= extra_bytes + SPIKE_MIB * MIB * 9 // 10
        assert note not in out
