"""A fake ``nvidia-smi`` on ``PATH`` (pytest plugin module; fixture ``fake_smi``).

The fixture writes an executable ``nvidia-smi`` (a small Python script; on Windows a
``.cmd`` wrapper) into a temporary directory, puts that directory first on ``PATH`` for the
test (``monkeypatch``), and forgets the backend's cached executable path, so the real
``pytest_hypomnesis.probe.smi`` code runs against it. Every answer is read from a JSON
file at call time, so a test can change it between calls.

API of the ``FakeSmi`` object the fixture yields:

- ``set_gpu(stdout, *, exit_code=0, stderr="", hang_s=None, grandchild=None)``: the answer
  to ``--query-gpu=...``. ``stdout``/``stderr`` are ``str`` or raw ``bytes`` (garbage and
  non-UTF-8 allowed). ``hang_s`` sleeps that long before answering (e.g. ``60`` for a hang).
  ``grandchild="same-group"`` first spawns a sleeping grandchild that inherits stdout;
  ``"escaped"`` makes it leave the process group too (``setsid``), so killing the group
  cannot reach it. Grandchildren are killed at teardown. ``index=N`` sets the answer for
  ``--id=N`` only; other ids get the answer set without ``index``.
- ``set_apps(...)``: the same for ``--query-compute-apps=...``.
- Defaults: gpu ``"1024, 16311, 610.88\\n"``; apps ``""`` (no compute processes).
- ``calls()``: the argument lists (without the executable) of every invocation so far.
- ``remove()``: deletes the executable (the "not found on PATH" case).
- ``no_nvml`` fixture: NVML points at a library that does not exist (and the probe chain
  behaves as on Linux with no fake GPU), so nvidia-smi is the only answer in this process.
- ``bin_dir`` (``Path``), ``executable`` (``Path``), ``env`` (``os.environ`` copy with
  ``bin_dir`` first on ``PATH``, for subprocesses such as CLI tests).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from typing_extensions import Unpack

import pytest

__all__ = ["FakeSmi", "SmiAnswer", "fake_smi", "no_nvml", "posix_only"]

# The fake is a shell script (a .cmd wrapper on Windows, which the tests do not run).
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="fake_smi is a POSIX script")

_SCRIPT = r"""
import json, os, subprocess, sys, time

here = os.path.dirname(os.path.abspath(__file__))
args = sys.argv[1:]
with open(os.path.join(here, "calls.jsonl"), "a", encoding="utf-8") as log:
    log.write(json.dumps(args) + "\n")
with open(os.path.join(here, "fakesmi.json"), encoding="utf-8") as fh:
    config = json.load(fh)
kind = "other"
index = None
for arg in args:
    if arg.startswith("--query-gpu"):
        kind = "gpu"
    elif arg.startswith("--query-compute-apps"):
        kind = "apps"
    elif arg.startswith("--id="):
        index = arg[len("--id="):]
default = {"stdout": "", "stderr": "", "exit_code": 0}
answer = config.get(f"{kind}:{index}") or config.get(kind, default)
grandchild = answer.get("grandchild")
if grandchild:
    code = "import os, time\n"
    if grandchild == "escaped":
        code += "os.setsid()\n"
    code += "time.sleep(60)\n"
    child = subprocess.Popen([sys.executable, "-S", "-c", code])
    with open(os.path.join(here, "grandchildren.txt"), "a", encoding="utf-8") as fh:
        fh.write(f"{child.pid}\n")
if answer.get("hang_s"):
    time.sleep(answer["hang_s"])
sys.stdout.buffer.write(bytes.fromhex(answer["stdout"]))
sys.stdout.flush()
sys.stderr.buffer.write(bytes.fromhex(answer["stderr"]))
sys.stderr.flush()
sys.exit(answer["exit_code"])
"""


def _hex(data: str | bytes) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return raw.hex()


class SmiAnswer(TypedDict, total=False):
    """How a call answers besides its stdout (defaults: exit 0, no stderr, at once)."""

    exit_code: int
    stderr: str | bytes
    hang_s: float | None
    grandchild: str | None  # None, "same-group" or "escaped": a child left running
    index: int | None  # the answer for ``--id=<index>`` only


class FakeSmi:
    """A scriptable ``nvidia-smi``; see the module docstring."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self._config: dict[str, dict[str, Any]] = {}
        script = bin_dir / "fakesmi_main.py"
        script.write_text(_SCRIPT, encoding="utf-8")
        if sys.platform == "win32":
            self.executable = bin_dir / "nvidia-smi.cmd"
            self.executable.write_text(
                f'@"{sys.executable}" -S "{script}" %*\r\n', encoding="utf-8"
            )
        else:
            self.executable = bin_dir / "nvidia-smi"
            self.executable.write_text(
                f"#!/bin/sh\nexec '{sys.executable}' -S '{script}' \"$@\"\n", encoding="utf-8"
            )
            self.executable.chmod(0o755)
        self.set_gpu("1024, 16311, 610.88\n")
        self.set_apps("")

    def _set(
        self,
        kind: str,
        stdout: str | bytes,
        *,
        exit_code: int = 0,
        stderr: str | bytes = "",
        hang_s: float | None = None,
        grandchild: str | None = None,
        index: int | None = None,
    ) -> None:
        if grandchild not in (None, "same-group", "escaped"):
            raise ValueError(f"grandchild must be None, 'same-group' or 'escaped': {grandchild!r}")
        self._config[kind if index is None else f"{kind}:{index}"] = {
            "stdout": _hex(stdout),
            "stderr": _hex(stderr),
            "exit_code": exit_code,
            "hang_s": hang_s,
            "grandchild": grandchild,
        }
        path = self.bin_dir / "fakesmi.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._config), encoding="utf-8")
        os.replace(tmp, path)

    def set_gpu(self, stdout: str | bytes, **answer: Unpack[SmiAnswer]) -> None:
        """The answer to ``--query-gpu=...`` (for ``--id=<index>`` only, if given)."""
        self._set("gpu", stdout, **answer)

    def set_apps(self, stdout: str | bytes, **answer: Unpack[SmiAnswer]) -> None:
        """The answer to ``--query-compute-apps=...`` (for ``--id=<index>`` only, if given)."""
        self._set("apps", stdout, **answer)

    def calls(self) -> list[list[str]]:
        log = self.bin_dir / "calls.jsonl"
        if not log.exists():
            return []
        lines = log.read_text(encoding="utf-8").splitlines()
        return [list(json.loads(line)) for line in lines if line]

    def remove(self) -> None:
        self.executable.unlink()

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        path = env.get("PATH", "")
        if not path.startswith(str(self.bin_dir)):
            env["PATH"] = f"{self.bin_dir}{os.pathsep}{path}" if path else str(self.bin_dir)
        return env

    def _kill_grandchildren(self) -> None:
        record = self.bin_dir / "grandchildren.txt"
        if not record.exists():
            return
        for line in record.read_text(encoding="utf-8").split():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(line), getattr(signal, "SIGKILL", signal.SIGTERM))


def _reset_smi_cache() -> None:
    from pytest_hypomnesis.probe import smi

    reset = getattr(smi, "_reset_for_tests", None)
    if reset is not None:
        reset()


@pytest.fixture
def fake_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSmi]:
    """A fake ``nvidia-smi`` first on ``PATH`` for this test."""
    bin_dir = tmp_path / "fakesmi-bin"
    bin_dir.mkdir()
    fake = FakeSmi(bin_dir)
    old_path = os.environ.get("PATH", "")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{old_path}" if old_path else str(bin_dir))
    _reset_smi_cache()
    try:
        yield fake
    finally:
        fake._kill_grandchildren()
        _reset_smi_cache()


@pytest.fixture
def no_nvml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    from pytest_hypomnesis.probe import chain, nvml

    monkeypatch.setenv("HYPOMNESIS_NVML_LIBRARY", str(tmp_path / "no-such-libnvidia-ml.so"))
    reset = getattr(nvml, "_reset_for_tests", None)
    if reset is not None:
        reset()
    monkeypatch.setattr(chain, "platform", lambda: "linux")
    previous = chain.set_fake(None)
    yield
    chain.set_fake(previous)
    if reset is not None:
        reset()
