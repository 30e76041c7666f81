"""Binary size units for the tests, in bytes."""

from __future__ import annotations

__all__ = ["GIB", "KIB", "MIB"]

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
