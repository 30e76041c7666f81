"""The JSON report's ``settings`` record every budget source the run judged by: RAM's
(``rss``/``python``) beside VRAM's, so a baseline says how its budgets were judged."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from pytest_hypomnesis.plugin.options import resolve


class _Config:
    def __init__(self, root: Path, ini: dict[str, Any]) -> None:
        self._ini = ini
        self.invocation_params = SimpleNamespace(dir=root)

    def getoption(self, dest: str) -> Any:
        return None

    def getini(self, dest: str) -> Any:
        return self._ini.get(dest)


@pytest.mark.parametrize(("ini", "ram", "vram"), [({}, "rss", "auto"), (None, "python", "driver")])
def test_settings_record_both_budget_sources(
    tmp_path: Path, ini: dict[str, str] | None, ram: str, vram: str
) -> None:
    given = (
        ini
        if ini is not None
        else {
            "hypomnesis_ram_budget_source": "python",
            "hypomnesis_vram_budget_source": "driver",
        }
    )
    settings = resolve(cast(pytest.Config, _Config(tmp_path, given))).to_dict()
    assert (settings["ram_budget_source"], settings["vram_budget_source"]) == (ram, vram)
