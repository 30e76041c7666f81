"""Size and duration strings (SPEC §1)."""

from __future__ import annotations

import pytest

from pytest_hypomnesis import SizeError, parse_size
from pytest_hypomnesis._units import parse_duration_s


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1048576", 1048576),
        ("512B", 512),
        ("2GiB", 2 * 1024**3),
        ("2 GiB", 2 * 1024**3),
        ("1.5GB", 1_500_000_000),
        ("100kB", 100_000),
        ("100KB", 100_000),
        ("512MiB", 512 * 1024**2),
        ("1TiB", 1024**4),
        ("3TB", 3 * 1000**4),
        ("1.5 KiB", 1536),
        (4096, 4096),
    ],
)
def test_valid_sizes(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2G",
        "2 gigs",
        "-1MiB",
        "1e3MB",
        "",
        " 2GiB",
        "2  GiB",
        "2gib",
        "1.5",
        "GiB",
        "2 GiB x",
        "0x10",
    ],
)
def test_invalid_sizes_name_the_input_and_forms(text: str) -> None:
    with pytest.raises(SizeError) as info:
        parse_size(text)
    message = str(info.value)
    assert repr(text) in message
    assert "512MiB" in message


def test_ambiguous_unit_gets_a_hint() -> None:
    with pytest.raises(SizeError, match="ambiguous"):
        parse_size("2G")


@pytest.mark.parametrize("value", [-1, True, 2.5, None])
def test_non_string_sizes_rejected(value: object) -> None:
    with pytest.raises(SizeError):
        parse_size(value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5ms", 0.005), ("10ms", 0.01), ("0.5s", 0.5), ("2", 2.0), ("500us", 0.0005), ("2m", 120.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["0ms", "0", "-5ms", "5 sec", "", "ms", "1e3ms"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(SizeError, match="duration"):
        parse_duration_s(text)
