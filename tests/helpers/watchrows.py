"""Process rows for ``hmn watch``'s tests."""

from __future__ import annotations

from pytest_hypomnesis.model import GpuProcessEntry


def entry(pid: int, name: str | None, used: int, shared: int = 0) -> GpuProcessEntry:
    return GpuProcessEntry(pid=pid, name=name, used_bytes=used, shared_used_bytes=shared)
