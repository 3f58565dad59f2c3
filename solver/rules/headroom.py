"""Headroom (N+k, reserve %) in the solver's models.

The wave model keeps it in aggregate, per headroom group and class (`solver.aggregate`): free
capacity at the end of a wave depends on which of the group's hosts are down, on the VMs of
unavailable hosts moved so far and on demand moved between groups (shift variables: only VMs not
pinned to their group, only out of hosts going down in that wave). The exact model keeps it VM by
VM; the placement phase exactly for each wave (`placement.wave_budget`)."""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from planner.bounds import LowerBounds, lower_bounds
from planner.capacity import format_amount, headroom
from planner.rules import headroom as rule
from planner.rules.base import Words
from solver.aggregate import WaveBudget, build_aggregates, required
from solver.context import Context, build_context
from solver.rules.base import (
    Builtin,
    Encodings,
    ExactHooks,
    FillHooks,
    Filling,
    GreedyHooks,
    WaveHooks,
)

if TYPE_CHECKING:
    from ortools.sat.python import cp_model

    from solver.exact import ExactModel, Expr
    from solver.greedy import GreedyWave
    from solver.waves import HeuristicWave, WaveModel

# The wave model states "free >= the k largest capacities still up" exactly for at most this
# many capacity levels of a group, conservatively beyond.
MAX_EXACT_CUTS = 12


# -- words with numbers ---------------------------------------------------------------------------
def numbers(ctx: Context, g: int, c: int) -> str:
    """Headroom of group g, class c, with its numbers: free now, required now, the host whose
    going down leaves the least slack, and what evacuating unavailable hosts adds."""
    agg = build_aggregates(ctx)
    rc = ctx.classes[c]
    policy_rule = ctx.policy.headroom
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
    need = f"N+{policy_rule.failures}" if policy_rule.failures else "the reserve"
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


def _details(ctx: Context, key: str) -> str | None:
    """The numbers of `headroom:<group>:<class>`."""
    group, rc = key.split(":", 1)[1].rsplit(":", 1)
    if group not in ctx.group_names or rc not in ctx.classes:
        return None
    return numbers(ctx, ctx.group_names.index(group), ctx.classes.index(rc))


def group_words(ctx: Context, g: int, c: int) -> Words:
    return rule.words(ctx.policy, ctx.group_names[g], ctx.classes[c])


def class_words(ctx: Context, rc: str, groups: range | list[int] | None = None) -> list[Words]:
    """The headroom families of class rc, of every group the exact model guards (hosts up,
    some capacity of rc) among `groups` (default: all)."""
    c = ctx.classes.index(rc)
    out = []
    for g in groups if groups is not None else range(ctx.G):
        on = (ctx.group_of == g) & ctx.available
        if on.any() and (ctx.cap[on, c] > 0).any():
            out.append(rule.words(ctx.policy, ctx.group_names[g], rc))
    return out


def fewer_failures(ctx: Context) -> tuple[Context, str] | None:
    """The context with the family's one step (N+(k-1) everywhere) and the words for it not
    being enough, or None."""
    step = rule.one_step(ctx.inv, ctx.policy, "headroom:")
    if step is None:
        return None
    return build_context(step.inventory, step.policy), f"{step.label} is not enough"


def _obstacle(ctx: Context, lb: LowerBounds, what: str) -> tuple[list[Words], dict[str, str]]:
    """No host can go down in class `what`: every group's headroom of it; its one step is not
    enough when the bound still finds no host with it."""
    if what not in ctx.classes:
        return [], {}
    fs = class_words(ctx, what)
    fewer = fewer_failures(ctx)
    if fewer is not None:
        lb2 = lower_bounds(fewer[0].inv, fewer[0].policy)
        if any(k == "headroom" for k, _ in lb2.obstacles):
            return fs, {f.key: fewer[1] for f in fs}
    return fs, {}


# -- the greedy planner ---------------------------------------------------------------------------
def _after(gw: GreedyWave, h: int) -> str | None:
    st = gw.st
    if all(r.ok for r in headroom(st.model, st.policy.headroom, gw.in_wave)):
        return None
    return f"{st.inv.hosts[h].name}: headroom would break"


# -- the wave model's heuristic: headroom in aggregate, host by host ------------------------------
_BUDGET = "headroom"


def _start(f: Filling) -> None:
    hw: HeuristicWave = f  # type: ignore[assignment]
    f.memo[_BUDGET] = WaveBudget(hw.agg, hw.evacuated)


def _refuses(f: Filling, h: int, tier: int) -> str | None:
    budget: WaveBudget = f.memo[_BUDGET]
    return None if budget.try_add(h) else ""  # last: a host it takes stays down


# -- the wave model -------------------------------------------------------------------------------
def _shifts(wm: WaveModel) -> None:
    """Demand moved between headroom groups: per group, class and wave, units in and out."""
    ctx, m, W, types = wm.ctx, wm.m, wm.W, wm.types
    G, C = ctx.G, ctx.C
    agg_members = wm.agg.members
    groups = {int(g) for g in ctx.group_of[ctx.available]}
    # A group may send demand when one of its hosts to upgrade has VMs free to leave it, to
    # any other group with a host up: also a group with no host up at all (a disabled host
    # alone in its AZ), whose VMs can only leave.
    senders = {int(ctx.group_of[h]) for h in ctx.todo if ctx.unpinned_demand[h].any()}
    wm.has_shifts = any(groups - {s} for s in senders)
    if not wm.has_shifts:
        return
    # Demand leaves a group only from its hosts going down: their own movable VMs that are
    # not pinned to it, or VMs that came in from other groups in earlier waves. It leaves in
    # units; where the unit is coarser than the VMs' common divisor, a group in a wave that
    # takes down all its available hosts may also shed a rest below one unit: with no host
    # up it cannot keep a fraction of a VM (elsewhere the unit's rounding stays, conservative).
    # The groups the rest goes to count whole units, at least as much as left (rounding up).
    mov = ~ctx.stuck
    avail_of = {
        g: [i for i, t in enumerate(types) if t.group == g and t.available] for g in range(G + 1)
    }
    may_empty = {
        g: sum(types[i].n for i in idx) == int(agg_members[g].sum())
        and sum(types[i].n for i in idx) <= ctx.policy.max_hosts_per_wave
        for g, idx in avail_of.items()
    }
    exact = [bool(np.all(ctx.demand[mov, c] % int(wm.shift_units[c]) == 0)) for c in range(C)]
    for w in range(W):
        for c in range(C):
            u = int(wm.shift_units[c])
            total = int(ctx.mov_demand[:, c].sum()) // u + 1
            ins, outs, rests = [], [], []
            for g in range(G + 1):
                idx = [i for i, t in enumerate(types) if t.group == g]
                own = sum(wm.by_wave(i, types[i].unpinned_lo, c, w) for i in idx)
                came = [wm.shift_in[g, c, ww] for ww in range(w)] if wm.reflow else []
                o = m.new_int_var(0, total, "")
                rest = not exact[c] and may_empty[g]
                r = m.new_int_var(0, u - 1 if rest else 0, "")
                if rest:
                    used = m.new_bool_var("")
                    m.add(r <= (u - 1) * used)
                    idx = avail_of[g]
                    if idx:  # every available host of g goes down in this wave
                        n_avail = sum(types[i].n for i in idx)
                        m.add(sum(wm.cnt[i][w] for i in idx) >= n_avail).only_enforce_if(used)
                    wm.rest_used.append(used)
                i_ = m.new_int_var(0, total if g in groups else 0, "")
                m.add(u * o + r <= own + u * sum(came))
                wm.shift_in[g, c, w] = i_
                wm.shift_out[g, c, w] = o
                wm.shift_rest[g, c, w] = r
                ins.append(i_)
                outs.append(o)
                rests.append(r)
            sent = u * sum(outs) + sum(rests)
            m.add(u * sum(ins) >= sent)
            m.add(u * sum(ins) <= sent + u - 1)


def _require(
    wm: WaveModel, free: Any, g: int, c: int, w: int, avail: list[int], words: Words
) -> None:
    """free >= the k largest capacities still up (exact for the largest ones) and >= the
    reserve, in group g and class c at the end of wave w."""
    m, types = wm.m, wm.types
    k, reserve_percent = wm.ctx.policy.headroom.failures, wm.ctx.policy.headroom.reserve_percent
    if reserve_percent > 0:
        ppm = round(reserve_percent * 10_000)
        total = int(wm.agg.total_cap[g, c])
        down_cap = sum(int(types[i].cap[c]) * wm.cnt[i][w] for i in avail)
        wm.add(free * 1_000_000 >= ppm * (total - down_cap), words)
    caps = wm.ctx.cap[wm.agg.members[g], c]
    levels = sorted({int(v) for v in caps if v > 0}, reverse=True)
    if k <= 0 or not levels:
        wm.add(free >= 0, words)
        return
    max_down = min(wm.ctx.policy.max_hosts_per_wave, sum(types[i].n for i in avail))
    rs = []
    for j in range(1, k + 1):
        r = m.new_int_var(0, levels[0], "")
        rs.append(r)
        for cut, v in enumerate(levels):
            at_least = int((caps >= v).sum())
            idx = [i for i in avail if int(types[i].cap[c]) >= v]
            could_be_down = min(sum(types[i].n for i in idx), max_down)
            if at_least - could_be_down >= j or cut >= MAX_EXACT_CUTS:
                m.add(r >= v)  # j hosts this large surely stay up (or: conservative cut-off)
                break
            b = m.new_bool_var("")
            m.add(r >= v * b)
            m.add(sum(wm.cnt[i][w] for i in idx) >= at_least - j + 1).only_enforce_if(b.Not())
    wm.add(free >= sum(rs), words)


def _build_waves(wm: WaveModel) -> None:
    _shifts(wm)
    ctx, agg, m, W, types = wm.ctx, wm.agg, wm.m, wm.W, wm.types
    for g in range(ctx.G):
        avail = [i for i, t in enumerate(types) if t.group == g and t.available]
        unavail = [i for i, t in enumerate(types) if t.group == g and not t.available]
        for c in range(ctx.C):
            words = group_words(ctx, g, c)
            span = int(ctx.mov_demand[:, c].sum()) + int(agg.total_cap[g, c]) + 1
            net_in: Any = 0
            for w in range(W):
                if wm.has_shifts:
                    net_in = net_in + wm.net_shift(g, c, w)
                down = sum(wm.by_wave(i, types[i].down_hi, c, w) for i in avail)
                evac = sum(wm.by_end(i, types[i].mov_total, c, w) for i in unavail)
                free = m.new_int_var(-span, span, "")
                m.add(free == int(agg.base_free[g, c]) - down - evac - net_in)
                _require(wm, free, g, c, w, avail, words)


# -- the exact model ------------------------------------------------------------------------------
def _build_exact(em: ExactModel) -> None:
    ctx = em.ctx
    k = ctx.policy.headroom.failures
    pct = Fraction(str(ctx.policy.headroom.reserve_percent))  # as written, not the float
    for g in range(ctx.G):
        hosts = [int(h) for h in np.flatnonzero((ctx.group_of == g) & ctx.available)]
        if not hosts:
            continue
        for c, rc in enumerate(ctx.classes):
            if not any(ctx.cap[h, c] for h in hosts):
                continue
            lit = em.guard(rule.words(ctx.policy, ctx.group_names[g], rc))
            order = sorted(hosts, key=lambda h: (-int(ctx.cap[h, c]), h))
            for w in range(1, em.W + 1):
                _headroom_at(em, g, c, w, order, k, pct, lit)


def _headroom_at(
    em: ExactModel, g: int, c: int, w: int, order: list[int], k: int, pct: Fraction, lit: Any
) -> None:
    """free >= the k largest capacities and the reserve, over the hosts not down in slot w
    (as `capacity.headroom`), when slot w is a wave."""
    ctx, m = em.ctx, em.m
    free: list[Expr] = []
    for h in order:
        cap = int(ctx.cap[h, c])
        expr = cap - em.used(h, c, w)
        if ctx.is_todo[h]:  # down: counts nothing (it holds only stopped VMs then)
            expr = expr - (cap - int(em.fixed_used[h, c])) * em.y[h, w]
        free.append(expr)
    total_free = sum(free)
    enforce = [lit, em.active[w]]
    if k > 0:
        top: list[Expr] = []
        count: Expr = 0
        for pos, h in enumerate(order):
            cap = int(ctx.cap[h, c])
            down = em.y[h, w] if ctx.is_todo[h] else None
            below_k = None  # fewer than k hosts before this one, whatever is down
            if pos >= k or any(ctx.is_todo[o] for o in order[:pos]):
                below_k = m.new_bool_var("")
                # forced true when fewer than k hosts before this one are up
                m.add(count >= k).only_enforce_if(below_k.Not())
            if cap:
                t = m.new_bool_var("")
                clause: list[cp_model.LiteralT] = [t]  # up and among the k largest -> counted
                if down is not None:
                    clause.append(down)
                if below_k is not None:
                    clause.append(below_k.Not())
                m.add_bool_or(clause)
                top.append(cap * t)
            count = count + (1 - down if down is not None else 1)
        m.add(total_free >= sum(top)).only_enforce_if(enforce)
    if pct > 0:
        total_cap = sum(
            int(ctx.cap[h, c]) * (1 - em.y[h, w] if ctx.is_todo[h] else 1) for h in order
        )
        # free >= ceil(pct% of total)  <=>  free >= pct% of total, free being an integer
        m.add(100 * pct.denominator * total_free >= pct.numerator * total_cap).only_enforce_if(
            enforce
        )


ENCODINGS = Encodings(
    "headroom",
    greedy=GreedyHooks(after=_after),
    waves=WaveHooks(fill=FillHooks(start=_start, refuses=_refuses), build=_build_waves),
    placement=Builtin(
        "exact for each wave: a group's inflow stays within its free capacity less what the "
        "rule requires with the wave down (wave_budget; CP-SAT too)"
    ),
    exact=ExactHooks(build=_build_exact),
    details=_details,
    obstacle=_obstacle,
)
