"""What every command shares: output format option, consoles, JSON emission, file loading."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from planner.documents import check_output

F = TypeVar("F", bound=Callable[..., Any])

# Human output on stdout; progress, logs and errors on stderr, so `--format json` stays clean.
# Piped into a file or a pager, tables get room (rich's default of 80 columns cuts them).
_PIPED_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160
out = Console(highlight=False, soft_wrap=True, width=_PIPED_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def format_option(f: F) -> F:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="text for people, json for machines (JSON on stdout, nothing else).",
    )(f)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def kv_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    t = Table(title=title, show_header=False, title_justify="left", box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    for k, v in rows:
        t.add_row(k, str(v))
    return t


def path_arg(name: str, **kw: Any) -> Callable[[F], F]:
    """A positional file argument; existence is checked by the loaders (exit 2, clear message)."""
    return click.argument(name, type=click.Path(dir_okay=False, path_type=str), **kw)


class OutputPath(click.Path):
    """An output file option, judged while the command line is parsed, before any work: its
    directory must exist and it must be absent or a regular file (`documents.check_output`).
    A solve of minutes must not end in "cannot write"."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False, path_type=str)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = super().convert(value, param, ctx)
        check_output(os.fsdecode(path))
        return path


# CP-SAT's random_seed is a 32-bit integer: a larger --seed is a usage error (exit 2), not a crash.
SEED = click.IntRange(-(2**31), 2**31 - 1)
