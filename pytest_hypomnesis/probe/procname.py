"""Process names for listing rows on POSIX."""

from __future__ import annotations

__all__ = ["RUST_WHITESPACE", "linux_comm", "name_from_comm"]

# Rust's ``char::is_whitespace`` (Unicode White_Space), which the crate's ``str::trim`` uses.
# Python's ``str.strip()`` would also strip U+001C..U+001F, which Rust keeps.
RUST_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def name_from_comm(raw: bytes) -> str | None:
    """The crate's rule for the bytes of ``/proc/<pid>/comm``: invalid UTF-8 (the kernel's
    15-byte cut often halves a multi-byte character) is no name, the newline and any
    whitespace at either end are trimmed, and an empty result is no name."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text.strip(RUST_WHITESPACE) or None


def linux_comm(pid: int) -> str | None:
    """``/proc/<pid>/comm`` by the crate's rule (``name_from_comm``); ``None`` if unreadable."""
    try:
        with open(f"/proc/{pid}/comm", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    return name_from_comm(raw)
