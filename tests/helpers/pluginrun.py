"""A fixture for the plugin's in-process pytester runs (loaded by the root conftest)."""

from __future__ import annotations

import gc

import pytest


@pytest.fixture
def inner_pytester_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Options every inner run needs, and a clean heap.

    In-process runs find this package already imported (and rewritten) by the outer run,
    hence the rewrite warning is ignored. Earlier in-process runs leave garbage (a failed
    test's frame holding a big blob); if it were freed inside a measured block, the
    block's RSS would not rise at all, hence ``gc.collect()`` first.
    """
    gc.collect()
    monkeypatch.setenv(
        "PYTEST_ADDOPTS",
        "-p no:cacheprovider -p no:randomly -W default"
        " -W ignore::pytest.PytestAssertRewriteWarning",
    )
