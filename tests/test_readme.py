"""The README's test command is the one CI runs, word for word."""

from __future__ import annotations

import re

from support import REPO

MARKER = "<!-- test-command:"


def readme_command(name: str) -> str:
    """The one-line command in the first ```sh block after a line containing `name`."""
    text = (REPO / "README.md").read_text()
    start = text.index(name)
    match = re.compile(r"```sh\n(.*?)\n```", re.S).search(text, start)
    assert match, f"no ```sh block after {name!r} in README.md"
    lines = match.group(1).splitlines()
    assert len(lines) == 1, f"the command after {name!r} must be one shell line: {lines}"
    return lines[0]


def test_readme_marks_one_test_command():
    text = (REPO / "README.md").read_text()
    assert text.count(MARKER) == 1
    command = readme_command(MARKER)
    assert "apt-get install -y -qq chromium" in command  # the browser tests need it
    assert "python3 -m venv .venv && .venv/bin/pip install -e '.[offline,dev]'" in command
    assert command.endswith(".venv/bin/python -m pytest")


def test_ci_runs_the_readme_test_command_last():
    script = (REPO / ".ci" / "run").read_text()
    command = readme_command(MARKER)
    lines = [line for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert lines[0] == "set -euo pipefail"
    assert command in lines
    # Last, so that a failing test (or install) is the script's exit status.
    assert lines[-1] == command


def test_readme_quick_start_runs_the_main_job_offline():
    command = readme_command("## Quick start")
    assert command.startswith("python3 -m venv .venv && ")
    assert command.endswith(".venv/bin/atlasgen build --preset quick")
    assert "'.[offline]'" in command
