"""The project's own tests: shared fixtures (fake NVML library, fake nvidia-smi)
and a pinned terminal so pytester output is stable."""

from __future__ import annotations

pytest_plugins = [
    "tests.helpers.fakenvml",
    "tests.helpers.fakesmi",
    "tests.helpers.pluginrun",
    "tests.helpers.hmnrun",
]


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _reread_debug_switch() -> object:
    """Tests that set HYPOMNESIS_DEBUG call ``refresh_debug()``; re-read it afterwards so
    the switch never leaks into the next test."""
    yield
    from pytest_hypomnesis import _platform

    _platform.refresh_debug()
