"""``docs/cli.md`` shows real ``hmn`` output: every ``console`` block there is run here
against one fixed fake machine and must match byte for byte.

Each block is ``$ hmn ARGS`` then the terminal's view (stdout and stderr interleaved as
written). After a deliberate output change, regenerate the blocks with
``HMN_UPDATE_DOCS=1 pytest tests/acceptance/test_cli_docs.py`` and review the diff.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_hypomnesis import FakeGpu
from pytest_hypomnesis.cli import main
from pytest_hypomnesis.cli import watch as watch_mode
from pytest_hypomnesis.probe import chain
from tests.helpers.cli import cli_record, write_cli_report
from tests.helpers.units import GIB, MIB

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
BLOCK = re.compile(r"```console\n\$ (?P<command>[^\n]*)\n(?P<output>.*?)```", re.DOTALL)


class Machine:
    """Two GPUs and three processes; the trainer grows every 2 s of (fake) time."""

    def __init__(self) -> None:
        self.gpu = FakeGpu()
        self.gpu.add_device(
            name="NVIDIA GeForce RTX 4090",
            total="24GiB",
            used="1200MiB",
            reserved="330MiB",
            driver_version="555.42.06",
        )
        self.gpu.add_device(name="NVIDIA RTX A2000", total="6GiB", used="310MiB")
        self.gpu.set_process_vram(0, "10.5GiB", pid=48213, name="python")
        self.gpu.set_process_vram(0, "182MiB", pid=2210, name="Xorg")
        self.gpu.set_process_vram(1, "1GiB", pid=51007, name=None)
        self.now_ns = 0
        self.steps = 0

    def clock_ns(self) -> int:
        return self.now_ns

    def sleep(self, seconds: float) -> None:
        self.now_ns += round(seconds * 1e9)
        step = self.now_ns // 2_000_000_000
        while self.steps < step:
            self.steps += 1
            grown = int(10.5 * GIB) + self.steps * 700 * MIB
            self.gpu.set_process_vram(0, grown, pid=48213, name="python")


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Machine]:
    fake = Machine()
    previous = chain.set_fake(fake.gpu)
    monkeypatch.setattr(watch_mode, "_clock_ns", fake.clock_ns)
    monkeypatch.setattr(watch_mode, "_sleep", fake.sleep)
    monkeypatch.chdir(tmp_path)
    write_cli_report(
        tmp_path / "shard1.json",
        [cli_record("tests/test_model.py::test_forward", 48 * MIB, 2 * GIB)],
        run={"ram_peak_bytes": 1612 * MIB, "ram_peak_bytes_by_worker": {"master": 1612 * MIB}},
    )
    write_cli_report(
        tmp_path / "shard2.json",
        [
            cli_record("tests/test_model.py::test_forward", 52 * MIB, int(2.5 * GIB)),
            cli_record("tests/test_data.py::test_loader", 310 * MIB, None),
        ],
        run={
            "ram_peak_bytes": 1650 * MIB,
            "ram_peak_bytes_by_worker": {"master": 120 * MIB, "gw0": 1650 * MIB, "gw1": 980 * MIB},
        },
    )
    yield fake
    chain.set_fake(previous)


def run_example(command: str) -> str:
    """What a terminal shows for ``command`` (``hmn ...``; ``python`` = this interpreter)."""
    argv = shlex.split(command)
    assert argv[0] == "hmn", command
    argv = [sys.executable if a == "python" else a for a in argv[1:]]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        main(argv)
    return buffer.getvalue()


def _blocks() -> list[tuple[str, str]]:
    return [(m["command"], m["output"]) for m in BLOCK.finditer(DOC.read_text(encoding="utf-8"))]


def test_doc_has_an_example_of_every_mode() -> None:
    commands = [c.split()[:2] for c, _ in _blocks()]
    firsts = {c[1] if len(c) > 1 and not c[1].startswith("-") else "" for c in commands}
    assert {"", "ps", "watch", "spill", "report", "plan"} <= firsts
    assert ["hmn", "--json"] in commands


@pytest.mark.skipif(sys.platform == "win32", reason="spill is measurable there")
def test_doc_examples_are_real_output(machine: Machine) -> None:
    text = DOC.read_text(encoding="utf-8")
    blocks = _blocks()
    # One pass in document order: the fake machine's state carries from block to block.
    actual = [run_example(command) for command, _ in blocks]
    if os.environ.get("HMN_UPDATE_DOCS") == "1":
        outputs = iter(actual)
        text = BLOCK.sub(lambda m: f"```console\n$ {m['command']}\n{next(outputs)}```", text)
        DOC.write_text(text, encoding="utf-8")
        blocks = _blocks()
    for (command, output), got in zip(blocks, actual, strict=True):
        assert got == output, command
