"""A fake ``libnvidia-ml.so.1`` for tests (pytest plugin module; loaded by the root conftest).

``tests/fake_nvml/fake_nvml.c`` is compiled once per session (per xdist worker) with
``gcc``/``cc``; tests that need it are skipped where no C compiler exists. The library
re-reads a text config file (``FAKE_NVML_CONFIG``) on every NVML call, so a test can change
figures while a sampler thread reads them; the config is written atomically (temp file +
rename), so a concurrent reader never sees half a file. The real backend
(``pytest_hypomnesis.probe.nvml``) loads it through ``HYPOMNESIS_NVML_LIBRARY`` and the
real nvidia-ml-py, so everything from ctypes up is exercised.

Fixtures:

- ``fake_nvml`` (function scope): a ``FakeNvml`` already active in this process (env vars
  set with ``monkeypatch``, the backend's cached NVML state dropped before and after the
  test) with one default device and driver ``555.42.06``, no processes.
- ``fake_nvml_factory`` (function scope): ``fake_nvml_factory(defines=("NO_V3",),
  activate=True)`` for another build variant or a config only meant for subprocesses.
  Defines: ``NO_V3``/``NO_V2`` drop those process-query symbols, ``NO_MEMV2`` drops
  ``nvmlDeviceGetMemoryInfo_v2`` (pre-R510 driver).
- ``fake_nvml_library`` (session): ``Path`` of the default build;
  ``fake_nvml_build`` (session): ``fake_nvml_build(*defines) -> Path``, cached.

``FakeNvml`` API:

- ``set(devices=None, *, driver=DEFAULT_DRIVER, errors=None)``: writes the whole config.
  ``devices`` is a list of ``FakeNvmlDevice`` (default: one ``FakeNvmlDevice()``);
  ``driver=None`` makes the driver query answer NOT_SUPPORTED, ``""`` an empty version;
  ``errors`` maps an NVML function name (or ``"*"``: every call but nvmlShutdown and
  nvmlErrorString, init included) to a code, an int or a name of ``ERROR_CODES``
  (``"DRIVER_NOT_LOADED"``, ``"NO_PERMISSION"``, ``"GPU_IS_LOST"``, ``"NOT_SUPPORTED"``...).
- ``set_self_used(used_bytes, device=0, device_used_bytes=None)``: replaces this
  process's row (``None`` removes it), keeping everything else; handy for VRAM spikes.
- ``fail(function="*", code="DRIVER_NOT_LOADED")`` / ``clear_errors()``.
- ``env``: ``{"HYPOMNESIS_NVML_LIBRARY": ..., "FAKE_NVML_CONFIG": ...}`` for subprocesses
  (``subprocess.run(..., env={**os.environ, **fake_nvml.env})``); pytester's subprocess
  runs inherit them already while the fixture is active.
- ``stats()``: ``FakeNvmlStats(inits, shutdowns, calls, refcount)`` of this process.
- ``library``, ``config_path``; ``activate()`` / ``deactivate()``.

``FakeNvmlDevice(name, total_bytes, used_bytes, free_bytes=None (total - used),
reserved_bytes (None: v2 unsupported), processes, uuid=None (GPU-...-0000000000NN by
index), pci_bus_id=None (00000000:NN:00.0, NN = index + 1), mig_mode=None (None: the GPU
has no MIG support; True/False: enabled/disabled), mig_devices=(FakeMigDevice...),
errors={function: code} (only calls on this handle))``;
``FakeMigDevice(uuid, gpu_instance_id, compute_instance_id, name, total_bytes, used_bytes,
processes, errors, mig_index=None)`` is a MIG device of its parent (reached by
``nvmlDeviceGetMigDeviceHandleByIndex(parent, mig_index)``, default its position among the
parent's, or ``nvmlDeviceGetHandleByUUID``; other slots below 7 answer NOT_FOUND). A GPU
with ``mig_mode=True`` refuses process queries on its own handle with NO_PERMISSION, as
an unprivileged caller sees it; its MIG devices list their own processes.
``set(..., cuda_order=[1, 0])`` also makes the library a fake ``libcuda.so.1`` (through
``HYPOMNESIS_CUDA_LIBRARY``) whose fastest-first enumeration is those NVML indices (or
MIG UUIDs); without it no libcuda is configured and CUDA order falls back to PCI order.
``FakeProcess(pid, used_bytes)`` where ``pid`` is an int or ``SELF`` (``"self"``: the pid
of whichever process reads the config, so it works per xdist worker and in subprocesses).
``NOT_AVAILABLE`` is the 2^64-1 per-process sentinel.

For test modules: ``linux_only`` (the mark for tests that load the fake: it is built as an
ELF ``.so``; ``posix_only`` where any ``.so`` will do), the fixture ``fresh_cuda_mapping``
(the CUDA-ordinal mapping re-read before and after the test), the UUIDs the fake GPUs of
several modules share (``GPU0_UUID``, ``GPU1_UUID``, ``A100_UUID``, ``MIG_A_UUID``,
``MIG_B_UUID``), ``unseen_pid()`` (a PID beyond pid_max) and ``inner_writer(**configs)``:
the head of an inner test file whose ``write(NAME)`` swaps the config while it runs.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import pytest

from tests.helpers.units import GIB, MIB

__all__ = [
    "A100_UUID",
    "DEFAULT_DRIVER",
    "ERROR_CODES",
    "GPU0_UUID",
    "GPU1_UUID",
    "MIG_A_UUID",
    "MIG_B_UUID",
    "NOT_AVAILABLE",
    "SELF",
    "FakeMigDevice",
    "FakeNvml",
    "FakeNvmlDevice",
    "FakeNvmlStats",
    "FakeProcess",
    "fake_nvml",
    "fake_nvml_build",
    "fake_nvml_factory",
    "fake_nvml_library",
    "fresh_cuda_mapping",
    "inner_writer",
    "linux_only",
    "posix_only",
    "render_config",
    "unseen_pid",
]

NOT_AVAILABLE = 2**64 - 1
SELF: Literal["self"] = "self"
DEFAULT_DRIVER = "555.42.06"
SOURCE = Path(__file__).resolve().parent.parent / "fake_nvml" / "fake_nvml.c"
DEFINES = frozenset({"NO_V3", "NO_V2", "NO_MEMV2"})

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the fake library is built as an ELF .so"
)
# Where the test needs only that the fake loads (a C compiler's .so), not Linux's /proc.
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="the fake NVML library is a .so")

GPU0_UUID = "GPU-0a0a0a0a-0000-4000-8000-000000000000"
GPU1_UUID = "GPU-1b1b1b1b-0000-4000-8000-000000000001"
A100_UUID = "GPU-a100a100-0000-4000-8000-000000000000"
MIG_A_UUID = "MIG-aaaaaaaa-1111-5222-8333-000000000001"
MIG_B_UUID = "MIG-bbbbbbbb-1111-5222-8333-000000000002"

ERROR_CODES: Mapping[str, int] = {
    "UNINITIALIZED": 1,
    "INVALID_ARGUMENT": 2,
    "NOT_SUPPORTED": 3,
    "NO_PERMISSION": 4,
    "NOT_FOUND": 6,
    "INSUFFICIENT_SIZE": 7,
    "DRIVER_NOT_LOADED": 9,
    "TIMEOUT": 10,
    "LIBRARY_NOT_FOUND": 12,
    "FUNCTION_NOT_FOUND": 13,
    "GPU_IS_LOST": 15,
    "RESET_REQUIRED": 16,
    "UNKNOWN": 999,
}


@dataclass(frozen=True)
class FakeProcess:
    """One compute-process row; ``pid`` may be ``SELF``."""

    pid: int | Literal["self"]
    used_bytes: int


@dataclass(frozen=True)
class FakeMigDevice:
    """One MIG device (a GPU instance's compute instance) of its parent GPU."""

    uuid: str
    gpu_instance_id: int = 1
    compute_instance_id: int = 0
    name: str = "NVIDIA Fake GPU MIG 1g.10gb"
    total_bytes: int = 10 * GIB
    used_bytes: int = 64 * MIB
    processes: Sequence[FakeProcess] = field(default_factory=tuple)
    errors: Mapping[str, int | str] = field(default_factory=dict)
    mig_index: int | None = None


@dataclass(frozen=True)
class FakeNvmlDevice:
    """One fake GPU. ``used_bytes`` is NVML v1 used (reservation included)."""

    name: str | bytes = "NVIDIA Fake GPU"
    total_bytes: int = 16 * GIB
    used_bytes: int = 1 * GIB
    free_bytes: int | None = None
    reserved_bytes: int | None = 256 * MIB
    processes: Sequence[FakeProcess] = field(default_factory=tuple)
    uuid: str | None = None
    pci_bus_id: str | None = None
    mig_mode: bool | None = None
    mig_devices: Sequence[FakeMigDevice] = field(default_factory=tuple)
    errors: Mapping[str, int | str] = field(default_factory=dict)


def default_uuid(index: int) -> str:
    """The UUID the fake gives NVML index ``index`` when its device names none."""
    return f"GPU-00000000-0000-0000-0000-{index:012d}"


def default_pci_bus_id(index: int) -> str:
    return f"00000000:{index + 1:02X}:00.0"


@dataclass(frozen=True)
class FakeNvmlStats:
    """Counters kept by the fake library in this process."""

    inits: int
    shutdowns: int
    calls: int
    refcount: int


def _escape(name: str | bytes) -> str:
    raw = name.encode("utf-8") if isinstance(name, str) else name
    return "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in raw)


def _code(code: int | str) -> int:
    if isinstance(code, int):
        return code
    try:
        return ERROR_CODES[code]
    except KeyError:
        raise ValueError(
            f"unknown NVML error name {code!r}; known: {sorted(ERROR_CODES)}"
        ) from None


def render_config(
    devices: Sequence[FakeNvmlDevice],
    driver: str | None = DEFAULT_DRIVER,
    errors: Mapping[str, int | str] | None = None,
    cuda_order: Sequence[int | str] | None = None,
) -> str:
    """The config text the C library parses (see the header of fake_nvml.c)."""
    errors = errors or {}
    lines: list[str] = []
    if driver is not None:
        lines.append(f"driver {driver}")
    mig_slots: dict[str, str] = {}
    for index, device in enumerate(devices):
        free = (
            device.total_bytes - device.used_bytes
            if device.free_bytes is None
            else device.free_bytes
        )
        reserved = "-" if device.reserved_bytes is None else str(device.reserved_bytes)
        lines.append(
            f"device {device.total_bytes} {free} {device.used_bytes} {reserved} "
            f"{_escape(device.name)}"
        )
        lines.extend(f"process {index} {p.pid} {p.used_bytes}" for p in device.processes)
        if device.uuid is not None:
            lines.append(f"uuid {index} {device.uuid}")
        if device.pci_bus_id is not None:
            lines.append(f"pci {index} {device.pci_bus_id}")
        if device.mig_mode is not None:
            mode = int(device.mig_mode)
            lines.append(f"migmode {index} {mode} {mode}")
        lines.extend(
            f"deverror {index} {function} {_code(code)}" for function, code in device.errors.items()
        )
        for mig in device.mig_devices:
            slot = f"m{len(mig_slots)}"
            mig_slots[mig.uuid] = slot
            free = mig.total_bytes - mig.used_bytes
            lines.append(
                f"mig {index} {mig.gpu_instance_id} {mig.compute_instance_id} {mig.total_bytes} "
                f"{free} {mig.used_bytes} {mig.uuid} {_escape(mig.name)}"
            )
            if mig.mig_index is not None:
                lines.append(f"migslot {slot} {mig.mig_index}")
            lines.extend(f"process {slot} {p.pid} {p.used_bytes}" for p in mig.processes)
            lines.extend(
                f"deverror {slot} {function} {_code(code)}" for function, code in mig.errors.items()
            )
    lines.extend(f"error {function} {_code(code)}" for function, code in errors.items())
    if cuda_order is not None:
        order = [str(o) if isinstance(o, int) else mig_slots[o] for o in cuda_order]
        lines.append("cuda_order " + " ".join(order))
    return "\n".join(lines) + "\n"


_INNER_WRITE = """
import os
import time

import pytest


def write(text):
    # Whole and at once, as FakeNvml writes it: the sampler never reads half a config.
    path = os.environ["FAKE_NVML_CONFIG"]
    tmp = path + ".inner.tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)

"""


def unseen_pid() -> int:
    """A PID no process here can have (beyond the kernel's pid_max): how NVML lists this
    process inside a container that lacks the host's PID namespace."""
    with open("/proc/sys/kernel/pid_max", encoding="ascii") as f:
        return int(f.read()) + 17


def inner_writer(**configs: str | Sequence[FakeNvmlDevice]) -> str:
    """The head of an inner test file: ``os``, ``time``, ``pytest`` imported, ``write(text)``
    replacing the active fake's config, and each keyword a constant holding a config text:
    the text given, or the devices given rendered with the default driver
    (``inner_writer(IDLE=idle, SPIKE=spike)``, then ``write(SPIKE)`` in a test)."""
    texts = {
        name: config if isinstance(config, str) else render_config(config)
        for name, config in configs.items()
    }
    return _INNER_WRITE + "".join(f"{name} = {text!r}\n" for name, text in texts.items())


class FakeNvml:
    """A config file for one compiled fake library; see the module docstring."""

    def __init__(self, library: Path, config_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.library = library
        self.config_path = config_path
        self._monkeypatch = monkeypatch
        self.devices: list[FakeNvmlDevice] = [FakeNvmlDevice()]
        self.driver: str | None = DEFAULT_DRIVER
        self.errors: dict[str, int | str] = {}
        self.cuda_order: list[int | str] | None = None
        self._active = False
        self._write()

    @property
    def env(self) -> dict[str, str]:
        env = {
            "HYPOMNESIS_NVML_LIBRARY": str(self.library),
            "FAKE_NVML_CONFIG": str(self.config_path),
        }
        if self.cuda_order is not None:
            env["HYPOMNESIS_CUDA_LIBRARY"] = str(self.library)
        return env

    def set(
        self,
        devices: Sequence[FakeNvmlDevice] | None = None,
        *,
        driver: str | None = DEFAULT_DRIVER,
        errors: Mapping[str, int | str] | None = None,
        cuda_order: Sequence[int | str] | None = None,
    ) -> None:
        self.devices = [FakeNvmlDevice()] if devices is None else list(devices)
        self.driver = driver
        self.errors = dict(errors or {})
        self.cuda_order = None if cuda_order is None else list(cuda_order)
        self._write()
        if self._active:
            self.activate()

    def set_self_used(
        self, used_bytes: int | None, device: int = 0, device_used_bytes: int | None = None
    ) -> None:
        current = self.devices[device]
        rows = [p for p in current.processes if p.pid != SELF]
        if used_bytes is not None:
            rows.append(FakeProcess(SELF, used_bytes))
        changed = replace(current, processes=tuple(rows))
        if device_used_bytes is not None:
            changed = replace(changed, used_bytes=device_used_bytes)
        self.devices[device] = changed
        self._write()

    def fail(self, function: str = "*", code: int | str = "DRIVER_NOT_LOADED") -> None:
        self.errors[function] = code
        self._write()

    def clear_errors(self) -> None:
        self.errors = {}
        self._write()

    def stats(self) -> FakeNvmlStats:
        # dlopen of the same path returns the handle pynvml already holds: same counters.
        stats = ctypes.CDLL(str(self.library)).fake_nvml_stats
        inits, shutdowns, calls = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint()
        refcount = ctypes.c_int()
        stats(
            ctypes.byref(inits),
            ctypes.byref(shutdowns),
            ctypes.byref(calls),
            ctypes.byref(refcount),
        )
        return FakeNvmlStats(inits.value, shutdowns.value, calls.value, refcount.value)

    def activate(self) -> None:
        """Point this process's NVML backend at the fake (undone by ``monkeypatch``)."""
        from pytest_hypomnesis.probe import nvml

        env = self.env
        for key, value in env.items():
            self._monkeypatch.setenv(key, value)
        if "HYPOMNESIS_CUDA_LIBRARY" not in env:
            self._monkeypatch.delenv("HYPOMNESIS_CUDA_LIBRARY", raising=False)
        self._active = True
        nvml._reset_for_tests()

    def deactivate(self) -> None:
        from pytest_hypomnesis.probe import nvml

        nvml._reset_for_tests()
        self._active = False
        for key in (*self.env, "HYPOMNESIS_CUDA_LIBRARY"):
            self._monkeypatch.delenv(key, raising=False)

    def _write(self) -> None:
        text = render_config(self.devices, self.driver, self.errors, self.cuda_order)
        temporary = self.config_path.with_name(self.config_path.name + ".tmp")
        temporary.write_text(text, encoding="ascii")
        os.replace(temporary, self.config_path)


def _compile(out_dir: Path, defines: tuple[str, ...]) -> Path:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler (gcc/cc) to build the fake libnvidia-ml")
    suffix = "-".join(d.lower() for d in defines)
    library = out_dir / (f"libnvidia-ml-fake-{suffix}.so.1" if suffix else "libnvidia-ml.so.1")
    command = [compiler, "-shared", "-fPIC", "-O2", "-pthread", *(f"-D{d}" for d in defines)]
    command += ["-o", str(library), str(SOURCE)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"building the fake NVML library failed:\n{result.stderr}")
    return library


@pytest.fixture(scope="session")
def fake_nvml_build(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``fake_nvml_build(*defines) -> Path``: the compiled fake library, cached per variant."""
    built: dict[tuple[str, ...], Path] = {}

    def build(*defines: str) -> Path:
        unknown = set(defines) - DEFINES
        if unknown:
            raise ValueError(
                f"unknown fake NVML defines {sorted(unknown)}; known: {sorted(DEFINES)}"
            )
        key = tuple(sorted(defines))
        if key not in built:
            built[key] = _compile(tmp_path_factory.mktemp("fake_nvml"), key)
        return built[key]

    return build


@pytest.fixture(scope="session")
def fake_nvml_library(fake_nvml_build: Callable[..., Path]) -> Path:
    """Path of the default fake ``libnvidia-ml.so.1`` build."""
    return fake_nvml_build()


@pytest.fixture
def fake_nvml_factory(
    fake_nvml_build: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., FakeNvml]]:
    """``fake_nvml_factory(defines=(), activate=True) -> FakeNvml``."""
    made: list[FakeNvml] = []

    def make(defines: Sequence[str] = (), activate: bool = True) -> FakeNvml:
        config = tmp_path / f"fake_nvml_{len(made)}.conf"
        fake = FakeNvml(fake_nvml_build(*defines), config, monkeypatch)
        made.append(fake)
        if activate:
            fake.activate()
        return fake

    yield make
    if made:
        # Runs before monkeypatch restores the environment: shut the fake down while the
        # library it came from is still the one configured.
        from pytest_hypomnesis.probe import nvml

        nvml._reset_for_tests()


@pytest.fixture
def fresh_cuda_mapping() -> Iterator[None]:
    """The CUDA-ordinal mapping (cached per process) read afresh in the test and after it."""
    from pytest_hypomnesis.probe import cuda_devices

    cuda_devices._reset_for_tests()
    yield
    cuda_devices._reset_for_tests()


@pytest.fixture
def fake_nvml(fake_nvml_factory: Callable[..., FakeNvml]) -> FakeNvml:
    """A ``FakeNvml`` active in this process: one default device, no processes."""
    return fake_nvml_factory()
