"""The `rollwave` command line. Each command lives in a module of its own and registers here."""

from __future__ import annotations

import sys

import click

from planner import __version__
from planner.errors import ExitCode, RollwaveError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rollwave")
def cli() -> None:
    """Capacity-aware migration planner and simulator for OpenStack rolling upgrades."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: map every expected failure to its exit code, never a traceback."""
    try:
        rc = cli.main(args=argv, prog_name="rollwave", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except RollwaveError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    sys.exit(rc if isinstance(rc, int) else 0)



from planner.cli import sandbox, snapshot  # noqa: E402  (commands register below)

cli.add_command(sandbox.sandbox); cli.add_command(snapshot.snapshot)  # noqa: E702
