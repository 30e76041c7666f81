"""The ``hmn`` command: the crate's CLI (device summary, ``ps``, ``watch``, ``spill``)
plus ``report`` for the plugin's JSON reports.

``main`` returns the exit code; the console script passes it to ``sys.exit``. Bad input
is one ``hmn: ...`` line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Sequence

from pytest_hypomnesis.cli._args import (
    JSON_BEFORE_SUBCOMMAND,
    HmnArgumentParser,
    UsageError,
    attach_negative_values,
    split_spill_command,
)
from pytest_hypomnesis.cli._parsers import build_parser, command_named

__all__ = ["build_parser", "main"]


def _print_help(parser: HmnArgumentParser, topic: str | None) -> int:
    if topic is None:
        parser.print_help()
        return 0
    try:
        parser.parse_args([topic, "--help"])
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 0
    return 0


def _dispatch(argv: Sequence[str]) -> int:
    own_args, command = split_spill_command(argv)
    named = command_named(own_args)
    parser = build_parser(set() if named is None else {named})
    try:
        args = parser.parse_args(attach_negative_values(own_args))
    except SystemExit as done:  # --help / --version
        return done.code if isinstance(done.code, int) else 0
    if args.top_json and args.command is not None:
        raise UsageError(JSON_BEFORE_SUBCOMMAND)
    # Each command's module is imported only to run it: `hmn ps` loads no report code.
    if args.command is None:
        from pytest_hypomnesis.cli import devices

        return devices.run(args.top_json)
    if args.command == "help":
        return _print_help(parser, args.topic)
    if args.command == "ps":
        from pytest_hypomnesis.cli import ps

        return ps.run(args)
    if args.command == "watch":
        from pytest_hypomnesis.cli import watch

        return watch.run(args)
    if args.command == "spill":
        if command is None:
            command = list(args.command_args)
        if command and command[0] == "--":
            command = command[1:]
        if not command:
            raise UsageError("spill needs a command to run: hmn spill [OPTIONS] -- COMMAND...")
        from pytest_hypomnesis.cli import spill

        return spill.run(args, command)
    if args.command == "report":
        from pytest_hypomnesis.cli import report

        return report.run(args)
    if args.command == "plan":
        from pytest_hypomnesis.cli import plan

        return plan.run(args)
    raise UsageError(f"unknown command {args.command!r}")  # pragma: no cover


def _utf8_streams() -> None:
    """Write UTF-8 with ``\\n`` line ends whatever the locale, as the crate does; a console
    that cannot show a character gets a replacement instead of a crash."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            encoding = (stream.encoding or "").lower().replace("-", "").replace("_", "")
            if encoding == "utf8" or stream.isatty():
                stream.reconfigure(errors="replace", newline="\n")
            else:
                stream.reconfigure(encoding="utf-8", errors="replace", newline="\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hmn`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    _utf8_streams()
    try:
        return _dispatch(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        sys.stdout.flush()
        sys.stderr.write(f"hmn: {exc.message}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`hmn ps | head -1`): say nothing more, and keep the
        # interpreter's final flush from raising again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
