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
from typing import Any

import numpy as np

from planner.capacity import BoolArray, IntArray
from planner.plan import Migration, Stop
from solver.context import method_for
from solver.params import SolveParams
from solver.placement_cpsat import cpsat_assign
from solver.placement_state import (
    CANDIDATES,
    PRESSURE_WEIGHT,
    Block,
    Landing,
    PlacementState,
    WaveResult,
    apply_block,
    candidates_mask,
    landed,
    landing_mask,
    pool_pressure,
    room_of,
    score,
    unapply_block,
    wave_blocks,
    wave_budget,
)
from solver.rules.base import WaveRule

__all__ = ["Block", "Landing", "PlacementState", "WaveResult", "place_wave"]


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
        rules: Sequence[WaveRule] = (),
    ) -> None:
        self.st, self.in_wave, self.budget, self.future, self.late = (
            st,
            in_wave,
            budget,
            future,
            late,
        )
        self.landing = landing
        self.rules = rules
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
        if (
            strict_future
            and self.future is not None
            and g != gs
            and g < ctx.G
            and np.any(self.future[g] < b.demand)
        ):
            return False
        if self.rules:
            here = np.array([h])
            return all(_allows(rule, b, here)[0] for rule in self.rules)
        return True

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
        for rule in self.rules:
            ok &= _allows(rule, b, idx)
        idx = idx[ok]
        if idx.size == 0:
            return -1
        return int(idx[int(np.argmax(masked[idx]))])

    def place(self, b: Block, h: int) -> None:
        apply_block(self.st, b, h, self.budget, self.future)
        self._land(b, h, +1)
        for rule in self.rules:
            rule.take(b, h, +1)
        self.room[h] = room_of(self.st, np.array([h]))[0]

    def unplace(self, b: Block, h: int) -> None:
        unapply_block(self.st, b, h, self.budget, self.future)
        self._land(b, h, -1)
        for rule in self.rules:
            rule.take(b, h, -1)
        self.room[h] = room_of(self.st, np.array([h]))[0]

    def _land(self, b: Block, h: int, sign: int) -> None:
        ctx = self.st.ctx
        if self.landing is not None and landed(ctx, self.landing, b, h):
            self.landing.need[int(ctx.group_of[h])] -= sign * b.demand


def _allows(rule: WaveRule, b: Block, hosts: IntArray) -> BoolArray:
    allowed = rule.allows(b, hosts)
    return np.ones(len(hosts), dtype=bool) if allowed is None else allowed


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
    rules: Sequence[WaveRule] = (),
) -> WaveResult:
    """Evacuate `hosts` (one wave) and apply the moves to `st`; on failure nothing is applied
    and `failed` names the blocks without a destination. `rules`: the rule families' parts in
    this wave (`solver.rules`, `WaveRule`), beyond capacity, headroom and server groups.

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
    for rule in rules:
        broken = rule.broken()
        if broken is not None:
            return WaveResult([], [], [], [broken], broken=True, solver_status="broken")
    if future is not None:
        future = future.copy()
    if landing is not None:
        landing = landing.copy()
    greedy = Greedy(st, in_wave, budget, future, late, landing, rules)
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
            rules,
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
                Migration(
                    vm.id, names[b.src], names[d], method_for(vm, ctx.inv, ctx.policy) or "cold"
                )
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
