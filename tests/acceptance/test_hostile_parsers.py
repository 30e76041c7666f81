"""Hostile sizes, durations, options and ini values (issue 11): exact parsing, one clear
line for anything out of range, never an INTERNALERROR or a traceback."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_hypomnesis import SizeError, parse_size
from pytest_hypomnesis._units import MAX_SIZE_BYTES, format_bytes_iec, parse_duration_s
from pytest_hypomnesis.report.compare import parse_fail_exprs
from tests.helpers.pluginrun import assert_usage_error

PASSING = "def test_ok():\n    pass\n"

# The oracle: bytes per unit written out as the SPEC states them (SI units are powers of
# 1000, IEC units powers of 1024), not taken from the parser's own table.
_UNITS = dict(
    [
        ("B", 1),
        ("kB", 1_000),
        ("KB", 1_000),
        ("MB", 1_000_000),
        ("GB", 1_000_000_000),
        ("TB", 1_000_000_000_000),
        ("KiB", 1_024),
        ("MiB", 1_048_576),
        ("GiB", 1_073_741_824),
        ("TiB", 1_099_511_627_776),
    ]
)


# --- sizes: exact, whole bytes, at most 2^64-1 -------------------------------------------


@given(
    whole=st.integers(min_value=0, max_value=10**15),
    frac=st.text(alphabet="0123456789", min_size=0, max_size=30),
    unit=st.sampled_from(sorted(_UNITS)),
    space=st.booleans(),
)
def test_size_is_exact_or_rejected(whole: int, frac: str, unit: str, space: bool) -> None:
    text = f"{whole}{'.' + frac if frac else ''}{' ' if space else ''}{unit}"
    exact = (Fraction(whole) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)) * _UNITS[unit]
    if exact.denominator != 1 or exact > MAX_SIZE_BYTES:
        with pytest.raises(SizeError):
            parse_size(text)
    else:
        assert parse_size(text) == int(exact)


def test_fractional_bytes_are_rejected_not_truncated() -> None:
    with pytest.raises(SizeError, match=r"'1\.5B': not a whole number of bytes"):
        parse_size("1.5B")
    with pytest.raises(SizeError, match="not a whole number of bytes"):
        parse_size("0.1KiB")  # 102.4 B: used to be truncated to 102


def test_many_significant_digits_lose_no_byte() -> None:
    # 41 significant digits: exactly 2^64-1 bytes (1 - 2^-30 GiB below 16 EiB).
    assert parse_size("17179869183.999999999068677425384521484375 GiB") == MAX_SIZE_BYTES
    assert parse_size("18446744073709551615") == MAX_SIZE_BYTES
    assert parse_size("1.0000000000000000000000000000000000 KiB") == 1024
    assert parse_size(f"0.{'0' * 400}KiB") == 0


@pytest.mark.parametrize(
    "value",
    [10**400, MAX_SIZE_BYTES + 1, "1" * 400, "1" * 5000 + "MiB", "16EiB", "17179869184 GiB"],
)
def test_sizes_beyond_a_machine_are_one_message(value: object) -> None:
    if value == "16EiB":
        with pytest.raises(SizeError, match="unknown unit"):
            parse_size(value)
        return
    with pytest.raises(SizeError, match=r"machine can hold \(at most 18446744073709551615 "):
        parse_size(value)


def test_the_largest_size_still_formats() -> None:
    assert format_bytes_iec(MAX_SIZE_BYTES) == "16384.00 PiB"
    assert format_bytes_iec(10**400) == ">2^1000 B"
    assert format_bytes_iec(1024**2) == "1.00 MiB"


def test_percent_thresholds_compare_exactly() -> None:
    (threshold,) = parse_fail_exprs(f"ram:{'3' * 40}%")
    assert threshold.percent == Decimal("3" * 40)
    before = 10**20
    share = before * int("3" * 40) // 100  # exactly the threshold: not exceeded
    assert not threshold.exceeded(before, before + share, 0)
    assert threshold.exceeded(before, before + share + 1, 0)


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [f"0.{'0' * 400}1s", f"0.{'0' * 400}", "0.0000000001s", "0ms"])
def test_durations_that_round_to_zero_are_rejected(text: str) -> None:
    with pytest.raises(SizeError, match="must be"):
        parse_duration_s(text)


def test_huge_durations_are_one_message() -> None:
    with pytest.raises(SizeError, match="too long"):
        parse_duration_s("9" * 5000 + "h")
    assert parse_duration_s("0.000000001s") == pytest.approx(1e-9)


@given(st.text(max_size=40))
def test_parsers_raise_only_size_error(text: str) -> None:
    for parse in (parse_size, parse_duration_s):
        try:
            parse(text)
        except SizeError:
            pass


# --- options and ini keys, end to end ------------------------------------------------------


def _assert_one_usage_line(result: pytest.RunResult, message: str) -> None:
    assert_usage_error(result, f"ERROR: {message}")
    assert len(result.stderr.str().strip().splitlines()) == 1, result.stderr.str()


@pytest.mark.usefixtures("inner_pytester_run")
@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (
            ["--hypomnesis-top=" + "9" * 5000],
            "",
            "--hypomnesis-top=9999*chars): too many rows: at most 2147483647 (0 = all)",
        ),
        (["--hypomnesis-device=" + "9" * 5000], "", "--hypomnesis-device=999*: expected a GPU*"),
        (["--hypomnesis-device=0," + "1" * 30], "", "--hypomnesis-device=0,111*: expected a GPU*"),
        ([], "hypomnesis_top = " + "7" * 5000, "ini hypomnesis_top=777*: too many rows*"),
        ([], "hypomnesis_device = " + "7" * 5000, "ini hypomnesis_device=777*: expected a GPU*"),
        (
            ["--hypomnesis-max-ram=" + "4" * 400],
            "",
            "--hypomnesis-max-ram=444*: invalid size*more than a machine can hold*",
        ),
        (
            ["--hypomnesis-interval=0." + "0" * 400 + "1s"],
            "",
            "--hypomnesis-interval=0.000*: invalid duration*must be at least 1 ns*",
        ),
        ([], "verbosity_hypomnesis = --1", "ini verbosity_hypomnesis=--1: expected 'auto' or*"),
        ([], "verbosity_hypomnesis = " + "1" * 5000, "ini verbosity_hypomnesis=111*: expected*"),
        (
            [],
            "hypomnesis_strict = maybe",
            "ini hypomnesis_strict=maybe: expected a boolean: true/false, yes/no, on/off, 1/0",
        ),
        (
            [],
            "hypomnesis_timeline = sometimes",
            "ini hypomnesis_timeline=sometimes: expected a boolean: true/false*",
        ),
        (["--hypomnesis-json="], "", "--hypomnesis-json=: expected a file path*"),
        (["--hypomnesis-json= "], "", "--hypomnesis-json= : expected a file path*"),
        (["--hypomnesis-html="], "", "--hypomnesis-html=: expected a file path*"),
    ],
)
def test_hostile_options_are_one_usage_line(
    pytester: pytest.Pytester, args: list[str], ini: str, message: str
) -> None:
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_a=PASSING)
    result = pytester.runpytest_subprocess("--hypomnesis", *args)
    _assert_one_usage_line(result, message)


@pytest.mark.usefixtures("inner_pytester_run")
def test_good_boolean_ini_values_are_accepted(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nhypomnesis = Yes\nhypomnesis_strict = off\n")
    pytester.makepyfile(test_a=PASSING)
    result = pytester.runpytest_subprocess()
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*hypomnesis*"])


@pytest.mark.usefixtures("inner_pytester_run")
@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("max_ram(10**400)", "*more than a machine can hold*"),
        ("max_ram(10**5000)", "*<an integer of thousands of digits>*"),
        ("max_vram('1GiB', device=10**400)", "*device must be a CUDA ordinal*"),
        ("max_ram('1.5B')", "*not a whole number of bytes*"),
    ],
)
def test_huge_marker_limits_error_only_their_test(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makepyfile(
        test_a="import pytest\n\n"
        f"@pytest.mark.{marker}\ndef test_bad():\n    pass\n\n"
        "def test_good():\n    pass\n"
    )
    result = pytester.runpytest_subprocess("--hypomnesis")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([message])
    text = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text
    assert "OverflowError" not in text
