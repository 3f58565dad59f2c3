"""`rollwave schema KIND`: print the JSON Schema of a file format, for editors and validators."""

from __future__ import annotations

import click

from planner.cli.common import OutputPath
from planner.formats import KINDS, schema_text, write_text_atomic


@click.command("schema")
@click.argument("kind", type=click.Choice(KINDS))
@click.option(
    "-o",
    "--output",
    type=OutputPath(),
    default=None,
    help="Write the schema to this file instead of stdout.",
)
def schema_cmd(kind: str, output: str | None) -> None:
    """Print the JSON Schema (draft 2020-12) of KIND: inventory, policy or plan.

    rollwave's own reader checks more than the schema can say (unique names, references
    between hosts, VMs and groups); `rollwave check` judges a plan's validity.
    """
    text = schema_text(kind)
    if output:
        write_text_atomic(output, text)
    else:
        click.echo(text, nl=False)
