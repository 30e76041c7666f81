"""Options resolution (``plugin/options.py``) without a pytest run: a config that answers
``getoption`` and ``getini`` from two dicts, as pytest's does after parsing."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from pytest_hypomnesis.plugin.options import DEFAULT_INTERVAL_S, DEFAULT_TOP, resolve


class _Config:
    def __init__(self, root: Path, flags: dict[str, Any], ini: dict[str, Any]) -> None:
        self._flags, self._ini = flags, ini
        self.invocation_params = SimpleNamespace(dir=root)

    def getoption(self, dest: str) -> Any:
        return self._flags.get(dest)

    def getini(self, dest: str) -> Any:
        return self._ini.get(dest)


def _resolve(tmp_path: Path, flags: dict[str, Any] | None = None, **ini: Any) -> Any:
    return resolve(cast(pytest.Config, _Config(tmp_path, flags or {}, ini)))


def test_defaults_measure_nothing(tmp_path: Path) -> None:
    s = _resolve(tmp_path)
    assert not s.enabled and not s.measure_all and not s.needs_report
    assert (s.top, s.scope, s.interval_s, s.devices) == (
        DEFAULT_TOP,
        "call",
        DEFAULT_INTERVAL_S,
        None,
    )
    assert s.max_ram_bytes is None and s.max_vram_bytes is None and s.thresholds == ()


def test_flag_beats_ini(tmp_path: Path) -> None:
    s = _resolve(tmp_path, {"hypomnesis_top": "3"}, hypomnesis_top="7", hypomnesis_scope="test")
    assert s.top == 3 and s.scope == "test"


def test_sizes_devices_and_interval(tmp_path: Path) -> None:
    s = _resolve(
        tmp_path,
        hypomnesis_max_ram="512MiB",
        hypomnesis_max_vram="2 GiB",
        hypomnesis_device="1, 0,1",
        hypomnesis_interval="5ms",
    )
    assert s.max_ram_bytes == 512 * 1024**2 and s.max_vram_bytes == 2 * 1024**3
    assert s.devices == (1, 0)  # order kept, duplicates dropped
    assert s.interval_s == pytest.approx(0.005)


@pytest.mark.parametrize("word", ["yes", "on", "1", "TRUE"])
def test_ini_booleans(tmp_path: Path, word: str) -> None:
    assert _resolve(tmp_path, hypomnesis=word, hypomnesis_strict=word).strict


def test_report_paths_are_absolute_from_the_invocation_dir(tmp_path: Path) -> None:
    s = _resolve(tmp_path, {"hypomnesis_json": "out.json"})
    assert s.json_path == os.path.join(str(tmp_path), "out.json")
    assert s.measure_all and s.needs_report and not s.enabled


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ({"hypomnesis_top": "-1"}, "--hypomnesis-top=-1: expected a whole number"),
        ({"hypomnesis_scope": "session"}, "expected 'call' or 'test'"),
        ({"hypomnesis_max_ram": "lots"}, "--hypomnesis-max-ram=lots"),
        ({"hypomnesis_device": "0,x"}, "expected a GPU index"),
        ({"hypomnesis_interval": "2h"}, "must be at most 60s"),
        ({"hypomnesis_compare_fail": "ram:10%"}, "needs --hypomnesis-compare=BASE.json"),
        ({"hypomnesis_json": "no/such/dir/out.json"}, "does not exist"),
    ],
)
def test_bad_values_are_one_usage_line(tmp_path: Path, flags: dict[str, Any], needle: str) -> None:
    with pytest.raises(pytest.UsageError) as info:
        _resolve(tmp_path, flags)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_ini_boolean_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(pytest.UsageError, match="ini hypomnesis=maybe: expected a boolean"):
        _resolve(tmp_path, hypomnesis="maybe")
