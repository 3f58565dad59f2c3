"""`rollwave simulate` on a side-by-side plan: one deterministic run (`sim.crosscloud`), per
cloud. Called by `planner.cli.simulate`, which owns the options."""

from __future__ import annotations

from rich.table import Table

from planner.app.schedule import parse_start
from planner.app.sidebyside import simulate
from planner.cli.common import emit_json, err, out
from planner.cli.plan_sbs import project_zones
from planner.errors import UsageError
from planner.inventory import Inventory
from planner.plan import Plan
from sim.crosscloud import CrossCloudResult
from sim.model import SimModel
from sim.timeline import hms


def run(
    inv: Inventory,
    plan: Plan,
    model: SimModel,
    *,
    ignore_digest: bool,
    runs: int,
    timeline: str | None,
    cluster: str | None,
    fmt: str,
    start: str | None = None,
) -> int:
    bad = [
        opt
        for opt, given in (
            ("--runs", runs != 1),
            ("--timeline", timeline is not None),
            ("--cluster", cluster is not None),
        )
        if given
    ]
    if bad:
        raise UsageError(
            f"{', '.join(bad)}: not for a side-by-side plan (its simulation is one "
            "deterministic run)"
        )
    at = parse_start(start, project_zones(plan.policy)) if start is not None else None
    got = simulate(inv, plan, model, ignore_digest=ignore_digest, start=at)
    if got.violations:
        err.print(
            f"[yellow]warning[/]: the plan fails `rollwave check` with {len(got.violations)} "
            f"violation(s); simulating it as written. First: {got.violations[0]}",
            markup=True,
        )
    r = got.result
    if fmt == "json":
        emit_json({"mode": "side-by-side", **r.to_dict()})
        return 0
    ratio = f"{r.makespan_s / r.lower_bound_s:.2f} x" if r.lower_bound_s > 0 else ""
    t = Table(title="side-by-side simulation", title_justify="left", box=None)
    t.add_column("", style="bold")
    t.add_column("", justify="right")
    t.add_row("makespan", hms(r.makespan_s))
    t.add_row("lower bound", f"{hms(r.lower_bound_s)}  {ratio}")
    t.add_row("downtime", f"{r.total_downtime_s:,.0f} s total, worst {r.worst_downtime_s:,.0f} s")
    new, old = r.per_cloud["new"], r.per_cloud["old"]
    ready = new["control_plane_ready_s"]
    t.add_row("new cloud: control plane up", hms(ready) if ready is not None else "never")
    t.add_row(
        "new cloud: VMs arrived", f"{new['vms_arrived']:,}, last at {hms(new['last_arrival_s'])}"
    )
    t.add_row("new cloud: computes", str(new["computes"]))
    t.add_row("old cloud: empty at", hms(old["empty_s"]))
    t.add_row("old cloud: moves inside", f"{old['moves_inside']:,}")
    t.add_row("waves", str(len(r.waves)))
    if r.crossing_windows:
        pw = r.windows_dict()
        t.add_row("project windows: openings used", str(pw["openings_used"]))
        t.add_row(
            "project windows: crossings waited",
            f"{pw['crossings_waited']:,}, {hms(r.window_wait_s)} in all",
        )
    out.print(t)
    if r.crossing_windows:
        out.print(windows_table(r))
    return 0


def windows_table(r: CrossCloudResult) -> Table:
    """Crossings per opening of a project's windows."""
    t = Table(title="crossings per project window", title_justify="left", box=None)
    for col in ("project", "from", "to", "crossings"):
        t.add_column(col, justify="right" if col == "crossings" else "left")
    for c in r.crossing_windows:
        t.add_row(c.project, c.start.isoformat(), c.end.isoformat(), str(len(c.vms)))
    return t
