"""Sizes and durations: the strict parsers for what users type, and IEC formatting.

A size is an integer number of bytes, or a number with an optional space and a unit:
``B``; SI ``kB KB MB GB TB`` (powers of 1000); IEC ``KiB MiB GiB TiB`` (powers of 1024).
The whole string must match; anything ambiguous (``2G``) is rejected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fractions import Fraction

from pytest_hypomnesis._iec import GIB, MIB

__all__ = [
    "GIB",
    "MAX_SIZE_BYTES",
    "MIB",
    "SIZE_FORMS",
    "SizeError",
    "clip",
    "format_bytes_iec",
    "parse_duration_s",
    "parse_size",
    "short_repr",
]

# The most bytes a machine can hold (a 64-bit size): larger budgets are typos, and would
# overflow the float formatting every message goes through.
MAX_SIZE_BYTES = 2**64 - 1

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
_SIZE_RE = re.compile(r"(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))? ?(?P<unit>[A-Za-z]+)?", re.ASCII)
_DURATION_RE = re.compile(
    r"(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))? ?(?P<unit>us|ms|s|m|h)?", re.ASCII
)
_DURATION_UNITS: dict[str, Fraction] = {
    "us": Fraction(1, 1_000_000),
    "ms": Fraction(1, 1000),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3600),
}
# Digits past these cannot matter: any size above 2^64-1 (20 digits) is rejected, and a
# fraction that stays after its trailing zeros are dropped needs more than 40 decimals only
# if it is not a multiple of 1/2^40 (the finest step any unit, TiB, turns into whole bytes).
_MAX_INT_DIGITS = 24
_MAX_FRAC_DIGITS = 40
# The shortest interval a sampler can be asked for (1 ns); also keeps the float above zero.
_MIN_DURATION_S = Fraction(1, 10**9)


class SizeError(ValueError):
    """A size or duration string that does not parse; the message names it and the valid forms."""


def _too_large(text: object) -> SizeError:
    return SizeError(
        f"invalid size {short_repr(text)}: more than a machine can hold "
        f"(at most {MAX_SIZE_BYTES} bytes, 16 EiB); expected {SIZE_FORMS}"
    )


def short_repr(text: object) -> str:
    """``repr`` of the input, cut short for a 5000-digit one (which ``repr`` of an int
    would refuse to print at all)."""
    if isinstance(text, int) and not isinstance(text, bool):
        digits = len(str(abs(text))) if text.bit_length() < 10_000 else None
        if digits is None or digits > 40:
            return f"<an integer of {digits or 'thousands of'} digits>"
        return repr(text)
    try:
        return clip(repr(text))
    except Exception as exc:  # a user object whose __repr__ raises: name it, not a traceback
        return f"<{type(text).__name__} object (repr failed: {type(exc).__name__})>"


def clip(text: str, limit: int = 60) -> str:
    """``text`` cut short for a one-line message (a 5000-digit value stays readable)."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 20]}...{text[-10:]} ({len(text)} chars)"


def _exact_number(whole: str, frac: str | None) -> Fraction | None:
    """The decimal ``whole.frac`` exactly, or None when it is too big to be a size
    (more significant integer digits than any budget can have)."""
    whole = whole.lstrip("0") or "0"
    frac = (frac or "").rstrip("0")
    if len(whole) > _MAX_INT_DIGITS:
        return None
    if len(frac) > _MAX_FRAC_DIGITS:
        # Not representable in whole bytes by any unit; keep just enough digits to say so.
        frac = frac[: _MAX_FRAC_DIGITS + 1]
    return Fraction(int(whole + frac), 10 ** len(frac))


def parse_size(text: object) -> int:
    """Bytes for ``text`` (a size string, or a non-negative ``int`` of at most 2^64-1).

    Exact: the number is read as a fraction, so ``1.5 KiB`` is 1536 bytes and anything that
    is not a whole number of bytes (``1.5B``, ``0.1KiB``) is rejected, not rounded.
    Raises ``SizeError``.
    """
    if isinstance(text, bool):
        raise SizeError(f"invalid size {text!r}: expected {SIZE_FORMS}")
    if isinstance(text, int):
        if text < 0:
            raise SizeError(
                f"invalid size {short_repr(text)}: a size cannot be negative; expected {SIZE_FORMS}"
            )
        if text > MAX_SIZE_BYTES:
            raise _too_large(text)
        return int(text)
    if not isinstance(text, str):
        raise SizeError(
            f"invalid size {short_repr(text)}: expected a string such as '2GiB'; {SIZE_FORMS}"
        )
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        raise SizeError(f"invalid size {short_repr(text)}: expected {SIZE_FORMS}")
    unit = match.group("unit")
    if unit is None and match.group("frac") is not None:
        raise SizeError(
            f"invalid size {short_repr(text)}: a number of bytes must be whole; "
            f"expected {SIZE_FORMS}"
        )
    if unit is not None and unit not in _UNITS:
        hint = ""
        if unit.upper() in ("K", "M", "G", "T"):
            hint = f" ('{unit}' is ambiguous: write {unit.upper()}iB or {unit.upper()}B)"
        raise SizeError(
            f"invalid size {short_repr(text)}: unknown unit {unit!r}{hint}; expected {SIZE_FORMS}"
        )
    number = _exact_number(match.group("int"), match.group("frac"))
    if number is None:
        raise _too_large(text)
    size = number * _UNITS[unit or "B"]
    if size.denominator != 1:
        raise SizeError(
            f"invalid size {short_repr(text)}: not a whole number of bytes "
            f"({float(size):.6g} B); expected {SIZE_FORMS}"
        )
    if size > MAX_SIZE_BYTES:
        raise _too_large(text)
    return int(size)


def parse_duration_s(text: object) -> float:
    """Seconds for a duration string such as ``5ms``, read exactly. Zero, negatives and
    anything shorter than a nanosecond (which a float would round to zero) are rejected."""
    if not isinstance(text, str):
        raise SizeError(f"invalid duration {short_repr(text)}: expected {DURATION_FORMS}")
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise SizeError(f"invalid duration {short_repr(text)}: expected {DURATION_FORMS}")
    number = _exact_number(match.group("int"), match.group("frac"))
    if number is None:
        raise SizeError(f"invalid duration {short_repr(text)}: too long; expected {DURATION_FORMS}")
    seconds = number * _DURATION_UNITS[match.group("unit") or "s"]
    if not match.group("int").strip("0") and not (match.group("frac") or "").strip("0"):
        raise SizeError(f"invalid duration {short_repr(text)}: must be greater than zero")
    if seconds < _MIN_DURATION_S:
        raise SizeError(f"invalid duration {short_repr(text)}: must be at least 1 ns (1e-9 s)")
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
    if magnitude > 2**1000:  # not a size any reading can have; a float could not hold it
        return f"{sign}>2^1000 B"
    # floor(log1024) from the bit length: exact, where math.log rounds near powers of 1024.
    exponent = min((magnitude.bit_length() - 1) // 10, len(_IEC_UNITS) - 1)
    value = magnitude / (1024**exponent)
    if value >= 1023.995 and exponent < len(_IEC_UNITS) - 1:
        exponent += 1
        value = magnitude / (1024**exponent)
    return f"{sign}{value:.2f} {_IEC_UNITS[exponent]}"


_BINARY_TWIN = {"kB": "KiB", "KB": "KiB", "MB": "MiB", "GB": "GiB", "TB": "TiB"}


def decimal_unit_note(texts: Iterable[str]) -> str | None:
    """One sentence for the first size in ``texts`` written with a decimal unit (``MB``,
    ``GB``): what it means here (SI, powers of 1000, as the crate and ``parse_size``
    read it; pytest-memray reads ``MB`` as MiB) and how to write the binary one.
    ``None`` when no size uses a decimal unit."""
    for text in texts:
        match = _SIZE_RE.fullmatch(text.strip())
        if match is None:
            continue
        unit = match.group("unit")
        twin = _BINARY_TWIN.get(unit or "")
        if unit is None or twin is None:
            continue
        number = text.strip()[: match.start("unit")].strip()
        try:
            decimal = parse_size(f"{number} {unit}")
            binary = parse_size(f"{number} {twin}")
        except SizeError:
            continue
        return (
            f"hypomnesis: sizes in decimal units are SI: {text.strip()!r} is {decimal:,} bytes "
            f"(1 {unit} = {_UNITS[unit]:,} B); write '{number} {twin}' for {binary:,} bytes"
        )
    return None
