"""Fewest migrations on a small cloud, with a proof: the exact model (`solver.exact`) with an
objective, started from the planner's plan.

`optimise(ctx, params, incumbent)` builds `ExactModel` with as many wave slots as the incumbent
has waves, every rule family enforced, and minimises, lexicographically, the waves and then the
migrations. The incumbent is the search's hint and its fallback: the result is a plan with fewer
(waves, migrations), or none, plus what is proven about the migrations:

- `bound`: no valid plan with the fewest waves moves fewer VMs (CP-SAT's bound when the waves are
  already at their lower bound, and `first_wave_bound` always, which holds for every valid plan);
- `status`: "optimal" when the best plan's migrations reach `bound`, else "gap".

`first_wave_bound`: every VM on a host to upgrade moves at least once; and the first wave that
carries VMs that must leave sends them to hosts that are not upgraded yet (they move again), unless
spare hosts take them: hosts that stay (not to upgrade) and hosts to upgrade that carry no such VM
(they may go first). At least one host's worth of VMs is in that wave, so the bound adds, over the
cheapest single host, its VMs that do not fit the spare hosts' free capacity (each class alone,
smallest first: a relaxation of packing, so a bound).

Model additions: `mv[j, w]` VM j arrives on a new host in slot w (an arrival on h where it was not
forces it); redundant: a VM on a host of the wave moves in that slot, each VM moves at least once,
the total is at least `first_wave_bound`; and, when the waves are at their lower bound, every slot
is a wave. CP-SAT's work is bounded by deterministic time only (the wall clock is the outer
safety), on one worker or CP-SAT's deterministic interleaved mode: same input, same plan.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from ortools.sat.python import cp_model

from planner.plan import Plan
from solver.context import Context
from solver.exact import ExactModel, _may_move
from solver.params import DTIME_PER_SECOND, SolveParams, make_solver, run

# Largest model optimised (cells as `solver.exact.model_cells` counts them, for the incumbent's
# waves): a 10-host cloud of big flavors is ~5,000; 50 hosts of a few VMs each ~60,000.
MAX_CELLS = 60_000
# Deterministic time (CP-SAT work units, ~1-3 s of wall clock each on a shared 2-core machine).
DTIME = 3.0
# First one worker with the LP for this much of it (a tiny cloud is decided there), then large
# neighbourhood search around the best plan on LNS_WORKERS interleaved workers (deterministic),
# in chunks of LNS_CHUNK while a chunk improves.
PROOF_DTIME = 0.6
LNS_WORKERS = 4
LNS_CHUNK = 1.0

Status = Literal["optimal", "gap"]


@dataclass(frozen=True)
class Optimum:
    plan: Plan | None  # better than the incumbent (fewer waves, or as many and fewer migrations)
    waves: int  # of the best plan (the incumbent's when `plan` is None)
    migrations: int
    bound: int  # no valid plan with the fewest waves has fewer migrations
    status: Status
    cells: int
    dtime: float

    @property
    def gap(self) -> int:
        return self.migrations - self.bound

    def to_dict(self) -> dict[str, object]:
        return {
            "status": self.status,
            "migrations": self.migrations,
            "bound": self.bound,
            "gap": self.gap,
            "improved": self.plan is not None,
            "cells": self.cells,
            "dtime": round(self.dtime, 3),
        }


def _movers(ctx: Context) -> list[int]:
    return [j for j in range(len(ctx.inv.vms)) if _may_move(ctx, j)]


def first_wave_bound(ctx: Context) -> int:
    """A lower bound on any valid plan's migrations (see the module's docstring), summed over
    the independent parts of the cloud: hosts linked by where the VMs that must leave may go
    (e.g. AZs when every VM is pinned to its AZ) have each their own first wave."""
    movers = _movers(ctx)
    if not movers:
        return 0
    parent = list(range(ctx.H))

    def find(h: int) -> int:
        while parent[h] != h:
            parent[h] = parent[parent[h]]
            h = parent[h]
        return h

    for j in movers:
        h0 = find(int(ctx.vm_host0[j]))
        for h in np.flatnonzero(ctx.static_ok(j)).tolist():
            r = find(h)
            if r != h0:
                parent[r] = h0
                h0 = find(h0)
    carriers = sorted({int(ctx.vm_host0[j]) for j in movers})
    used = np.zeros((ctx.H, ctx.C), dtype=np.int64)
    np.add.at(used, ctx.vm_host0, ctx.demand)
    free_h = np.clip(ctx.cap - used, 0, None)
    spare = ctx.available.copy()
    spare[carriers] = False
    part = np.array([find(h) for h in range(ctx.H)])
    extra: dict[int, int] = {}
    on: dict[int, list[int]] = {}
    for j in movers:
        on.setdefault(int(ctx.vm_host0[j]), []).append(j)
    for h in carriers:
        k = int(part[h])
        free = free_h[spare & (part == k)].sum(axis=0)
        js = on[h]
        fit = len(js)
        for c in range(ctx.C):
            d = np.sort(ctx.demand[js, c])
            fit = min(fit, int(np.searchsorted(np.cumsum(d), free[c], side="right")))
        left = len(js) - fit
        extra[k] = min(extra[k], left) if k in extra else left
    return len(movers) + sum(extra.values())


def _count(plan: Plan) -> tuple[int, int]:
    return len(plan.waves), sum(len(w.migrations) for w in plan.waves)


def cells_for(ctx: Context, waves: int) -> int:
    """`solver.exact.model_cells` for a model of `waves` slots (vectorised: cheap on any cloud)."""
    movers = ctx.is_todo[ctx.vm_host0] & ~ctx.stuck & ~ctx.movable_none
    hosts = int(ctx.available.sum()) + 1
    slots = max(1, min(waves, len(ctx.todo)))
    return slots * (int(movers.sum()) * hosts + len(ctx.todo))


def optimise(
    ctx: Context,
    params: SolveParams,
    incumbent: Plan,
    *,
    wave_bound: int,
    inventory_sha256: str = "",
    dtime: float | None = None,
) -> Optimum | None:
    """Fewer (waves, migrations) than `incumbent`, or a proof that there are none below a bound;
    None when the cloud is too large for the model or nothing was decided. `dtime` defaults to
    DTIME, less under a short time limit (a function of the limit: the same plan on any load)."""
    if dtime is None:
        dtime = min(DTIME, 0.5 * DTIME_PER_SECOND * params.time_limit)
    waves0, migr0 = _count(incumbent)
    cells = cells_for(ctx, waves0)
    if not waves0 or not ctx.todo.size or cells > MAX_CELLS:
        return None
    lb = first_wave_bound(ctx)
    if migr0 <= lb and waves0 <= wave_bound:  # the incumbent is optimal already
        return Optimum(None, waves0, migr0, migr0, "optimal", cells, 0.0)
    em = ExactModel(ctx, slots=waves0)
    m = em.m
    for g in em.guards.values():  # every rule holds
        m.add(g == 1)
    fixed_waves = waves0 <= wave_bound
    if fixed_waves:
        for lit in em.active.values():
            m.add(lit == 1)
    mv = _moves(em)
    _symmetry(em)
    moves = sum(mv.values())
    m.add(moves >= lb)
    if fixed_waves:
        m.minimize(moves)
    else:  # fewer waves first: one wave is worth more than every possible migration
        big = len(mv) + 1
        m.minimize(big * sum(em.active.values()) + moves)
    best, best_rank = incumbent, (waves0, migr0)
    spent = 0.0

    def solve(dt: float, lns: bool) -> tuple[int, cp_model.CpSolver]:
        nonlocal best, best_rank, spent
        m.clear_hints()  # type: ignore[no-untyped-call]
        _hint(em, mv, best)
        s = make_solver(params, dt)
        if lns:  # neighbourhoods around the best plan, CP-SAT's deterministic interleaved mode
            s.parameters.num_workers = LNS_WORKERS
            s.parameters.interleave_search = True
            s.parameters.use_lns_only = True
        else:  # one worker, the LP: proves the optimum of a tiny cloud
            s.parameters.num_workers = 1
            s.parameters.interleave_search = False
        st = run(params, s, m)
        spent += s.deterministic_time
        if st in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            plan = em.plan(s, inventory_sha256)
            if _count(plan) < best_rank:
                best, best_rank = plan, _count(plan)
        return st, s

    status, s = solve(min(dtime, PROOF_DTIME), lns=False)
    if status == cp_model.INFEASIBLE:  # the incumbent is a valid plan: a bug; claim nothing
        return None
    bound = lb
    if status == cp_model.OPTIMAL:  # the best is the optimum: fewest waves, then migrations
        bound = best_rank[1]
    elif fixed_waves and status == cp_model.FEASIBLE:
        bound = max(lb, int(np.ceil(s.best_objective_bound - 1e-6)))
    # In chunks, while one improves (a chunk that finds nothing better ends the search).
    while best_rank[1] > bound and dtime - spent > 0.05:
        before = best_rank
        st2, _ = solve(min(LNS_CHUNK, dtime - spent), lns=True)
        if st2 == cp_model.OPTIMAL:
            bound = best_rank[1]
        if best_rank == before:
            break
    waves, migr = best_rank
    bound = min(bound, migr)
    return Optimum(
        best if best is not incumbent else None,
        waves,
        migr,
        bound,
        "optimal" if migr <= bound else "gap",
        cells,
        spent,
    )


def _moves(em: ExactModel) -> dict[tuple[int, int], cp_model.IntVar]:
    """mv[j, w]: VM j arrives on another host in slot w; with the redundant constraints."""
    ctx, m = em.ctx, em.m
    mv: dict[tuple[int, int], cp_model.IntVar] = {}
    for j, cand in em.cand.items():
        h0 = int(ctx.vm_host0[j])
        for w in range(1, em.W + 1):
            lit = m.new_bool_var(f"mv[{j},{w}]")
            mv[j, w] = lit
            for h in cand:
                now = em.at[j, w, h]
                if w == 1:
                    if h != h0:
                        m.add_implication(now, lit)
                else:
                    m.add_bool_or([now.Not(), em.at[j, w - 1, h], lit])
            # redundant: on a host of the wave at the slot's start, it moves
            if w == 1:
                m.add_implication(em.y[h0, 1], lit)
            else:
                for h in cand:
                    if ctx.is_todo[h]:
                        m.add_bool_or([em.at[j, w - 1, h].Not(), em.y[h, w].Not(), lit])
        m.add_bool_or([mv[j, w] for w in range(1, em.W + 1)])  # its host goes down once
    return mv


def _twins(ctx: Context, movers: list[int]) -> list[list[int]]:
    """VMs alike in every respect but their id and name, on the same host, in no server group:
    any plan stays valid, with as many migrations, when two of them swap their moves."""
    by: dict[str, list[int]] = {}
    for j in movers:
        vm = ctx.inv.vms[j]
        if vm.server_group is not None or int(ctx.vm_group[j]) >= 0:
            continue
        key = repr(replace(vm, id="", name=""))
        by.setdefault(key, []).append(j)
    return [js for js in by.values() if len(js) > 1]


def _symmetry(em: ExactModel) -> None:
    """Twins (`_twins`) in a fixed order of their hosts at the last slot's end."""
    ctx, m, W = em.ctx, em.m, em.W
    for js in _twins(ctx, sorted(em.cand)):
        pos = [
            cp_model.LinearExpr.weighted_sum([em.at[j, W, h] for h in em.cand[j]], list(em.cand[j]))
            for j in js
        ]
        for a, b in itertools.pairwise(pos):
            m.add(a <= b)


def _hint(em: ExactModel, mv: dict[tuple[int, int], cp_model.IntVar], plan: Plan) -> None:
    """The incumbent as CP-SAT's hint (positions, waves and moves)."""
    ctx, m = em.ctx, em.m
    index = {n: i for i, n in enumerate(ctx.host_names)}
    vm_index = {v.id: j for j, v in enumerate(ctx.inv.vms)}
    wave_of = {index[h]: w.index for w in plan.waves for h in w.hosts if h in index}
    for h in em.todo:
        for w in range(1, em.W + 1):
            m.add_hint(em.y[h, w], wave_of.get(h) == w)
    for w in range(1, em.W + 1):
        m.add_hint(em.active[w], True)
    where = {j: int(ctx.vm_host0[j]) for j in em.cand}
    for w in range(1, em.W + 1):
        moved = set()
        if w <= len(plan.waves):
            for mig in plan.waves[w - 1].migrations:
                j = vm_index.get(mig.vm, -1)
                if j in where and mig.dst in index:
                    where[j] = index[mig.dst]
                    moved.add(j)
        for j, cand in em.cand.items():
            for h in cand:
                m.add_hint(em.at[j, w, h], where[j] == h)
            m.add_hint(mv[j, w], j in moved)
