"""The summary fits the terminal: node ids shortened from the left, columns left out in a
stated order, the header wrapped (issue 12)."""

from __future__ import annotations

import pytest

from pytest_hypomnesis.report.table import (
    DROP_ORDER,
    MIN_TEST_CHARS,
    shorten_left,
    summary_lines,
    wrap_header,
)
from tests.helpers.reports import make_budget, make_test
from tests.helpers.units import GIB, MIB

pytestmark = pytest.mark.usefixtures("inner_pytester_run")

LONG = "tests/integration/models/test_transformer_training.py::TestTraining::test_step"


def _tests(*, gpu: bool) -> list[dict[str, object]]:
    vram = {"0": (2 * GIB, 3 * GIB)} if gpu else None
    return [
        make_test(
            f"{LONG}[batch-{i}-float32]",
            ram_increase=(i + 1) * 95 * MIB + 12345,
            vram=vram,
            budgets=[make_budget("max_ram", GIB, (i + 1) * 95 * MIB, True)],
        )
        for i in range(3)
    ]


@pytest.mark.parametrize("gpu", [False, True])
def test_table_fits_80_columns_and_keeps_the_test_names(gpu: bool) -> None:
    lines = summary_lines(_tests(gpu=gpu), top=10, width=80)  # type: ignore[arg-type]
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    for i in range(3):
        assert any(
            line.startswith("…") and f"test_step[batch-{i}-float32]" in line for line in lines
        )
    # Figures are never split: each size is whole on its row.
    assert "285.01 MiB" in lines[1]  # heaviest first
    assert "RAM increase" in lines[0] and "budget" in lines[0]
    if gpu:
        assert "VRAM increase" in lines[0]
        assert lines[-1].startswith("left out to fit 80 columns: ")
    else:
        assert "VRAM" not in lines[0]


def test_verbose_shows_every_column_and_whole_ids() -> None:
    lines = summary_lines(_tests(gpu=True), top=10, width=80, verbose=True)  # type: ignore[arg-type]
    for title in ("RAM start", "RAM peak", "RAM end", "VRAM peak", "duration", "worker"):
        assert title in lines[0]
    assert f"{LONG}[batch-0-float32]" in "\n".join(lines)


def test_columns_go_in_the_stated_order() -> None:
    header_at = {w: summary_lines(_tests(gpu=True), top=10, width=w)[0] for w in (200, 80, 60)}  # type: ignore[arg-type]
    assert all(t in header_at[200] for t in DROP_ORDER)
    gone_at_60 = [t for t in DROP_ORDER if t not in header_at[60].split("  ")]
    gone_at_80 = [t for t in DROP_ORDER if t not in header_at[80].split("  ")]
    assert gone_at_80 == list(DROP_ORDER[: len(gone_at_80)])
    assert gone_at_60 == list(DROP_ORDER[: len(gone_at_60)])
    assert len(gone_at_60) >= len(gone_at_80) >= 1


def test_shorten_left_and_wrap_header() -> None:
    assert shorten_left("a.py::test_x", 40) == "a.py::test_x"
    assert shorten_left(LONG, MIN_TEST_CHARS) == "…" + LONG[-(MIN_TEST_CHARS - 1) :]
    header = "hypomnesis: scope call; RAM peak: kernel high-water mark (exact); " + "; ".join(
        f"GPU {i} NVIDIA H100 80GB HBM3 (79.65 GiB)" for i in range(4)
    )
    lines = wrap_header(header, 80)
    assert len(lines) > 1 and all(len(line) <= 80 for line in lines)
    assert lines[0].startswith("hypomnesis: scope call;")
    assert all(line.startswith("  ") for line in lines[1:])
    assert " ".join(line.strip() for line in lines) == header


PLUGIN_RUN = """
import pytest

@pytest.mark.parametrize("case", ["float32-b64", "bfloat16-b64"])
@pytest.mark.max_ram("1GiB")
def test_training_step(case):
    blob = b"x" * (40 << 20)  # above glibc's largest mmap threshold: no lasting effect
"""


@pytest.mark.parametrize("columns", ["80", "100"])
def test_rendered_summary_fits_the_terminal(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, columns: str
) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    sub = pytester.mkpydir("tests_integration_models_and_more_of_the_same_kind")
    (sub / "test_transformer_training_step_module.py").write_text(PLUGIN_RUN)
    result = pytester.runpytest("--hypomnesis")
    result.assert_outcomes(passed=2)
    out = result.outlines
    start = next(i for i, line in enumerate(out) if "hypomnesis" in line and "===" in line)
    section = out[start + 1 : next(i for i in range(start + 1, len(out)) if "===" in out[i])]
    assert section and all(len(line) <= int(columns) for line in section), "\n".join(section)
    assert sum("::test_training_step[" in line for line in section) == 2
    verbose = pytester.runpytest("--hypomnesis", "-v")
    verbose.stdout.fnmatch_lines(["*RAM start*RAM peak*RAM end*worker*"])
