"""The placement phase's state and vocabulary (`solver.placement`): blocks, where every VM is,
the budgets of a wave (headroom exact for it, planned for the later ones) and the preference
among destinations that the greedy pass and CP-SAT share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planner.capacity import BoolArray, IntArray, headroom
from planner.placement import acceptance
from planner.plan import Migration, Stop
from solver.context import Context

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
    pinned = vm.az is not None or bool(vm.allowed_aggregates or vm.forbidden_aggregates)
    return pinned or acceptance(ctx.inv).mask(vm) is not None


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


def apply_block(
    st: PlacementState, b: Block, dst: int, budget: IntArray, future: IntArray | None
) -> None:
    _account(st, b, dst, budget, future, +1)
    for j in b.vms:
        st.move(j, dst)


def unapply_block(
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
