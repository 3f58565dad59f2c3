"""The `rollwave` command line. Each command lives in a module of its own and registers here."""

from __future__ import annotations

import importlib
import os
import sys
import time
import traceback

import click

from planner import __version__
from planner.errors import ExitCode, RollwaveError

# Each command's module, imported only when the command runs (or help lists them all): a
# command pays for its own imports only (the report's plotting libraries cost about a third of a
# second, and most commands never draw).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("planner.cli.demo", "demo_cmd"),
    "generate": ("planner.cli.generate", "generate_cmd"),
    "plan": ("planner.cli.plan", "plan_cmd"),
    "check": ("planner.cli.check", "check_cmd"),
    "schema": ("planner.cli.schema", "schema_cmd"),
    "simulate": ("planner.cli.simulate", "simulate_cmd"),
    "report": ("planner.cli.report", "report_cmd"),
    "whatif": ("planner.cli.whatif", "whatif_cmd"),
    "sandbox": ("planner.cli.sandbox", "sandbox"),  # issue 5: the Nova sandbox
    "snapshot": ("planner.cli.snapshot", "snapshot"),  # issue 5: cloud snapshots
    "execute": ("planner.cli.execute", "execute_cmd"),  # issues 6 and 8: the executor
    "api-check": ("planner.cli.apicheck", "apicheck_cmd"),  # issue 19: the API pre-check
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        if cmd_name not in self.commands:
            module, attr = COMMANDS[cmd_name]
            cmd = getattr(importlib.import_module(module), attr)
            assert isinstance(cmd, click.Command) and cmd.name == cmd_name
            self.add_command(cmd)
        return self.commands[cmd_name]


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="rollwave")
def cli() -> None:
    """Capacity-aware migration planner and simulator for OpenStack rolling upgrades."""


def _process_age() -> float:
    """Seconds since this process started (Linux: /proc); 0 where it cannot be told."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rpartition(")")[2].split()[19])  # field 22: starttime
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def main(argv: list[str] | None = None) -> None:
    """Console entry point: map every expected failure to its exit code, never a traceback."""
    # `plan --time-limit` counts from the process's start (`started` in the context's obj); when
    # called with arguments (in-process, as the tests do), from now.
    obj = {"started": time.monotonic() - (_process_age() if argv is None else 0.0)}
    try:
        rc = cli.main(args=argv, prog_name="rollwave", standalone_mode=False, obj=obj)
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
