"""The HTML report parsed back with the standard library's parser, for the tests.

The served page carries the table's rows and the timelines as JSON data (the page's script
builds the DOM rows and charts); ``Page.rows`` and ``Page.timelines`` decode that data into
what the DOM will show: per cell its text, its ``data-sort`` attribute and its class, by the
same rules as ``report/html_table.js``. ``Page.dom_rows`` are the ``<tr>`` elements actually
in the table: none in a served page, one page of them in a DOM Chromium hands back.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

__all__ = ["NASTY", "Page", "undelta"]

NASTY = "tests/test_x.py::test_p[<script>alert(1)</script>&\"'ü€ 😀]"


def undelta(deltas: list[int | None]) -> list[int | None]:
    """The page's delta-encoded series back as values (``None`` gaps kept)."""
    out: list[int | None] = []
    last = 0
    for d in deltas:
        if d is None:
            out.append(None)
        else:
            last += d
            out.append(last)
    return out


def _cell_class(key: str, cell: Any) -> str:
    if not isinstance(cell, str) and len(cell) > 2:
        return str(cell[2])
    if key == "test":
        return "nodeid"
    if key == "outcome":
        return f"outcome-{cell}"
    if key == "budget":
        return "budget"
    if key.endswith("_base"):
        return "base"
    if key.endswith("_change"):
        return "change"
    return ""


def _sort_attr(cell: Any) -> str:
    key = cell if isinstance(cell, str) else cell[1]
    return "" if key is None else str(key)


class Page(HTMLParser):
    """Collects what the tests look at: table rows and cells, headers, SVGs, links."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.dom_rows: list[dict[str, Any]] = []
        self.headers: list[str] = []
        self.svgs: list[str] = []
        self.paths: list[str] = []
        self.urls: list[tuple[str, str, str]] = []
        self.ids: set[str] = set()
        self.scripts_with_src = 0
        self.meta_csp = ""
        self.json_scripts: dict[str, str] = {}
        self._in_tests = False
        self._row: dict[str, Any] | None = None
        self._cell: dict[str, Any] | None = None
        self._json_id: str | None = None
        self.feed(text)
        self.close()
        self.rows = self._data_rows()
        self.timelines = self._timelines()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for name in ("src", "href", "action", "xlink:href"):
            if name in a:
                self.urls.append((tag, name, a[name]))
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "table" and a.get("id") == "tests":
            self._in_tests = True
        elif tag == "th" and self._in_tests:
            self.headers.append(a.get("data-key", ""))
        elif tag == "tr" and self._in_tests:
            self._row = None
            if "data-nodeid" in a:
                self._row = {"nodeid": a["data-nodeid"], "cells": []}
                self.dom_rows.append(self._row)
        elif tag == "td" and self._row is not None and self._cell is None:
            self._cell = {"sort": a.get("data-sort"), "class": a.get("class", ""), "text": ""}
            self._row["cells"].append(self._cell)
        elif tag == "svg":
            self.svgs.append(a.get("class", ""))
        elif tag == "path":
            self.paths.append(a.get("d", ""))
        elif tag == "script":
            if "src" in a:
                self.scripts_with_src += 1
            if a.get("type") == "application/json":
                self._json_id = a.get("id", "")
                self.json_scripts[self._json_id] = ""
        elif tag == "meta" and a.get("http-equiv") == "Content-Security-Policy":
            self.meta_csp = a.get("content", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_tests = False
        elif tag == "td":
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "script":
            self._json_id = None

    def handle_data(self, data: str) -> None:
        if self._json_id is not None:
            self.json_scripts[self._json_id] += data
        elif self._cell is not None:
            self._cell["text"] += data

    def _data_rows(self) -> list[dict[str, Any]]:
        text = self.json_scripts.get("hmn-data")
        if text is None:
            return []
        assert "<" not in text and ">" not in text and "&" not in text, "unescaped data"
        out = []
        for row in json.loads(text)["rows"]:
            index, slot, *cells = row
            assert len(cells) == len(self.headers), (cells, self.headers)
            out.append(
                {
                    "nodeid": cells[0],
                    "index": index,
                    "timeline": slot,
                    "cells": [
                        {
                            "sort": _sort_attr(c),
                            "class": _cell_class(key, c),
                            "text": c if isinstance(c, str) else c[0],
                        }
                        for key, c in zip(self.headers, cells, strict=True)
                    ],
                }
            )
        return out

    def _timelines(self) -> list[dict[str, Any]]:
        """Each timeline the page can draw, decoded, with ``nodeid`` and ``id`` (``tl-N``)."""
        text = self.json_scripts.get("hmn-timelines", "")
        assert not re.search(r"[<>&]", text), "unescaped timeline data"
        specs = [json.loads(line) for line in text.split("\n") if line]
        owners = {r["timeline"]: r for r in self.rows if r["timeline"] >= 0}
        assert sorted(owners) == list(range(len(specs)))
        for slot, spec in enumerate(specs):
            spec["nodeid"] = owners[slot]["nodeid"]
            spec["id"] = f"tl-{owners[slot]['index']}"
            spec["t_s"] = [t / 1e6 for t in undelta(spec["t_us"])]  # type: ignore[operator]
            for series in spec["series"]:
                series[2] = undelta(series[2])
        return specs

    def cell(self, nodeid: str, key: str, *, dom: bool = False) -> dict[str, Any]:
        row = next(r for r in (self.dom_rows if dom else self.rows) if r["nodeid"] == nodeid)
        cell: dict[str, Any] = row["cells"][self.headers.index(key)]
        return cell
