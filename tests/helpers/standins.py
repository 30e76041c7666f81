"""Stand-in ``torch.cuda``, ``cupy`` and ``jax`` modules that drive the fake NVML library.

They behave like the real frameworks where the plugin can see it:

- **torch**: CUDA is not initialised until the first allocation, which creates the CUDA
  context (``CONTEXT_BYTES``, 400 MiB: real ones are 287-667 MB, pytorch#86509) on that
  device; a caching allocator keeps freed blocks reserved, so NVML shows
  context + reserved while ``memory_allocated`` shows live tensors only;
  ``max_memory_allocated`` is a running peak that only ``reset_peak_memory_stats`` lowers.
- **cupy**: a default memory pool (``used_bytes``/``total_bytes``) that also caches.
- **jax**: nothing until a backend is initialised (``jax._src.xla_bridge._backends``);
  then, with preallocation on (the default), NVML shows 75% of the device at once while
  ``memory_stats()`` reports ``bytes_in_use``/``peak_bytes_in_use``; ``stats=None`` makes
  ``memory_stats()`` answer ``None`` as some backends do.

Each stand-in writes this process's row into the fake NVML config (``FAKE_NVML_CONFIG``)
as the sum of what every stand-in holds. ``install(pytester, "torch", ...)`` writes a
conftest that installs them into ``sys.modules`` in the inner run.
"""

from __future__ import annotations

import pytest

from tests.helpers.fakenvml import DEFAULT_DRIVER, FakeNvmlDevice, render_config
from tests.helpers.units import GIB, MIB

__all__ = ["CONTEXT_BYTES", "DEVICE_TOTAL_BYTES", "install", "nvml_template"]

CONTEXT_BYTES = 400 * MIB
DEVICE_TOTAL_BYTES = 16 * GIB
_MARK = 987654321987


def nvml_template() -> tuple[str, str]:
    """The fake NVML config with no row for this process, and one with a ``{used}``
    placeholder for its row: rendered by the helper, so the format cannot drift."""
    from tests.helpers.fakenvml import SELF, FakeProcess

    idle = render_config([FakeNvmlDevice(total_bytes=DEVICE_TOTAL_BYTES)], DEFAULT_DRIVER, {})
    device = FakeNvmlDevice(total_bytes=DEVICE_TOTAL_BYTES, processes=(FakeProcess(SELF, _MARK),))
    busy = render_config([device], DEFAULT_DRIVER, {}).replace(str(_MARK), "{used}")
    return idle, busy


_COMMON = """
import os
import sys
import types

MIB = 1024 * 1024
CONTEXT_BYTES = {context}
IDLE = {idle!r}
BUSY = {busy!r}
_held = {{}}  # stand-in name -> bytes it holds from the driver (context included)


def _write_nvml():
    total = sum(_held.values())
    text = BUSY.format(used=total) if total else IDLE
    path = os.environ["FAKE_NVML_CONFIG"]
    tmp = path + ".standin.tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _set_held(name, nbytes):
    _held[name] = nbytes
    _write_nvml()


_write_nvml()
"""

_TORCH = """
class _Cuda:
    def __init__(self):
        self.initialized = False
        self.allocated = 0
        self.peak = 0
        self.reserved = 0
        self.resets = 0

    def is_initialized(self):
        return self.initialized

    def is_available(self):
        return True

    def init(self):
        self.initialized = True

    def device_count(self):
        return 1

    def _sync(self):
        # The context is created on first use, then the cache grows as needed.
        _set_held("torch", CONTEXT_BYTES + self.reserved)

    def alloc(self, nbytes):
        self.initialized = True
        self.allocated += nbytes
        self.peak = max(self.peak, self.allocated)
        if self.allocated > self.reserved:
            self.reserved = self.allocated
        self._sync()

    def free(self, nbytes):
        self.allocated -= nbytes  # the block stays in the cache

    def empty_cache(self):
        self.reserved = self.allocated
        self._sync()

    def memory_allocated(self, device=None):
        return self.allocated

    def max_memory_allocated(self, device=None):
        return self.peak

    def memory_reserved(self, device=None):
        return self.reserved

    def reset_peak_memory_stats(self, device=None):
        self.resets += 1
        self.peak = self.allocated


class Tensor:
    def __init__(self, nbytes):
        self.nbytes = nbytes
        torch.cuda.alloc(nbytes)

    def __del__(self):
        torch.cuda.free(self.nbytes)


def empty(nbytes, device="cuda:0"):
    assert str(device).startswith("cuda")
    return Tensor(nbytes)


torch = types.ModuleType("torch")
torch.cuda = _Cuda()
torch.empty = empty
sys.modules["torch"] = torch
"""

_CUPY = """
class _Pool:
    def __init__(self):
        self.used = 0
        self.total = 0

    def used_bytes(self):
        return self.used

    def total_bytes(self):
        return self.total

    def malloc(self, nbytes):
        self.used += nbytes
        self.total = max(self.total, self.used)
        _set_held("cupy", CONTEXT_BYTES + self.total)

    def free(self, nbytes):
        self.used -= nbytes


class _Runtime:
    def getDevice(self):
        return 0

    def getDeviceCount(self):
        return 1

    def free(self, ptr):
        # cudaFree(0): the classic way to create the context.
        _set_held("cupy", CONTEXT_BYTES + _pool.total)


class _Device:
    def __init__(self, index=0):
        self.id = index

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_pool = _Pool()
cupy = types.ModuleType("cupy")
cupy.get_default_memory_pool = lambda: _pool
cupy.cuda = types.SimpleNamespace(runtime=_Runtime(), Device=_Device)
sys.modules["cupy"] = cupy
"""

_JAX = """
PREALLOCATED = {total} * 3 // 4


class _GpuDevice:
    platform = "gpu"
    id = 0
    local_hardware_id = 0

    def __init__(self, stats):
        self.in_use = 0
        self.peak = 0
        self.stats = stats

    def memory_stats(self):
        if not self.stats:
            return None
        return {{"bytes_in_use": self.in_use, "peak_bytes_in_use": self.peak,
                 "bytes_limit": PREALLOCATED}}

    def alloc(self, nbytes):
        self.in_use += nbytes
        self.peak = max(self.peak, self.in_use)

    def free(self, nbytes):
        self.in_use -= nbytes


class _Backend:
    platform = "gpu"

    def __init__(self, stats):
        self.device = _GpuDevice(stats)

    def local_devices(self):
        return [self.device]


bridge = types.ModuleType("jax._src.xla_bridge")
bridge._backends = {{}}


def devices():
    if not bridge._backends:
        # Initialising the backend preallocates the pool (XLA's default: 75%).
        bridge._backends["cuda"] = _Backend({stats})
        _set_held("jax", PREALLOCATED)
    return bridge._backends["cuda"].local_devices()


jax = types.ModuleType("jax")
jax.devices = devices
jax._src = types.ModuleType("jax._src")
jax._src.xla_bridge = bridge
sys.modules["jax"] = jax
sys.modules["jax._src"] = jax._src
sys.modules["jax._src.xla_bridge"] = bridge
"""


def install(
    pytester: pytest.Pytester, *names: str, jax_stats: bool = True, extra: str = ""
) -> None:
    """A conftest installing the named stand-ins (``torch``, ``cupy``, ``jax``) in the
    inner run; needs the ``fake_nvml`` fixture active (its env reaches the inner run)."""
    idle, busy = nvml_template()
    parts = [_COMMON.format(context=CONTEXT_BYTES, idle=idle, busy=busy)]
    known = {"torch": _TORCH, "cupy": _CUPY, "jax": _JAX}
    for name in names:
        source = known[name]
        if name == "jax":
            source = source.format(total=DEVICE_TOTAL_BYTES, stats=jax_stats)
        parts.append(source)
    parts.append(extra)
    pytester.makeconftest("\n".join(parts))
