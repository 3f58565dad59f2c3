"""The user docs keep up with the code: every CLI command has a section in docs/cli.md."""

from __future__ import annotations

from pathlib import Path

from planner.cli import cli

ROOT = Path(__file__).resolve().parent.parent


def test_every_command_is_documented_in_cli_md() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    missing = [name for name in cli.commands if f"## rollwave {name}" not in text]
    assert missing == []


def test_readme_opens_with_the_two_commands() -> None:
    lines = [ln.strip() for ln in (ROOT / "README.md").read_text().splitlines()]
    fence = lines.index("```sh")
    cmds = [ln.split("#")[0].strip() for ln in lines[fence + 1 : lines.index("```", fence + 1)]]
    assert cmds == ["./dev demo", "./dev test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./dev test" in ci
