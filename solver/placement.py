"""Phase 2 of the CP-SAT planner: where every VM of a wave goes.

For one wave at a time, given the state after the waves before it: VMs that can move form
*blocks* (a VM, or the members of a hard affinity group that share its host and move together);
VMs that cannot move and may be stopped are stopped in place. Each block gets a destination that
is available, outside the wave, in its AZ and aggregates, within capacity in every class, within
its hard anti-affinity group's max_server_per_host, and keeps headroom exact for this wave (the
inflow into each headroom group is at most its free capacity minus what the rule requires with
the wave's hosts down).

A greedy water-filling pass gives every block a destination (upgraded hosts first, then the
fullest headroom group... see `score`); CP-SAT then re-decides the wave's destinations among each
block's best candidates with that as its hint: fewest VMs sent to hosts not yet upgraded (they
would move twice), fewest leaving their headroom group, then balance (a convex penalty on how
full each destination ends, per class) and soft (anti-)affinity. Large waves are solved in
chunks so the model stays small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from planner.capacity import BoolArray, IntArray, headroom
from planner.plan import Migration, Stop
from solver.context import Context, method_for
from solver.params import SolveParams, make_solver, run

# Objective weights (integers): a VM sent to a host that is not upgraded yet moves twice.
COST_UNPLACED = 10_000_000
COST_DOUBLE_MOVE = 20_000
COST_FUTURE_HEADROOM = 2_000  # per unit of demand beyond a later wave's planned room (per mille)
COST_LEAVE_GROUP = 400
# per unit (per mille of the largest capacity) of demand the wave plan needs on hosts that shed
# it again later and that is not sent there: a later wave would break headroom
COST_LANDING = 5_000
COST_SOFT_GROUP = 300
# Balance: per mille of a host's capacity above each threshold, times its slope.
BALANCE_SLOPES = (1, 4, 24)
# How strongly VMs free to go anywhere avoid pools that pinned VMs still need (room units).
PRESSURE_WEIGHT = 1.0
# Candidate destinations per block in the CP-SAT model, and blocks per model.
CANDIDATES = 12
CHUNK_BLOCKS = 2500


@dataclass
class Block:
    vms: list[int]
    src: int
    demand: IntArray  # (C,)
    ok: BoolArray  # hosts every member may ever run on
    anti: int  # hard anti-affinity server group index, -1 none
    soft: int  # soft server group index, -1 none
    restricted: bool = False  # pinned to an AZ or bound to aggregates


@dataclass
class Landing:
    """Demand that must enter each group on the hosts that will shed it again later (see
    `solver.cpsat._landing`): `need` (G+1, C) still missing there, `hosts` (H,) those hosts."""

    need: IntArray
    hosts: BoolArray

    def copy(self) -> Landing:
        return Landing(self.need.copy(), self.hosts)


@dataclass
class WaveResult:
    migrations: list[Migration]
    stops: list[Stop]
    failed: list[Block]  # blocks that found no destination (nothing was moved then)
    reasons: list[str] = field(default_factory=list)
    no_room: bool = False  # a failed block had eligible hosts, (almost) none with room
    # headroom breaks in this wave whatever its VMs do (hosts outside the wave hold too much)
    broken: bool = False
    double_moves: int = 0
    cross_group: int = 0
    solver_status: str = ""


class PlacementState:
    """Where every VM is, which hosts are upgraded, and what each host has free, between waves."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.model = ctx.model.copy()
        self.upgraded = ctx.upgraded0.copy()
        self.vms_on: list[set[int]] = [set() for _ in range(ctx.H)]
        for j, h in enumerate(ctx.vm_host0):
            self.vms_on[int(h)].add(j)
        # server group -> host -> members there
        self.group_hosts: list[dict[int, int]] = []
        for g in ctx.server_groups:
            count: dict[int, int] = {}
            for j in g.members:
                h = int(ctx.vm_host0[j])
                count[h] = count.get(h, 0) + 1
            self.group_hosts.append(count)
        self.shift = np.zeros((ctx.G + 1, ctx.C), dtype=np.int64)  # net demand moved in, per group
        cap = ctx.cap.astype(np.float64)
        self.inv_cap = np.where(cap > 0, 1.0 / np.maximum(cap, 1.0), 0.0)
        self._free_to_leave: BoolArray | None = None

    def free_to_leave(self) -> BoolArray:
        """(V,) VMs that may move and leave their headroom group."""
        if self._free_to_leave is None:
            ctx = self.ctx
            pinned = np.array([ctx.pinned_to_group(j) for j in range(len(ctx.vm_host0))], bool)
            self._free_to_leave = ~ctx.stuck & ~pinned
        return self._free_to_leave

    def move(self, j: int, dst: int) -> None:
        ctx = self.ctx
        src = int(self.model.vm_host[j])
        g = int(ctx.vm_group[j])
        if g >= 0:
            gh = self.group_hosts[g]
            gh[src] -= 1
            if gh[src] == 0:
                del gh[src]
            gh[dst] = gh.get(dst, 0) + 1
        self.vms_on[src].discard(j)
        self.vms_on[dst].add(j)
        gs, gd = int(ctx.group_of[src]), int(ctx.group_of[dst])
        if gs != gd:
            if gs >= 0:
                self.shift[gs] -= ctx.demand[j]
            if gd >= 0:
                self.shift[gd] += ctx.demand[j]
        self.model.move(j, dst)


# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------
def wave_blocks(st: PlacementState, hosts: Sequence[int]) -> tuple[list[Block], list[int]]:
    """The blocks to move out of `hosts`, largest first, and the VMs to stop in place."""
    ctx = st.ctx
    blocks: list[Block] = []
    stops: list[int] = []
    for h in hosts:
        vms = sorted(st.vms_on[h])
        affinity: dict[int, list[int]] = {}
        for j in vms:
            if ctx.stuck[j]:
                stops.append(j)
                continue
            g = int(ctx.vm_group[j])
            sg = ctx.server_groups[g] if g >= 0 else None
            if sg is not None and sg.hard and not sg.anti:
                affinity.setdefault(g, []).append(j)
                continue
            anti = g if sg is not None and sg.hard and sg.anti else -1
            soft = g if sg is not None and not sg.hard else -1
            blocks.append(
                Block([j], h, ctx.demand[j].copy(), ctx.static_ok(j), anti, soft, _pinned(ctx, j))
            )
        for members in affinity.values():
            ok = ctx.static_ok(members[0]).copy()
            for j in members[1:]:
                ok &= ctx.static_ok(j)
            pinned = any(_pinned(ctx, j) for j in members)
            blocks.append(Block(members, h, ctx.demand[members].sum(axis=0), ok, -1, -1, pinned))
    # Most constrained first (pinned, bound, in a hard group: their group's room is theirs before
    # VMs free to go elsewhere take it), then largest first.
    blocks.sort(
        key=lambda b: (
            not (b.restricted or b.anti >= 0 or len(b.vms) > 1),
            -float((b.demand * st.inv_cap[b.src]).max()),
            b.vms[0],
        )
    )
    return blocks, stops


def _pinned(ctx: Context, j: int) -> bool:
    vm = ctx.inv.vms[j]
    return vm.az is not None or bool(vm.allowed_aggregates)


def pool_pressure(st: PlacementState) -> Any:
    """Per host, how much of its pools' capacity VMs pinned to them (AZ or aggregates) still
    need: the largest share, over the pools the host is in, of their demand still to move over
    their capacity. VMs free to go anywhere keep away from pressed pools, so that the pinned
    ones find room there later."""
    ctx, m = st.ctx, st.model
    out = np.zeros(ctx.H, dtype=np.float64)
    for mask, vms in ctx.pools():
        where = m.vm_host[vms]
        pending = vms[ctx.is_todo[where] & ~st.upgraded[where]]
        if pending.size == 0:
            continue
        cap = ctx.cap[mask].sum(axis=0)
        need = ctx.demand[pending].sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = float(np.where(cap > 0, need / np.maximum(cap, 1), 0.0).max())
        out = np.maximum(out, share * mask)
    return out


# ---------------------------------------------------------------------------------------------
# Budgets: headroom, exact for this wave and planned for the later ones
# ---------------------------------------------------------------------------------------------
def wave_budget(st: PlacementState, in_wave: BoolArray) -> IntArray:
    """(G+1, C): most demand each headroom group may receive in this wave (free capacity of its
    available hosts outside the wave, less what the rule requires with the wave down). The
    pseudo-group has no rule."""
    ctx = st.ctx
    out = np.full((ctx.G + 1, ctx.C), np.iinfo(np.int64).max // 4, dtype=np.int64)
    gi = {n: i for i, n in enumerate(ctx.group_names)}
    ci = {c: i for i, c in enumerate(ctx.classes)}
    for r in headroom(st.model, ctx.policy.headroom, in_wave):
        out[gi[r.group], ci[r.rc]] = r.free - r.required
    return out


# ---------------------------------------------------------------------------------------------
# Greedy water-filling
# ---------------------------------------------------------------------------------------------
def room_of(st: PlacementState, hosts: IntArray | None = None) -> Any:
    """Share of capacity left in the tightest class (classes a host does not offer ignored)."""
    ctx, m = st.ctx, st.model
    if hosts is None:
        cap, free = ctx.cap, m.free
    else:
        cap, free = ctx.cap[hosts], m.free[hosts]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(cap > 0, free / np.maximum(cap, 1), np.inf).min(axis=-1)
    return np.where(np.isfinite(r), r, 0.0)


def score(
    st: PlacementState,
    b: Block,
    idx: IntArray,
    future: IntArray | None,
    late: IntArray,
) -> Any:
    """Preference among candidate hosts `idx` (higher is better), the same order the greedy
    follows: upgraded (the VM moves once), same headroom group, then most room left in the
    tightest class (water-filling), a later-planned wave for a host not upgraded, soft groups."""
    ctx = st.ctx
    after = room_of(st, idx) - (b.demand * st.inv_cap[idx]).max(axis=1)
    s = 8.0 * st.upgraded[idx] + after + 0.05 * (~st.upgraded[idx]) * late[idx]
    same = ctx.group_of[idx] == ctx.group_of[b.src]
    s = s + 2.0 * same
    if future is not None:
        g = ctx.group_of[idx]
        short = np.any(future[np.maximum(g, 0)] < b.demand, axis=1) & (g >= 0) & ~same
        s = s - 4.0 * short
    if b.soft >= 0:
        here = st.group_hosts[b.soft]
        has = np.array([here.get(int(h), 0) > 0 for h in idx], dtype=bool)
        s = s + (-0.5 if st.ctx.server_groups[b.soft].anti else 0.5) * has
    return s


def candidates_mask(st: PlacementState, b: Block, in_wave: BoolArray) -> BoolArray:
    ok = b.ok & ~in_wave
    if b.anti >= 0:
        sg = st.ctx.server_groups[b.anti]
        full = [h for h, n in st.group_hosts[b.anti].items() if n >= sg.max_per_host]
        if full:
            ok = ok.copy()
            ok[np.asarray(full, dtype=np.int64)] = False
    return ok


class Greedy:
    """Water-filling placement for one wave: per block, the first non-empty tier of candidates
    (upgraded in its headroom group; upgraded elsewhere where later waves leave room; not
    upgraded in its group; anywhere) and in it the host with the most room in its tightest
    class. Moves are applied to the state as they are decided."""

    def __init__(
        self,
        st: PlacementState,
        in_wave: BoolArray,
        budget: IntArray,
        future: IntArray | None,
        late: IntArray,
        landing: Landing | None = None,
    ) -> None:
        self.st, self.in_wave, self.budget, self.future, self.late = (
            st,
            in_wave,
            budget,
            future,
            late,
        )
        self.landing = landing
        self.room = room_of(st)
        self.pressure = PRESSURE_WEIGHT * pool_pressure(st)
        self._tiers: dict[tuple[int, int], list[BoolArray]] = {}

    def tiers(self, b: Block) -> list[BoolArray]:
        st, ctx = self.st, self.st.ctx
        gs = int(ctx.group_of[b.src])
        key = (id(b.ok), gs)
        t = self._tiers.get(key)
        if t is None:
            base = b.ok & ~self.in_wave
            same = ctx.group_of == gs
            up = st.upgraded
            t = [base & up & same, base & up & ~same, base & ~up & same, base & ~up & ~same]
            self._tiers[key] = t
        return t

    def fits(self, b: Block, h: int, strict_future: bool) -> bool:
        st, ctx = self.st, self.st.ctx
        if np.any(st.model.free[h] < b.demand):
            return False
        g = int(ctx.group_of[h])
        if g < ctx.G and np.any(self.budget[g] < b.demand):
            return False
        gs = int(ctx.group_of[b.src])
        return not (
            strict_future
            and self.future is not None
            and g != gs
            and g < ctx.G
            and np.any(self.future[g] < b.demand)
        )

    def choose(self, b: Block) -> int:
        st, ctx = self.st, self.st.ctx
        anti_full: list[int] = []
        if b.anti >= 0:
            sg = ctx.server_groups[b.anti]
            anti_full = [h for h, n in st.group_hosts[b.anti].items() if n >= sg.max_per_host]
        prefer: BoolArray | None = None
        if b.soft >= 0:
            hs = [h for h, n in st.group_hosts[b.soft].items() if n > 0]
            prefer = np.zeros(ctx.H, dtype=bool)
            if hs:
                prefer[np.asarray(hs, dtype=np.int64)] = True
            if ctx.server_groups[b.soft].anti:
                prefer = ~prefer
        key = self.room + 0.05 * self.late
        if not b.restricted:
            key = key - self.pressure
        tiers = [(t, ti == 1) for ti, t in enumerate(self.tiers(b))]
        land = self.landing_mask(b)
        if land is not None:
            # after upgraded hosts of its own group: hosts that will shed it again as planned
            tiers.insert(1, (land, False))
        for tier, strict in tiers:
            mask = tier
            if anti_full:
                mask = mask.copy()
                mask[np.asarray(anti_full, dtype=np.int64)] = False
            masks = [mask & prefer, mask] if prefer is not None else [mask]
            for mk in masks:
                h = self._best(b, mk, key, strict_future=strict)
                if h >= 0:
                    return h
        return -1

    def landing_mask(self, b: Block) -> BoolArray | None:
        """Hosts outside its group where the block would land as the wave plan needs."""
        if self.landing is None:
            return None
        return landing_mask(self.st, self.landing, b, self.in_wave)

    def _best(self, b: Block, mask: BoolArray, key: Any, strict_future: bool) -> int:
        if not mask.any():
            return -1
        masked = np.where(mask, key, -np.inf)
        for _ in range(4):
            h = int(np.argmax(masked))
            if masked[h] == -np.inf:
                return -1
            if self.fits(b, h, strict_future):
                return h
            masked[h] = -np.inf
        idx = np.flatnonzero(masked > -np.inf)
        if idx.size == 0:
            return -1
        st, ctx = self.st, self.st.ctx
        ok = np.all(st.model.free[idx] >= b.demand, axis=1)
        g = ctx.group_of[idx]
        real = g < ctx.G
        ok &= ~real | np.all(self.budget[np.minimum(g, ctx.G - 1)] >= b.demand, axis=1)
        if strict_future and self.future is not None:
            gs = int(ctx.group_of[b.src])
            cross = real & (g != gs)
            ok &= ~cross | np.all(self.future[np.minimum(g, ctx.G - 1)] >= b.demand, axis=1)
        idx = idx[ok]
        if idx.size == 0:
            return -1
        return int(idx[int(np.argmax(masked[idx]))])

    def place(self, b: Block, h: int) -> None:
        _apply(self.st, b, h, self.budget, self.future)
        self._land(b, h, +1)
        self.room[h] = room_of(self.st, np.array([h]))[0]

    def unplace(self, b: Block, h: int) -> None:
        _unapply(self.st, b, h, self.budget, self.future)
        self._land(b, h, -1)
        self.room[h] = room_of(self.st, np.array([h]))[0]

    def _land(self, b: Block, h: int, sign: int) -> None:
        ctx = self.st.ctx
        if self.landing is not None and landed(ctx, self.landing, b, h):
            self.landing.need[int(ctx.group_of[h])] -= sign * b.demand


def landed(ctx: Context, landing: Landing, b: Block, h: int) -> bool:
    """Block b sent to host h lands where the wave plan needs demand from outside."""
    return bool(landing.hosts[h]) and int(ctx.group_of[h]) != int(ctx.group_of[b.src])


def landing_mask(
    st: PlacementState, landing: Landing, b: Block, in_wave: BoolArray
) -> BoolArray | None:
    """Hosts of other groups than block b's where demand is still missing (None: none)."""
    ctx = st.ctx
    needy: BoolArray = np.asarray((landing.need > 0).any(axis=1), dtype=bool)
    g = ctx.group_of
    mask: BoolArray = landing.hosts & b.ok & ~in_wave & (g >= 0) & (g != g[b.src])
    mask &= needy[np.maximum(g, 0)]
    return mask if mask.any() else None


# ---------------------------------------------------------------------------------------------
# CP-SAT
# ---------------------------------------------------------------------------------------------
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
) -> tuple[list[int], str]:
    """Re-decide the destinations of `blocks` (not applied to `st`; `hint` is the greedy's
    answer from the same state, given to CP-SAT complete). Returns destinations (-1: none) and
    the solver status; never worse than the hint by the model's objective."""
    ctx, state = st.ctx, st.model
    C, G = ctx.C, ctx.G
    m = cp_model.CpModel()
    cand: list[list[int]] = []
    for b, h0 in zip(blocks, hint, strict=True):
        ok = candidates_mask(st, b, in_wave)
        idx = np.flatnonzero(ok)
        if idx.size:
            idx = idx[np.all(state.free[idx] >= b.demand, axis=1)]
        if idx.size > CANDIDATES:
            s = score(st, b, idx, future, late)
            best = np.argsort(-s, kind="stable")[:CANDIDATES]
            idx = idx[np.sort(best)]
        lst = [int(h) for h in idx]
        land = landing_mask(st, landing, b, in_wave) if landing is not None else None
        if land is not None:
            fits = land & ok & np.all(state.free >= b.demand, axis=1)
            lst = sorted(set(lst) | {int(h) for h in np.flatnonzero(fits)[:CANDIDATES]})
        if h0 >= 0 and h0 not in lst:
            lst.append(h0)
        cand.append(lst)

    # Variables and per-(block, host) costs; `terms` re-evaluates the objective for the hint.
    y: list[list[Any]] = []
    unplaced: list[Any] = []
    lin: list[list[int]] = []
    for b, lst in zip(blocks, cand, strict=True):
        vs = [m.new_bool_var("") for _ in lst]
        u = m.new_bool_var("")
        m.add_exactly_one([*vs, u])
        y.append(vs)
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
    objective: list[Any] = []
    hint_cost = 0
    hints: list[tuple[Any, int]] = []
    for bi, (vs, costs, h0) in enumerate(zip(y, lin, hint, strict=True)):
        n = len(blocks[bi].vms)
        objective.append(COST_UNPLACED * n * unplaced[bi])
        hints.append((unplaced[bi], int(h0 < 0)))
        if h0 < 0:
            hint_cost += COST_UNPLACED * n
        for v, h, cost in zip(vs, cand[bi], costs, strict=True):
            if cost:
                objective.append(cost * v)
            hints.append((v, int(h == h0)))
            if h == h0:
                hint_cost += cost

    # capacity and balance
    thresholds = _thresholds(st)
    load: dict[int, list[tuple[Any, int]]] = {}
    for bi, lst in enumerate(cand):
        for v, h in zip(y[bi], lst, strict=True):
            load.setdefault(h, []).append((v, bi))
    hint_in: dict[int, IntArray] = {}
    for bi, h0 in enumerate(hint):
        if h0 >= 0:
            hint_in[h0] = hint_in.get(h0, np.zeros(C, dtype=np.int64)) + blocks[bi].demand
    for h, terms in load.items():
        for c in range(C):
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
                objective.append(slope * e)
                val = max(0, -(-(1000 * (used + got) - thr * cap) // cap))
                hints.append((e, val))
                hint_cost += slope * val

    # hard anti-affinity per host; soft anti-affinity among the blocks moving now
    anti: dict[tuple[int, int], list[tuple[Any, int]]] = {}
    soft: dict[tuple[int, int], list[tuple[Any, int]]] = {}
    for bi, b in enumerate(blocks):
        for v, h in zip(y[bi], cand[bi], strict=True):
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
            objective.append(COST_SOFT_GROUP * over)
            val = max(0, sum(1 for _, bi in members if hint[bi] == h) - room)
            hints.append((over, val))
            hint_cost += COST_SOFT_GROUP * val

    # headroom: exact for this wave, the planned room of later waves (soft)
    into: dict[int, list[tuple[Any, int]]] = {}
    out_of: dict[int, list[tuple[Any, int]]] = {}
    for bi, lst in enumerate(cand):
        gs = int(ctx.group_of[blocks[bi].src])
        for v, h in zip(y[bi], lst, strict=True):
            g = int(ctx.group_of[h])
            if g >= 0:
                into.setdefault(g, []).append((v, bi))
            if g != gs and gs >= 0:
                out_of.setdefault(gs, []).append((v, bi))
    for g in sorted(set(into) | set(out_of)):
        for c in range(C):
            terms_in = into.get(g, [])
            if g < G and terms_in:
                m.add(sum(int(blocks[bi].demand[c]) * v for v, bi in terms_in) <= int(budget[g, c]))
            if future is None:
                continue
            cross_in = [(v, bi) for v, bi in terms_in if int(ctx.group_of[blocks[bi].src]) != g]
            cross_out = out_of.get(g, [])
            if not cross_in and not cross_out:
                continue
            net = sum(int(blocks[bi].demand[c]) * v for v, bi in cross_in) - sum(
                int(blocks[bi].demand[c]) * v for v, bi in cross_out
            )
            unit = max(1, int(ctx.cap[ctx.available, c].max(initial=1)) // 1000)
            limit = int(min(future[g, c], 10**15))
            over = m.new_int_var(0, 10**9, "")
            m.add(unit * over >= net - limit)
            objective.append(COST_FUTURE_HEADROOM * over)
            hnet = 0
            for bi, h0 in enumerate(hint):
                if h0 < 0:
                    continue
                gs, gd = int(ctx.group_of[blocks[bi].src]), int(ctx.group_of[h0])
                if gd == g and gs != g:
                    hnet += int(blocks[bi].demand[c])
                elif gs == g and gd != g:
                    hnet -= int(blocks[bi].demand[c])
            val = max(0, -(-(hnet - limit) // unit))
            hints.append((over, val))
            hint_cost += COST_FUTURE_HEADROOM * val

    if landing is not None:
        hint_cost += _landing_terms(st, blocks, cand, y, hint, landing, m, objective, hints)

    m.minimize(sum(objective))
    for v, val in hints:
        m.add_hint(v, val)
    solver = make_solver(params, dtime)
    status = run(params, solver, m)
    name = solver.status_name(status).lower()
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE) or solver.objective_value > hint_cost:
        return hint, f"{name}, hint kept"
    out = []
    for bi, lst in enumerate(cand):
        dst = -1
        for v, h in zip(y[bi], lst, strict=True):
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


def problems(
    st: PlacementState, blocks: list[Block], dests: list[int], in_wave: BoolArray
) -> list[int]:
    """Blocks (indices) the greedy placed where CP-SAT may do better by moving others: no
    destination; or a host not yet upgraded (or in another headroom group) while upgraded hosts
    of its group that it may use still have, together, room for it."""
    ctx = st.ctx
    out = []
    room: dict[tuple[int, int], IntArray] = {}
    for i, (b, d) in enumerate(zip(blocks, dests, strict=True)):
        if d < 0:
            out.append(i)
            continue
        if st.upgraded[d] and ctx.group_of[d] == ctx.group_of[b.src]:
            continue
        key = (id(b.ok), int(ctx.group_of[b.src]))
        if key not in room:
            better = b.ok & ~in_wave & st.upgraded & (ctx.group_of == key[1])
            room[key] = np.maximum(st.model.free[better], 0).sum(axis=0)
        if np.all(room[key] >= b.demand):
            out.append(i)
    return out


# ---------------------------------------------------------------------------------------------
# One wave
# ---------------------------------------------------------------------------------------------
def place_wave(
    st: PlacementState,
    hosts: Sequence[int],
    future: IntArray | None,
    late: IntArray,
    params: SolveParams,
    dtime: float,
    use_cpsat: bool = True,
    small_cloud: bool = False,
    landing: Landing | None = None,
) -> WaveResult:
    """Evacuate `hosts` (one wave) and apply the moves to `st`; on failure nothing is applied
    and `failed` names the blocks without a destination.

    The greedy places every block; then CP-SAT re-decides a neighbourhood (large neighbourhood
    search): the blocks the greedy placed badly plus the blocks it put on their candidate
    hosts, everything else staying as placed."""
    ctx = st.ctx
    in_wave = np.zeros(ctx.H, dtype=bool)
    in_wave[np.asarray(hosts, dtype=np.int64)] = True
    blocks, stop_vms = wave_blocks(st, hosts)
    budget = wave_budget(st, in_wave)
    short = np.flatnonzero((budget[: ctx.G] < 0).any(axis=1))
    if short.size:
        # Inflow only lowers the free capacity: the checker would reject this wave.
        groups = ", ".join(ctx.group_names[int(g)] for g in short[:3])
        why = f"headroom of {groups} breaks with this wave down, whatever its VMs do"
        return WaveResult([], [], [], [why], broken=True, solver_status="broken")
    if future is not None:
        future = future.copy()
    if landing is not None:
        landing = landing.copy()
    greedy = Greedy(st, in_wave, budget, future, late, landing)
    dests: list[int] = []
    for b in blocks:
        d = greedy.choose(b)
        if d >= 0:
            greedy.place(b, d)
        dests.append(d)
    status = "greedy"
    if not use_cpsat:
        bad = []
    elif len(blocks) <= SMALL_WAVE and small_cloud:
        bad = list(range(len(blocks)))  # small clouds: CP-SAT re-decides every destination
    else:
        bad = problems(st, blocks, dests, in_wave)
    if bad:
        nb = neighbourhood(st, blocks, dests, bad, in_wave, future, late)
        for i in reversed(nb):
            if dests[i] >= 0:
                greedy.unplace(blocks[i], dests[i])
        sub = [blocks[i] for i in nb]
        new, status = cpsat_assign(
            st,
            sub,
            in_wave,
            budget,
            future,
            late,
            [dests[i] for i in nb],
            params,
            dtime,
            landing,
        )
        for i, d in zip(nb, new, strict=True):
            if d >= 0:
                greedy.place(blocks[i], d)
            dests[i] = d
    failed = [b for b, d in zip(blocks, dests, strict=True) if d < 0]
    if failed:
        for b, d in zip(reversed(blocks), reversed(dests), strict=True):
            if d >= 0:
                for j in b.vms:
                    st.move(j, b.src)
        res = WaveResult([], [], failed, _why(st, failed, in_wave), solver_status=status)
        for b in failed:
            ok = candidates_mask(st, b, in_wave)
            room = int(np.all(st.model.free[ok] >= b.demand, axis=1).sum()) if ok.any() else 0
            if ok.any() and room <= len(failed):
                res.no_room = True  # (almost) every host it may use is too full
        return res
    res = WaveResult([], [], [], solver_status=status)
    names = ctx.host_names
    for b, d in zip(blocks, dests, strict=True):
        for j in b.vms:
            vm = ctx.inv.vms[j]
            res.migrations.append(
                Migration(vm.id, names[b.src], names[d], method_for(vm) or "cold")
            )
            if not st.upgraded[d]:
                res.double_moves += 1
            if ctx.group_of[d] != ctx.group_of[b.src]:
                res.cross_group += 1
    res.stops = [Stop(ctx.inv.vms[j].id, names[int(ctx.vm_host0[j])]) for j in stop_vms]
    st.upgraded[in_wave] = True
    return res


NEIGHBOURHOOD_BLOCKS = 400
SMALL_WAVE = 300  # blocks: up to this many, the whole wave is one CP-SAT model


def neighbourhood(
    st: PlacementState,
    blocks: list[Block],
    dests: list[int],
    bad: list[int],
    in_wave: BoolArray,
    future: IntArray | None,
    late: IntArray,
) -> list[int]:
    """The blocks CP-SAT re-decides: the badly placed ones, then the blocks the greedy put on
    the hosts those could use instead (their best few candidates), up to a size cap."""
    chosen = list(dict.fromkeys(bad))[:NEIGHBOURHOOD_BLOCKS]
    hosts: set[int] = set()
    groups: set[int] = set()
    for i in chosen:
        b = blocks[i]
        idx = np.flatnonzero(candidates_mask(st, b, in_wave))
        if dests[i] < 0:
            groups.update(int(g) for g in np.unique(st.ctx.group_of[idx]))
        if idx.size > CANDIDATES:
            s = score(st, b, idx, future, late)
            idx = idx[np.argsort(-s, kind="stable")[:CANDIDATES]]
        hosts.update(int(h) for h in idx)
    # A block without a destination may be short of its group's headroom rather than of room:
    # blocks free to leave that group, placed in it, are part of the neighbourhood too.
    ctx = st.ctx
    seen = set(chosen)
    for i, d in enumerate(dests):
        if len(chosen) >= NEIGHBOURHOOD_BLOCKS:
            break
        b = blocks[i]
        if d >= 0 and i not in seen and int(ctx.group_of[d]) in groups and not b.restricted:
            seen.add(i)
            chosen.append(i)
    on: dict[int, list[int]] = {}
    for i, d in enumerate(dests):
        if d in hosts:
            on.setdefault(d, []).append(i)
    for h in sorted(hosts):
        for i in on.get(h, []):
            if len(chosen) >= NEIGHBOURHOOD_BLOCKS:
                break
            if i not in seen:
                seen.add(i)
                chosen.append(i)
    return sorted(chosen)


def _apply(
    st: PlacementState, b: Block, dst: int, budget: IntArray, future: IntArray | None
) -> None:
    _account(st, b, dst, budget, future, +1)
    for j in b.vms:
        st.move(j, dst)


def _unapply(
    st: PlacementState, b: Block, dst: int, budget: IntArray, future: IntArray | None
) -> None:
    _account(st, b, dst, budget, future, -1)
    for j in b.vms:
        st.move(j, b.src)


def _account(
    st: PlacementState,
    b: Block,
    dst: int,
    budget: IntArray,
    future: IntArray | None,
    sign: int,
) -> None:
    ctx = st.ctx
    g = int(ctx.group_of[dst])
    if 0 <= g < ctx.G:
        budget[g] -= sign * b.demand
    gs = int(ctx.group_of[b.src])
    if future is not None and g != gs:
        if 0 <= g < ctx.G:
            future[g] -= sign * b.demand
        if 0 <= gs < ctx.G:
            future[gs] += sign * b.demand


def _why(st: PlacementState, failed: list[Block], in_wave: BoolArray) -> list[str]:
    ctx = st.ctx
    out = []
    for b in failed[:5]:
        vm = ctx.inv.vms[b.vms[0]]
        what = (
            f"VM {vm.name or vm.id}"
            if len(b.vms) == 1
            else (
                f"affinity group {ctx.server_groups[int(ctx.vm_group[b.vms[0]])].name} "
                f"({len(b.vms)} VMs)"
            )
        )
        ok = candidates_mask(st, b, in_wave)
        n_ok = int(ok.sum())
        fit = int(np.all(st.model.free[ok] >= b.demand, axis=1).sum()) if n_ok else 0
        out.append(
            f"{what} on {ctx.host_names[b.src]}: {n_ok} eligible host(s) outside the wave, "
            f"{fit} with room"
        )
    return out
