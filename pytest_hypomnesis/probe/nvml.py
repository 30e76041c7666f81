"""NVML through nvidia-ml-py (``pynvml``): device figures, per-process rows, a sampler reader.

Unlike the crate, which loads, initialises and shuts NVML down on every call, NVML is
initialised once, lazily, under a lock, and shut down at exit. Every call still reads
fresh figures; only the initialisation is kept. A driver-level error (GPU lost, driver
not loaded, uninitialised, unknown) marks the session for re-initialisation on the next
call, and a fork (pid change) drops the inherited session.

``HYPOMNESIS_NVML_LIBRARY=/path/to/libnvidia-ml.so.1`` loads NVML from that path instead
of pynvml's default. Every failure raises ``BackendFailure("NVML", reason)`` where the
reason is pynvml's text (``Driver Not Loaded``, ``Insufficient Permissions``, ...).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar, cast, overload

from pytest_hypomnesis._errors import BackendFailure
from pytest_hypomnesis._platform import debug

if TYPE_CHECKING:
    import ctypes
    from typing import Protocol

    from pytest_hypomnesis.probe.readings import (
        NvmlDeviceReading,
        NvmlGpu,
        NvmlMigDevice,
        VramReading,
    )

    # nvidia-ml-py ships no types: the part of its module this file uses, as it behaves.
    # Declared for the type checker only (no Protocol classes built at import).

    Handle = object
    """A ``c_nvmlDevice_t``: opaque, only ever passed back to NVML."""

    class MemoryStruct(ctypes.Structure):
        """``c_nvmlMemory_t`` (v1); the v2 struct adds ``reserved``."""

        total: int
        free: int
        used: int

    class MemoryV2Struct(MemoryStruct):
        reserved: int

    class PciInfo(Protocol):
        busId: bytes | str

    class ProcessInfo(Protocol):
        pid: int
        usedGpuMemory: int | None
        """``None`` where NVML gave its not-available value."""

    class Pynvml(Protocol):
        NVMLError: type[Exception]
        """Raised with the NVML return code as ``.value``."""
        nvmlLib: ctypes.CDLL | None
        c_nvmlMemory_t: type[MemoryStruct]
        c_nvmlProcessInfo_v3_t: type[ctypes.Structure]

        def nvmlInit(self) -> None: ...
        def nvmlShutdown(self) -> None: ...
        def nvmlDeviceGetCount(self) -> int: ...
        def nvmlDeviceGetHandleByIndex(self, index: int) -> Handle: ...
        def nvmlDeviceGetHandleByUUID(self, uuid: bytes) -> Handle: ...
        @overload
        def nvmlDeviceGetMemoryInfo(self, handle: Handle) -> MemoryStruct: ...
        @overload
        def nvmlDeviceGetMemoryInfo(self, handle: Handle, version: int) -> MemoryV2Struct: ...
        def nvmlDeviceGetName(self, handle: Handle) -> bytes | str: ...
        def nvmlDeviceGetUUID(self, handle: Handle) -> bytes | str: ...
        def nvmlSystemGetDriverVersion(self) -> bytes | str: ...
        def nvmlDeviceGetPciInfo(self, handle: Handle) -> PciInfo: ...
        def nvmlDeviceGetMigMode(self, handle: Handle) -> Sequence[int]: ...
        def nvmlDeviceGetMaxMigDeviceCount(self, handle: Handle) -> int: ...
        def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Handle, index: int) -> Handle: ...
        def nvmlDeviceGetGpuInstanceId(self, handle: Handle) -> int: ...
        def nvmlDeviceGetComputeInstanceId(self, handle: Handle) -> int: ...
        def _nvmlGetFunctionPointer(self, name: str) -> Callable[..., int]: ...


# The reading records are dataclasses, imported where one is built: a machine without
# NVML fails before that, and `hmn ps` there never loads `dataclasses`.
_RECORDS = frozenset({"NvmlGpu", "NvmlMigDevice"})


def __getattr__(name: str) -> object:
    if name in _RECORDS:
        from pytest_hypomnesis.probe import readings

        return getattr(readings, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "NvmlGpu",
    "NvmlMigDevice",
    "device_count",
    "device_query",
    "find_mig_device_of",
    "impossible_device_figures",
    "inventory",
    "list_processes",
    "process_used_bytes",
    "self_reader",
]

T = TypeVar("T")

LIBRARY_ENV = "HYPOMNESIS_NVML_LIBRARY"

# NVML return codes are ABI, so they are spelled here rather than read from pynvml
# (which keeps the fake pynvml of the unit tests small).
_SUCCESS = 0
_ERROR_UNINITIALIZED = 1
_ERROR_INSUFFICIENT_SIZE = 7
_ERROR_DRIVER_NOT_LOADED = 9
_ERROR_FUNCTION_NOT_FOUND = 13
_ERROR_GPU_IS_LOST = 15
_ERROR_RESET_REQUIRED = 16
_ERROR_LIB_RM_VERSION_MISMATCH = 18
_ERROR_UNKNOWN = 999

# After these the session may be dead: shut down and initialise again on the next call.
_REINIT_CODES = frozenset(
    {
        _ERROR_UNINITIALIZED,
        _ERROR_DRIVER_NOT_LOADED,
        _ERROR_GPU_IS_LOST,
        _ERROR_RESET_REQUIRED,
        _ERROR_LIB_RM_VERSION_MISMATCH,
        _ERROR_UNKNOWN,
    }
)

NOT_AVAILABLE = 2**64 - 1
"""``NVML_VALUE_NOT_AVAILABLE`` (WDDM, R570 drivers); pynvml turns it into ``None``."""

_MEMORY_V2_VERSION = 0x02000028  # sizeof(nvmlMemory_v2_t) = 40 | 2 << 24

# pynvml sizes its process buffers at twice the probed count plus five; a count that still
# grows past that between its two calls raises INSUFFICIENT_SIZE, which we retry.
_SIZE_ATTEMPTS = 4

_PROCESS_QUERIES = (
    "nvmlDeviceGetComputeRunningProcesses_v3",
    "nvmlDeviceGetComputeRunningProcesses_v2",
    "nvmlDeviceGetComputeRunningProcesses",
)

_lock = threading.Lock()
CALL_TIMEOUT_S = 10.0
"""How long a sampler reading waits for the NVML lock before it is unknown (a driver call
that never returns holds it)."""
_nv: Pynvml | None = None  # the pynvml module NVML was initialised through
_init_pid: int | None = None  # pid that initialised; None when not initialised
_needs_reinit = False
_generation = 0  # bumped on every successful init, so kept handles know to refresh
_loaded_path: str | None = None  # library we put into pynvml.nvmlLib from LIBRARY_ENV
_loaded_into: Pynvml | None = None  # the pynvml module that library was put into
_process_query_start = 0  # first process-query version not known to be missing
_atexit_registered = False
# A machine without a driver fails every init the same way; retrying dlopen + init on each
# call made a GPU-less Snapshot.now() ten times slower than its RSS floor. Remember the
# failure briefly (per library path and pid), so a driver that appears is still found.
_INIT_RETRY_S = 2.0
_init_failure: tuple[str | None, int, float, BackendFailure] | None = None


_unloadable: tuple[int, float, str] | None = None
"""(pid, when, reason) nvidia-ml-py or ``libnvidia-ml.so.1`` was last found missing."""
_NO_LIBRARY = "NVML Shared Library Not Found"
_NOT_INSTALLED = "nvidia-ml-py not installed"


def _remembered_unloadable() -> None:
    """Fail at once, before any ``sys.path`` scan or library load, when NVML was found
    missing moments ago in this process: a GPU-less ``Snapshot.now()`` asks twice per
    call, and each ``find_spec`` walks every ``sys.path`` entry (hundreds of us)."""
    missing = _unloadable
    if (
        missing is not None
        and missing[0] == os.getpid()
        and time.monotonic() - missing[1] < _INIT_RETRY_S
        # A library named by the environment is loaded by its path, not looked up.
        and not (missing[2] == _NO_LIBRARY and os.environ.get(LIBRARY_ENV))
    ):
        raise BackendFailure("NVML", missing[2])


def _remember_unloadable(reason: str) -> BackendFailure:
    global _unloadable
    _unloadable = (os.getpid(), time.monotonic(), reason)
    return BackendFailure("NVML", reason)


def _precheck_library() -> None:
    """On Linux, fail fast when ``libnvidia-ml.so.1`` cannot be loaded, before importing
    nvidia-ml-py: the import alone costs ~25 ms, every run of a GPU-less test suite."""
    global _unloadable
    if not sys.platform.startswith("linux") or os.environ.get(LIBRARY_ENV):
        return
    import ctypes

    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError as exc:
        debug("NVML", f"libnvidia-ml.so.1 not loadable: {exc}")
        raise _remember_unloadable(_NO_LIBRARY) from None
    _unloadable = None


def _import_pynvml() -> Pynvml:
    try:
        return cast("Pynvml", importlib.import_module("pynvml"))
    except ImportError as exc:
        raise BackendFailure("NVML", _NOT_INSTALLED) from exc


def _code(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def _reason(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # pynvml asks the library for unknown codes; it may be gone
        return f"NVML error code {_code(exc)}"


def _note_error(exc: BaseException, call: str) -> str:
    """Mark the session for re-initialisation after a driver-level error; the reason."""
    global _needs_reinit
    code = _code(exc)
    if code in _REINIT_CODES:
        _needs_reinit = True
    reason = _reason(exc)
    debug("NVML", f"{call} failed: {reason} (code {code})")
    return reason


def _failure(exc: BaseException, call: str) -> BackendFailure:
    return BackendFailure("NVML", _note_error(exc, call))


def _forget_session() -> None:
    global _nv, _init_pid, _needs_reinit
    _nv, _init_pid, _needs_reinit = None, None, False


def _point_pynvml_at(nv: Pynvml, path: str | None) -> None:
    """Make pynvml load ``path`` (or its default when ``None``) on the next init.

    pynvml loads its library once into the module global ``nvmlLib`` and caches function
    pointers; replacing both is the least intrusive way to choose another library.
    """
    global _loaded_path, _loaded_into, _process_query_start
    if path is None:
        lib = None
    else:
        import ctypes

        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            raise BackendFailure(
                "NVML", f"NVML Shared Library Not Found ({LIBRARY_ENV}={path}: {exc})"
            ) from exc
    nv.nvmlLib = lib
    cache = getattr(nv, "_nvmlGetFunctionPointer_cache", None)
    if isinstance(cache, dict):
        cache.clear()
    _loaded_path, _loaded_into = path, (None if path is None else nv)
    _process_query_start = 0


def _ensure() -> Pynvml:
    """The initialised pynvml module. Call with ``_lock`` held."""
    global _nv, _init_pid, _needs_reinit, _generation, _atexit_registered, _init_failure
    loaded = sys.modules.get("pynvml")
    if loaded is not None:
        nv = cast("Pynvml", loaded)
    else:
        _remembered_unloadable()
        import importlib.util

        if importlib.util.find_spec("pynvml") is None:
            raise _remember_unloadable(_NOT_INSTALLED)
        _precheck_library()
        nv = _import_pynvml()
    if _init_pid is not None and (nv is not _nv or _init_pid != os.getpid()):
        # Another pynvml module (tests) or a forked child: the session is not ours to use.
        _forget_session()
    if _init_pid is not None and _needs_reinit:
        try:
            nv.nvmlShutdown()
        except Exception as exc:  # a dead session may refuse to shut down; init anyway
            debug("NVML", f"nvmlShutdown before re-init failed: {_reason(exc)}")
        _forget_session()
    if _init_pid is not None:
        return nv
    wanted = os.environ.get(LIBRARY_ENV) or None
    if _init_failure is not None:
        path, pid, when, failure = _init_failure
        if path == wanted and pid == os.getpid() and time.monotonic() - when < _INIT_RETRY_S:
            raise BackendFailure(failure.backend, failure.reason)
        _init_failure = None
    try:
        if wanted != _loaded_path or (wanted is not None and nv is not _loaded_into):
            _point_pynvml_at(nv, wanted)
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            raise _failure(exc, "nvmlInit") from exc
    except BackendFailure as failure:
        _init_failure = (wanted, os.getpid(), time.monotonic(), failure)
        raise
    _nv, _init_pid, _needs_reinit, _generation = nv, os.getpid(), False, _generation + 1
    debug("NVML", f"initialised (generation {_generation}, library {wanted or 'default'})")
    if not _atexit_registered:
        import atexit

        atexit.register(_shutdown_at_exit)
        _atexit_registered = True
    return nv


def _shutdown_at_exit() -> None:
    lock = _lock
    # A daemon sampler stuck in a hung driver call must not hang interpreter exit.
    if not lock.acquire(timeout=2.0):
        return
    try:
        if _init_pid == os.getpid() and _nv is not None:
            # Exiting anyway: a failed shutdown has nothing left to protect.
            with contextlib.suppress(Exception):
                _nv.nvmlShutdown()
        _forget_session()
    finally:
        lock.release()


def _after_fork_in_child() -> None:
    # The parent may have held the lock while forking; a held copy would deadlock us.
    global _lock
    _lock = threading.Lock()
    _forget_session()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _reset_for_tests() -> None:
    """Shut NVML down and drop every cached state, including the library pynvml loaded
    from ``HYPOMNESIS_NVML_LIBRARY`` (so the next call loads whatever the env now says)."""
    global _process_query_start, _init_failure, _unloadable
    with _lock:
        _unloadable = None
        if _init_pid == os.getpid() and _nv is not None:
            # The fake may be configured to fail; the state is dropped either way.
            with contextlib.suppress(Exception):
                _nv.nvmlShutdown()
        if _loaded_into is not None:
            _point_pynvml_at(_loaded_into, None)
        _forget_session()
        _process_query_start = 0
        _init_failure = None


def _handle(nv: Pynvml, index: int, uuid: str | None = None) -> Handle:
    """The handle of NVML index ``index``, or of ``uuid`` when given: a ``MIG-`` UUID
    reaches a MIG device, whose queries answer for that slice alone."""
    if uuid is not None:
        try:
            return nv.nvmlDeviceGetHandleByUUID(uuid.encode("ascii"))
        except nv.NVMLError as exc:
            raise _failure(exc, f"nvmlDeviceGetHandleByUUID({uuid})") from exc
    try:
        return nv.nvmlDeviceGetHandleByIndex(index)
    except nv.NVMLError as exc:
        raise _failure(exc, f"nvmlDeviceGetHandleByIndex_v2({index})") from exc


def _memory(nv: Pynvml, handle: Handle, index: int) -> MemoryStruct:
    try:
        return nv.nvmlDeviceGetMemoryInfo(handle)
    except nv.NVMLError as exc:
        raise _failure(exc, f"nvmlDeviceGetMemoryInfo({index})") from exc


def _best_effort(nv: Pynvml, call: str, fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except nv.NVMLError as exc:
        _note_error(exc, call)
        return None


def _text(value: object) -> str | None:
    """NUL-trimmed, lossy UTF-8, empty → None (the crate's rule for names and versions)."""
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogateescape")
    text = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    return text or None


def _lossy(fn: Callable[[], object]) -> str | None:
    try:
        return _text(fn())
    except UnicodeDecodeError as exc:
        # pynvml decodes strictly; the crate decodes lossily, and the bytes are on the error.
        return _text(bytes(exc.object))


def _device_count(nv: Pynvml) -> int:
    try:
        return int(nv.nvmlDeviceGetCount())
    except nv.NVMLError as exc:
        raise _failure(exc, "nvmlDeviceGetCount_v2") from exc


def device_count() -> int:
    """nvmlDeviceGetCount_v2. Raises BackendFailure("NVML", reason)."""
    with _lock:
        count = _device_count(_ensure())
    debug("NVML", f"device_count = {count}")
    return count


def device_query(index: int, uuid: str | None = None) -> NvmlDeviceReading:
    """Device-wide figures for ``index`` (or ``uuid``): mem v1, name, v2 reserved, driver."""
    with _lock:
        nv = _ensure()
        handle = _handle(nv, index, uuid)
        memory = _memory(nv, handle, index)
        name = _best_effort(
            nv, "nvmlDeviceGetName", lambda: _lossy(lambda: nv.nvmlDeviceGetName(handle))
        )
        reserved = _best_effort(nv, "nvmlDeviceGetMemoryInfo_v2", lambda: _reserved(nv, handle))
        driver = _best_effort(
            nv, "nvmlSystemGetDriverVersion", lambda: _lossy(nv.nvmlSystemGetDriverVersion)
        )
    problem = impossible_device_figures(int(memory.total), int(memory.free), int(memory.used))
    if problem is not None:
        raise BackendFailure("NVML", f"GPU {index}: {problem}")
    from pytest_hypomnesis.probe.readings import NvmlDeviceReading

    reading = NvmlDeviceReading(
        name=name,
        total_bytes=int(memory.total),
        free_bytes=int(memory.free),
        used_bytes=int(memory.used),
        reserved_bytes=reserved,
        driver_version=driver,
    )
    debug(
        "NVML",
        f"device {index}: total={reading.total_bytes} free={reading.free_bytes} "
        f"used={reading.used_bytes} reserved={reserved} name={name!r} driver={driver!r}",
    )
    return reading


def _uuid_and_name(nv: Pynvml, handle: Handle) -> tuple[str | None, str | None]:
    uuid = _best_effort(
        nv, "nvmlDeviceGetUUID", lambda: _lossy(lambda: nv.nvmlDeviceGetUUID(handle))
    )
    name = _best_effort(
        nv, "nvmlDeviceGetName", lambda: _lossy(lambda: nv.nvmlDeviceGetName(handle))
    )
    return uuid, name


def _mig_device(nv: Pynvml, mig: Handle, mig_index: int) -> NvmlMigDevice | None:
    uuid, name = _uuid_and_name(nv, mig)
    if uuid is None:
        return None
    gi = _best_effort(
        nv, "nvmlDeviceGetGpuInstanceId", lambda: int(nv.nvmlDeviceGetGpuInstanceId(mig))
    )
    ci = _best_effort(
        nv, "nvmlDeviceGetComputeInstanceId", lambda: int(nv.nvmlDeviceGetComputeInstanceId(mig))
    )
    from pytest_hypomnesis.probe.readings import NvmlMigDevice

    return NvmlMigDevice(uuid, mig_index, gi, ci, name)


def _mig_slots_of(nv: Pynvml, index: int, handle: Handle) -> list[tuple[int, Handle]] | None:
    """(MIG index, handle) of each MIG device of GPU ``index``; ``None`` when it is not in
    MIG mode (a GPU without MIG support answers NOT_SUPPORTED)."""
    modes = _best_effort(
        nv, f"nvmlDeviceGetMigMode({index})", lambda: nv.nvmlDeviceGetMigMode(handle)
    )
    if not modes or int(modes[0]) != 1:
        return None
    # nvml.h: SUCCESS with 0 when MIG is unsupported or disabled.
    slots = _best_effort(
        nv, "nvmlDeviceGetMaxMigDeviceCount", lambda: int(nv.nvmlDeviceGetMaxMigDeviceCount(handle))
    )
    found: list[tuple[int, Handle]] = []
    for k in range(slots or 0):
        try:
            found.append((k, nv.nvmlDeviceGetMigDeviceHandleByIndex(handle, k)))
        except nv.NVMLError as exc:  # NOT_FOUND: an empty slot (slots need not be dense)
            _note_error(exc, f"nvmlDeviceGetMigDeviceHandleByIndex({index}, {k})")
    return found


def _mig_devices(nv: Pynvml, handle: Handle, index: int) -> tuple[bool, tuple[NvmlMigDevice, ...]]:
    """(MIG mode on, its MIG devices)."""
    slots = _mig_slots_of(nv, index, handle)
    if slots is None:
        return False, ()
    devices = (_mig_device(nv, mig, k) for k, mig in slots)
    return True, tuple(device for device in devices if device is not None)


def _gpu(nv: Pynvml, index: int) -> NvmlGpu:
    handle = _handle(nv, index)
    pci = _best_effort(nv, "nvmlDeviceGetPciInfo_v3", lambda: nv.nvmlDeviceGetPciInfo(handle))
    uuid, name = _uuid_and_name(nv, handle)
    mig_enabled, migs = _mig_devices(nv, handle, index)
    bus_id = None if pci is None else _text(pci.busId)
    from pytest_hypomnesis.probe.readings import NvmlGpu

    return NvmlGpu(index, uuid, bus_id, name, mig_enabled, migs)


_mig_slots: tuple[int, list[tuple[int, int, Handle]]] | None = None
"""(generation, [(parent NVML index, MIG index, MIG handle)]): every MIG device of every GPU
in MIG mode, enumerated once per NVML session (a search repeats at each span start)."""


def _mig_handles(nv: Pynvml) -> list[tuple[int, int, Handle]]:
    global _mig_slots
    if _mig_slots is not None and _mig_slots[0] == _generation:
        return _mig_slots[1]
    found: list[tuple[int, int, Handle]] = []
    for index in range(_device_count(nv)):
        try:
            handle = _handle(nv, index)
        except BackendFailure:
            continue
        found.extend((index, k, mig) for k, mig in _mig_slots_of(nv, index, handle) or ())
    _mig_slots = (_generation, found)
    return found


_pid_rows: tuple[type[ctypes.Structure], int, ctypes.Array[ctypes.Structure]] | None = None
"""(row type, capacity, rows): the search's kept ctypes buffer."""


def _pid_listed(nv: Pynvml, handle: Handle, pid: int) -> bool:
    """Whether ``pid`` has a row in ``handle``'s compute-process listing. Repeated at each
    span start while the search goes on, so the ``_v3`` C function is called into a kept
    buffer where it can be (pynvml's wrapper costs ~80 us a listing, a Python object per
    row); else through ``_raw_processes``. Raises BackendFailure with NVML's reason."""
    global _pid_rows
    import ctypes

    fn = None
    if _process_query_start == 0:
        try:
            fn = nv._nvmlGetFunctionPointer(_PROCESS_QUERIES[0])
            row_type = nv.c_nvmlProcessInfo_v3_t
        except Exception:  # another pynvml, or the symbol missing: the wrapper path
            fn = None
    if fn is None:
        return any(row_pid == pid for row_pid, _ in _raw_processes(nv, handle))
    kept = _pid_rows
    if kept is None or kept[0] is not row_type:
        kept = (row_type, 16, (row_type * 16)())
    count = ctypes.c_uint()
    for _ in range(_SIZE_ATTEMPTS):
        count.value = kept[1]
        ret = fn(handle, ctypes.byref(count), kept[2])
        if ret != _ERROR_INSUFFICIENT_SIZE:
            break
        capacity = max(count.value * 2 + 5, kept[1] * 2)
        kept = (row_type, capacity, (row_type * capacity)())
    _pid_rows = kept
    if ret != _SUCCESS:
        raise _failure(nv.NVMLError(ret), _PROCESS_QUERIES[0])
    return any(row.pid == pid for row in kept[2][: count.value])


def find_mig_device_of(pid: int) -> tuple[tuple[NvmlGpu, NvmlMigDevice] | None, tuple[str, ...]]:
    """The MIG device whose compute-process listing holds ``pid`` (its GPU, and the device),
    searched over every MIG device of every GPU in MIG mode (a GPU's own handle refuses
    that listing to an unprivileged caller, and would mix tenants); ``None`` when no
    listing holds it. Also the reasons of listings NVML refused (``Insufficient
    Permissions`` on a slice this container cannot use). Raises when NVML cannot count."""
    refused: list[str] = []
    with _lock:
        nv = _ensure()
        for index, k, mig in _mig_handles(nv):
            try:
                listed = _pid_listed(nv, mig, pid)
            except BackendFailure as exc:
                refused.append(f"MIG device {k} of GPU {index}: {exc.reason}")
                continue
            if listed:
                device = _mig_device(nv, mig, k)
                if device is not None:
                    gpu = _gpu(nv, index)
                    debug("NVML", f"pid {pid} found on {device.uuid} (GPU {index})")
                    return (gpu, device), tuple(refused)
    return None, tuple(refused)


def inventory() -> tuple[NvmlGpu, ...]:
    """Every GPU NVML sees, by NVML index, with UUID, PCI bus id, name and MIG devices.
    Raises BackendFailure when NVML cannot count; a figure one GPU cannot give is ``None``."""
    with _lock:
        nv = _ensure()
        gpus = tuple(_gpu(nv, index) for index in range(_device_count(nv)))
    debug("NVML", f"inventory: {gpus}")
    return gpus


def generation() -> int:
    """Initialises NVML if needed; a number that changes whenever NVML was (re)initialised."""
    with _lock:
        _ensure()
        return _generation


def impossible_device_figures(total: int, free: int, used: int) -> str | None:
    """Why NVML's device memory figures cannot be a reading (``None`` when they can): the
    2^64-1 not-available sentinel, or used or free above total. Treated like the
    per-process sentinels: unknown, with this reason, never passed through."""
    if NOT_AVAILABLE in (total, free, used):
        return "device memory not available (NVML returned 2^64-1)"
    if used > total:
        return f"impossible device figures: used {used} B exceeds total {total} B"
    if free > total:
        return f"impossible device figures: free {free} B exceeds total {total} B"
    return None


def _sane_used(memory: MemoryStruct) -> int | None:
    """The device used figure of a v1 memory struct, ``None`` when it is impossible."""
    total, free, used = int(memory.total), int(memory.free), int(memory.used)
    return None if impossible_device_figures(total, free, used) else used


def _reserved(nv: Pynvml, handle: Handle) -> int | None:
    try:
        memory = nv.nvmlDeviceGetMemoryInfo(handle, version=_MEMORY_V2_VERSION)
    except TypeError:  # a pynvml too old to know the v2 struct
        return None
    return int(memory.reserved)


@functools.cache
def _process_info_v1() -> type[ctypes.Structure]:
    import ctypes

    class ProcessInfoV1(ctypes.Structure):
        _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]

    return ProcessInfoV1


def _processes_v1(nv: Pynvml, handle: Handle) -> list[tuple[int, int | None]]:
    """The unversioned query through pynvml's symbol lookup (pynvml 12+ has no v1 wrapper),
    sized the way pynvml sizes the versioned ones."""
    import ctypes

    fn = nv._nvmlGetFunctionPointer(_PROCESS_QUERIES[2])
    count = ctypes.c_uint(0)
    ret = fn(handle, ctypes.byref(count), None)
    if ret == _SUCCESS:
        return []
    if ret != _ERROR_INSUFFICIENT_SIZE:
        raise nv.NVMLError(ret)
    capacity = count.value * 2 + 5
    rows = (_process_info_v1() * capacity)()
    count.value = capacity
    ret = fn(handle, ctypes.byref(count), rows)
    if ret != _SUCCESS:
        raise nv.NVMLError(ret)
    return [(int(row.pid), int(row.usedGpuMemory)) for row in rows[: count.value]]


def _query_version(nv: Pynvml, position: int, handle: Handle) -> list[tuple[int, int | None]]:
    if position == 2:
        return _processes_v1(nv, handle)
    fn: Callable[[Handle], Sequence[ProcessInfo]] | None
    fn = getattr(nv, _PROCESS_QUERIES[position], None)
    if fn is None:  # a pynvml without this wrapper: same as the symbol missing
        raise nv.NVMLError(_ERROR_FUNCTION_NOT_FOUND)
    return [
        (int(p.pid), None if p.usedGpuMemory is None else int(p.usedGpuMemory)) for p in fn(handle)
    ]


def _raw_processes(nv: Pynvml, handle: Handle) -> list[tuple[int, int | None]]:
    """Compute-process rows, ``_v3`` → ``_v2`` → v1 when a versioned symbol is missing.
    ``None`` or 2^64−1 in a row means not available. Call with ``_lock`` held."""
    global _process_query_start
    position = _process_query_start
    attempt = 0
    while True:
        try:
            rows = _query_version(nv, position, handle)
        except nv.NVMLError as exc:
            code = _code(exc)
            if code == _ERROR_FUNCTION_NOT_FOUND and position < len(_PROCESS_QUERIES) - 1:
                position += 1
                _process_query_start = position
                continue
            attempt += 1
            if code == _ERROR_INSUFFICIENT_SIZE and attempt < _SIZE_ATTEMPTS:
                continue
            raise _failure(exc, _PROCESS_QUERIES[position]) from exc
        debug("NVML", f"{_PROCESS_QUERIES[position]}: {len(rows)} row(s) {rows[:16]}")
        return rows


def _usable(used: int | None, total: int) -> bool:
    return used is not None and used != NOT_AVAILABLE and used <= total


def _total_and_rows(
    index: int, uuid: str | None = None
) -> tuple[int, list[tuple[int, int | None]]]:
    """The device total (to reject larger per-process figures) and its process rows."""
    with _lock:
        nv = _ensure()
        handle = _handle(nv, index, uuid)
        total = int(_memory(nv, handle, index).total)
        return total, _raw_processes(nv, handle)


def process_used_bytes(index: int, pid: int, uuid: str | None = None) -> int:
    """``pid``'s row from the running-process queries; raises when absent/sentinel/>total."""
    total, rows = _total_and_rows(index, uuid)
    # The crate takes the first row of the pid (MIG may list one per instance).
    matches = [used for row_pid, used in rows if row_pid == pid]
    if not matches:
        raise BackendFailure("NVML", f"pid {pid} has no compute context on GPU {index}")
    found = matches[0]
    if found is None or found == NOT_AVAILABLE:
        raise BackendFailure("NVML", f"per-process memory of pid {pid} not available")
    if found > total:
        raise BackendFailure(
            "NVML", f"per-process figure {found} of pid {pid} exceeds device total {total}"
        )
    return found


def listed_pids(index: int, uuid: str | None = None) -> list[int]:
    """Every PID in the device's compute-process listing, sentinel rows included."""
    _, rows = _total_and_rows(index, uuid)
    return [pid for pid, _ in rows]


def rows_and_total(index: int, uuid: str | None = None) -> tuple[list[tuple[int, int | None]], int]:
    """Every (pid, used or ``None``) row of the device's compute-process listing, sentinel
    rows included, and the device total (a larger figure is not a real one)."""
    total, rows = _total_and_rows(index, uuid)
    return rows, total


def list_processes(index: int) -> list[tuple[int, int]]:
    """(pid, used_bytes) rows, filtered (2^64-1, > total), sorted by pid."""
    total, rows = _total_and_rows(index)
    kept = [(pid, used) for pid, used in rows if used is not None and _usable(used, total)]
    if len(kept) != len(rows):
        debug("NVML", f"device {index}: dropped {len(rows) - len(kept)} sentinel/>total row(s)")
    # Rows are kept one per NVML row, as the crate does; the sort is stable.
    return sorted(kept, key=lambda row: row[0])


class _SelfReader:
    """Reads this process's row and the device used bytes through a kept handle.

    The sampler calls this every few milliseconds and twice per measured test, so when the
    ``_v3`` query is available it calls the C functions directly into kept ctypes buffers:
    pynvml's wrappers ask for the count first and build a Python object per row, which
    cost most of a reading (21 us of 27 against the fake library).
    """

    def __init__(self, index: int, uuid: str | None = None) -> None:
        from pytest_hypomnesis.gpumodel import GpuQuerySource
        from pytest_hypomnesis.probe.readings import VramReading

        self._reading = VramReading
        self._source = GpuQuerySource.NVML
        self.index = index
        self.uuid = uuid
        self._fast: tuple[Callable[..., int], Callable[..., int], Callable[..., object]] | None
        self._fast = None
        with _lock:
            nv = _ensure()
            self.handle = _handle(nv, index, uuid)
            self.generation = _generation
            _memory(nv, self.handle, index)
            # No per-process listing at all (WDDM, no permission): nothing to sample.
            _raw_processes(nv, self.handle)
            self._prepare_fast(nv)

    def _prepare_fast(self, nv: Pynvml) -> None:
        self._fast = None
        if _process_query_start != 0:
            return
        try:
            import ctypes

            memory_fn = nv._nvmlGetFunctionPointer("nvmlDeviceGetMemoryInfo")
            process_fn = nv._nvmlGetFunctionPointer(_PROCESS_QUERIES[0])
            self._row_type = nv.c_nvmlProcessInfo_v3_t
            self._memory = nv.c_nvmlMemory_t()
        except Exception:  # an older/newer pynvml: the wrapper path still works
            return
        self._count = ctypes.c_uint(0)
        self._capacity = 64
        self._rows = (self._row_type * self._capacity)()
        self._fast = (memory_fn, process_fn, ctypes.byref)

    def __call__(self) -> VramReading:
        try:
            return self._read()
        except BackendFailure as exc:  # a sampler must keep going; the gap is unknown
            debug("NVML", f"self reader on device {self.index} failed: {exc.reason}")
            return self._reading(None, None, None, failure=f"NVML: {exc.reason}")
        except Exception as exc:
            debug("NVML", f"self reader on device {self.index} failed: {exc}")
            failure = f"NVML: {type(exc).__name__}: {exc}"
            return self._reading(None, None, None, failure=failure)

    def _read(self) -> VramReading:
        lock = _lock
        # NVML calls have no timeout: a driver call hung on another thread holds the lock
        # forever. Waiting a bounded time makes this reading unknown instead of the run hung.
        if not lock.acquire(timeout=CALL_TIMEOUT_S):
            raise BackendFailure(
                "NVML", f"an NVML call did not return within {CALL_TIMEOUT_S:g}s (hung driver?)"
            )
        try:
            return self._read_locked()
        finally:
            lock.release()

    def _read_locked(self) -> VramReading:
        nv = _ensure()
        if self.generation != _generation:
            self.handle = _handle(nv, self.index, self.uuid)
            self.generation = _generation
            self._prepare_fast(nv)
        if self._fast is not None:
            return self._read_fast(nv)
        memory = _memory(nv, self.handle, self.index)
        failure = None
        try:
            rows: list[tuple[int, int | None]] | None = _raw_processes(nv, self.handle)
        except BackendFailure as exc:
            rows, failure = None, f"NVML: {exc.reason}"
        total, device_used = int(memory.total), _sane_used(memory)
        if rows is None:
            return self._reading(None, device_used, self._source, failure=failure)
        pid = os.getpid()
        # Absent from a successful listing: no CUDA context, so really 0 bytes.
        found = next((used for row_pid, used in rows if row_pid == pid), 0)
        return self._own_reading(found, total, device_used)

    def _read_fast(self, nv: Pynvml) -> VramReading:
        """The same reading as the wrapper path, with ``_lock`` held."""
        assert self._fast is not None
        memory_fn, process_fn, byref = self._fast
        ret = memory_fn(self.handle, byref(self._memory))
        if ret != _SUCCESS:
            raise _failure(nv.NVMLError(ret), f"nvmlDeviceGetMemoryInfo({self.index})")
        total, device_used = int(self._memory.total), _sane_used(self._memory)
        self._count.value = self._capacity
        ret = process_fn(self.handle, byref(self._count), self._rows)
        if ret == _ERROR_INSUFFICIENT_SIZE:
            # More processes than rows: grow (NVML said how many) and ask once more.
            self._capacity = max(self._count.value * 2 + 5, self._capacity * 2)
            self._rows = (self._row_type * self._capacity)()
            self._count.value = self._capacity
            ret = process_fn(self.handle, byref(self._count), self._rows)
        if ret != _SUCCESS:
            reason = _note_error(nv.NVMLError(ret), f"{_PROCESS_QUERIES[0]}({self.index})")
            return self._reading(None, device_used, self._source, failure=f"NVML: {reason}")
        pid = os.getpid()
        found = 0  # absent from a successful listing: no CUDA context, so really 0 bytes
        for row in self._rows[: self._count.value]:
            if row.pid == pid:
                found = int(row.usedGpuMemory)
                break
        return self._own_reading(found, total, device_used)

    def _own_reading(self, found: int | None, total: int, device_used: int | None) -> VramReading:
        """This process's row as a reading: a sentinel or a figure above the device total
        is unknown, with the reason, as the per-process queries treat them."""
        if found is None or found == NOT_AVAILABLE:
            failure = "NVML: per-process memory not available (2^64-1 or no figure)"
            return self._reading(None, device_used, self._source, failure=failure)
        if found > total:
            failure = f"NVML: per-process figure {found} B exceeds the device total {total} B"
            return self._reading(None, device_used, self._source, failure=failure)
        return self._reading(found, device_used, self._source)


def self_reader(index: int, uuid: str | None = None) -> Callable[[], VramReading]:
    """A cheap repeated reader of this process's VRAM on ``index`` (or the device ``uuid``
    names; 0 when absent from a successful listing), through a kept handle."""
    return _SelfReader(index, uuid)
