"""What ``json.loads`` gives: the type of a JSON document before anything has checked it.

A reader that has not validated its input narrows a ``JsonValue`` with ``isinstance``;
``report/schema.py`` is where a whole report is checked and becomes a typed ``Report``.
"""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["JsonObject", "JsonValue"]

JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"
JsonObject: TypeAlias = "dict[str, JsonValue]"
