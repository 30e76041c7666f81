"""The pytest plugin: ``hooks`` (the entry point), ``options``, ``budgets``, the measuring
``engine`` with its ``timeline``, and the ``fixtures``.

Importing this package imports nothing else: pytest loads ``hooks`` for every run, measured
or not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_hypomnesis.plugin.budgets import HypomnesisWarning as HypomnesisWarning


def __getattr__(name: str) -> object:
    # ``-W error::pytest_hypomnesis.plugin.HypomnesisWarning`` was the documented spelling
    # before the public name existed; keep it working.
    if name == "HypomnesisWarning":
        from pytest_hypomnesis.plugin.budgets import HypomnesisWarning

        return HypomnesisWarning
    raise AttributeError(f"module 'pytest_hypomnesis.plugin' has no attribute {name!r}")
