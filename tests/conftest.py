"""The project's own tests: shared fixtures (fake NVML library, fake nvidia-smi)
and a pinned terminal so pytester output is stable."""

from __future__ import annotations

pytest_plugins = [
    "tests.helpers.fakenvml",
    "tests.helpers.fakesmi",
    "tests.helpers.pluginrun",
    "tests.helpers.hmnrun",
    "tests.helpers.fakepynvml",
    "tests.helpers.chainmachine",
    "tests.helpers.fakevram",
    "tests.helpers.gilspike",
]


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _reread_debug_switch() -> object:
    """Tests that set HYPOMNESIS_DEBUG call ``refresh_debug()``; re-read it afterwards so
    the switch never leaks into the next test."""
    yield
    from pytest_hypomnesis import _platform

    _platform.refresh_debug()


@pytest.fixture(autouse=True)
def _inner_runs_in_file_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest-randomly is a test dependency (the order-independence tests enable it with
    ``-p randomly``); every other inner pytest run keeps its file order, which the
    expected output lines follow."""
    import os

    addopts = os.environ.get("PYTEST_ADDOPTS", "")
    if "no:randomly" not in addopts:
        monkeypatch.setenv("PYTEST_ADDOPTS", f"{addopts} -p no:randomly".strip())


@pytest.fixture(autouse=True)
def _wide_inner_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner runs print to a pipe, which pytest reads as 80 columns: the summary then fits
    80 columns. Tests of whole rows get a wide terminal; the width tests set their own."""
    monkeypatch.setenv("COLUMNS", "250")
