"""The plugin's options and ini keys, resolved command line → ini → default.

Every ``--hypomnesis-*`` flag has an ini twin with ``_`` for ``-``. Command-line flags
default to ``None`` so an absent flag lets the ini value through. A bad value is a
``pytest.UsageError`` with one line naming the option, the value and the valid forms.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Literal

import pytest

from pytest_hypomnesis._units import SizeError, clip, parse_duration_s, parse_size

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    from pytest_hypomnesis.report.compare import Threshold

    T = TypeVar("T")

__all__ = [
    "DEFAULT_INTERVAL_S",
    "DEFAULT_TOP",
    "VRAM_BUDGET_SOURCES",
    "VRAM_SOURCES",
    "Settings",
    "add_options",
    "resolve",
]

DEFAULT_TOP = 10
MAX_INTERVAL_S = 60.0
DEFAULT_INTERVAL_S = 0.010
DEFAULT_HEADROOM = 0.05
DEFAULT_ADMIT_TIMEOUT_S = 1800.0
_SCOPES = ("call", "test")
RAM_SOURCES = ("rss", "python")
# Bounds for counts typed by users: beyond these a value is a typo, and a 5000-digit one
# would exceed Python's int-parsing limit.
MAX_TOP = 2**31 - 1
MAX_DEVICE_INDEX = 2**32 - 2  # NVML indices are unsigned ints; 2^32-1 is its "none"
MAX_VERBOSITY = 99
_BOOL_FORMS = "true/false, yes/no, on/off, 1/0"
_BOOL_WORDS = {
    **dict.fromkeys(("y", "yes", "t", "true", "on", "1"), True),
    **dict.fromkeys(("n", "no", "f", "false", "off", "0"), False),
}
_WHOLE_RE = re.compile(r"[0-9]+", re.ASCII)
_VERBOSITY_RE = re.compile(r"-?[0-9]+", re.ASCII)
VRAM_BUDGET_SOURCES = ("auto", "driver", "allocator")
VRAM_SOURCES = ("process", "device")

# (option suffix, ini type, help). The flag is "--hypomnesis" + suffix; the ini key is the
# same with "_" for "-". Kept in one table so the ini twins cannot drift from the flags.
_OPTIONS: tuple[tuple[str, Literal["bool", "string"], str], ...] = (
    ("", "bool", "measure RAM and VRAM of every test and print the hypomnesis summary"),
    ("-json", "string", "write the per-test JSON report to this path"),
    ("-top", "string", f"rows in the summary table (default {DEFAULT_TOP}; 0 = all)"),
    (
        "-scope",
        "string",
        "measure the call phase only (call, default) or setup+call+teardown (test)",
    ),
    ("-interval", "string", "sampling period for GPU figures, e.g. 5ms (default 10ms)"),
    ("-max-ram", "string", "suite-wide RAM budget (RSS increase), e.g. 512MiB; markers override"),
    (
        "-ram-budget-source",
        "string",
        "what a RAM budget without source= judges: rss (the process's RSS, default) or python "
        "(the peak of traced Python allocations, tracemalloc)",
    ),
    ("-max-vram", "string", "suite-wide VRAM budget (per-process increase), e.g. 2GiB"),
    (
        "-device",
        "string",
        "CUDA ordinal(s) to watch, as cuda:N counts them after CUDA_VISIBLE_DEVICES, e.g. 0 "
        "or 0,1 (default: every GPU this process can use)",
    ),
    ("-strict", "bool", "a VRAM budget that cannot be checked (no GPU) fails the test"),
    ("-compare", "string", "compare with this baseline JSON report (implies measuring every test)"),
    (
        "-compare-fail",
        "string",
        "fail the run when a test grew past EXPR[,EXPR...], EXPR METRIC:N% or METRIC:SIZE, "
        "METRIC one of ram, ram_peak, vram, vram_peak (needs --hypomnesis-compare)",
    ),
    ("-html", "string", "write the self-contained HTML report to this path"),
    ("-timeline", "bool", "keep each measured test's memory series (at most 200 points)"),
    (
        "-pin-gpus",
        "bool",
        "under pytest-xdist, give each worker one GPU round-robin (CUDA_VISIBLE_DEVICES set to "
        "its UUID, so cuda:0 is the worker's GPU)",
    ),
    (
        "-admit",
        "bool",
        "VRAM admission: a test starts only when its need fits on its GPU (host-wide ledger)",
    ),
    (
        "-admit-headroom",
        "string",
        f"share of each GPU's memory admission keeps free (default {DEFAULT_HEADROOM:.0%})",
    ),
    (
        "-admit-timeout",
        "string",
        "fail a test that waited longer than this for VRAM, e.g. 10m (default 30m)",
    ),
    (
        "-needs",
        "string",
        "an earlier --hypomnesis-json report: tests' VRAM needs and durations, for admission "
        "and the xdist scheduler that plans the packing ahead",
    ),
    (
        "-ledger-dir",
        "string",
        "directory of the host-wide VRAM reservation ledger (default: the system temp dir)",
    ),
    (
        "-keep-hwm",
        "bool",
        "leave the kernel's RSS high-water mark alone (RAM peaks sampled at the interval), so "
        "/usr/bin/time, CI accounting and wait4() still see the run's whole peak",
    ),
    (
        "-children",
        "bool",
        "count child processes too: RAM is the sampled peak of this process plus its "
        "descendants' RSS (a sidecar process samples the tree), VRAM adds their NVML rows",
    ),
    (
        "-vram-budget-source",
        "string",
        "which VRAM figure max_vram judges by default: driver (NVML per-process, net of a "
        "CUDA context), allocator (torch/CuPy/JAX allocated) or auto (the larger; default)",
    ),
    (
        "-vram-source",
        "string",
        "what a test's VRAM figures are: process (this process's own NVML row, default) or "
        "device (the device-wide used increase, for a CI job that owns its GPU, or a "
        "container where NVML cannot see this process)",
    ),
    (
        "-torch-reset-peak",
        "bool",
        "reset torch's peak counters at each test's start for an exact allocator peak "
        "(this also resets what your own max_memory_allocated() returns)",
    ),
    (
        "-cuda-warmup",
        "bool",
        "create the CUDA context on each watched GPU at session start, through torch or "
        "CuPy (imported if installed), so no test is charged for it",
    ),
)

_METAVARS = {
    "-compare": "BASE.json",
    "-compare-fail": "EXPR",
    "-html": "PATH",
    "-needs": "REPORT.json",
    "-ledger-dir": "DIR",
    "-admit-headroom": "PERCENT",
    "-admit-timeout": "DURATION",
}


class Settings:
    """The resolved options of one session (read-only by convention). A plain slotted
    class, not a dataclass: this module loads in every pytest run, and building a
    dataclass at import costs more than the whole of what a run without the flag needs."""

    __slots__ = (
        "admit",
        "admit_headroom",
        "admit_timeout_s",
        "children",
        "compare_path",
        "cuda_warmup",
        "devices",
        "enabled",
        "html_path",
        "interval_s",
        "json_path",
        "keep_hwm",
        "ledger_dir",
        "max_ram_bytes",
        "max_vram_bytes",
        "needs_path",
        "pin_gpus",
        "ram_budget_source",
        "scope",
        "size_texts",
        "strict",
        "thresholds",
        "timeline",
        "top",
        "torch_reset_peak",
        "vram_budget_source",
        "vram_source",
    )

    def __init__(
        self,
        *,
        enabled: bool = False,
        json_path: str | None = None,
        top: int = DEFAULT_TOP,
        scope: str = "call",
        interval_s: float = DEFAULT_INTERVAL_S,
        max_ram_bytes: int | None = None,
        max_vram_bytes: int | None = None,
        devices: tuple[int, ...] | None = None,
        strict: bool = False,
        compare_path: str | None = None,
        thresholds: tuple[Threshold, ...] = (),
        html_path: str | None = None,
        timeline: bool = False,
        pin_gpus: bool = False,
        admit: bool = False,
        admit_headroom: float = DEFAULT_HEADROOM,
        admit_timeout_s: float = DEFAULT_ADMIT_TIMEOUT_S,
        needs_path: str | None = None,
        ledger_dir: str | None = None,
        keep_hwm: bool = False,
        size_texts: tuple[str, ...] = (),
        ram_budget_source: str = "rss",
        vram_budget_source: str = "auto",
        torch_reset_peak: bool = False,
        cuda_warmup: bool = False,
        vram_source: str = "process",
        children: bool = False,
    ) -> None:
        self.enabled = enabled
        self.json_path = json_path
        self.top = top
        self.scope = scope
        self.interval_s = interval_s
        self.max_ram_bytes = max_ram_bytes
        self.max_vram_bytes = max_vram_bytes
        self.devices = devices
        self.strict = strict
        self.compare_path = compare_path
        self.thresholds = thresholds
        self.html_path = html_path
        self.timeline = timeline
        self.pin_gpus = pin_gpus
        self.admit = admit
        self.admit_headroom = admit_headroom
        self.admit_timeout_s = admit_timeout_s
        self.needs_path = needs_path
        self.ledger_dir = ledger_dir
        self.keep_hwm = keep_hwm
        self.size_texts = size_texts
        """The budget options' sizes as written (the header says what a decimal unit means)."""
        self.ram_budget_source = ram_budget_source
        self.vram_budget_source = vram_budget_source
        self.torch_reset_peak = torch_reset_peak
        self.cuda_warmup = cuda_warmup
        self.vram_source = vram_source
        """``process`` (own NVML row) or ``device`` (device-wide used, attributed to the test)."""
        self.children = children

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Settings({fields})"

    @property
    def parallel(self) -> bool:
        """Pinning, admission or the needs scheduler: the parallel-GPU hooks are wanted."""
        return self.pin_gpus or self.admit or self.needs_path is not None

    @property
    def measure_all(self) -> bool:
        """Every test is measured with ``--hypomnesis`` or a report to fill or compare."""
        return (
            self.enabled
            or self.admit
            or self.json_path is not None
            or self.html_path is not None
            or self.compare_path is not None
        )

    @property
    def needs_report(self) -> bool:
        """The controller builds the report dict at session end (JSON, HTML, the gate)."""
        outputs = (self.json_path, self.html_path, self.compare_path)
        return any(path is not None for path in outputs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "interval_s": self.interval_s,
            "max_ram_bytes": self.max_ram_bytes,
            "max_vram_bytes": self.max_vram_bytes,
            "devices": None if self.devices is None else list(self.devices),
            "strict": self.strict,
            "top": self.top,
            "timeline": self.timeline,
            "keep_hwm": self.keep_hwm,
            "ram_budget_source": self.ram_budget_source,
            "vram_budget_source": self.vram_budget_source,
            "vram_source": self.vram_source,
            "torch_reset_peak": self.torch_reset_peak,
            "cuda_warmup": self.cuda_warmup,
            "children": self.children,
        }


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("hypomnesis", "per-test RAM and VRAM measurement and budgets")
    for suffix, kind, help_text in _OPTIONS:
        flag = f"--hypomnesis{suffix}"
        dest = flag.lstrip("-").replace("-", "_")
        # argparse %-formats option help (ini help is printed as is).
        option_help = help_text.replace("%", "%%")
        if kind == "bool":
            group.addoption(flag, action="store_true", default=None, dest=dest, help=option_help)
        else:
            metavar = _METAVARS.get(suffix, suffix.lstrip("-").replace("-", "_").upper())
            group.addoption(flag, default=None, dest=dest, metavar=metavar, help=option_help)
        parser.addini(dest, f"{help_text} (ini twin of {flag})", type=kind, default=None)
    parser.addini(
        "verbosity_hypomnesis",
        "verbosity of the hypomnesis summary; 'auto' follows -v/-q",
        default="auto",
    )


def _getini(config: pytest.Config, dest: str) -> Any:
    """``config.getini`` with pytest's own conversion errors (``invalid truth value
    'maybe'``, which names neither key nor valid forms) turned into our one line."""
    try:
        return config.getini(dest)
    except (ValueError, TypeError, pytest.UsageError) as exc:
        text = str(exc)
        truth = re.search(r"invalid truth value (.*)$", text)
        if truth is not None:
            raise pytest.UsageError(
                f"ini {dest}={truth.group(1).strip(chr(39))}: expected a boolean: {_BOOL_FORMS}"
            ) from None
        raise pytest.UsageError(f"ini {dest}: {text}") from None


def _raw(config: pytest.Config, dest: str) -> tuple[Any, str]:
    """The value and where it came from, for messages: the flag wins over the ini key."""
    value = config.getoption(dest)
    if value is not None:
        return value, "--" + dest.replace("_", "-")
    ini = _getini(config, dest)
    if ini is None or ini == "":
        return None, ""
    return ini, f"ini {dest}"


def _bool(config: pytest.Config, dest: str) -> bool:
    value, origin = _raw(config, dest)
    if value is None or isinstance(value, bool):
        return bool(value)
    flag = _BOOL_WORDS.get(str(value).strip().lower())
    if flag is None:
        raise _usage(origin, value, f"expected a boolean: {_BOOL_FORMS}")
    return flag


def _whole(text: str, maximum: int) -> int | None:
    """A whole number of at most ``maximum``, or None; never ``int()`` on 5000 digits."""
    if _WHOLE_RE.fullmatch(text) is None:
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(maximum)):
        return None
    number = int(digits)
    return number if number <= maximum else None


def _usage(origin: str, value: object, problem: str) -> pytest.UsageError:
    return pytest.UsageError(f"{origin}={clip(str(value))}: {problem}")


def _choice(config: pytest.Config, dest: str, choices: tuple[str, ...], default: str) -> str:
    """One of ``choices`` (``default`` when unset); else one usage line naming them."""
    value, origin = _raw(config, dest)
    if value is None:
        return default
    text = str(value).strip()
    if text not in choices:
        quoted = [f"'{c}'" for c in choices]
        valid = (
            " or ".join(quoted) if len(quoted) < 3 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
        )
        raise _usage(origin, value, f"expected {valid}")
    return text


def _parsed(config: pytest.Config, dest: str, parse: Callable[[str], T]) -> T | None:
    """The option through ``parse`` (``None`` when unset); its ``SizeError`` is one usage
    line naming the flag or ini key."""
    value, origin = _raw(config, dest)
    if value is None:
        return None
    try:
        return parse(str(value).strip())
    except SizeError as exc:
        raise _usage(origin, value, str(exc)) from None


def _duration(config: pytest.Config, dest: str, default: float) -> float:
    seconds = _parsed(config, dest, parse_duration_s)
    return default if seconds is None else seconds


def _size(config: pytest.Config, dest: str) -> int | None:
    return _parsed(config, dest, parse_size)


def _devices(value: str, origin: str) -> tuple[int, ...]:
    indices = [_whole(p.strip(), MAX_DEVICE_INDEX) for p in str(value).split(",")]
    if not indices or any(i is None for i in indices):
        raise _usage(
            origin,
            value,
            "expected a GPU index or a comma-separated list, e.g. 0 or 0,1 "
            f"(indices up to {MAX_DEVICE_INDEX})",
        )
    return tuple(dict.fromkeys(i for i in indices if i is not None))


def _path(config: pytest.Config, dest: str, *, writable: bool) -> str | None:
    """An absolute path (relative ones are taken from the invocation directory); for a
    file to write, its directory must exist."""
    value, origin = _raw(config, dest)
    if value is None:
        return None
    if not str(value).strip():
        raise _usage(origin, value, "expected a file path, e.g. report.json")
    path = os.path.abspath(os.path.join(str(config.invocation_params.dir), str(value)))
    if writable:
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            raise _usage(origin, value, f"directory {parent} does not exist")
        # Caught here, not after every test ran and the write failed.
        if os.path.isdir(path):
            raise _usage(origin, value, f"{path} is a directory: expected a file path")
    return path


def _percent(value: str, origin: str) -> float:
    text = value.strip()
    number = text[:-1].strip() if text.endswith("%") else None
    try:
        fraction = float(number) / 100 if number else -1.0
    except ValueError:
        fraction = -1.0
    if not 0 <= fraction < 1:
        raise _usage(origin, value, "expected a percentage from 0% to 99%, e.g. 5% or 12.5%")
    return fraction


def _thresholds(config: pytest.Config, compare_path: str | None) -> tuple[Threshold, ...]:
    value, origin = _raw(config, "hypomnesis_compare_fail")
    if value is None:
        return ()
    if compare_path is None:
        raise _usage(
            origin, value, "needs --hypomnesis-compare=BASE.json, the baseline to compare with"
        )
    # Imported here: the gate's module is only needed when a gate is asked for.
    from pytest_hypomnesis.report.compare import ThresholdError, parse_fail_exprs

    try:
        return tuple(parse_fail_exprs(str(value)))
    except ThresholdError as exc:
        raise _usage(origin, value, str(exc)) from None


def resolve(config: pytest.Config) -> Settings:
    """Read and validate every option; raises ``pytest.UsageError`` on a bad value."""
    enabled = _bool(config, "hypomnesis")
    strict = _bool(config, "hypomnesis_strict")
    timeline = _bool(config, "hypomnesis_timeline")
    keep_hwm = _bool(config, "hypomnesis_keep_hwm")
    json_path = _path(config, "hypomnesis_json", writable=True)
    html_path = _path(config, "hypomnesis_html", writable=True)
    compare_path = _path(config, "hypomnesis_compare", writable=False)
    if json_path is not None and json_path == html_path:
        # One report would silently replace the other.
        raise pytest.UsageError(
            f"--hypomnesis-json and --hypomnesis-html name the same file ({json_path}): "
            "give each report its own path"
        )

    top = DEFAULT_TOP
    top_value, top_origin = _raw(config, "hypomnesis_top")
    if top_value is not None:
        text = str(top_value).strip()
        parsed_top = _whole(text, MAX_TOP)
        if parsed_top is None:
            problem = "expected a whole number of rows (0 = all)"
            if _WHOLE_RE.fullmatch(text):
                problem = f"too many rows: at most {MAX_TOP} (0 = all)"
            raise _usage(top_origin, top_value, problem)
        top = parsed_top

    ram_source = _choice(config, "hypomnesis_ram_budget_source", RAM_SOURCES, "rss")
    scope = _choice(config, "hypomnesis_scope", _SCOPES, "call")
    interval_s = _duration(config, "hypomnesis_interval", DEFAULT_INTERVAL_S)
    if interval_s > MAX_INTERVAL_S:
        # A sampler that sleeps for hours samples nothing; thread waits also overflow.
        interval_value, interval_origin = _raw(config, "hypomnesis_interval")
        raise _usage(interval_origin, interval_value, "must be at most 60s")

    verbosity_value = _getini(config, "verbosity_hypomnesis")
    if verbosity_value not in (None, "", "auto"):
        # pytest reads this key with int() after the run: anything int() refuses ("--1",
        # 5000 digits) must be refused here, before any test runs.
        text = str(verbosity_value).strip()
        if (
            _VERBOSITY_RE.fullmatch(text) is None
            or len(text.lstrip("-").lstrip("0")) > len(str(MAX_VERBOSITY))
            or abs(int(text)) > MAX_VERBOSITY
        ):
            raise _usage(
                "ini verbosity_hypomnesis",
                verbosity_value,
                f"expected 'auto' or a whole number from -{MAX_VERBOSITY} to {MAX_VERBOSITY}",
            )

    pin_gpus = _bool(config, "hypomnesis_pin_gpus")
    admit = _bool(config, "hypomnesis_admit")
    headroom = DEFAULT_HEADROOM
    headroom_value, headroom_origin = _raw(config, "hypomnesis_admit_headroom")
    if headroom_value is not None:
        headroom = _percent(str(headroom_value), headroom_origin)
    admit_timeout_s = _duration(config, "hypomnesis_admit_timeout", DEFAULT_ADMIT_TIMEOUT_S)
    ledger_dir = _path(config, "hypomnesis_ledger_dir", writable=False)
    if ledger_dir is not None and not os.path.isdir(ledger_dir):
        ledger_value, ledger_origin = _raw(config, "hypomnesis_ledger_dir")
        raise _usage(ledger_origin, ledger_value, "not a directory")
    vram_budget_source = _choice(
        config, "hypomnesis_vram_budget_source", VRAM_BUDGET_SOURCES, "auto"
    )
    vram_source = _choice(config, "hypomnesis_vram_source", VRAM_SOURCES, "process")
    torch_reset_peak = _bool(config, "hypomnesis_torch_reset_peak")
    cuda_warmup = _bool(config, "hypomnesis_cuda_warmup")
    children = _bool(config, "hypomnesis_children")

    devices = None
    device_value, device_origin = _raw(config, "hypomnesis_device")
    if device_value is not None:
        devices = _devices(device_value, device_origin)

    return Settings(
        enabled=enabled,
        json_path=json_path,
        top=top,
        scope=scope,
        interval_s=interval_s,
        max_ram_bytes=_size(config, "hypomnesis_max_ram"),
        max_vram_bytes=_size(config, "hypomnesis_max_vram"),
        ram_budget_source=ram_source,
        size_texts=tuple(
            str(value).strip()
            for value in (_raw(config, d)[0] for d in ("hypomnesis_max_ram", "hypomnesis_max_vram"))
            if value is not None
        ),
        devices=devices,
        strict=strict,
        compare_path=compare_path,
        thresholds=_thresholds(config, compare_path),
        html_path=html_path,
        timeline=timeline,
        pin_gpus=pin_gpus,
        admit=admit,
        admit_headroom=headroom,
        admit_timeout_s=admit_timeout_s,
        needs_path=_path(config, "hypomnesis_needs", writable=False),
        ledger_dir=ledger_dir,
        keep_hwm=keep_hwm,
        vram_budget_source=vram_budget_source,
        torch_reset_peak=torch_reset_peak,
        cuda_warmup=cuda_warmup,
        vram_source=vram_source,
        children=children,
    )
