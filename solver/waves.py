"""Phase 1 of the CP-SAT planner: which hosts go down in which wave.

A boolean x[h, w] per host to upgrade and wave. Hard constraints, all exact:
- every host in exactly one wave; wave sizes (global, per AZ, per rack); HA groups;
- order: policy.first hosts no later than any other, policy.last no earlier (a shared boundary
  wave is allowed, as the checker allows it);
- headroom per group, class and wave, in aggregate (see `solver.aggregate`): free capacity with
  the wave's hosts down >= the k largest capacities still up (modelled exactly for the largest
  hosts through "are all of the first p largest hosts down?" indicators) and >= the reserve.
  Demand may move between headroom groups (integer shift variables, only for VMs that are not
  pinned to their group, and only out of hosts going down in that wave).

Objective, lexicographically: fewest waves; then the fewest VMs that cannot go to an already
upgraded host (the demand evacuated in a wave beyond the free upgraded capacity, per group and
class, measured in quarter-VMs), then the least demand moved between groups.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from planner.capacity import IntArray
from planner.rules import order
from planner.rules.base import Words
from solver.aggregate import Aggregates
from solver.context import Context, order_ok
from solver.params import SolveParams, make_solver, run
from solver.rules import wave_hooks
from solver.rules.base import Filling

# Upgraded hosts are counted full at this share of their capacity (room for packing).
PACKING_PERCENT = 95
# The outer safety: no wave model is built with less than this share of the time limit left
# (placement and the fallback need the rest).
WAVES_TIME_SHARE = 0.5


@dataclass
class WavePlan:
    waves: list[list[int]]  # host indices per wave, in order
    shift: IntArray  # (W, G+1, C) planned net demand moved into each group in each wave
    status: str = "heuristic"
    objective: float | None = None
    bound: float | None = None
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# The constructive heuristic (the model's hint)
# ---------------------------------------------------------------------------------------------
def host_weight(ctx: Context, h: int) -> float:
    """Share of the host its movable VMs use (max over classes): emptiest hosts go first."""
    cap = ctx.cap[h]
    if not cap.any():
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(cap > 0, ctx.mov_demand[h] / np.maximum(cap, 1), 0.0)
    return float(r.max())


def host_sequence(ctx: Context) -> list[int]:
    """Todo hosts in the heuristic's order: tier; then available hosts before unavailable ones
    (whose VMs, once moved, eat headroom for good); then emptiest first; then name."""
    keys = []
    for h in ctx.todo:
        h = int(h)
        unavailable = ctx.compute[h] and not ctx.available[h]
        keys.append((int(ctx.tier[h]), unavailable, host_weight(ctx, h), ctx.host_names[h], h))
    keys.sort()
    return [k[-1] for k in keys]


class HeuristicWave(Filling):
    """A wave of the first-fit heuristic being filled (what the rule families' fill hooks see):
    `agg` and `evacuated` are the aggregate headroom's view, before this wave."""

    def __init__(self, ctx: Context, agg: Aggregates, evacuated: IntArray) -> None:
        super().__init__(ctx.inv, ctx.policy)
        self.ctx, self.agg, self.evacuated = ctx, agg, evacuated

    def migrations(self, h: int) -> int:
        """The VMs that start on host h and are not stopped: they leave it in its wave."""
        return int(self.ctx.forced_migrations()[h])


def heuristic_waves(
    ctx: Context, agg: Aggregates, target: int | None = None, extra: int = 0
) -> tuple[list[list[int]], list[int]]:
    """Fill waves first-fit in `host_sequence` order under every hard rule (each family's fill
    hooks, `solver.rules`), evacuees staying in their headroom group. Returns (waves, hosts it
    could not place).

    With a `target` number of waves, a wave also takes a host only while its VMs fit in the
    free upgraded capacity of their group (or, for `extra` hosts a wave, regardless), unless
    the hosts left would not fit in the waves left: early waves stay small so that fewer VMs
    must move twice."""
    p = ctx.policy
    fills = [h.fill for h in wave_hooks(ctx.inv, ctx.policy)]
    starts = [f.start for f in fills if f.start is not None]
    closes = [f.closed for f in fills if f.closed is not None]
    refusals = [f.refuses for f in fills if f.refuses is not None]
    joins = [f.joined for f in fills if f.joined is not None]
    refused = [f.refused for f in fills if f.refused is not None]
    remaining = host_sequence(ctx)
    evacuated = np.zeros((ctx.G, ctx.C), dtype=np.int64)
    up_free = np.zeros((ctx.G + 1, ctx.C), dtype=np.int64)
    if target is not None:
        done = ctx.available & ~ctx.is_todo
        for gi in range(ctx.G + 1):
            on = done & (ctx.group_of == gi)
            up_free[gi] = np.maximum(ctx.model.free[on], 0).sum(axis=0)
    waves: list[list[int]] = []
    while remaining:
        f = HeuristicWave(ctx, agg, evacuated)
        for start in starts:
            start(f)
        wave: list[int] = []
        left = up_free * PACKING_PERCENT // 100
        spare = extra
        for h in remaining:
            t = int(ctx.tier[h])
            if any(closed(f, t) for closed in closes):
                break
            gr = int(ctx.group_of[h])
            if target is not None and gr >= 0 and ctx.mov_demand[h].any():
                later = (target - len(waves) - 1) * p.max_hosts_per_wave
                forced = len(remaining) - len(wave) > later
                if not forced and np.any(ctx.mov_demand[h] > left[gr]):
                    if spare <= 0:
                        continue
                    spare -= 1
            # headroom's refusal comes last: it takes the host down when it does not refuse
            if any(refuses(f, h, t) is not None for refuses in refusals):
                for hook in refused:
                    hook(f, h, t)
                continue
            wave.append(h)
            if gr >= 0:
                left[gr] -= ctx.mov_demand[h]
            for join in joins:
                join(f, h)
        if not wave:
            break
        for h in wave:
            gr = int(ctx.group_of[h])
            if 0 <= gr < ctx.G and not ctx.available[h]:
                evacuated[gr] += ctx.mov_demand[h]
            if gr >= 0:
                # its VMs fill upgraded room first; the host comes back with its room
                up_free[gr] = np.maximum(up_free[gr] - ctx.mov_demand[h], 0)
                if ctx.available[h]:
                    up_free[gr] += agg.down_weight[h]
        waves.append(wave)
        chosen = set(wave)
        remaining = [h for h in remaining if h not in chosen]
    return waves, remaining


# ---------------------------------------------------------------------------------------------
# Host types
# ---------------------------------------------------------------------------------------------
@dataclass
class HostType:
    """Hosts that the wave model treats alike: same headroom group, limits, tier, capacities and
    a similar share of movable VMs (`WEIGHT_BINS`). Within a type hosts go down emptiest first,
    so a count per wave says which ones. Per-host amounts become per-type coefficients: exact for
    single hosts, otherwise conservative where headroom depends on them and means elsewhere."""

    hosts: list[int]
    group: int
    az: str | None
    rack: str | None
    tier: int
    in_last: bool
    available: bool
    cap: IntArray  # (C,)
    ha: tuple[int, ...]
    down_hi: IntArray  # (C,) most a host takes from its group's free capacity when down
    down_mean: IntArray  # (C,) mean of the same (upgraded capacity gained, for the objective)
    mov_mean: IntArray  # (C,) mean movable demand (evacuated, for the objective)
    mov_total: IntArray  # (C,) movable demand of all its hosts (exact; used for single hosts)
    unpinned_lo: IntArray  # (C,) least movable demand a host has that may leave its group

    @property
    def n(self) -> int:
        return len(self.hosts)


# Upper edges of the emptiness bins (share of the host its movable VMs use, max over classes).
WEIGHT_BINS = (0.02, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9)


def host_types(ctx: Context, agg: Aggregates, split: Set[int] = frozenset()) -> list[HostType]:
    """The hosts to upgrade by type; hosts in `split` are types of their own. Hosts of a type
    share their headroom group, availability, capacities and emptiness bin, and what each rule
    family's `type_key` asks (`solver.rules`: AZ or rack under a wave limit, HA group, tier)."""
    _first, last = order.selected(ctx.inv, ctx.policy)
    hooks = wave_hooks(ctx.inv, ctx.policy)
    keys = [hook.type_key(ctx) for hook in hooks if hook.type_key is not None]
    ha_of: dict[int, list[int]] = {}
    for i, g in enumerate(ctx.ha):
        for h in g.hosts:
            ha_of.setdefault(int(h), []).append(i)
    by_key: dict[tuple[Hashable, ...], list[int]] = {}
    for h in host_sequence(ctx):
        singleton = not ctx.available[h] or not ctx.compute[h] or h in split
        weight_bin = int(np.searchsorted(WEIGHT_BINS, host_weight(ctx, h), side="right"))
        key = (
            h if singleton else -1,
            int(ctx.group_of[h]),
            bool(ctx.available[h]),
            tuple(int(v) for v in ctx.cap[h]),
            weight_bin,
            *(k(h) for k in keys),
        )
        by_key.setdefault(key, []).append(h)
    types = []
    for hosts in by_key.values():
        h0 = hosts[0]
        idx = np.asarray(hosts, dtype=np.int64)
        down = agg.down_weight[idx]
        mov = ctx.mov_demand[idx]
        types.append(
            HostType(
                hosts=hosts,
                group=int(ctx.group_of[h0]),
                az=ctx.inv.hosts[h0].az,
                rack=ctx.inv.hosts[h0].rack,
                tier=int(ctx.tier[h0]),
                in_last=ctx.host_names[h0] in last,
                available=bool(ctx.available[h0]),
                cap=ctx.cap[h0].copy(),
                ha=tuple(ha_of.get(h0, ())),
                down_hi=down.max(axis=0),
                down_mean=np.round(down.mean(axis=0)).astype(np.int64),
                mov_mean=np.round(mov.mean(axis=0)).astype(np.int64),
                mov_total=mov.sum(axis=0),
                unpinned_lo=ctx.unpinned_demand[idx].min(axis=0),
            )
        )
    return types


# ---------------------------------------------------------------------------------------------
# The CP-SAT model
# ---------------------------------------------------------------------------------------------
def _units(ctx: Context) -> IntArray:
    """Per class, a quarter of the mean movable VM demand: the unit of shifts and overflow."""
    mov = ~ctx.stuck
    if not mov.any():
        return np.ones(ctx.C, dtype=np.int64)
    mean = ctx.demand[mov].mean(axis=0)
    units: IntArray = np.maximum(1, np.floor(mean / 4)).astype(np.int64)
    return units


def shift_units(ctx: Context, units: IntArray) -> IntArray:
    """Per class, the unit of demand moved between groups: the greatest common divisor of
    the movable VMs' demands when it is no finer than `units` (flavors of small VMs often share
    one: 1,024 MiB against a quarter of a 1.2 GiB mean), so that a group can shed exactly all of
    its hosts' VMs; else `units`, rounding down what may leave (a finer unit would make the
    model larger and, on large tight clouds, its search worse)."""
    out = units.copy()
    mov = ~ctx.stuck
    for c in range(ctx.C):
        d = ctx.demand[mov, c]
        d = d[d > 0]
        if d.size:
            g = int(np.gcd.reduce(d))
            if g >= int(units[c]):
                out[c] = g
    return out


@dataclass(frozen=True)
class Nogood:
    """A wave the placement phase could not realise: `wave` down with `before` upgraded."""

    before: tuple[int, ...]
    wave: tuple[int, ...]


def _type_counts(types: list[HostType], hosts: Sequence[int]) -> dict[int, int]:
    type_of = {h: i for i, t in enumerate(types) for h in t.hosts}
    out: dict[int, int] = {}
    for h in hosts:
        out[type_of[h]] = out.get(type_of[h], 0) + 1
    return out


class WaveModel:
    """The wave model over host types for at most (or exactly) W waves."""

    def __init__(
        self,
        ctx: Context,
        agg: Aggregates,
        types: list[HostType],
        W: int,
        *,
        fixed_waves: bool,
        lower_bound: int = 0,
        explain: bool = False,
        reflow: bool = False,
        nogoods: Sequence[Nogood] = (),
    ) -> None:
        self.ctx, self.agg, self.types, self.W = ctx, agg, types, W
        # With `explain`, each rule family holds only under an assumption literal, so CP-SAT
        # can name a small set of families that cannot hold together.
        self.explain = explain
        self.guards: dict[str, Any] = {}
        self.families: dict[str, Words] = {}  # key -> its words, for each guard
        # With `reflow`, demand that came into a group may leave it again in a later wave (real
        # plans can do that, moving VMs twice); without, only a host's own VMs leave its group,
        # which the placement phase can always realise.
        self.reflow = reflow or explain
        m = self.m = cp_model.CpModel()
        G, C = ctx.G, ctx.C
        self.units = _units(ctx)
        self.shift_units = shift_units(ctx, self.units)
        M = ctx.policy.max_hosts_per_wave
        self.cnt: list[list[Any]] = []
        self.cum: list[list[Any]] = []
        for t in types:
            ub = t.n if explain else min(t.n, M)
            cnt = [m.new_int_var(0, ub, "") for _ in range(W)]
            cum = [m.new_int_var(0, t.n, "") for _ in range(W)]
            m.add(cum[0] == cnt[0])
            for w in range(1, W):
                m.add(cum[w] == cum[w - 1] + cnt[w])
            m.add(cum[W - 1] == t.n)
            self.cnt.append(cnt)
            self.cum.append(cum)

        # -- the waves: each rule family's per-wave part as they are made -----------------------
        hooks = wave_hooks(ctx.inv, ctx.policy)
        per_wave = [hook.wave for hook in hooks if hook.wave is not None]
        self.used: list[Any] = []
        for w in range(W):
            size = sum(c[w] for c in self.cnt)
            u = None
            if fixed_waves:
                m.add(size >= 1)
            else:
                u = m.new_bool_var(f"used{w}")
            for wave in per_wave:
                wave(self, w, size, u)
            if u is not None:
                m.add(size <= len(ctx.todo) * u)
                m.add(size >= u)
                if self.used:
                    m.add_implication(u, self.used[-1])
                self.used.append(u)
        if not fixed_waves and lower_bound > 0 and not explain:
            m.add(sum(self.used) >= min(lower_bound, W))

        # -- every rule family's constraints (headroom's makes the shifts between groups) -------
        self.has_shifts = False
        self.shift_in: dict[tuple[int, int, int], Any] = {}
        self.shift_out: dict[tuple[int, int, int], Any] = {}
        self.shift_rest: dict[tuple[int, int, int], Any] = {}  # below one unit, out
        self.rest_used: list[Any] = []
        for hook in hooks:
            if hook.build is not None:
                hook.build(self)
        self.overflow: list[Any] = []
        if fixed_waves:
            self._overflow(G, C)
        for ng in nogoods:
            self._nogood(ng)

    # -- helpers -------------------------------------------------------------------------------
    def by_wave(self, i: int, coef: IntArray, c: int, w: int) -> Any:
        """coef[c] times the number of hosts of type i down in wave w."""
        v = int(coef[c])
        return v * self.cnt[i][w] if v else 0

    def by_end(self, i: int, coef: IntArray, c: int, w: int) -> Any:
        """coef[c] times the number of hosts of type i upgraded by the end of wave w (-1: 0)."""
        v = int(coef[c])
        return v * self.cum[i][w] if v and w >= 0 else 0

    def add(self, constraint: Any, family: Words, *enforce: Any) -> None:
        """Add a constraint of a rule family: with `explain`, under the family's assumption
        literal (one per key)."""
        ct = self.m.add(constraint)
        lits = list(enforce)
        if self.explain:
            if family.key not in self.guards:
                self.guards[family.key] = self.m.new_bool_var(family.key)
                self.families[family.key] = family
            lits.append(self.guards[family.key])
        if lits:
            ct.only_enforce_if(*lits)

    def _nogood(self, ng: Nogood) -> None:
        """Forbid, in any wave w, taking down exactly the hosts of ng.wave (counted per type)
        when exactly those of ng.before are upgraded: the placement phase could not realise it.
        The order before does not count (it changes where VMs are, but rarely what fails)."""
        before, wave = _type_counts(self.types, ng.before), _type_counts(self.types, ng.wave)
        n_before = sum(before.values())
        for w in range(self.W):
            if w == 0 and n_before:
                continue
            lits = []
            for i in range(len(self.types)):
                if w > 0:
                    a = self.m.new_bool_var("")
                    self.m.add(self.cum[i][w - 1] != before.get(i, 0)).only_enforce_if(a)
                    lits.append(a)
                b = self.m.new_bool_var("")
                self.m.add(self.cnt[i][w] != wave.get(i, 0)).only_enforce_if(b)
                lits.append(b)
            self.m.add_bool_or(lits)

    def net_shift(self, g: int, c: int, w: int) -> Any:
        """Demand moved into group g in class c in wave w (negative: out), in demand units."""
        u = int(self.shift_units[c])
        return u * (self.shift_in[g, c, w] - self.shift_out[g, c, w]) - self.shift_rest[g, c, w]

    def _overflow(self, G: int, C: int) -> None:
        """Demand evacuated beyond the free upgraded capacity of its group: VMs that must go to a
        host not yet upgraded and so move twice (quarter-VM units, per group, class, wave)."""
        ctx, agg, m, W, types = self.ctx, self.agg, self.m, self.W, self.types
        for g in range(G + 1):
            done_avail = agg.members[g] & ~ctx.is_todo
            idx = [i for i, t in enumerate(types) if t.group == g]
            avail = [i for i in idx if types[i].available]
            for c in range(C):
                u = int(self.units[c])
                if not any(types[i].mov_total[c] for i in idx):
                    continue
                total = int(ctx.mov_demand[:, c].sum()) + 1
                up0 = int(agg.down_weight[done_avail, c].sum())
                placed: Any = int(ctx.mov_demand[done_avail, c].sum())
                for w in range(W):
                    eff: Any = sum(self.by_wave(i, types[i].mov_mean, c, w) for i in idx)
                    if self.has_shifts:
                        eff = eff + self.net_shift(g, c, w)
                    e = m.new_int_var(-total, total, "")
                    m.add(e == eff)
                    up_cap = up0 + sum(self.by_end(i, types[i].down_mean, c, w - 1) for i in avail)
                    o = m.new_int_var(0, total // u + 1, "")
                    # u * o >= evacuated - PACKING% of the upgraded capacity + what sits on it
                    m.add(100 * u * o >= 100 * e - PACKING_PERCENT * up_cap + 100 * placed)
                    self.overflow.append(o)
                    placed = placed + e - u * o

    # ------------------------------------------------------------------------------------------
    def counts(self, waves: Sequence[Sequence[int]]) -> list[list[int]]:
        """Per type and wave, how many of its hosts `waves` puts there."""
        where = {h: w for w, hs in enumerate(waves) for h in hs}
        out = []
        for t in self.types:
            row = [0] * self.W
            for h in t.hosts:
                w = where.get(h)
                if w is not None and w < self.W:
                    row[w] += 1
            out.append(row)
        return out

    def fix_hint(
        self, waves: Sequence[Sequence[int]], params: SolveParams, *, shifts: bool = False
    ) -> float | None:
        """Hint `waves` with every auxiliary variable completed (a quick solve with the counts
        fixed): CP-SAT uses a complete hint far better than a partial one. Returns the hint's
        objective value, None if the waves do not fit this model (the hint is then unchanged)."""
        counts = self.counts(waves)
        if any(sum(row) != t.n for row, t in zip(counts, self.types, strict=True)):
            return None
        probe = self.m.clone()
        for i, row in enumerate(counts):
            for w, n in enumerate(row):
                probe.add(probe.get_int_var_from_proto_index(self.cnt[i][w].index) == n)
        if not shifts:  # waves from the in-group heuristic: no demand moves between groups
            for v in [*self.shift_in.values(), *self.shift_out.values(), *self.shift_rest.values()]:
                probe.add(probe.get_int_var_from_proto_index(v.index) == 0)
        s = make_solver(params, 5.0)
        s.parameters.num_workers = 1
        s.parameters.interleave_search = False
        s.parameters.stop_after_first_solution = True
        st = run(params, s, probe)
        if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None
        values = list(s.response_proto.solution)
        self.m.clear_hints()  # type: ignore[no-untyped-call]
        hint = self.m.proto.solution_hint
        hint.vars.extend(range(len(values)))
        hint.values.extend(values)
        return float(s.objective_value)

    def minimize_waves(self) -> None:
        self.m.minimize(sum(self.used))

    def minimize_overflow(self) -> None:
        shift = sum(self.shift_out.values()) if self.shift_out else 0
        self.m.minimize(8 * sum(self.overflow) + shift + 8 * sum(self.rest_used))

    def extract(self, solver: cp_model.CpSolver) -> tuple[list[list[int]], IntArray]:
        ctx, W = self.ctx, self.W
        waves: list[list[int]] = [[] for _ in range(W)]
        for i, t in enumerate(self.types):
            pos = 0
            for w in range(W):
                n = int(solver.value(self.cnt[i][w]))
                waves[w].extend(t.hosts[pos : pos + n])
                pos += n
        shift = np.zeros((W, ctx.G + 1, ctx.C), dtype=np.int64)
        for g, c, w in self.shift_in:
            shift[w, g, c] = int(solver.value(self.net_shift(g, c, w)))
        keep = [w for w in range(W) if waves[w]]
        return [sorted(waves[w]) for w in keep], shift[keep]


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------
Progress = Callable[[str, float | None, float | None], None]


class _Watch(cp_model.CpSolverSolutionCallback):
    def __init__(self, phase: str, progress: Progress | None) -> None:
        super().__init__()
        self.phase = phase
        self.progress = progress

    def on_solution_callback(self) -> None:
        if self.progress is not None:
            self.progress(self.phase, self.objective_value, self.best_objective_bound)


def plan_waves(
    ctx: Context,
    agg: Aggregates,
    params: SolveParams,
    lower_bound: int,
    progress: Progress | None = None,
    nogoods: Sequence[Nogood] = (),
) -> WavePlan:
    """Heuristic first; CP-SAT then minimises the waves (unless the heuristic already meets the
    lower bound) and, for that many waves, the VMs that must move twice. `nogoods`: waves no
    plan may have (the placement phase failed on them)."""
    notes: list[str] = []
    hint, left = heuristic_waves(ctx, agg)
    if not left and not order_ok(ctx, hint):
        left = [h for w in hint for h in w]  # e.g. hosts both first and last: let CP-SAT decide
    # A host a wave failed on is a type of its own: the nogood forbids it, not its look-alikes.
    types = host_types(ctx, agg, {h for ng in nogoods for h in ng.wave})
    if not left and any(_visits(types, hint, ng) for ng in nogoods):
        left = [h for w in hint for h in w]  # the placement phase failed on it: let CP-SAT decide
    G1, C = ctx.G + 1, ctx.C
    if not ctx.todo.size:
        return WavePlan([], np.zeros((0, G1, C), dtype=np.int64), "empty")
    best: list[list[int]] | None = None if left else hint
    best_shift = np.zeros((len(hint), G1, C), dtype=np.int64)
    start, start_shifts = hint, False
    if left:
        # Evacuees must leave their group somewhere: start from the greedy planner's waves.
        greedy = _greedy_waves(ctx, params)
        if greedy is not None:
            start, start_shifts = greedy, True
    status = "heuristic"
    bound: float | None = float(lower_bound)
    # Phase A: fewer waves.
    searched = best is None or len(best) > lower_bound
    reflow = False
    if searched:
        W = len(best) if best is not None else _wave_cap(ctx, start, left, lower_bound)
        W0 = W
        while True:
            if params.out_of_time(WAVES_TIME_SHARE):
                notes.append(f"wave model: stopped at the time limit with {W} waves")
                break
            wm = WaveModel(
                ctx,
                agg,
                types,
                W,
                fixed_waves=False,
                lower_bound=lower_bound,
                reflow=reflow,
                nogoods=nogoods,
            )
            wm.fix_hint(best if best is not None else start, params, shifts=start_shifts)
            wm.minimize_waves()
            solver = make_solver(params, params.budget("waves"))
            st = run(params, solver, wm.m, _Watch("waves", progress))
            if st in (cp_model.OPTIMAL, cp_model.FEASIBLE):
                best, best_shift = wm.extract(solver)
                status = "optimal" if st == cp_model.OPTIMAL else "feasible"
                bound = max(float(lower_bound), solver.best_objective_bound)
                break
            if st == cp_model.INFEASIBLE and len(ctx.todo) > W:
                W = min(len(ctx.todo), 2 * W)
                continue
            if best is None and not reflow:
                # Let demand that moved into a group leave it again (VMs moving twice).
                reflow, W = True, W0
                continue
            notes.append(f"wave model: {solver.status_name(st).lower()} with {W} waves")
            if st == cp_model.INFEASIBLE:
                best = None  # no order of the hosts keeps every rule
            break
    if best is None:
        return WavePlan([], np.zeros((0, G1, C), dtype=np.int64), "failed", notes=notes)
    if status == "heuristic":
        status = "optimal"  # the heuristic met the lower bound on waves
        bound = float(lower_bound)
    # Phase B: same number of waves, fewest double moves; hinted with the better of the
    # waves so far and the heuristic's small-early-waves variant.
    W = len(best)
    if params.out_of_time(WAVES_TIME_SHARE):
        notes.append("overflow model: not started at the time limit; kept the wave order")
        return WavePlan(best, best_shift, status, None, bound, notes)
    wm = WaveModel(ctx, agg, types, W, fixed_waves=True, reflow=reflow, nogoods=nogoods)
    wm.minimize_overflow()
    value = wm.fix_hint(best, params, shifts=True)
    ramp = _best_ramp(ctx, agg, W)
    if ramp is not None:
        ramp_value = wm.fix_hint(ramp, params)
        if ramp_value is not None and (value is None or ramp_value < value):
            best, best_shift = ramp, np.zeros((W, G1, C), dtype=np.int64)
        elif value is not None:
            wm.fix_hint(best, params, shifts=True)
    solver = make_solver(params, params.budget("overflow"))
    st = run(params, solver, wm.m, _Watch("overflow", progress))
    objective = None
    if st in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        best, best_shift = wm.extract(solver)
        objective = solver.objective_value
    else:
        notes.append(f"overflow model: {solver.status_name(st).lower()}; kept the wave order")
    return WavePlan(best, best_shift, status, objective, bound, notes)


def _visits(types: list[HostType], waves: Sequence[Sequence[int]], ng: Nogood) -> bool:
    """`waves` take down ng.wave with ng.before upgraded (counting hosts per type)."""
    before, wave = _type_counts(types, ng.before), _type_counts(types, ng.wave)
    done: list[int] = []
    for hs in waves:
        if _type_counts(types, done) == before and _type_counts(types, hs) == wave:
            return True
        done.extend(hs)
    return False


def overflow_estimate(ctx: Context, agg: Aggregates, waves: Sequence[Sequence[int]]) -> float:
    """What the overflow objective roughly measures, for a wave sequence: demand evacuated
    beyond the free upgraded capacity of its group, in quarter-VMs, summed over classes."""
    units = _units(ctx)
    G1 = ctx.G + 1
    done = ctx.available & ~ctx.is_todo
    up = np.stack(
        [np.maximum(ctx.model.free[done & (ctx.group_of == g)], 0).sum(axis=0) for g in range(G1)]
    )
    total = 0.0
    for hosts in waves:
        idx = np.asarray(hosts, dtype=np.int64)
        grp = ctx.group_of[idx]
        ok = grp >= 0
        ev = np.zeros((G1, ctx.C), dtype=np.int64)
        np.add.at(ev, grp[ok], ctx.mov_demand[idx[ok]])
        fit = np.minimum(ev, up * PACKING_PERCENT // 100)
        total += float(((ev - fit) / units).sum())
        up = up - fit
        back = idx[ok & ctx.available[idx]]
        np.add.at(up, ctx.group_of[back], agg.down_weight[back])
    return total


def _best_ramp(ctx: Context, agg: Aggregates, W: int) -> list[list[int]] | None:
    """The small-early-waves heuristic with the number of hosts a wave may take beyond its
    upgraded room that `overflow_estimate` likes best."""
    best: tuple[float, list[list[int]]] | None = None
    M = ctx.policy.max_hosts_per_wave
    for extra in sorted({0, 1, 2, 4, 8, 16, 32, 64} & set(range(M + 1))):
        waves, left = heuristic_waves(ctx, agg, target=W, extra=extra)
        if left or len(waves) != W or not order_ok(ctx, waves):
            continue
        value = overflow_estimate(ctx, agg, waves)
        if best is None or value < best[0]:
            best = (value, waves)
    return best[1] if best is not None else None


def _greedy_waves(ctx: Context, params: SolveParams) -> list[list[int]] | None:
    """The greedy planner's waves as host indices (None when it finds no plan either, or not
    within the time limit)."""
    from planner.errors import InfeasibleError
    from solver.greedy import TimeLimitReached, greedy_plan

    try:
        # its first host order only: a start for the wave model, not a fallback
        plan = greedy_plan(ctx.inv, ctx.policy, deadline=params.deadline, restarts=0, repair_work=0)
    except TimeLimitReached:
        params.wall_clock_hit = True
        return None
    except InfeasibleError:
        return None
    index = ctx.model.host_index
    return [sorted(index[h] for h in w.hosts) for w in plan.waves]


def _wave_cap(ctx: Context, hint: list[list[int]], left: list[int], lower_bound: int) -> int:
    n = len(ctx.todo)
    guess = max(lower_bound + 2, math.ceil(1.5 * max(lower_bound, 1)), len(hint) + len(left))
    return max(1, min(n, guess))
