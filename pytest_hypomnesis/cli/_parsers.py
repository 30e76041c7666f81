"""Every ``hmn`` parser, and nothing a command needs to run: ``hmn ps`` must not import
the code of ``watch``, ``spill`` or ``report`` (nor its own backends) just to parse its
arguments, so the definitions live here and ``main`` imports a command's module only to
run it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, TypeAlias, TypedDict

from pytest_hypomnesis.cli._args import (
    SORT_KEYS,
    HmnArgumentParser,
    device_arg,
    duration_ms_arg,
    interval_ms_arg,
    non_negative_int_arg,
    pid_arg,
    positive_int_arg,
)

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[HmnArgumentParser]

__all__ = ["build_parser", "command_named"]


class _CommandHelp(TypedDict, total=False):
    help: str
    description: str
    epilog: str
    usage: str


_DESCRIPTION = (
    "GPU memory CLI of pytest-hypomnesis, a port of the hypomnesis crate's hmn. With no "
    "command: one line per visible GPU with free / total VRAM, reserved memory and driver. "
    "GPUs are numbered as NVML and nvidia-smi number them (the crate's numbering), not as "
    "CUDA_VISIBLE_DEVICES renumbers them for CUDA programs."
)

# The crate's long help carries the same facts; the wording is ours.
PLATFORMS = """\
platforms:
  Linux    device figures from NVML (libnvidia-ml.so.1 through nvidia-ml-py), nvidia-smi
           when NVML cannot answer. `hmn ps` lists compute processes only (those with a
           CUDA context), named from /proc/PID/comm (at most 15 bytes). Spill is not
           measurable.
  Windows  device figures from NVML and DXGI; the process listing from the GPU performance
           counters (PDH): every process holding GPU memory, dedicated and shared. Spill
           (WDDM) is measured by `hmn spill` and `hmn watch`.
  macOS    Apple Silicon only: one GPU (Metal), unified memory shared with the CPU.
           `hmn ps` sees the processes of the same user unless run with sudo. Spill is
           not measurable.
"""

SECURITY = """\
security:
  `hmn ps` and `hmn watch` list every process holding GPU memory that this user can see,
  other users' included. A row named `[protected]` or `?` is a process whose name this
  user may not read (another user's, a system service, a name that is not valid UTF-8);
  such rows are counted as "protected" in the summary, because an unnamed process holding
  GPU memory is worth identifying. Running elevated (sudo, an administrator shell) names
  them, and shows those names to whoever reads the output. `[exited]` (gone before it
  could be named) and `[kernel]` (Windows pid 4) are not counted.
"""

EXIT_STATUS = """\
exit status:
  0  done (`hmn watch`: no spill observed; `hmn spill`: the command's own status)
  1  a figure could not be measured: what failed is on stderr (`hmn watch`: spill observed)
  2  bad input (an unknown, abbreviated or repeated option, a bad value); `hmn watch`: a
     hard error
"""


def _help_parser(subparsers: Subparsers) -> None:
    help_parser = subparsers.add_parser(
        "help", help="show help for hmn or one of its commands", description="Show help."
    )
    help_parser.add_argument("topic", nargs="?", metavar="COMMAND", help="command to describe")


def _version() -> str:
    from pytest_hypomnesis import __version__

    return f"hmn {__version__}"


def command_named(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs (``help ps`` describes ``ps``); ``None`` for the summary.
    Only hmn's own flags, which take no value, may come before it."""
    for i, arg in enumerate(argv):
        if arg.startswith("-") and arg != "-":
            continue
        if arg == "help":
            topic = next((a for a in argv[i + 1 :] if not a.startswith("-")), None)
            return topic or "help"
        return arg
    return None


def build_parser(commands: Collection[str] | None = None) -> HmnArgumentParser:
    """The ``hmn`` parser: its options, the long help, every command, and the arguments of
    ``commands`` (default: all). Building only the arguments of the command being run
    keeps ``hmn ps`` from paying for the others' (about a millisecond each)."""
    parser = HmnArgumentParser(
        prog="hmn",
        description=_DESCRIPTION,
        epilog=PLATFORMS + "\n" + SECURITY + "\n" + EXIT_STATUS,
    )
    parser.add_argument("-V", "--version", action="version", version=_version())
    parser.add_argument(
        "--json",
        dest="top_json",
        action="store_true",
        help=(
            "print the device summary as a JSON array (index, name, total_bytes, free_bytes, "
            "used_bytes, reserved_bytes, driver_version); subcommands have their own --json"
        ),
    )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", help="what to do (default: the device summary)"
    )
    for name, (help_text, add_arguments) in _COMMANDS.items():
        command = subparsers.add_parser(name, **help_text)
        if commands is None or name in commands:
            add_arguments(command)
    _help_parser(subparsers)
    return parser


def _ps_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pid", type=pid_arg, metavar="PID", help="keep only this PID")
    parser.add_argument(
        "--device",
        type=device_arg,
        metavar="INDEX",
        help="list only this GPU index (default: every visible device)",
    )
    parser.add_argument(
        "--sort",
        choices=SORT_KEYS,
        default="dedicated",
        metavar="KEY",
        help=(
            "order rows by dedicated VRAM (default; aliases vram, committed), shared "
            "memory, or total = dedicated + shared; ties by name, then PID"
        ),
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help=(
            "print a JSON array: pid, name, used_bytes, shared_used_bytes, device_index, "
            "device_name"
        ),
    )


def _watch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "pids",
        nargs="*",
        type=pid_arg,
        metavar="PID",
        help="PIDs to watch (duplicates dropped); none = auto-select the top --top",
    )
    parser.add_argument(
        "--interval",
        type=duration_ms_arg,
        default=5000,
        metavar="DURATION",
        help="sampling period: 500ms, 5s, 2m, 1h or bare seconds (default 5s)",
    )
    parser.add_argument(
        "--duration",
        type=duration_ms_arg,
        metavar="DURATION",
        help="stop after this long, same syntax as --interval (default: until Ctrl-C)",
    )
    parser.add_argument(
        "--top",
        type=positive_int_arg,
        default=5,
        metavar="N",
        help="how many processes auto-selection watches, by committed VRAM (default 5)",
    )
    parser.add_argument(
        "--follow-new",
        action="store_true",
        help="re-select the top --top every interval instead of once at attach",
    )
    parser.add_argument(
        "--device", type=device_arg, default=0, metavar="INDEX", help="GPU index (default 0)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print JSON Lines: one "sample" object per PID per interval, then a "summary"',
    )


def _spill_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--interval",
        type=interval_ms_arg,
        default=100,
        metavar="MS",
        help="sampling period in whole milliseconds, at least 1 (default 100)",
    )
    parser.add_argument(
        "--device", type=device_arg, metavar="INDEX", help="GPU index to observe (default 0)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="also print the spill report as one JSON object on stdout",
    )
    parser.add_argument(
        "command_args",
        nargs=argparse.REMAINDER,
        metavar="COMMAND",
        help="the command to run, after --",
    )


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files", nargs="+", metavar="FILE.json", help="reports written by --hypomnesis-json"
    )
    parser.add_argument(
        "--top",
        type=non_negative_int_arg,
        default=10,
        metavar="N",
        help="rows to show, heaviest first (default 10; 0 = all)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="add the RAM start/end, outcome and worker columns",
    )
    parser.add_argument(
        "--compare",
        metavar="BASE.json",
        help="compare with this baseline report; the comparison follows the table",
    )
    parser.add_argument(
        "--fail",
        metavar="EXPR",
        help=(
            "with --compare: exit 1 when a test grew past EXPR[,EXPR...], EXPR METRIC:N%% or "
            "METRIC:SIZE, METRIC one of ram, ram_peak, vram, vram_peak (e.g. ram:10%%,vram:64MiB)"
        ),
    )
    parser.add_argument(
        "--html", metavar="PATH", help="write the self-contained HTML report to PATH"
    )


def _size_arg(text: str) -> int:
    from pytest_hypomnesis._units import SizeError, parse_size

    try:
        value = parse_size(text.strip())
    except SizeError as exc:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: {exc}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: must be more than 0")
    return value


def _gpus_arg(text: str) -> int:
    stripped = text.strip()
    if not stripped.isascii() or not stripped.isdigit() or int(stripped) == 0:
        raise argparse.ArgumentTypeError(f"invalid GPU count {text!r}: expected 1 or more")
    return int(stripped)


def _percent_arg(text: str) -> float:
    stripped = text.strip()
    try:
        fraction = float(stripped[:-1]) / 100 if stripped.endswith("%") else -1.0
    except ValueError:
        fraction = -1.0
    if not 0 <= fraction < 1:
        raise argparse.ArgumentTypeError(f"invalid headroom {text!r}: expected 0% to 99%")
    return fraction


def _plan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="REPORT.json", help="a report from --hypomnesis-json")
    parser.add_argument(
        "--gpus", type=_gpus_arg, default=None, help="GPUs to plan for (default: the report's)"
    )
    parser.add_argument(
        "--gpu-memory",
        type=_size_arg,
        default=None,
        metavar="SIZE",
        help="memory of each GPU, e.g. 24GiB (default: the report's first GPU)",
    )
    parser.add_argument(
        "--headroom",
        type=_percent_arg,
        default=None,
        metavar="PERCENT",
        help="kept free on each GPU, as --hypomnesis-admit-headroom (default 5%%)",
    )
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")


# hmn's commands in the order its help lists them: what its help says, and the function
# adding its arguments (only for the command being run: see build_parser).
_COMMANDS: dict[str, tuple[_CommandHelp, Callable[[argparse.ArgumentParser], None]]] = {
    "ps": (
        {
            "epilog": PLATFORMS + "\n" + SECURITY,
            "help": "list processes holding GPU memory",
            "description": (
                "List processes holding GPU memory, biggest first. On Linux (NVML) the list is "
                "compute-only: processes with a CUDA context. A one-line summary goes to stderr. "
                "Exit status 0; 1 when a device could not be listed or the GPUs could not be "
                "counted (what failed is said on stderr)."
            ),
        },
        _ps_arguments,
    ),
    "watch": (
        {
            "epilog": PLATFORMS + "\n" + SECURITY,
            "help": "sample per-PID VRAM and spill on a timer",
            "description": (
                "Attach to running PIDs (or the top --top processes by committed VRAM) and print "
                "one row per PID per interval with deltas, until --duration or Ctrl-C; then a "
                "closing summary. Exit 0 = no spill observed, 1 = spilled, 2 = hard error."
            ),
        },
        _watch_arguments,
    ),
    "spill": (
        {
            "help": "run a command and report WDDM spill",
            "usage": "hmn spill [-h] [--interval MS] [--device INDEX] [--json] -- COMMAND...",
            "description": (
                "Run COMMAND (stdin/stdout/stderr inherited) while sampling WDDM spill: resident "
                "shared-memory growth under dedicated-VRAM saturation. Prints a report to stderr "
                "when it exits and exits with its exit code (1 when it has none in 0..255). Spill "
                "is measurable only on Windows; elsewhere the command still runs and the report "
                "says so."
            ),
        },
        _spill_arguments,
    ),
    "report": (
        {
            "help": "print the plugin's summary table from JSON reports",
            "description": (
                "Print the pytest plugin's summary table from one or more --hypomnesis-json "
                "reports. Several files merge into one table with a source column."
            ),
        },
        _report_arguments,
    ),
    "plan": (
        {
            "help": "suggest xdist workers per GPU from a JSON report, and predict the wall time",
            "description": (
                "From a --hypomnesis-json report: each test's VRAM need (peak increase + 10%%; "
                "unknown: the test runs alone) and duration give the suggested -n per GPU for "
                "--hypomnesis-pin-gpus --hypomnesis-admit, and the predicted wall time serial "
                "vs packed."
            ),
        },
        _plan_arguments,
    ),
}
