"""A test record's trip from an xdist worker to the controller, as one compact JSON text.

execnet writes and reads a dict one key and one value at a time, in Python: a record
without a GPU (about 26 keys and values) cost the worker about 240 k instructions per test
to send and the controller about 250 k to take in (callgrind, 2000 trivial tests), more
than the measuring itself. As one JSON text it is one C call on each side. The controller
turns the text back into the dict before pytest builds the report, so every hook there
(ours, the terminal's, other plugins') sees ``report.hypomnesis`` as the dict it always was.

Only where the controller asked for it in the worker's ``workerinput`` (it says so when
every test is measured): a worker of an older version, or the controller of one, sends and
takes the plain dict as before.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import pytest

__all__ = ["ATTR", "WIRE_KEY", "WireIn", "WireOut", "encode_record"]

ATTR = "hypomnesis"
"""The ``TestReport`` attribute that carries a test record."""

WIRE_KEY = "hypomnesis_record_wire"
"""In a worker's ``workerinput``: the controller decodes records sent as JSON text."""

encode_record = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
"""A record as compact JSON: the same text ``RecordStore`` keeps (records are JSON-shaped)."""


class WireOut:
    """On a worker the controller asked: the record leaves as JSON text."""

    @pytest.hookimpl(wrapper=True)
    def pytest_report_to_serializable(
        self,
    ) -> Generator[None, dict[str, Any] | None, dict[str, Any] | None]:
        data = yield
        record = None if data is None else data.get(ATTR)
        if type(record) is dict and data is not None:
            # `data` is a shallow copy of the report's attributes: the report keeps its dict.
            data[ATTR] = encode_record(record)
        return data


class WireIn:
    """On the controller: asks each worker for JSON text and turns it back into the dict.

    The text is kept for the record store (``take_text``), which would otherwise encode
    the same record again. pytest-xdist builds reports in each worker's execnet receiver
    thread and logs them in the main thread: the text is looked up by the record itself
    (its id, with the record kept beside it so the id stays its own); a dict's set and pop
    are atomic."""

    def __init__(self) -> None:
        self._texts: dict[int, tuple[object, str]] = {}

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        # pytest-xdist's hook, on the controller, before each worker starts.
        node.workerinput[WIRE_KEY] = True

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_from_serializable(self, data: dict[str, Any]) -> None:
        # Before pytest's own implementation builds the report from `data` (returning
        # None lets it). pytest-xdist calls this in each worker's execnet receiver thread.
        text = data.get(ATTR)
        if type(text) is str:
            record = json.loads(text)
            data[ATTR] = record
            self._texts[id(record)] = (record, text)

    def take_text(self, record: object) -> str | None:
        """The JSON text ``record`` arrived as, once; ``None`` for a record that did not
        arrive as text."""
        kept = self._texts.pop(id(record), None)
        return kept[1] if kept is not None and kept[0] is record else None
