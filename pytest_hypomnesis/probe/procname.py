"""Process names for listing rows on POSIX."""

from __future__ import annotations

__all__ = ["linux_comm"]


def linux_comm(pid: int) -> str | None:
    """``/proc/<pid>/comm`` (the kernel truncates it to 15 characters); ``None`` if
    unreadable or empty."""
    try:
        with open(f"/proc/{pid}/comm", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    name = raw.decode("utf-8", errors="replace").rstrip("\n")
    return name or None
