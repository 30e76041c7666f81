"""The README's two set-up commands stay true: the test command is what .ci/run runs."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _setup_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block is not None, "README must open with a ```bash block of set-up commands"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_commands() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    first_block = text.index("```bash")
    # Only the title and a short description come before the commands.
    assert text[:first_block].count("\n#") == 0
    commands = _setup_commands()
    assert len(commands) == 2
    assert "pytest --hypomnesis examples/" in commands[0]


def test_ci_runs_the_readme_test_command() -> None:
    test_command = _setup_commands()[1]
    pytest_part = test_command.split("&&")[-1].strip().replace("python3 ", "python ")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert pytest_part in ci.splitlines()
    assert "-e '.[test]'" in test_command and "-e '.[test]'" in ci


def test_library_doc_examples_run() -> None:
    text = (REPO / "docs" / "library.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/library.md", "exec"), {})
