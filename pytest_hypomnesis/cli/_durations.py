"""``hmn watch`` durations: digits plus an optional unit, the crate's rule (parity §6.4)."""

from __future__ import annotations

__all__ = ["DurationError", "format_secs", "parse_duration_ms", "rust_debug_str"]

_U64_MAX = 2**64 - 1
_UNIT_MS = {"": 1000, "s": 1000, "ms": 1, "m": 60_000, "h": 3_600_000}


class DurationError(ValueError):
    """A duration string that is empty, has an unknown unit, or is zero."""


def rust_debug_str(text: str) -> str:
    """``text`` quoted the way Rust's ``{:?}`` quotes a string, as the crate's messages do."""
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def parse_duration_ms(text: str) -> int:
    """``"5s"`` → 5000. Digits then ``ms``, ``s``, ``m`` or ``h``; bare digits are seconds;
    surrounding whitespace is ignored. Raises ``DurationError`` with the crate's message."""
    trimmed = text.strip()
    split_at = len(trimmed)
    for i, ch in enumerate(trimmed):
        # Only ASCII digits count: Python's isdigit() would also take "²" or "٣".
        if not ("0" <= ch <= "9"):
            split_at = i
            break
    digits, unit = trimmed[:split_at], trimmed[split_at:]
    quoted = rust_debug_str(text)
    if not digits:
        raise DurationError(
            f"invalid duration {quoted}: expected digits followed by an optional unit (ms, s, m, h)"
        )
    if unit not in _UNIT_MS:
        raise DurationError(
            f"invalid duration {quoted}: unknown unit {rust_debug_str(unit)} "
            "(expected ms, s, m, or h)"
        )
    value = int(digits)
    if value > _U64_MAX:
        # The crate parses into a u64; a longer digit string is its "not a whole number".
        raise DurationError(
            f"invalid duration {quoted}: {rust_debug_str(digits)} is not a whole number"
        )
    millis = min(value * _UNIT_MS[unit], _U64_MAX)
    if millis == 0:
        raise DurationError(f"invalid duration {quoted}: must be greater than zero")
    return millis


def format_secs(seconds: float) -> str:
    """Seconds with one decimal, Rust's ``{:.1}s``: ``"3.8s"``."""
    return f"{seconds:.1f}s"
