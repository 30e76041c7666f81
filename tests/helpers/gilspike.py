"""A C call that holds the GIL through a RAM spike, a ``clear_refs`` write refused, and a
fake macOS ``proc_pid_rusage``.

Fixtures (session scope; skipped where no C compiler exists or off Linux):

- ``gil_spike_library``: ``Path`` of ``tests/gil_spike/spike.c`` built as a shared library;
  ``ctypes.PyDLL(path).hold_spike(c_size_t(bytes), c_uint(ms))`` maps and touches ``bytes``,
  holds them ``ms`` and unmaps them, all without releasing the GIL.
- ``refuse_clear_refs``: ``Path`` of an ``LD_PRELOAD`` shim making every open of
  ``/proc/.../clear_refs`` fail with EACCES (a container that refuses the reset).
- ``fake_libproc``: ``Path`` of ``tests/fake_libproc/fake_libproc.c`` built as a shared
  library: ``proc_pid_rusage`` with Apple's ``rusage_info_v0`` layout and the kernel's
  failures, its footprint a process's RSS plus ``FAKE_LIBPROC_EXTRA_BYTES`` (the C file
  says how to make it refuse).

``hold_spike(path, bytes, ms)`` calls it in this process.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

__all__ = ["hold_spike"]

SOURCES = Path(__file__).resolve().parents[1] / "gil_spike"
FAKE_LIBPROC = Path(__file__).resolve().parents[1] / "fake_libproc" / "fake_libproc.c"


def _build(out_dir: Path, source: str | Path, name: str, *libs: str) -> Path:
    if not sys.platform.startswith("linux"):
        pytest.skip(
            "the GIL-holding spike, the clear_refs shim and the fake libproc are Linux builds"
        )
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip(f"no C compiler (gcc/cc) to build {Path(source).name}")
    library = out_dir / name
    command = [compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(SOURCES / source)]
    result = subprocess.run([*command, *libs], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"building {source} failed:\n{result.stderr}")
    return library


@pytest.fixture(scope="session")
def gil_spike_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("gil_spike"), "spike.c", "libgilspike.so")


@pytest.fixture(scope="session")
def refuse_clear_refs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("clear_refs"), "refuse_clear_refs.c", "refuse.so", "-ldl")


@pytest.fixture(scope="session")
def fake_libproc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("fake_libproc"), FAKE_LIBPROC, "libproc.so")


def hold_spike(library: Path, size_bytes: int, hold_ms: int) -> None:
    """Hold ``size_bytes`` for ``hold_ms`` inside one C call that keeps the GIL."""
    fn = ctypes.PyDLL(str(library)).hold_spike
    fn.argtypes = [ctypes.c_size_t, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(size_bytes, hold_ms) != 0:
        raise OSError("mmap failed in hold_spike")
