"""Fake GPUs whose memory is really limited, shared by every process of a test run.

A test (in any process: an xdist worker, a second pytest run) calls ``allocate(n)`` to take
``n`` bytes on its ``cuda:0``, which is mapped through ``CUDA_VISIBLE_DEVICES`` (an index, a
``GPU-`` UUID or a ``MIG-`` UUID, as CUDA reads it) to a fake NVML device or MIG device
(a GPU created with ``migs=`` is in MIG mode: its memory is its MIG devices'). The
allocation updates the fake NVML's per-process row for the calling PID and the device's
used bytes, so NVML readers (the plugin's admission and measurement) see it; an allocation
that would take the device past its total raises ``FakeCudaOutOfMemoryError``, as the CUDA
caching allocator would, and is counted. A process that dies loses its allocations, as with
a real driver.

The shared state is a JSON file named by ``FAKE_VRAM_STATE``, changed under an OS file
lock; after each change the fake NVML config (``FAKE_NVML_CONFIG``) is rewritten from it.

The test side: the ``fake_gpus`` fixture (``fake_gpus([10 * GIB, ...], migs=...)``: fake GPUs
for the subprocesses of a test), or ``FakeVram.create(fake_nvml, state_path, totals)``,
which writes the state and the config; ``env`` is what subprocesses need (the fake NVML's
variables, the state file, and ``PYTHONPATH`` so ``tests.helpers.fakevram`` imports there);
``oom_count()``, ``held()``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from pytest_hypomnesis.parallel.filelock import locked_file
from tests.helpers.fakenvml import (
    DEFAULT_DRIVER,
    FakeMigDevice,
    FakeNvml,
    FakeNvmlDevice,
    FakeProcess,
)
from tests.helpers.fakenvml import render_config as render_nvml_config

__all__ = [
    "STATE_ENV",
    "FakeCudaOutOfMemoryError",
    "FakeVram",
    "allocate",
    "fake_gpus",
    "free",
    "hold",
]

STATE_ENV = "FAKE_VRAM_STATE"
REPO_ROOT = Path(__file__).resolve().parent.parent.parent


class FakeCudaOutOfMemoryError(RuntimeError):
    """What ``torch.cuda.OutOfMemoryError`` says, for a fake device."""


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@contextmanager
def _state(path: str | None = None) -> Iterator[dict[str, Any]]:
    path = path or os.environ[STATE_ENV]
    with locked_file(path + ".lock"):
        with open(path, encoding="utf-8") as fh:
            state: dict[str, Any] = json.load(fh)
        before = json.dumps(state, sort_keys=True)
        held: dict[str, dict[str, int]] = state["held"]
        for pid in [p for p in held if not _alive(int(p))]:
            del held[pid]  # a dead (or zombie) process's memory is freed by the driver
        yield state
        if json.dumps(state, sort_keys=True) != before:
            _write(path, state)


def _rows(state: dict[str, Any], key: str) -> tuple[FakeProcess, ...]:
    return tuple(
        FakeProcess(int(pid), per_device[key])
        for pid, per_device in sorted(state["held"].items())
        if per_device.get(key)
    )


def _write(path: str, state: dict[str, Any]) -> None:
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as fh:
        json.dump(state, fh)
    os.replace(temporary, path)
    devices = []
    for index, device in enumerate(state["devices"]):
        migs = [
            FakeMigDevice(
                uuid=mig["uuid"],
                gpu_instance_id=k + 1,
                total_bytes=mig["total_bytes"],
                used_bytes=sum(row.used_bytes for row in _rows(state, f"{index}/{k}")),
                processes=_rows(state, f"{index}/{k}"),
                mig_index=k,
            )
            for k, mig in enumerate(device.get("migs", []))
        ]
        rows = _rows(state, str(index))
        used = device["base_used_bytes"] + sum(row.used_bytes for row in rows)
        used += sum(mig.used_bytes for mig in migs)
        devices.append(
            FakeNvmlDevice(
                name=device["name"],
                total_bytes=device["total_bytes"],
                used_bytes=used,
                reserved_bytes=None,
                processes=rows,
                uuid=device["uuid"],
                mig_mode=True if migs else None,
                mig_devices=tuple(migs),
            )
        )
    config = state["config"]
    # "reap": rows of processes that exited vanish, as the driver frees their memory.
    text = render_nvml_config(devices, DEFAULT_DRIVER, {}) + "reap\n"
    temporary = f"{config}.{os.getpid()}.tmp"
    Path(temporary).write_text(text, encoding="ascii")
    os.replace(temporary, config)


def _cuda0(state: dict[str, Any]) -> str:
    """Where ``cuda:0`` is in this process, read as CUDA reads it: a fake device index
    (``"1"``), or a MIG device of one (``"1/0"``; a GPU in MIG mode shows as its first)."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    first = "0" if value is None else value.split(",")[0].strip()
    if not first:
        raise FakeCudaOutOfMemoryError("CUDA error: no CUDA-capable device is detected")
    for parent, device in enumerate(state["devices"]):
        for k, mig in enumerate(device.get("migs", [])):
            if first == mig["uuid"]:
                return f"{parent}/{k}"
    found: int | None = None
    if first.isdigit():
        found = int(first) if int(first) < len(state["devices"]) else None
    else:
        wanted = first if first.upper().startswith("GPU-") else f"GPU-{first}"
        for i, device in enumerate(state["devices"]):
            if device["uuid"].lower().startswith(wanted.lower()):
                found = i
    if found is None:
        raise FakeCudaOutOfMemoryError(f"CUDA error: invalid device ordinal ({value})")
    return f"{found}/0" if state["devices"][found].get("migs") else str(found)


def _total(state: dict[str, Any], key: str) -> tuple[int, int]:
    """Total and base used bytes of a device key."""
    index, _, mig = key.partition("/")
    device = state["devices"][int(index)]
    if mig:
        return device["migs"][int(mig)]["total_bytes"], 0
    return device["total_bytes"], device["base_used_bytes"]


def allocate(nbytes: int) -> None:
    """Take ``nbytes`` on ``cuda:0``; raises ``FakeCudaOutOfMemoryError`` when they do not fit."""
    message: str | None = None
    with _state() as state:
        key = _cuda0(state)
        total, base = _total(state, key)
        used = base + sum(per_device.get(key, 0) for per_device in state["held"].values())
        if used + nbytes > total:
            state["oom"] += 1  # counted (and saved) before the error leaves
            message = (
                f"CUDA out of memory. Tried to allocate {_gib(nbytes)}. GPU 0 has a total "
                f"capacity of {_gib(total)} of which {_gib(total - used)} is free."
            )
        else:
            mine = state["held"].setdefault(str(os.getpid()), {})
            mine[key] = mine.get(key, 0) + nbytes
    if message is not None:
        raise FakeCudaOutOfMemoryError(message)


def free(nbytes: int | None = None) -> None:
    """Give back ``nbytes`` on ``cuda:0`` (``None``: everything this process holds)."""
    with _state() as state:
        index = _cuda0(state)
        mine = state["held"].get(str(os.getpid()), {})
        if nbytes is None or nbytes >= mine.get(index, 0):
            mine.pop(index, None)
        else:
            mine[index] -= nbytes
        if not mine:
            state["held"].pop(str(os.getpid()), None)


def hold(nbytes: int, seconds: float) -> None:
    """Allocate ``nbytes``, keep them ``seconds``, free them."""
    allocate(nbytes)
    try:
        time.sleep(seconds)
    finally:
        free(nbytes)


class FakeVram:
    """The test side: fake GPUs of the given totals behind a ``FakeNvml``."""

    def __init__(self, fake: FakeNvml, state_path: Path) -> None:
        self.fake = fake
        self.state_path = state_path

    @classmethod
    def create(
        cls,
        fake: FakeNvml,
        state_path: Path,
        totals: Sequence[int],
        *,
        base_used_bytes: int = 0,
        migs: Sequence[Sequence[int]] = (),
    ) -> FakeVram:
        """``migs[i]``: the totals of GPU ``i``'s MIG devices (none: a whole GPU)."""
        state = {
            "config": str(fake.config_path),
            "devices": [
                {
                    "uuid": f"GPU-{index:08x}-fake-4a11-8000-{index:012x}",
                    "name": "NVIDIA Fake GPU",
                    "total_bytes": total,
                    "base_used_bytes": base_used_bytes,
                    "migs": [
                        {"uuid": f"MIG-{index:08x}-fake-4a11-8000-{k:012x}", "total_bytes": n}
                        for k, n in enumerate(migs[index] if index < len(migs) else ())
                    ],
                }
                for index, total in enumerate(totals)
            ],
            "held": {},
            "oom": 0,
        }
        _write(str(state_path), state)
        return cls(fake, state_path)

    @property
    def env(self) -> dict[str, str]:
        path = os.environ.get("PYTHONPATH")
        pythonpath = str(REPO_ROOT) if not path else f"{REPO_ROOT}{os.pathsep}{path}"
        return {**self.fake.env, STATE_ENV: str(self.state_path), "PYTHONPATH": pythonpath}

    @property
    def uuids(self) -> list[str]:
        with _state(str(self.state_path)) as state:
            return [d["uuid"] for d in state["devices"]]

    @property
    def mig_uuids(self) -> list[list[str]]:
        """Per GPU, its MIG devices' UUIDs."""
        with _state(str(self.state_path)) as state:
            return [[m["uuid"] for m in d["migs"]] for d in state["devices"]]

    def oom_count(self) -> int:
        with _state(str(self.state_path)) as state:
            return int(state["oom"])

    def held(self) -> dict[int, dict[str, int]]:
        """pid -> {device index ("1") or MIG device ("1/0"): bytes} of the live processes."""
        with _state(str(self.state_path)) as state:
            return {int(pid): dict(per) for pid, per in state["held"].items()}


@pytest.fixture
def fake_gpus(
    fake_nvml_factory: Callable[..., FakeNvml],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., FakeVram]:
    """``fake_gpus([10 * GIB, ...], migs=[[5 * GIB, 5 * GIB]])``: fake GPUs for the
    subprocesses of this test (their environment set here, ``CUDA_VISIBLE_DEVICES`` unset)."""

    def make(totals: Sequence[int], migs: Sequence[Sequence[int]] = ()) -> FakeVram:
        fake = fake_nvml_factory(activate=False)
        vram = FakeVram.create(fake, tmp_path / "vram.json", totals, migs=migs)
        for key, value in vram.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:cacheprovider")
        return vram

    return make
