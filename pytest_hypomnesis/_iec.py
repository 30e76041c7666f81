"""IEC byte multiples, in a module of their own so that the crate's formatters
(``_format``) do not load the size parsers' ``fractions`` (and ``decimal``) at start-up."""

from __future__ import annotations

__all__ = ["GIB", "MIB"]

MIB = 1024 * 1024
GIB = 1024 * MIB
