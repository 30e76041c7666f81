"""The crate's byte-exact output helpers (the CLI's and the records' text).

Rust's ``{:.0}`` and ``{:.1}`` round half to even on the binary value, exactly as
Python's ``format`` does, so ``f"{x:.0f}"`` reproduces the crate's strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pytest_hypomnesis._iec import GIB, MIB

__all__ = [
    "compact_json",
    "device_line",
    "format_vram",
    "mb0",
    "render_table",
    "signed_mb0",
]


def mb0(num_bytes: int) -> str:
    """Bytes as whole MiB, rounded half to even (the crate's ``{:.0}`` of bytes/1048576)."""
    return f"{num_bytes / MIB:.0f}"


def signed_mb0(value_mb: float) -> str:
    """A signed MiB figure like Rust's ``{:+.0}``: ``+100``, ``-30``, ``+0``, ``-0``."""
    return f"{value_mb:+.0f}"


def device_line(index: int, body: str, name: str | None) -> str:
    suffix = f" [{name}]" if name is not None else ""
    return f"  GPU {index}: {body}{suffix}\n"


def format_vram(num_bytes: int) -> str:
    """The CLI's human size: below 1 GiB ``<floor MiB> MiB``, else ``<x.1> GiB``."""
    if num_bytes < GIB:
        return f"{num_bytes // MIB} MiB"
    return f"{num_bytes / GIB:.1f} GiB"


def _escape_json_string(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or 0x7F <= code <= 0x9F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def compact_json(value: object) -> str:
    """The crate's hand-written JSON: no spaces, key order kept, non-ASCII raw,
    ``"``, ``\\``, ``\\n``, ``\\r``, ``\\t`` escaped, other C0, DEL and C1 as ``\\u00xx``."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return _escape_json_string(value)
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(f"{_escape_json_string(str(k))}:{compact_json(v)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(compact_json(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def render_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """The crate's table layout: left-aligned columns joined by two spaces, each as
    wide as its widest cell measured in UTF-8 **bytes**, padded in characters, the
    last column padded too. Returns the lines without newlines."""
    all_rows = [list(header), *(list(r) for r in rows)]
    widths = [max(len(row[i].encode("utf-8")) for row in all_rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in all_rows]
