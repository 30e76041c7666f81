"""Process names from ``/proc/PID/comm`` by the crate's rule: newline stripped, whitespace
trimmed at both ends, empty or invalid UTF-8 is no name (``?``, JSON ``null``, protected)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from pytest_hypomnesis.probe.procname import linux_comm, name_from_comm
from tests.helpers.fakenvml import FakeNvml, FakeNvmlDevice, FakeProcess
from tests.helpers.hmnrun import needs_hmn, run_hmn
from tests.helpers.units import GIB

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="procfs")

# 'a' + five 3-byte characters is 16 bytes: the kernel keeps 15 and halves the last one.
HALVED_CJK = "a日本語テス".encode()


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        (b"python\n", "python"),
        (b"  trainer \t\n", "trainer"),
        (b"\xe3\x80\x80wide\xc2\xa0\n", "wide"),  # U+3000 and U+00A0 are Rust whitespace
        (b"\x1fkeep\x1c\n", "\x1fkeep\x1c"),  # Python's strip() would drop these; Rust keeps
        (b"caf\xc3\xa9\n", "café"),
        (HALVED_CJK[:15] + b"\n", None),
        (b"\xff\xfe\n", None),
        (b"   \n", None),
        (b"\n", None),
        (b"", None),
    ],
)
def test_name_from_comm(raw: bytes, name: str | None) -> None:
    assert name_from_comm(raw) == name


@pytest.fixture
def named_child(request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[bytes]]:
    """A sleeping child that wrote ``request.param`` into its own ``/proc/self/comm``."""
    code = (
        "import sys, time\n"
        "open('/proc/self/comm', 'wb').write(bytes.fromhex(sys.argv[1]))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, request.param.hex()], stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        yield child
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


@linux_only
@pytest.mark.parametrize(
    ("named_child", "name"),
    [(b"  spaced out  ", "spaced out"), (HALVED_CJK, None)],
    indirect=["named_child"],
)
def test_linux_comm_of_a_real_process(named_child: subprocess.Popen[bytes], name: str) -> None:
    assert linux_comm(named_child.pid) == name


@linux_only
@needs_hmn
@pytest.mark.parametrize("named_child", [HALVED_CJK], indirect=True)
def test_ps_counts_an_undecodable_name_as_protected(
    named_child: subprocess.Popen[bytes], fake_nvml: FakeNvml, nvml_env: dict[str, str]
) -> None:
    fake_nvml.set(
        [FakeNvmlDevice(name="NVIDIA Fake", processes=(FakeProcess(named_child.pid, GIB),))]
    )
    result = run_hmn(nvml_env, "ps")
    assert result.stdout == (
        "PID" + " " * (len(str(named_child.pid)) - 3) + "  NAME  VRAM     SHARED  DEVICE     \n"
        f"{named_child.pid}  ?     1.0 GiB  0 MiB   NVIDIA Fake\n"
    )
    assert result.stderr == (
        "hmn: 1 GPU process found (1.0 GiB committed total; 1 protected — re-run elevated "
        "for names).\n"
    )
    result = run_hmn(nvml_env, "ps", "--json")
    assert '"name":null' in result.stdout
