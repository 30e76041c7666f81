"""Runs every ```python example block of docs/plugin.md, and the examples/ directory."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

# Imported here, not first inside an inner run: pytester drops the modules an in-process
# run imported, and a fixture holding the dropped `chain` would install its fake GPU in a
# module the next example's library calls no longer read.
import pytest_hypomnesis.probe.chain  # noqa: F401
from pytest_hypomnesis.report.schema import load_report

ROOT = Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"^```python example\n(.*?)^```", re.S | re.M)


pytestmark = pytest.mark.usefixtures("inner_pytester_run")


def _examples() -> list[str]:
    return _BLOCK.findall((ROOT / "docs" / "plugin.md").read_text(encoding="utf-8"))


def test_docs_have_examples() -> None:
    assert len(_examples()) >= 10


@pytest.mark.parametrize("source", _examples(), ids=lambda s: s.splitlines()[2][:40])
def test_doc_example(pytester: pytest.Pytester, source: str) -> None:
    run = re.search(r"^# run:(.*)$", source, re.M)
    expect = re.search(r"^# expect:(.*)$", source, re.M)
    assert run is not None and expect is not None, "an example needs # run: and # expect:"
    counts = {k: int(v) for k, v in (p.split("=") for p in expect.group(1).split())}
    pytester.makepyfile(test_doc=source)
    result = pytester.runpytest(*run.group(1).split())
    result.assert_outcomes(**counts)


@pytest.mark.parametrize("xdist", [False, True], ids=["in-process", "xdist"])
def test_examples_directory(pytester: pytest.Pytester, xdist: bool) -> None:
    for path in (ROOT / "examples").glob("test_*.py"):
        shutil.copy(path, pytester.path / path.name)
    args = ["--hypomnesis", "--hypomnesis-json=out.json", "--hypomnesis-top=0"]
    result = pytester.runpytest(*args, *(["-n", "2"] if xdist else []))
    result.assert_outcomes(passed=8, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*= hypomnesis =*",
            "hypomnesis: scope call; *",
            "test * RAM peak  RAM increase  VRAM peak  VRAM increase  budget * duration",
            "test_fixtures.py::test_model_fits_on_a_fake_gpu * 1.50 GiB * vram 75% *",
            "test_budgets.py::test_over_budget * ram *% OVER *",
            "1 over budget",
        ]
    )
    report = load_report(pytester.path / "out.json")
    assert len(report["tests"]) == 9
    workers = {t["worker"] for t in report["tests"]}
    assert workers == ({"gw0", "gw1"} if xdist else {"master"})
