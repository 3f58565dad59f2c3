"""The `rollwave` command line. Each command lives in a module of its own and registers here."""

from __future__ import annotations

import os
import sys
import traceback

import click

from planner import __version__
from planner.errors import ExitCode, RollwaveError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rollwave")
def cli() -> None:
    """Capacity-aware migration planner and simulator for OpenStack rolling upgrades."""


def _register() -> None:
    from planner.cli.check import check_cmd
    from planner.cli.demo import demo_cmd
    from planner.cli.generate import generate_cmd
    from planner.cli.plan import plan_cmd
    from planner.cli.report import report_cmd
    from planner.cli.schema import schema_cmd
    from planner.cli.simulate import simulate_cmd
    from planner.cli.whatif import whatif_cmd

    for cmd in (
        demo_cmd,
        generate_cmd,
        plan_cmd,
        check_cmd,
        schema_cmd,
        simulate_cmd,
        report_cmd,
        whatif_cmd,
    ):
        cli.add_command(cmd)
    from planner.cli import sandbox, snapshot  # issue 5: the Nova sandbox, cloud snapshots

    for cmd in (sandbox.sandbox, snapshot.snapshot):
        cli.add_command(cmd)


_register()


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
    except Exception as exc:  # a bug: say so plainly; the traceback only on request
        if os.environ.get("ROLLWAVE_DEBUG"):
            traceback.print_exc()
        click.echo(
            f"internal error: {type(exc).__name__}: {exc}\n"
            "this is a bug in rollwave; run again with ROLLWAVE_DEBUG=1 for the traceback",
            err=True,
        )
        sys.exit(ExitCode.INTERNAL)
    sys.exit(rc if isinstance(rc, int) else 0)
