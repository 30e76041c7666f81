"""A RAM-heavy test: it shows at the top of the summary (`pytest --hypomnesis examples/`)."""

from __future__ import annotations


def test_builds_a_big_table() -> None:
    table = [bytes(1024) for _ in range(64 * 1024)]  # about 64 MiB of rows
    assert len(table) == 64 * 1024


def test_light() -> None:
    assert sum(range(100)) == 4950
