"""Why the planners found no plan, from CP-SAT: which families of rules cannot hold together.

The wave model (`solver.waves.WaveModel`) is built with every rule family (wave size limits,
each HA group, the first/last order, headroom of each group and class) holding only under an
assumption literal, for as many waves as there are hosts (so that the number of waves is no
obstacle). When CP-SAT proves it infeasible, `sufficient_assumptions_for_infeasibility` names a
small set of families that conflict; each is then described in an operator's terms: the family's
words (`planner.rules`), with its numbers where it has some (`solver.rules.details`).

The wave model keeps VMs' demand in aggregate (per group and class), so a conflict it finds is
one no plan can escape; when it finds none, the obstacle is in placing individual VMs, and the
planners' own reasons say where.
"""

from __future__ import annotations

from ortools.sat.python import cp_model

from solver.aggregate import build_aggregates
from solver.context import Context
from solver.params import SolveParams, make_solver, run
from solver.rules import details
from solver.waves import WaveModel, host_types

MAX_WAVES = 120  # waves the explanation model may use (hosts beyond are rare in a conflict)
# Building the model takes about 1 ms per host type and wave on the shared 2-core machine
# (18 s for 188 types and 120 waves): not started unless twice that is left, plus a tenth of
# the time limit for the checker and the answer.
BUILD_S_PER_CELL = 0.002


def explain(ctx: Context, params: SolveParams) -> list[str]:
    if not ctx.todo.size:
        return []
    agg = build_aggregates(ctx)
    types = host_types(ctx, agg)
    W = max(1, min(len(ctx.todo), MAX_WAVES))
    if params.out_of_time(0.1) or params.remaining() < BUILD_S_PER_CELL * len(types) * W:
        params.wall_clock_hit = True
        return []
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
    keys = sorted({index[i] for i in core if i in index})
    if not keys:
        return []
    parts = [details(ctx, k) or wm.families[k].rule for k in keys]
    limit = "" if len(ctx.todo) == W else f" (in up to {W} waves)"
    return [
        "CP-SAT finds no order of the hosts in which these hold together"
        + limit
        + ": "
        + "; ".join(parts)
    ]
