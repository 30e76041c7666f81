"""The plugin's fixtures: ``memory_snapshot``, ``memory_report``, ``gpu_device_info_builder``,
``fake_gpu``, ``fake_gpu_factory``. They work with or without ``--hypomnesis``.

pytest imports this module in every run, measured or not: it defines the fixtures and
nothing else, and each fixture imports what it uses when a test asks for it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, cast

import pytest

if TYPE_CHECKING:
    from pytest_hypomnesis.model import Snapshot
    from pytest_hypomnesis.plugin.block import MeasuredBlock
    from pytest_hypomnesis.plugin.hooks import HypomnesisPlugin
    from pytest_hypomnesis.probe.fake import FakeGpu
    from pytest_hypomnesis.testing import GpuDeviceInfoBuilder

__all__ = [
    "MeasuredBlock",
    "fake_gpu",
    "fake_gpu_factory",
    "gpu_device_info_builder",
    "memory_report",
    "memory_snapshot",
]


def __getattr__(name: str) -> object:
    # ``MeasuredBlock`` was defined here; it lives in plugin.block, loaded on first use.
    if name == "MeasuredBlock":
        from pytest_hypomnesis.plugin.block import MeasuredBlock

        return MeasuredBlock
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@pytest.fixture
def memory_snapshot() -> Callable[..., Snapshot]:
    """A callable: ``memory_snapshot(index=0)`` returns a fresh ``Snapshot``."""

    from pytest_hypomnesis.model import Snapshot

    def take(index: int = 0) -> Snapshot:
        return Snapshot.now(index)

    return take


@pytest.fixture
def memory_report(request: pytest.FixtureRequest) -> Callable[[], MeasuredBlock]:
    """A factory: ``with memory_report() as r:`` measures the block; ``r`` holds the result."""
    from pytest_hypomnesis.plugin.block import MeasuredBlock

    # The session plugin by its registered name: importing plugin.hooks (which imports
    # this module for the fixture definitions) would make an import cycle.
    plugin = cast("HypomnesisPlugin", request.config.pluginmanager.get_plugin("hypomnesis-session"))
    engine = plugin.engine
    return lambda: MeasuredBlock(engine)


@pytest.fixture
def gpu_device_info_builder() -> GpuDeviceInfoBuilder:
    """A fresh ``GpuDeviceInfoBuilder`` (every field 0 or ``None`` until set)."""
    from pytest_hypomnesis.testing import GpuDeviceInfoBuilder

    return GpuDeviceInfoBuilder()


@contextlib.contextmanager
def _installed_fake() -> Iterator[FakeGpu]:
    from pytest_hypomnesis.probe import chain
    from pytest_hypomnesis.probe.fake import FakeGpu

    fake = FakeGpu()
    previous = chain.set_fake(fake)
    try:
        yield fake
    finally:
        chain.set_fake(previous)


@pytest.fixture(scope="session")
def fake_gpu_factory() -> Callable[[], contextlib.AbstractContextManager[FakeGpu]]:
    """A session-scoped factory, for fixtures of any scope: ``with fake_gpu_factory() as
    fake:`` installs a new ``FakeGpu`` (no devices yet) for the block, e.g. around a
    module-scoped model fixture's ``yield``; the previous one comes back after it."""
    return _installed_fake


@pytest.fixture
def fake_gpu() -> Iterator[FakeGpu]:
    """A ``FakeGpu`` (no devices yet) that the probe layer, the CLI functions and the
    budgets answer from for this test; the previous state comes back afterwards."""
    with _installed_fake() as fake:
        yield fake
