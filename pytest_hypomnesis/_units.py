"""Sizes and durations: the strict parsers for what users type, and IEC formatting.

A size is an integer number of bytes, or a number with an optional space and a unit:
``B``; SI ``kB KB MB GB TB`` (powers of 1000); IEC ``KiB MiB GiB TiB`` (powers of 1024).
The whole string must match; anything ambiguous (``2G``) is rejected.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

__all__ = [
    "GIB",
    "MIB",
    "SIZE_FORMS",
    "SizeError",
    "format_bytes_iec",
    "parse_duration_s",
    "parse_size",
]

MIB = 1024 * 1024
GIB = 1024 * MIB

_UNITS: dict[str, int] = {
    "B": 1,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}

SIZE_FORMS = "an integer number of bytes, or a number and a unit: 512MiB, 2 GiB, 1.5GB, 100kB"
DURATION_FORMS = "a number and a unit: 500us, 5ms, 0.5s, 2m, 1h (a bare number means seconds)"

# ASCII only: "\d" would also take "١٠" (Arabic-Indic digits) and "\s" a no-break space.
_SIZE_RE = re.compile(r"(?P<num>[0-9]+(?:\.[0-9]+)?) ?(?P<unit>[A-Za-z]+)?", re.ASCII)
_DURATION_RE = re.compile(r"(?P<num>[0-9]+(?:\.[0-9]+)?) ?(?P<unit>us|ms|s|m|h)?", re.ASCII)
_DURATION_UNITS: dict[str, Decimal] = {
    "us": Decimal("0.000001"),
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}


class SizeError(ValueError):
    """A size or duration string that does not parse; the message names it and the valid forms."""


def parse_size(text: object) -> int:
    """Bytes for ``text`` (a size string, or a non-negative ``int``). Raises ``SizeError``."""
    if isinstance(text, bool):
        raise SizeError(f"invalid size {text!r}: expected {SIZE_FORMS}")
    if isinstance(text, int):
        if text < 0:
            raise SizeError(
                f"invalid size {text!r}: a size cannot be negative; expected {SIZE_FORMS}"
            )
        return text
    if not isinstance(text, str):
        raise SizeError(f"invalid size {text!r}: expected a string such as '2GiB'; {SIZE_FORMS}")
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None or text.strip() != text:
        raise SizeError(f"invalid size {text!r}: expected {SIZE_FORMS}")
    unit = match.group("unit")
    number = Decimal(match.group("num"))
    if unit is None:
        if "." in match.group("num"):
            raise SizeError(
                f"invalid size {text!r}: a number of bytes must be whole; expected {SIZE_FORMS}"
            )
        return int(number)
    if unit not in _UNITS:
        hint = ""
        if unit.upper() in ("K", "M", "G", "T"):
            hint = f" ('{unit}' is ambiguous: write {unit.upper()}iB or {unit.upper()}B)"
        raise SizeError(
            f"invalid size {text!r}: unknown unit {unit!r}{hint}; expected {SIZE_FORMS}"
        )
    return int(number * _UNITS[unit])


def parse_duration_s(text: object) -> float:
    """Seconds for a duration string such as ``5ms``. Zero and negatives are rejected."""
    if not isinstance(text, str):
        raise SizeError(f"invalid duration {text!r}: expected {DURATION_FORMS}")
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise SizeError(f"invalid duration {text!r}: expected {DURATION_FORMS}")
    try:
        seconds = Decimal(match.group("num")) * _DURATION_UNITS[match.group("unit") or "s"]
    except InvalidOperation:  # pragma: no cover - the regex admits only decimals
        raise SizeError(f"invalid duration {text!r}: expected {DURATION_FORMS}") from None
    if seconds <= 0:
        raise SizeError(f"invalid duration {text!r}: must be greater than zero")
    return float(seconds)


_IEC_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes_iec(num_bytes: int | None, *, signed: bool = False) -> str:
    """Bytes in IEC units with two decimals, as the plugin prints them: ``2.00 GiB``.

    ``None`` prints as ``-``; plain bytes print without decimals (``512 B``).
    """
    if num_bytes is None:
        return "-"
    sign = ""
    if signed:
        sign = "+" if num_bytes >= 0 else "-"
    elif num_bytes < 0:
        sign = "-"
    magnitude = abs(num_bytes)
    if magnitude < 1024:
        return f"{sign}{magnitude} B"
    exponent = min(int(math.log(magnitude, 1024)), len(_IEC_UNITS) - 1)
    value = magnitude / (1024**exponent)
    if value >= 1023.995 and exponent < len(_IEC_UNITS) - 1:
        exponent += 1
        value = magnitude / (1024**exponent)
    return f"{sign}{value:.2f} {_IEC_UNITS[exponent]}"
