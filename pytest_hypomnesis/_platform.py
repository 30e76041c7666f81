"""Which OS this is, and the ``HYPOMNESIS_DEBUG`` switch. Depends on nothing else in the package.

The one place the package asks which OS it runs on: ``IS_LINUX``/``IS_WINDOWS``/``IS_MACOS``
for a choice made once (at import, or the first call: which RSS reader), ``system()`` for a
choice made per question (``probe.chain``'s fallback chains, which tests replay for another
OS by patching ``chain.platform``). Elsewhere ``sys.platform`` is only compared directly in
an ``if`` guarding a call that exists on one OS, the one form mypy's ``--platform`` runs
understand (``tests/unit/test_layers.py`` checks that).
"""

from __future__ import annotations

import os
import sys

__all__ = [
    "IS_LINUX",
    "IS_MACOS",
    "IS_WINDOWS",
    "debug",
    "debug_enabled",
    "refresh_debug",
    "system",
]

IS_LINUX = sys.platform.startswith("linux")
IS_WINDOWS = sys.platform == "win32"
IS_MACOS = sys.platform == "darwin"


def system() -> str:
    """``linux``, ``win32``, ``darwin`` or another ``sys.platform`` value."""
    return sys.platform


def _read_debug_switch() -> bool:
    return os.environ.get("HYPOMNESIS_DEBUG", "") not in ("", "0")


# Read once: the switch is meant to be set before the process starts (like the crate's
# compile-time feature), and an environment lookup on every backend call cost ~1 us each,
# a sixth of a GPU-less Snapshot.now(). ``refresh_debug()`` re-reads it.
_debug_on = _read_debug_switch()


def refresh_debug() -> bool:
    """Re-read ``HYPOMNESIS_DEBUG`` (after changing it at run time); returns the new state."""
    global _debug_on
    _debug_on = _read_debug_switch()
    return _debug_on


def debug_enabled() -> bool:
    """Whether ``HYPOMNESIS_DEBUG=1`` asks for raw backend values on stderr."""
    return _debug_on


def debug(backend: str, message: str) -> None:
    """Print one raw backend value to stderr, crate style: ``[NVML debug] ...``."""
    if _debug_on:
        print(f"[{backend} debug] {message}", file=sys.stderr, flush=True)
