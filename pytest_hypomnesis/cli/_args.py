"""The ``hmn`` command line: argparse with one-line usage errors (exit 2, no usage dump).

Each mode module owns its subparser (``add_parser``) and its runner (``run``); this module
only assembles them and turns bad input into a ``UsageError``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from pytest_hypomnesis.cli._durations import DurationError, parse_duration_ms

__all__ = [
    "SORT_KEYS",
    "U32_MAX",
    "HmnArgumentParser",
    "UsageError",
    "attach_negative_values",
    "device_arg",
    "duration_ms_arg",
    "interval_ms_arg",
    "non_negative_int_arg",
    "pid_arg",
    "positive_int_arg",
    "split_spill_command",
]

U32_MAX = 2**32 - 1

# ``hmn ps --sort``; the crate's aliases: "vram" and "committed" both mean dedicated (used).
SORT_KEYS = ("dedicated", "vram", "committed", "shared", "total")

JSON_BEFORE_SUBCOMMAND = (
    "--json before a subcommand is ignored, not applied — each subcommand has its own "
    "--json (e.g. `hmn ps --json`, not `hmn --json ps`)"
)


class UsageError(Exception):
    """Bad command-line input; ``main`` prints ``hmn: <message>`` and exits 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _OnceMixin(argparse.Action):
    """An option given twice is a usage error, as in the crate (clap), not "last wins"."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[object] | None,
        option_string: str | None = None,
    ) -> None:
        if option_string is not None and isinstance(parser, HmnArgumentParser):
            if self.dest in parser.seen_dests:
                raise argparse.ArgumentError(self, "given more than once; give it once")
            parser.seen_dests.add(self.dest)
        super().__call__(parser, namespace, values, option_string)


class _StoreOnce(_OnceMixin, argparse._StoreAction):
    pass


class _StoreTrueOnce(_OnceMixin, argparse._StoreTrueAction):
    pass


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns`` without importing shutil (with bz2, lzma and
    fnmatch), which argparse's formatter would do on every ``add_argument``."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    try:
        return os.get_terminal_size(stdout.fileno()).columns or 80 if stdout else 80
    except (AttributeError, ValueError, OSError):
        return 80


class HmnHelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that text with line breaks (the long help's
    ``platforms:`` / ``security:`` sections) is kept as written."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24) -> None:
        super().__init__(prog, indent_increment, max_help_position, _terminal_columns() - 2)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class HmnArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, not a usage dump, that takes each
    option at most once and only spelled out in full (``--dev`` is not ``--device``), as
    the crate's parser does.

    Subparsers are built with the parent's class, so every level raises ``UsageError``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HmnHelpFormatter)
        super().__init__(*args, **kwargs)
        self.seen_dests: set[str] = set()
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)
        self.register("action", "store_true", _StoreTrueOnce)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self.seen_dests = set()
        unknown = self._unknown_option([] if args is None else args)
        if unknown is not None:
            raise UsageError(unknown)
        return super().parse_known_args(args, namespace)

    def _unknown_option(self, args: Sequence[str]) -> str | None:
        """A message for the first ``--name`` this level does not know, checked before
        argparse would read the value after it as a positional (``watch --int 1s``
        would say "invalid PID '1s'")."""
        commands: set[str] = set()
        # ``hmn spill CMD --its-own-flag``: the wrapped command's words are not ours.
        takes_rest = any(a.nargs == argparse.REMAINDER for a in self._actions)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                commands.update(action.choices)
        for arg in args:
            if arg == "--" or arg in commands:
                return None
            if not arg.startswith("--"):
                if takes_rest and not arg.startswith("-"):
                    return None
                continue
            name = arg.split("=", 1)[0]
            if name in self._option_string_actions:
                continue
            known = sorted(o for o in self._option_string_actions if o.startswith(name))
            hint = f" (did you mean {' or '.join(known)}? options are not abbreviated)"
            return f"unrecognized option {name}" + (hint if known else "")
        return None

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _whole_number(text: str, what: str, maximum: int) -> int:
    stripped = text.strip()
    if stripped.startswith("-") and stripped[1:].isascii() and stripped[1:].isdigit():
        raise argparse.ArgumentTypeError(f"invalid {what} {text!r}: must not be negative")
    if not stripped.isascii() or not stripped.isdigit():
        raise argparse.ArgumentTypeError(f"invalid {what} {text!r}: not a whole number")
    value = int(stripped)
    if value > maximum:
        raise argparse.ArgumentTypeError(f"invalid {what} {text!r}: larger than {maximum}")
    return value


def pid_arg(text: str) -> int:
    """A process id: a whole number that fits the OS's unsigned 32-bit pid."""
    return _whole_number(text, "PID", U32_MAX)


def device_arg(text: str) -> int:
    """A 0-based GPU index."""
    return _whole_number(text, "device index", U32_MAX)


def positive_int_arg(text: str) -> int:
    """A count of at least 1 (``--top``)."""
    value = _whole_number(text, "count", 2**63 - 1)
    if value == 0:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: must be at least 1")
    return value


def non_negative_int_arg(text: str) -> int:
    """A count that may be 0 (``hmn report --top``: 0 = all)."""
    stripped = text.strip()
    if not stripped.isascii() or not stripped.isdigit():
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: not a whole number")
    return int(stripped)


def interval_ms_arg(text: str) -> int:
    """``hmn spill --interval``: whole milliseconds, at least 1."""
    value = _whole_number(text, "interval", 2**63 - 1)
    if value == 0:
        raise argparse.ArgumentTypeError(
            f"invalid interval {text!r}: must be at least 1 millisecond"
        )
    return value


def duration_ms_arg(text: str) -> int:
    """``hmn watch --interval/--duration``: ``500ms``, ``5s``, ``2m``, ``1h`` or bare seconds."""
    try:
        return parse_duration_ms(text)
    except DurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# Options taking a value that may be typed negative by mistake; argparse would read "-1s"
# as an unknown option and say only "expected one argument".
_VALUE_FLAGS = {"--pid", "--device", "--sort", "--interval", "--duration", "--top"}


def attach_negative_values(argv: Sequence[str]) -> list[str]:
    """Rewrite ``--interval -1s`` as ``--interval=-1s`` so the value's own check names it."""
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        nxt = args[i + 1] if i + 1 < len(args) else ""
        if arg in _VALUE_FLAGS and len(nxt) > 1 and nxt[0] == "-" and nxt[1].isdigit():
            out.append(f"{arg}={nxt}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


_TOP_LEVEL_FLAGS = {"-h", "--help", "-V", "--version", "--json"}


def split_spill_command(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """Split ``hmn [opts] spill [opts] -- CMD...`` into hmn's own arguments and ``CMD``.

    Done before argparse so that the wrapped command's own flags (``-h``, ``--json``)
    are never read as ``hmn``'s. Returns ``(argv, None)`` when there is no ``spill ... --``.
    """
    args = list(argv)
    for i, arg in enumerate(args):
        if arg in _TOP_LEVEL_FLAGS:
            continue
        if arg != "spill":
            return args, None
        try:
            sep = args.index("--", i + 1)
        except ValueError:
            return args, None
        return args[:sep], args[sep + 1 :]
    return args, None
