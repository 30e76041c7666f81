"""A file descriptor kept open across calls, verified before each use.

A test may close every descriptor it did not open (``os.closerange(3, 1024)``) and then
open its own files, which get the same numbers: a kept fd would then read RSS out of, or
write ``5`` into, the test's file. Each use checks with ``os.fstat`` that the number still
names the file we opened (device and inode), and reopens it when it does not; a number
that now belongs to someone else is never closed.
"""

from __future__ import annotations

import os
import threading
import weakref

__all__ = ["KeptFd"]

_getpid = os.getpid
_fstat = os.fstat
# Where a fork runs our at-fork handler (below), a forked child has forgotten its
# parent's fds before it can use one: the hot path need not ask for the pid each time.
_FORK_FORGETS = hasattr(os, "register_at_fork")


class KeptFd:
    """``path`` opened with ``flags`` on first use, reopened after a fork or when the
    number was closed or reused by someone else."""

    __slots__ = ("__weakref__", "_flags", "_identity", "_lock", "_path", "fd", "pid")

    def __init__(self, path: str, flags: int) -> None:
        self._path = path
        self._flags = flags | getattr(os, "O_CLOEXEC", 0)
        self._lock = threading.Lock()
        self.fd: int | None = None
        self.pid: int | None = None
        self._identity: tuple[int, int] | None = None
        _instances.add(self)

    def _is_ours(self, fd: int) -> bool:
        try:
            info = os.fstat(fd)
        except OSError:  # closed behind our back
            return False
        return (info.st_dev, info.st_ino) == self._identity

    def get(self) -> int:
        """The verified fd; raises ``OSError`` when ``path`` cannot be opened."""
        fd = self.fd
        # The hot path (each RSS read): one fstat, no tuple built (and a getpid where a
        # fork does not run the at-fork handler that forgets the parent's fds).
        if fd is not None and (_FORK_FORGETS or self.pid == _getpid()):
            try:
                info = _fstat(fd)
            except OSError:
                info = None
            identity = self._identity
            if (
                info is not None
                and identity is not None
                and info.st_ino == identity[1]
                and info.st_dev == identity[0]
            ):
                return fd
        with self._lock:
            fd = self.fd
            pid = os.getpid()
            if fd is not None and self.pid == pid and self._is_ours(fd):
                return fd
            if fd is not None and self.pid != pid and self._is_ours(fd):
                # A forked child's copy of its parent's fd (on /proc/self it still names
                # the parent): ours to close.
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.fd = None
            new = os.open(self._path, self._flags)
            info = os.fstat(new)
            self._identity = (info.st_dev, info.st_ino)
            self.pid = pid
            self.fd = new
            return new

    def close(self) -> None:
        """Close the fd if it is still ours; forget it either way."""
        with self._lock:
            fd, self.fd = self.fd, None
            if fd is not None and self.pid == os.getpid() and self._is_ours(fd):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.pid = None

    def forget(self) -> None:
        """In a forked child, before any other thread runs: a fresh lock, and the
        inherited copy (which names the parent's /proc/self) closed if still ours."""
        self._lock = threading.Lock()
        fd, self.fd, self.pid = self.fd, None, None
        if fd is not None and self._is_ours(fd):
            try:
                os.close(fd)
            except OSError:
                pass


_instances: weakref.WeakSet[KeptFd] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A thread of the parent may have held a lock while forking; the child's copy would
    # stay locked forever. The child reopens its own /proc/self files on next use.
    for kept in list(_instances):
        kept.forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
