"""`rollwave plan --mode side-by-side`: the options that fit together, the plan, its summary.
Called by `planner.cli.plan` (the command), which owns the options."""

from __future__ import annotations

import time
from typing import Any

import click
from click.core import ParameterSource
from rich.table import Table

from planner.app.schedule import parse_start
from planner.app.sidebyside import plan_and_check
from planner.cli.common import emit_json, err, out
from planner.errors import InfeasibleError, UsageError
from planner.formats import load_inventory, load_policy, save_plan
from planner.formats_sbs import load_az_map
from planner.policy import Policy
from planner.windows import Window
from sim.model import load_model
from sim.timeline import hms
from solver.sidebyside import SideBySideOptions

# The in-place options that do not apply to a side-by-side plan.
IN_PLACE_ONLY = ("planner", "time_limit", "workers", "first", "last")
SBS_ONLY = ("az_map", "controllers")


def check_options(ctx: click.Context, mode: str) -> None:
    """Exit 2 for an option given (not defaulted) that the mode does not use."""
    given = [
        p
        for p in ctx.command.params
        if p.name is not None and ctx.get_parameter_source(p.name) != ParameterSource.DEFAULT
    ]
    wrong = IN_PLACE_ONLY if mode == "side-by-side" else SBS_ONLY
    bad = [p.opts[-1] if p.opts else str(p.name) for p in given if p.name in wrong]
    if bad:
        raise UsageError(f"{', '.join(bad)}: not with --mode {mode}")


def run(
    inventory: str,
    policy_path: str,
    output: str,
    az_map_path: str | None,
    controllers: int,
    seed: int,
    model_path: str | None,
    fmt: str,
    start: str | None = None,
) -> None:
    inv = load_inventory(inventory)
    policy = load_policy(policy_path)
    model = load_model(model_path)
    az_map = load_az_map(az_map_path, inv) if az_map_path is not None else None
    when = parse_start(start, project_zones(policy)) if start is not None else None
    opts = SideBySideOptions(controllers=controllers, az_map=az_map, seed=seed)
    t0 = time.perf_counter()
    try:
        got = plan_and_check(inv, policy, opts, model, when)
    except InfeasibleError as exc:
        if fmt == "json":
            emit_json({"plan": None, **exc.to_dict()})
        raise
    elapsed = time.perf_counter() - t0
    save_plan(got.plan, output)
    for note in got.notes:
        err.print(f"[yellow]note[/]: {note}", markup=True)
    if fmt == "json":
        emit_json(
            {
                "plan": output,
                "planner": "side-by-side greedy",
                "time_s": round(elapsed, 3),
                "summary": got.metrics,
                "notes": list(got.notes),
            }
        )
        return
    out.print(summary_table(got.metrics, elapsed))
    out.print(f"wrote {output}")


def project_zones(policy: Policy) -> tuple[Window, ...]:
    """The windows whose first zone reads a `--start` without an offset side by side: the
    project windows' (else the policy's own)."""
    return tuple(w for _, ws in policy.project_windows for w in ws) or policy.windows


def warn_project_windows(policy: Policy, path: str) -> None:
    """In place, the policy's project_windows mean nothing (a host's maintenance takes every
    project's VMs along, live): a warning, the plan made without them."""
    if policy.project_windows:
        err.print(
            f"[yellow]warning[/]: {path}: project_windows apply side by side only (a VM "
            "crosses into the new cloud in its project's window); ignored in place",
            markup=True,
        )


def summary_table(m: dict[str, Any], elapsed: float) -> Table:
    lb = m.get("lower_bounds", {})
    t = Table(title="side-by-side plan", title_justify="left", show_header=True, box=None)
    t.add_column("", style="bold")
    t.add_column("plan", justify="right")
    t.add_column("bound", justify="right")
    t.add_row("waves", str(m["waves"]), str(lb.get("waves", "")))
    t.add_row("VMs moved twice", f"{m['vms_moved_twice']:,}", f"{lb.get('vms_moved_twice', ''):,}")
    t.add_row("cross-cloud moves", f"{m['cross_cloud_moves']:,}", "")
    t.add_row("moves inside the old cloud", f"{m['moves_inside_old_cloud']:,}", "")
    t.add_row("new controllers", ", ".join(m["new_controllers"]), "")
    t.add_row("new computes", str(m["new_computes"]), "")
    if "crossing_windows" in m:
        t.add_row("project windows used", str(m["crossing_windows"]), "")
        t.add_row("crossings waiting for them", hms(m["window_wait_s"]), "")
        t.add_row("last wave done", str(m["last_done"]), "")
    t.add_row("planner", "side-by-side greedy", "")
    t.add_row("time", f"{elapsed:.1f} s", "")
    return t
