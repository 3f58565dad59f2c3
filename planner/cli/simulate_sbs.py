"""`rollwave simulate` on a side-by-side plan: one deterministic run (`sim.crosscloud`), per
cloud. Called by `planner.cli.simulate`, which owns the options."""

from __future__ import annotations

from rich.table import Table

from planner.app.sidebyside import simulate
from planner.cli.common import emit_json, err, out
from planner.errors import UsageError
from planner.inventory import Inventory
from planner.plan import Plan
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
    got = simulate(inv, plan, model, ignore_digest=ignore_digest)
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
    out.print(t)
    return 0
