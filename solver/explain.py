"""Why the planners found no plan, from CP-SAT: which families of rules cannot hold together.

The wave model (`solver.waves.WaveModel`) is built with every rule family (wave size limits,
each HA group, the first/last order, headroom of each group and class) holding only under an
assumption literal, for as many waves as there are hosts (so that the number of waves is no
obstacle). When CP-SAT proves it infeasible, `sufficient_assumptions_for_infeasibility` names a
small set of families that conflict; each is then described in an operator's terms.

The wave model keeps VMs' demand in aggregate (per group and class), so a conflict it finds is
one no plan can escape; when it finds none, the obstacle is in placing individual VMs, and the
planners' own reasons say where.
"""

from __future__ import annotations

import numpy as np
from ortools.sat.python import cp_model

from planner.capacity import format_amount
from solver.aggregate import build_aggregates, required
from solver.context import Context
from solver.params import SolveParams, make_solver, run
from solver.waves import WaveModel, host_types

MAX_WAVES = 120  # waves the explanation model may use (hosts beyond are rare in a conflict)


def explain(ctx: Context, params: SolveParams) -> list[str]:
    if not ctx.todo.size:
        return []
    agg = build_aggregates(ctx)
    types = host_types(ctx, agg)
    W = max(1, min(len(ctx.todo), MAX_WAVES))
    wm = WaveModel(ctx, agg, types, W, fixed_waves=False, explain=True)
    names = sorted(wm.guards)
    lits = [wm.guards[n] for n in names]
    wm.m.add_assumptions(lits)
    solver = make_solver(params, max(1.0, params.budget("explain")))
    solver.parameters.num_workers = 1  # assumptions need a single worker to give a core
    solver.parameters.interleave_search = False
    status = run(params, solver, wm.m)
    if status != cp_model.INFEASIBLE:
        return []
    core = solver.sufficient_assumptions_for_infeasibility()
    index = {lit.index: n for n, lit in zip(names, lits, strict=True)}
    families = sorted({index[i] for i in core if i in index})
    if not families:
        return []
    parts = [_describe(ctx, agg, f) for f in families]
    limit = "" if len(ctx.todo) == W else f" (in up to {W} waves)"
    return [
        "CP-SAT finds no order of the hosts in which these hold together"
        + limit
        + ": "
        + "; ".join(parts)
    ]


def _describe(ctx: Context, agg: object, family: str) -> str:
    p = ctx.policy
    if family == "size":
        return f"at most {p.max_hosts_per_wave} host(s) a wave (max_hosts_per_wave)"
    if family == "size_az":
        return f"at most {p.max_hosts_per_wave_per_az} host(s) of an AZ a wave"
    if family == "size_rack":
        return f"at most {p.max_hosts_per_wave_per_rack} host(s) of a rack a wave"
    if family == "order_first":
        return f"hosts selected by first ({', '.join(p.first)}) before all others"
    if family == "order_last":
        return f"hosts selected by last ({', '.join(p.last)}) after all others"
    if family.startswith("ha:"):
        ha = ctx.ha[int(family.split(":")[1])]
        return (
            f"HA group {ha.name} keeps its min_available (at most {max(ha.limit, 0)} of its "
            "hosts down at once)"
        )
    if family.startswith("headroom:"):
        _, g_s, c_s = family.split(":")
        return headroom_numbers(ctx, int(g_s), int(c_s))
    return family


def headroom_numbers(ctx: Context, g: int, c: int) -> str:
    """Headroom of group g, class c, with its numbers: free now, required now, the host whose
    going down leaves the least slack, and what evacuating unavailable hosts adds."""
    agg = build_aggregates(ctx)
    rc = ctx.classes[c]
    rule = ctx.policy.headroom
    down = np.zeros(ctx.H, dtype=bool)
    free0 = int(agg.base_free[g, c])
    req0 = required(agg, g, c, down)
    worst = None
    for h in ctx.todo:
        h = int(h)
        if int(ctx.group_of[h]) != g or not ctx.available[h]:
            continue
        down[h] = True
        slack = free0 - int(agg.down_weight[h, c]) - required(agg, g, c, down)
        down[h] = False
        if worst is None or slack < worst[0]:
            worst = (slack, h)
    unavailable = [
        int(h)
        for h in ctx.todo
        if int(ctx.group_of[h]) == g and not ctx.available[h] and ctx.mov_demand[h, c]
    ]
    evac = int(ctx.mov_demand[unavailable, c].sum()) if unavailable else 0
    need = f"N+{rule.failures}" if rule.failures else "the reserve"
    text = (
        f"headroom of {ctx.group_names[g]} for {rc} ({need}: free "
        f"{format_amount(rc, free0)}, required {format_amount(rc, req0)}"
    )
    if worst is not None:
        text += f"; with {ctx.host_names[worst[1]]} down the slack is {format_amount(rc, worst[0])}"
    if evac:
        names = ", ".join(ctx.host_names[h] for h in unavailable[:3])
        text += f"; moving the VMs of {names} (not available) takes {format_amount(rc, evac)}"
    return text + ")"
