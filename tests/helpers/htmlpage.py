"""The HTML report parsed back with the standard library's parser, for the tests."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

__all__ = ["NASTY", "Page"]

NASTY = "tests/test_x.py::test_p[<script>alert(1)</script>&\"'ü€ 😀]"


class Page(HTMLParser):
    """Collects what the tests look at: table rows and cells, headers, SVGs, links."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[dict[str, Any]] = []
        self.headers: list[str] = []
        self.svgs: list[str] = []
        self.paths: list[str] = []
        self.urls: list[tuple[str, str, str]] = []
        self.ids: set[str] = set()
        self.scripts_with_src = 0
        self.meta_csp = ""
        self._in_tests = False
        self._cell: dict[str, Any] | None = None
        self.feed(text)
        self.close()

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
        elif tag == "tr" and self._in_tests and "data-nodeid" in a:
            self.rows.append({"nodeid": a["data-nodeid"], "cells": []})
        elif tag == "td" and self._in_tests and self.rows:
            self._cell = {"sort": a.get("data-sort"), "class": a.get("class", ""), "text": ""}
            self.rows[-1]["cells"].append(self._cell)
        elif tag == "svg":
            self.svgs.append(a.get("class", ""))
        elif tag == "path":
            self.paths.append(a.get("d", ""))
        elif tag == "script" and "src" in a:
            self.scripts_with_src += 1
        elif tag == "meta" and a.get("http-equiv") == "Content-Security-Policy":
            self.meta_csp = a.get("content", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_tests = False
        elif tag == "td":
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data

    def cell(self, nodeid: str, key: str) -> dict[str, Any]:
        row = next(r for r in self.rows if r["nodeid"] == nodeid)
        cell: dict[str, Any] = row["cells"][self.headers.index(key)]
        return cell
