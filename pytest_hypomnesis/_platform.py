"""Which OS this is, and the ``HYPOMNESIS_DEBUG`` switch. Depends on nothing else in the package."""

from __future__ import annotations

import os
import sys

__all__ = ["IS_LINUX", "IS_MACOS", "IS_WINDOWS", "debug", "debug_enabled", "refresh_debug"]

IS_LINUX = sys.platform.startswith("linux")
IS_WINDOWS = sys.platform == "win32"
IS_MACOS = sys.platform == "darwin"


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
