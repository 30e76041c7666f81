"""Text from a report made safe for a terminal: node ids, device names and reasons read
from a JSON file may hold escape sequences (``\\x1b[2J``), bidi overrides or newlines."""

from __future__ import annotations

__all__ = ["printable"]


def printable(text: str) -> str:
    """``text`` with every non-printable character (controls, format characters such as
    U+202E, line breaks, odd spaces) written as its Python escape (``\\x1b``, ``\\u202e``);
    printable text, non-ASCII letters included, is returned as is."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )
