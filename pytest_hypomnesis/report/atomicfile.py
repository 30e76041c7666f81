"""Writing a report file so that it is never half-written, and readable like any new file.

Only a regular file (or a new path) is replaced atomically. A device or FIFO
(``--hypomnesis-json=/dev/null``, ``/dev/stdout``, a named pipe) is written into directly:
replacing it would put a regular file where the device was (as root, ``/dev/null``
itself). A symlink is followed and its target is replaced, so the link stays a link.
Nothing that is there is ever deleted, except our own stale temp files.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import time
from pathlib import Path

__all__ = ["STALE_TMP_AGE_S", "write_text_atomic"]

# A temp file of ours older than this is left over from a writer that was killed (SIGKILL,
# power loss) mid-write: one write and an fsync never take that long.
STALE_TMP_AGE_S = 600.0


def _tmp_pattern(name: str) -> re.Pattern[str]:
    # mkstemp's names: prefix, 8 characters of [a-z0-9_], suffix.
    return re.compile(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}\.tmp")


def _remove_stale_tmps(directory: Path, name: str) -> None:
    """Remove ``.NAME.XXXXXXXX.tmp`` files we left behind; only regular files of that exact
    pattern, owned by us and old enough that no live writer can be filling them."""
    pattern = _tmp_pattern(name)
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if pattern.fullmatch(entry.name) is None:
            continue
        with contextlib.suppress(OSError):
            info = entry.stat(follow_symlinks=False)
            owner_ok = not hasattr(os, "geteuid") or info.st_uid == os.geteuid()
            if stat.S_ISREG(info.st_mode) and owner_ok and now - info.st_mtime > STALE_TMP_AGE_S:
                os.unlink(entry.path)


def _write_direct(path: Path, text: str) -> None:
    # No O_CREAT/O_TRUNC games: a device or FIFO is opened for writing as it is.
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` so that ``path`` holds either the old file or the whole new one:
    a temp file in the same directory, fsync, then ``os.replace``; straight into a device
    or FIFO; through a symlink to its target. Raises ``OSError`` (``IsADirectoryError``
    for a directory) without touching what is there."""
    target = Path(os.fspath(path))
    if target.is_symlink():
        # Replace what the link points to (created if dangling), never the link.
        target = Path(os.path.realpath(target))
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        raise IsADirectoryError(f"[Errno 21] Is a directory: {str(target)!r}")
    if mode is not None and not stat.S_ISREG(mode):
        _write_direct(target, text)
        return
    directory = target.parent if str(target.parent) else Path(".")
    _remove_stale_tmps(directory, target.name)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        # mkstemp makes the file 0600; a report is for sharing (CI artifacts), so give it
        # the mode an ordinary new file gets under the current umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
