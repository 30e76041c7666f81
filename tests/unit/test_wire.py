"""A test record's trip from an xdist worker to the controller as JSON text (`wire.py`)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from execnet.gateway_base import dumps_internal, loads_internal

from pytest_hypomnesis.plugin import hooks
from pytest_hypomnesis.plugin.wire import ATTR, WIRE_KEY, WireIn, WireOut, encode_record

RECORD: dict[str, Any] = {
    "nodeid": "t.py::test_\u00e9",
    "outcome": "passed",
    "worker": "gw0",
    "scope": "call",
    "duration_s": 0.000123,
    "ram": {"start_bytes": 2**63, "peak_bytes": None, "increase_bytes": -4096, "method": "rusage"},
    "vram": {"source": None, "devices": {"0": {"peak_bytes": 1}}, "allocators": None},
    "budgets": [{"kind": "ram", "passed": None, "message": "not checked: \u2026"}],
    "budget_failed": False,
    "timeline": {"t_s": [0.0, 0.1], "rss_bytes": [1, None]},
}


def _through_wrapper(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the worker sends: pytest's own serialisation (``data``) after our wrapper."""
    wrapper = WireOut().pytest_report_to_serializable()
    next(wrapper)
    try:
        wrapper.send(data)
    except StopIteration as stop:
        result: dict[str, Any] | None = stop.value
        return result
    raise AssertionError("the wrapper yields once")


def test_the_record_arrives_as_the_same_dict() -> None:
    report_attrs = {"nodeid": "t.py::test_\u00e9", "when": "call", ATTR: RECORD}
    sent = _through_wrapper(dict(report_attrs))
    assert sent is not None and isinstance(sent[ATTR], str)
    assert report_attrs[ATTR] is RECORD  # the worker's report keeps its dict
    # Through execnet, as pytest-xdist sends it, then our decoding before pytest's.
    data = loads_internal(dumps_internal(("testreport", {"data": sent})))[1]["data"]
    wire = WireIn()
    wire.pytest_report_from_serializable(data)
    assert data[ATTR] == RECORD
    assert json.dumps(data[ATTR]) == json.dumps(RECORD)
    # The text it came as, for the record store: the one the store would encode, once.
    assert wire.take_text(data[ATTR]) == encode_record(data[ATTR])
    assert wire.take_text(data[ATTR]) is None
    assert wire.take_text(dict(RECORD)) is None  # an equal record that did not arrive so


def test_the_same_attribute_as_the_hooks() -> None:
    assert ATTR == hooks.ATTR


def test_the_text_is_what_the_record_store_keeps() -> None:
    assert encode_record(RECORD) == json.dumps(RECORD, separators=(",", ":"))


def test_reports_without_a_record_pass_unchanged() -> None:
    setup = {"nodeid": "t.py::a", "when": "setup"}
    assert _through_wrapper(dict(setup)) == setup
    assert _through_wrapper(None) is None
    data = {"nodeid": "t.py::a", ATTR: {"already": "a dict"}}  # an older worker's
    WireIn().pytest_report_from_serializable(data)
    assert data[ATTR] == {"already": "a dict"}


def test_the_controller_asks_each_worker() -> None:
    node = SimpleNamespace(workerinput={"workerid": "gw0"})
    WireIn().pytest_configure_node(node)
    assert node.workerinput == {"workerid": "gw0", WIRE_KEY: True}
