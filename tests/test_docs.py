"""The user docs keep up with the code: every CLI command has a section in docs/cli.md."""

from __future__ import annotations

from pathlib import Path

import click

from planner.cli import cli

ROOT = Path(__file__).resolve().parent.parent


def test_every_command_is_documented_in_cli_md() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    names = cli.list_commands(click.Context(cli))
    assert "plan" in names and "execute" in names, names
    missing = [name for name in names if f"## rollwave {name}" not in text]
    assert missing == []


def test_every_command_loads_under_its_own_name() -> None:
    """Commands are imported when they run: each name leads to its command."""
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        assert cmd is not None and cmd.name == name


def test_readme_opens_with_the_two_commands() -> None:
    lines = [ln.strip() for ln in (ROOT / "README.md").read_text().splitlines()]
    fence = lines.index("```sh")
    cmds = [ln.split("#")[0].strip() for ln in lines[fence + 1 : lines.index("```", fence + 1)]]
    assert cmds == ["./dev demo", "./dev test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./dev test" in ci
