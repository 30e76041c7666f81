"""The controller's test records, kept compact while the run goes on.

A record as a dict costs about 1 KiB in-process and 2.4 KiB as it arrives from an xdist
worker (every key a new string): 20,000 tests held 20-50 MiB until the session ended.
Records wait here in arrival order; past ``2 * batch`` pending ones, the oldest ``batch``
are encoded as one compact JSON array and zlib-compressed (one C call each, a few
microseconds per record), which keeps well under 0.5 KiB per test. ``records()`` gives
them back as dicts, once, at session end. A record that arrived from an xdist worker as
JSON text (``plugin/wire.py``) is kept with that text, which goes into its batch as it is
(the same text the encoder would write: encoding it again cost about 40 k instructions).
"""

from __future__ import annotations

import itertools
import json
import zlib
from typing import cast

from pytest_hypomnesis.record import MeasuredTestRecord

__all__ = ["RecordStore"]

_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


class RecordStore:
    """Test records by node id, in first-arrival order; a later record for the same node
    id (``--hypomnesis-scope=test``: the teardown's) replaces the earlier one in place."""

    __slots__ = ("_batch", "_batches", "_flushed", "_overrides", "_pending", "_texts")

    def __init__(self, *, batch: int = 512) -> None:
        self._batch = batch
        self._pending: dict[str, MeasuredTestRecord] = {}
        self._batches: list[bytes] = []
        self._flushed: set[str] = set()
        self._overrides: dict[str, MeasuredTestRecord] = {}
        self._texts: dict[str, str] = {}
        """Pending records' compact JSON, for those that arrived as text."""

    def __len__(self) -> int:
        return len(self._flushed) + len(self._pending)

    def __setitem__(self, nodeid: str, record: MeasuredTestRecord) -> None:
        self.add(nodeid, record)

    def add(self, nodeid: str, record: MeasuredTestRecord, text: str | None = None) -> None:
        """Keep ``record``; ``text``: the record as compact JSON, when it arrived so (it
        must be what the record encodes to, and the record must not change afterwards)."""
        if nodeid in self._flushed:
            self._overrides[nodeid] = record
            return
        pending = self._pending
        pending[nodeid] = record
        if text is not None:
            self._texts[nodeid] = text
        elif self._texts:
            self._texts.pop(nodeid, None)  # a replacement that came as a dict
        if len(pending) >= 2 * self._batch:
            self._flush()

    def _flush(self) -> None:
        # The oldest pending ones: a scope=test teardown record usually arrives while its
        # call record is still among the newest.
        oldest = list(itertools.islice(self._pending.items(), self._batch))
        for nodeid, _ in oldest:
            del self._pending[nodeid]
            self._flushed.add(nodeid)
        texts = self._texts
        if texts:
            # The list encoder writes the same: "[", the items joined by ",", "]".
            parts = [texts.pop(nodeid, "") or _encode(record) for nodeid, record in oldest]
            text = "[" + ",".join(parts) + "]"
        else:
            text = _encode([record for _, record in oldest])
        self._batches.append(zlib.compress(text.encode("utf-8"), 1))

    def values(self) -> list[MeasuredTestRecord]:
        """Every record, in order, as plain dicts (decoded anew on each call)."""
        overrides = self._overrides
        out: list[MeasuredTestRecord] = []
        for blob in self._batches:
            for record in json.loads(zlib.decompress(blob)):
                out.append(overrides.get(record["nodeid"], cast(MeasuredTestRecord, record)))
        out.extend(self._pending.values())
        return out
