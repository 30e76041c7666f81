"""A stand-in for xdist's ``WorkerController`` as a scheduler sees it: the tests sent to
it, and whether it was told to shut down (``xdist/workermanage.py``)."""

from __future__ import annotations

from collections.abc import Sequence


class Gateway:
    def __init__(self, name: str) -> None:
        self.id = name


class Node:
    def __init__(self, name: str) -> None:
        self.gateway = Gateway(name)
        self.sent: list[int] = []
        self.shutting_down = False

    def send_runtest_some(self, indices: Sequence[int]) -> None:
        self.sent.extend(indices)

    def shutdown(self) -> None:
        self.shutting_down = True
