"""The placement phase's CP-SAT model (`solver.placement`): the destinations of a wave's blocks
(or a neighbourhood of them) among each block's best candidates, with the greedy pass's answer as
a complete hint, never returning worse by its objective."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from planner.capacity import BoolArray, IntArray
from solver.params import SolveParams, make_solver, run
from solver.placement_state import (
    BALANCE_SLOPES,
    CANDIDATES,
    COST_DOUBLE_MOVE,
    COST_FUTURE_HEADROOM,
    COST_LANDING,
    COST_LEAVE_GROUP,
    COST_SOFT_GROUP,
    COST_UNPLACED,
    Block,
    Landing,
    PlacementState,
    candidates_mask,
    landed,
    landing_mask,
    score,
)
from solver.rules.base import WaveRule


def _thresholds(st: PlacementState) -> IntArray:
    """Per class, the fill levels (per mille) where the balance penalty steepens: the cloud's
    average use, halfway to full, and 95%."""
    ctx = st.ctx
    avail = ctx.available
    cap = ctx.cap[avail].sum(axis=0)
    used = st.model.used[avail].sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        avg = np.where(cap > 0, used / np.maximum(cap, 1), 0.0)
    t1 = np.clip(np.round(1000 * avg) + 30, 300, 900)
    t2 = np.clip(np.round((t1 + 1000) / 2), t1 + 10, 950)
    t3 = np.maximum(950, t2 + 10)
    return np.stack([t1, t2, t3]).astype(np.int64)  # (3, C)


def cpsat_assign(
    st: PlacementState,
    blocks: list[Block],
    in_wave: BoolArray,
    budget: IntArray,
    future: IntArray | None,
    late: IntArray,
    hint: list[int],
    params: SolveParams,
    dtime: float,
    landing: Landing | None = None,
    rules: Sequence[WaveRule] = (),
) -> tuple[list[int], str]:
    """Re-decide the destinations of `blocks` (not applied to `st`; `hint` is the greedy's
    answer from the same state, given to CP-SAT complete). Returns destinations (-1: none) and
    the solver status; never worse than the hint by the model's objective. `rules`: the rule
    families' parts in this wave (`solver.rules`, `WaveRule`)."""
    cand = _candidates(st, blocks, in_wave, future, late, hint, landing, rules)
    a = _Assign(st, blocks, cand, hint)
    a.capacity_and_balance()
    a.server_groups()
    a.headroom(budget, future)
    if landing is not None:
        a.hint_cost += _landing_terms(
            st, blocks, cand, a.y, hint, landing, a.m, a.objective, a.hints
        )
    for rule in rules:
        rule.constrain(a.m, blocks, cand, a.y)
    return a.solve(params, dtime)


def _candidates(
    st: PlacementState,
    blocks: list[Block],
    in_wave: BoolArray,
    future: IntArray | None,
    late: IntArray,
    hint: list[int],
    landing: Landing | None,
    rules: Sequence[WaveRule],
) -> list[list[int]]:
    """Each block's candidate hosts: those with room that it may use, its best few by `score`,
    the hosts where it would land as the wave plan needs, and its hint."""
    state = st.model
    cand: list[list[int]] = []
    for b, h0 in zip(blocks, hint, strict=True):
        ok = candidates_mask(st, b, in_wave)
        idx = np.flatnonzero(ok)
        if idx.size:
            idx = idx[np.all(state.free[idx] >= b.demand, axis=1)]
        for rule in rules:
            allowed = rule.allows(b, idx)
            if allowed is not None:
                idx = idx[allowed]
        if idx.size > CANDIDATES:
            s = score(st, b, idx, future, late)
            best = np.argsort(-s, kind="stable")[:CANDIDATES]
            idx = idx[np.sort(best)]
        lst = [int(h) for h in idx]
        land = landing_mask(st, landing, b, in_wave) if landing is not None else None
        if land is not None:
            fits = land & ok & np.all(state.free >= b.demand, axis=1)
            for rule in rules:
                allowed = rule.allows(b, np.arange(len(fits)))
                if allowed is not None:
                    fits &= allowed
            lst = sorted(set(lst) | {int(h) for h in np.flatnonzero(fits)[:CANDIDATES]})
        if h0 >= 0 and h0 not in lst:
            lst.append(h0)
        cand.append(lst)
    return cand


@dataclass
class _Assign:
    """The model being built: a literal per (block, candidate) and one for "unplaced", the
    objective's terms, the hint's values and what the hint costs by that objective."""

    st: PlacementState
    blocks: list[Block]
    cand: list[list[int]]
    hint: list[int]
    m: cp_model.CpModel = field(default_factory=cp_model.CpModel)
    y: list[list[Any]] = field(default_factory=list)
    objective: list[Any] = field(default_factory=list)
    hints: list[tuple[Any, int]] = field(default_factory=list)
    hint_cost: int = 0

    def __post_init__(self) -> None:
        """The literals and each destination's cost: a move twice (not upgraded), leaving the
        headroom group, a soft group's preference; unplaced blocks cost most."""
        st, ctx, m = self.st, self.st.ctx, self.m
        unplaced: list[Any] = []
        lin: list[list[int]] = []
        for b, lst in zip(self.blocks, self.cand, strict=True):
            vs = [m.new_bool_var("") for _ in lst]
            u = m.new_bool_var("")
            m.add_exactly_one([*vs, u])
            self.y.append(vs)
            unplaced.append(u)
            n = len(b.vms)
            gs = int(ctx.group_of[b.src])
            costs = []
            for h in lst:
                cost = 0
                if not st.upgraded[h]:
                    cost += COST_DOUBLE_MOVE * n
                if int(ctx.group_of[h]) != gs:
                    cost += COST_LEAVE_GROUP * n
                if b.soft >= 0:
                    sg = ctx.server_groups[b.soft]
                    if (st.group_hosts[b.soft].get(h, 0) > 0) == sg.anti:
                        cost += COST_SOFT_GROUP
                costs.append(cost)
            lin.append(costs)
        for bi, (vs, costs, h0) in enumerate(zip(self.y, lin, self.hint, strict=True)):
            n = len(self.blocks[bi].vms)
            self.objective.append(COST_UNPLACED * n * unplaced[bi])
            self.hints.append((unplaced[bi], int(h0 < 0)))
            if h0 < 0:
                self.hint_cost += COST_UNPLACED * n
            for v, h, cost in zip(vs, self.cand[bi], costs, strict=True):
                if cost:
                    self.objective.append(cost * v)
                self.hints.append((v, int(h == h0)))
                if h == h0:
                    self.hint_cost += cost

    def capacity_and_balance(self) -> None:
        """Within capacity in every class; balance: a convex penalty on each destination's fill
        above the thresholds (`_thresholds`)."""
        st, ctx, m, blocks = self.st, self.st.ctx, self.m, self.blocks
        state = st.model
        thresholds = _thresholds(st)
        load: dict[int, list[tuple[Any, int]]] = {}
        for bi, lst in enumerate(self.cand):
            for v, h in zip(self.y[bi], lst, strict=True):
                load.setdefault(h, []).append((v, bi))
        hint_in: dict[int, IntArray] = {}
        for bi, h0 in enumerate(self.hint):
            if h0 >= 0:
                hint_in[h0] = hint_in.get(h0, np.zeros(ctx.C, dtype=np.int64)) + blocks[bi].demand
        for h, terms in load.items():
            for c in range(ctx.C):
                dem = [(v, int(blocks[bi].demand[c])) for v, bi in terms if blocks[bi].demand[c]]
                if not dem:
                    continue
                incoming = sum(d * v for v, d in dem)
                m.add(incoming <= int(state.free[h, c]))
                cap = int(ctx.cap[h, c])
                if cap <= 0:
                    continue
                used = int(state.used[h, c])
                got = int(hint_in[h][c]) if h in hint_in else 0
                for t_np, slope in zip(thresholds[:, c], BALANCE_SLOPES, strict=True):
                    thr = int(t_np)
                    top = 1000 * (used + sum(d for _, d in dem)) - thr * cap
                    if top <= 0:
                        continue
                    e = m.new_int_var(0, (top + cap - 1) // cap, "")
                    m.add(cap * e >= 1000 * (used + incoming) - thr * cap)
                    self.objective.append(slope * e)
                    val = max(0, -(-(1000 * (used + got) - thr * cap) // cap))
                    self.hints.append((e, val))
                    self.hint_cost += slope * val

    def server_groups(self) -> None:
        """Hard anti-affinity per host; soft anti-affinity among the blocks moving now."""
        st, ctx, m = self.st, self.st.ctx, self.m
        anti: dict[tuple[int, int], list[tuple[Any, int]]] = {}
        soft: dict[tuple[int, int], list[tuple[Any, int]]] = {}
        for bi, b in enumerate(self.blocks):
            for v, h in zip(self.y[bi], self.cand[bi], strict=True):
                if b.anti >= 0:
                    anti.setdefault((b.anti, h), []).append((v, bi))
                elif b.soft >= 0 and ctx.server_groups[b.soft].anti:
                    soft.setdefault((b.soft, h), []).append((v, bi))
        for (gi, h), members in anti.items():
            room = ctx.server_groups[gi].max_per_host - st.group_hosts[gi].get(h, 0)
            if len(members) > room:
                m.add(sum(v for v, _ in members) <= max(room, 0))
        for (gi, h), members in soft.items():
            room = max(0, ctx.server_groups[gi].max_per_host - st.group_hosts[gi].get(h, 0))
            if len(members) > room:
                over = m.new_int_var(0, len(members), "")
                m.add(sum(v for v, _ in members) <= room + over)
                self.objective.append(COST_SOFT_GROUP * over)
                val = max(0, sum(1 for _, bi in members if self.hint[bi] == h) - room)
                self.hints.append((over, val))
                self.hint_cost += COST_SOFT_GROUP * val

    def headroom(self, budget: IntArray, future: IntArray | None) -> None:
        """Headroom: exact for this wave (the inflow into each group within its budget), the
        planned room of later waves (soft, at COST_FUTURE_HEADROOM a unit beyond it)."""
        ctx, m, blocks = self.st.ctx, self.m, self.blocks
        into: dict[int, list[tuple[Any, int]]] = {}
        out_of: dict[int, list[tuple[Any, int]]] = {}
        for bi, lst in enumerate(self.cand):
            gs = int(ctx.group_of[blocks[bi].src])
            for v, h in zip(self.y[bi], lst, strict=True):
                g = int(ctx.group_of[h])
                if g >= 0:
                    into.setdefault(g, []).append((v, bi))
                if g != gs and gs >= 0:
                    out_of.setdefault(gs, []).append((v, bi))
        for g in sorted(set(into) | set(out_of)):
            for c in range(ctx.C):
                terms_in = into.get(g, [])
                if g < ctx.G and terms_in:
                    dem = sum(int(blocks[bi].demand[c]) * v for v, bi in terms_in)
                    m.add(dem <= int(budget[g, c]))
                if future is None:
                    continue
                cross_in = [(v, bi) for v, bi in terms_in if int(ctx.group_of[blocks[bi].src]) != g]
                cross_out = out_of.get(g, [])
                if cross_in or cross_out:
                    self._future(g, c, cross_in, cross_out, future)

    def _future(
        self,
        g: int,
        c: int,
        cross_in: list[tuple[Any, int]],
        cross_out: list[tuple[Any, int]],
        future: IntArray,
    ) -> None:
        ctx, m, blocks = self.st.ctx, self.m, self.blocks
        net = sum(int(blocks[bi].demand[c]) * v for v, bi in cross_in) - sum(
            int(blocks[bi].demand[c]) * v for v, bi in cross_out
        )
        unit = max(1, int(ctx.cap[ctx.available, c].max(initial=1)) // 1000)
        limit = int(min(future[g, c], 10**15))
        over = m.new_int_var(0, 10**9, "")
        m.add(unit * over >= net - limit)
        self.objective.append(COST_FUTURE_HEADROOM * over)
        hnet = 0
        for bi, h0 in enumerate(self.hint):
            if h0 < 0:
                continue
            gs, gd = int(ctx.group_of[blocks[bi].src]), int(ctx.group_of[h0])
            if gd == g and gs != g:
                hnet += int(blocks[bi].demand[c])
            elif gs == g and gd != g:
                hnet -= int(blocks[bi].demand[c])
        val = max(0, -(-(hnet - limit) // unit))
        self.hints.append((over, val))
        self.hint_cost += COST_FUTURE_HEADROOM * val

    def solve(self, params: SolveParams, dtime: float) -> tuple[list[int], str]:
        """The destinations CP-SAT finds, or the hint when it finds nothing better."""
        m = self.m
        m.minimize(sum(self.objective))
        for v, val in self.hints:
            m.add_hint(v, val)
        solver = make_solver(params, dtime)
        status = run(params, solver, m)
        name = solver.status_name(status).lower()
        if (
            status not in (cp_model.OPTIMAL, cp_model.FEASIBLE)
            or solver.objective_value > self.hint_cost
        ):
            return self.hint, f"{name}, hint kept"
        out = []
        for bi, lst in enumerate(self.cand):
            dst = -1
            for v, h in zip(self.y[bi], lst, strict=True):
                if solver.boolean_value(v):
                    dst = h
                    break
            out.append(dst)
        return out, name


def _landing_terms(
    st: PlacementState,
    blocks: list[Block],
    cand: list[list[int]],
    y: list[list[Any]],
    hint: list[int],
    landing: Landing,
    m: cp_model.CpModel,
    objective: list[Any],
    hints: list[tuple[Any, int]],
) -> int:
    """Demand still missing on the hosts that will shed it again as planned (`Landing`), at
    COST_LANDING a unit: without it a later wave breaks headroom. Returns the hint's cost."""
    ctx = st.ctx
    hint_cost = 0
    for g in np.flatnonzero((landing.need > 0).any(axis=1)):
        for c in np.flatnonzero(landing.need[g] > 0):
            terms = []
            got = 0
            for bi, lst in enumerate(cand):
                b = blocks[bi]
                d = int(b.demand[c])
                if not d:
                    continue
                for v, h in zip(y[bi], lst, strict=True):
                    if int(ctx.group_of[h]) == g and landed(ctx, landing, b, h):
                        terms.append(d * v)
                        if hint[bi] == h:
                            got += d
            if not terms:
                continue
            need = int(landing.need[g, c])
            unit = max(1, int(ctx.cap[ctx.available, c].max(initial=1)) // 1000)
            short = m.new_int_var(0, need // unit + 1, "")
            m.add(unit * short >= need - sum(terms))
            objective.append(COST_LANDING * short)
            val = max(0, -(-(need - got) // unit))
            hints.append((short, val))
            hint_cost += COST_LANDING * val
    return hint_cost
