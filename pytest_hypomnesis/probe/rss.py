"""Process RSS readers: Linux procfs, and psutil (any OS). ``probe.chain`` chooses the
reader for this OS (``RamSource``); the ctypes readers are ``rss_macos``/``rss_windows``.

The crate reads ``VmRSS`` from ``/proc/self/status``; ``statm``'s second field is the
same kernel counter (``get_mm_rss``) in pages and costs a tenth as much to read
(MEASURED.md: 1.5 us through a kept-open fd against 16 us for a ``status`` parse).
"""

from __future__ import annotations

import os
import sys

from pytest_hypomnesis._errors import RamError
from pytest_hypomnesis.probe.keptfd import KeptFd

__all__ = ["parse_vmrss", "procfs_rss", "psutil_rss", "read_status_field"]

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# Verified before each read: a test that closes fds and opens its own files must not make
# us read RSS out of them (see keptfd.py).
_statm = KeptFd("/proc/self/statm", os.O_RDONLY)


def parse_vmrss(status_text: str) -> int:
    """Bytes from the ``VmRSS:`` line of ``/proc/self/status`` text, with the crate's errors."""
    return read_status_field(status_text, "VmRSS")


def read_status_field(status_text: str, field: str) -> int:
    """Bytes from a ``<field>:   123 kB`` line of ``/proc/<pid>/status`` text."""
    for line in status_text.splitlines():
        if line.startswith(f"{field}:"):
            raw = line[len(field) + 1 :].strip()
            if raw.endswith(" kB"):
                raw = raw[:-3]
            raw = raw.strip()
            return _parse_u64(raw, field) * 1024
    raise RamError(f"{field} not found in /proc/self/status")


_U64_MAX = 2**64 - 1


def _parse_u64(raw: str, field: str) -> int:
    """``raw`` as Rust's ``u64::from_str`` reads it, with Rust's error texts."""
    digits = raw[1:] if raw.startswith("+") else raw
    if not digits:
        problem = "cannot parse integer from empty string"
    elif not all("0" <= ch <= "9" for ch in digits):
        problem = "invalid digit found in string"
    elif int(digits) > _U64_MAX:
        problem = "number too large to fit in target type"
    else:
        return int(digits)
    raise RamError(f"failed to parse {field} value '{raw}': {problem}")


def _statm_rss() -> int:
    if sys.platform == "win32":  # no procfs; also tells mypy the POSIX calls below are fine
        raise OSError("no /proc on Windows")
    # The hot path, twice per measured test: get() is a getpid and an fstat once open
    # (a forked child, xdist or multiprocessing, reopens: the parent's fd names the parent).
    return int(os.pread(_statm.get(), 128, 0).split()[1]) * _PAGE_SIZE


def _status_rss() -> int:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except OSError as exc:
        raise RamError(f"failed to read /proc/self/status: {exc}") from None
    return parse_vmrss(text)


def psutil_rss() -> int:
    """``psutil.Process().memory_info().rss``; ``RamError`` when psutil cannot read it."""
    import psutil

    try:
        return int(psutil.Process().memory_info().rss)
    except Exception as exc:  # psutil raises its own hierarchy; all mean "no reading"
        raise RamError(f"psutil memory_info failed: {exc}") from None


def procfs_rss() -> int:
    """Linux: ``/proc/self/statm`` through a kept fd, ``/proc/self/status`` when that
    fails. Raises ``RamError``."""
    try:
        return _statm_rss()
    except (OSError, ValueError, IndexError):
        return _status_rss()
