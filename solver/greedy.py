"""A greedy constructive planner: fast, never optimal, always checked.

It forms waves one at a time from an ordered list of hosts (policy.first, then the emptiest hosts,
then policy.last), adding a host to the current wave only if every VM on it finds a destination
(already-upgraded hosts first, so VMs move once), the wave's size limits and HA groups allow it,
and headroom still holds with the wave's hosts down. It is the CP-SAT solver's hint and fallback.

The rules are the families' greedy hooks (`solver.rules`, `GreedyHooks`), called in the
registry's order: whether a host may join the wave, whether the wave keeps them once its VMs
have moved, and which hosts a VM may go to.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from planner.capacity import BoolArray, CapacityModel, headroom, scope_groups
from planner.errors import InfeasibleError
from planner.inventory import VM, Inventory
from planner.plan import Migration, Plan, Stop, Wave
from planner.policy import Policy
from planner.rules import order
from planner.rules.method import method_for, stoppable, to_upgrade, why_not
from solver.rules import greedy_hooks
from solver.rules.base import Filling


class TimeLimitReached(InfeasibleError):
    """The greedy planner stopped at its deadline (the caller's time limit): not a proof."""


@dataclass
class Placement:
    """A host's evacuation, tentatively applied to the model (undo with `revert`)."""

    moves: list[tuple[int, int, int]] = field(default_factory=list)  # (vm, src, dst)
    stops: list[int] = field(default_factory=list)
    failure: str | None = None


class GreedyState:
    """Working state shared by the greedy planner and the solver's repair steps."""

    def __init__(self, inv: Inventory, policy: Policy) -> None:
        self.inv = inv
        self.policy = policy
        self.model = CapacityModel(inv)
        m = self.model
        H = len(m.host_names)
        target = policy.target_version
        self.upgraded: BoolArray = np.array(
            [target is not None and h.version == target for h in inv.hosts], dtype=bool
        )
        self.dest_ok: BoolArray = m.available.copy()  # compute, enabled, up
        az_names = sorted({h.az or "" for h in inv.hosts})
        self.az_code = np.array([az_names.index(h.az or "") for h in inv.hosts], dtype=np.int64)
        self.az_index = {a: i for i, a in enumerate(az_names)}
        aggs = sorted({a for h in inv.hosts for a in h.aggregates})
        self.agg_mask = {
            a: np.array([a in h.aggregates for h in inv.hosts], dtype=bool) for a in aggs
        }
        # Group bookkeeping: members per host for hard anti-affinity.
        self.group_count: dict[str, Counter[int]] = defaultdict(Counter)
        for j, v in enumerate(inv.vms):
            if v.server_group is not None:
                self.group_count[v.server_group][int(m.vm_host[j])] += 1
        self.vms_on: list[list[int]] = [[] for _ in range(H)]
        for j in range(len(inv.vms)):
            self.vms_on[int(m.vm_host[j])].append(j)
        cap = m.cap.astype(np.float64)
        self.inv_cap = np.where(cap > 0, 1.0 / np.maximum(cap, 1.0), 0.0)
        self._eligible = [h.eligible for h in greedy_hooks(inv, policy) if h.eligible is not None]

    # -- moves --------------------------------------------------------------------------------
    def move(self, j: int, dst: int) -> None:
        src = int(self.model.vm_host[j])
        gid = self.inv.vms[j].server_group
        if gid is not None:
            self.group_count[gid][src] -= 1
            self.group_count[gid][dst] += 1
        self.vms_on[src].remove(j)
        self.vms_on[dst].append(j)
        self.model.move(j, dst)

    def revert(self, p: Placement) -> None:
        for j, src, _dst in reversed(p.moves):
            self.move(j, src)

    # -- destinations -------------------------------------------------------------------------
    def eligible(self, vm: VM, j: int, in_wave: BoolArray) -> BoolArray:
        """Hosts VM j may go to with the hosts of `in_wave` down: every family's say."""
        ok: BoolArray | None = None  # every host
        for narrow in self._eligible:
            ok = narrow(self, vm, j, in_wave, ok)
        return ok if ok is not None else np.ones(len(self.model.host_names), dtype=bool)

    def group_room(self, in_wave: BoolArray) -> GroupRoom:
        """Free and required headroom per scope group with the wave down, to steer evacuees
        towards groups where headroom is ample (kept up to date by `GroupRoom.take`)."""
        names, group = scope_groups(self.inv, self.policy.headroom.scope)
        rows = headroom(self.model, self.policy.headroom, in_wave)
        gi = {n: i for i, n in enumerate(names)}
        ci = self.model.class_index
        free = np.zeros((len(names), len(self.model.classes)))
        req = np.zeros_like(free)
        for r in rows:
            free[gi[r.group], ci[r.rc]] = r.free
            req[gi[r.group], ci[r.rc]] = r.required
        # Look ahead: each group must still take its largest not-yet-upgraded host down later,
        # and with its VMs staying in the group that costs that host's whole capacity.
        pending = self.dest_ok & ~in_wave & ~self.upgraded
        for g in range(len(names)):
            sel = pending & (group == g)
            if sel.any():
                req[g] += self.model.cap[sel].max(axis=0)
        return GroupRoom(free, req, group)

    def choose(
        self,
        j: int,
        ok: BoolArray,
        src: int,
        demand: npt.NDArray[np.int64],
        room_by_group: GroupRoom | None = None,
    ) -> int:
        """Best destination: upgraded hosts first (VMs move once), then the scope group with the
        most headroom, then the emptiest after placement (balance), then the same AZ.
        -1 when none fits."""
        m = self.model
        fits = ok & np.all(m.free >= demand, axis=1)
        idx = np.flatnonzero(fits)
        if idx.size == 0:
            return -1
        after = (m.free[idx] - demand) * self.inv_cap[idx]
        room = after.min(axis=1)
        score = 4.0 * self.upgraded[idx] + room + 0.25 * (self.az_code[idx] == self.az_code[src])
        if room_by_group is not None:
            # A group short of its look-ahead headroom repels evacuees, upgraded or not.
            s = room_by_group.slack(demand)[idx]
            score = score + 3.0 * s + 10.0 * np.minimum(s, 0.0)
        return int(idx[int(np.argmax(score))])


@dataclass
class GroupRoom:
    """Headroom free/required per scope group (G x C) and each host's group (-1: none)."""

    free: npt.NDArray[np.float64]
    required: npt.NDArray[np.float64]
    host_group: npt.NDArray[np.int64]

    def slack(self, demand: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """Per host: its group's worst-class slack after taking `demand`, in [-1, 1]."""
        after = self.free - demand
        s = np.where(self.free > 0, (after - self.required) / np.maximum(self.free, 1.0), -1.0)
        per_group = np.clip(s.min(axis=1), -1.0, 1.0) if s.size else np.zeros(0)
        out = np.full(len(self.host_group), -1.0)
        has = self.host_group >= 0
        out[has] = per_group[self.host_group[has]]
        return out

    def take(self, host: int, demand: npt.NDArray[np.int64]) -> None:
        g = int(self.host_group[host])
        if g >= 0:
            self.free[g] -= demand


def evacuate(st: GreedyState, host: int, in_wave: BoolArray) -> Placement:
    """Find destinations for every VM on `host`, applying the moves; on failure revert them."""
    inv, m = st.inv, st.model
    p = Placement()
    vms = sorted(st.vms_on[host], key=lambda j: -float((m.demand[j] * st.inv_cap[host]).max()))
    placed_block: dict[str, int] = {}
    rooms = st.group_room(in_wave) if st.policy.headroom.scope == "az" else None
    for j in vms:
        if int(m.vm_host[j]) != host:
            continue  # moved already with its affinity block
        vm = inv.vms[j]
        kind = method_for(vm, inv, st.policy)
        if kind is None:
            if st.policy.allow_stop:
                p.stops.append(j)
                continue
            why = why_not(vm, inv, st.policy)
            p.failure = f"VM {vm.name or vm.id} cannot move ({why}), allow_stop is off"
            break
        gid = vm.server_group
        group = inv.group(gid) if gid is not None else None
        if group is not None and group.hard and not group.anti:
            dst = _affinity_destination(st, j, gid, host, in_wave, placed_block)
        else:
            dst = st.choose(j, st.eligible(vm, j, in_wave), host, m.demand[j], rooms)
        if dst < 0:
            p.failure = f"no destination for VM {vm.name or vm.id} from {m.host_names[host]}"
            break
        block = [j]
        if group is not None and group.hard and not group.anti:
            block = [k for k in st.vms_on[host] if inv.vms[k].server_group == gid]
        for k in block:
            st.move(k, dst)
            p.moves.append((k, host, dst))
            if rooms is not None:
                rooms.take(dst, m.demand[k])
    if p.failure:
        st.revert(p)
        p.moves.clear()
        p.stops.clear()
    return p


def _affinity_destination(
    st: GreedyState, j: int, gid: str | None, host: int, in_wave: BoolArray, placed: dict[str, int]
) -> int:
    """Members of a hard affinity group go where the others are, or together to one host."""
    assert gid is not None
    m = st.model
    elsewhere = {h for h, n in st.group_count[gid].items() if n > 0 and h != host}
    members = [k for k in st.vms_on[host] if st.inv.vms[k].server_group == gid]
    demand = m.demand[members].sum(axis=0)
    ok = st.eligible(st.inv.vms[j], j, in_wave)
    if elsewhere:
        mask = np.zeros_like(ok)
        for h in elsewhere:
            mask[h] = True
        ok = ok & mask
    for k in members:  # every member's own pins apply to the shared host
        ok = ok & st.eligible(st.inv.vms[k], k, in_wave)
    return st.choose(j, ok, host, demand)


def host_order(
    inv: Inventory,
    policy: Policy,
    st: GreedyState,
    early: list[str] = (),  # type: ignore[assignment]
) -> list[tuple[int, int]]:
    """(tier, host index) for every host to upgrade: policy.first (tier 0), others (1), policy.last
    (2); within a tier, the hosts of `early` in its order, then the hosts with the fewest VMs to
    move, then the least used."""
    rank = {n: k for k, n in enumerate(early)}
    first, last = order.selected(inv, policy)
    todo = {h.name for h in to_upgrade(inv, policy)}
    m = st.model
    util = m.utilisation().max(axis=1) if m.classes else np.zeros(len(m.host_names))
    out = []
    for i, h in enumerate(inv.hosts):
        if h.name not in todo:
            continue
        tier = order.tier_of(h.name, first, last)
        key = (rank.get(h.name, len(rank)), len(st.vms_on[i]), float(util[i]), h.name)
        out.append((tier, key, i))
    out.sort()
    return [(t, i) for t, _, i in out]


class GreedyWave(Filling):
    """The wave the greedy planner is filling: the hosts in it (`in_wave`, `names`), the hosts
    its VMs went to (`received`), its migrations and stops so far."""

    def __init__(self, st: GreedyState) -> None:
        super().__init__(st.inv, st.policy)
        self.st = st
        self.in_wave: BoolArray = np.zeros(len(st.model.host_names), dtype=bool)
        self.names: set[str] = set()
        self.received: set[int] = set()
        self.migrations_: list[Migration] = []
        self.stops: list[Stop] = []
        self.last_failure = ""

    def migrations(self, h: int) -> int:
        """The VMs on host h now that would migrate (not stop) if it joined."""
        vms = self.st.inv.vms
        return sum(1 for j in self.st.vms_on[h] if not stoppable(self.policy, vms[j], self.st.inv))


# When no host of those left can go down, the greedy tries again with them first (within their
# tier), up to this many more times: counted, so the answer is the same on any machine.
RESTARTS = 4
# Then it repairs around the hosts that blocked: the best partial plan (most hosts upgraded) keeps
# its first waves, the last k are undone and formed again with the blocking hosts first and the
# undone ones in a seeded order (k = 1, 2, 3, 5, 8, ... and again); a rebuild that upgrades more
# hosts becomes the best. Bounded by work, counted in hosts evacuated (this many per host to
# upgrade), never by the clock: same seed, same plan on any machine under any load.
REPAIR_WORK = 50


class _Stuck(InfeasibleError):
    """No host of those left (`left`, names) can go down; `waves` were formed before."""

    def __init__(self, reasons: list[str], left: list[str], waves: list[Wave]) -> None:
        super().__init__(reasons, proven=False)
        self.left = left
        self.waves = waves


def greedy_plan(
    inv: Inventory,
    policy: Policy,
    *,
    inventory_sha256: str = "",
    deadline: float | None = None,
    restarts: int = RESTARTS,
    repair_work: int = REPAIR_WORK,
    seed: int = 0,
) -> Plan:
    """Plan with the greedy rules above. Raises InfeasibleError when some host can never go, and
    TimeLimitReached when `time.monotonic()` passes `deadline` before the plan is complete.

    When the hosts left cannot go down (e.g. headroom would break: the order spent the room they
    need), it repairs the partial plan around the blocking hosts (`REPAIR_WORK`, `seed`), and
    starts again with those hosts first within their tier (the hosts that blocked the last try
    go early, where the room still is), up to `restarts` more times; the better plan is kept.
    When both fail, it repairs the best partial plan with the work left."""
    work = _Work()
    try:
        return _greedy_once(inv, policy, inventory_sha256, deadline, [], work=work)
    except _Stuck as exc:
        first = exc
    work.at_first = work.evacuations
    budget = repair_work * max(1, len(to_upgrade(inv, policy)))
    # Around the first order's partial plan (its early waves, the emptiest hosts, kept: few
    # VMs move twice), with half the work; then other host orders from scratch; the better
    # plan (fewer waves, then migrations) is kept.
    near, repairs, best = _repair(
        inv, policy, inventory_sha256, deadline, first, work, budget // 2, seed
    )
    early: list[str] = []
    others = 0
    far: Plan | None = None
    last = first
    while others < restarts:
        new = [n for n in last.left if n not in early]
        if not new:
            break
        early = new + early
        others += 1
        try:
            far = _greedy_once(inv, policy, inventory_sha256, deadline, early, work=work)
            break
        except _Stuck as exc:
            last = exc
            best = exc if len(exc.left) < len(best.left) else best
        except TimeLimitReached:
            if near is not None:
                return near  # the plan found before the clock ran out
            raise
    if near is None and far is None:
        left = budget - (work.evacuations - work.at_first)
        near, more, best = _repair(inv, policy, inventory_sha256, deadline, best, work, left, seed)
        repairs += more
    found = [x for x in (near, far) if x is not None]
    if found:
        return min(found, key=_rank)
    tries = f" (nor in {others} other host order(s))" if others else ""
    if repairs:
        tries += (
            f"; {repairs} repair(s) around the blocking hosts got as far as {len(best.left)} "
            "host(s) left"
        )
    raise InfeasibleError([first.reasons[0] + tries, *first.reasons[1:]], proven=False)


def _rank(plan: Plan) -> tuple[int, int]:
    """Fewest waves, then fewest migrations."""
    return len(plan.waves), sum(len(w.migrations) for w in plan.waves)


@dataclass
class _Work:
    """Hosts evacuated (tried) so far: the greedy's deterministic measure of work."""

    evacuations: int = 0
    at_first: int = 0  # evacuations when the first host order got stuck


def _repair(
    inv: Inventory,
    policy: Policy,
    sha: str,
    deadline: float | None,
    best: _Stuck,
    work: _Work,
    budget: int,
    seed: int,
) -> tuple[Plan | None, int, _Stuck]:
    """Large-neighbourhood search around the best partial plan: undo its last k waves, form
    them again with the blocking hosts first and the undone hosts in a seeded order; keep a
    rebuild that leaves fewer hosts. Stops at a plan or when `work` passes `budget`."""
    import random

    rng = random.Random(seed)
    start = work.evacuations
    repairs = 0
    steps = (1, 2, 3, 5, 8, 13, 21)
    k_at = 0
    while work.evacuations - start < budget and best.waves:
        k = min(steps[k_at % len(steps)], len(best.waves))
        k_at += 1
        keep = best.waves[: len(best.waves) - k]
        undone = [h for w in best.waves[len(keep) :] for h in w.hosts]
        rng.shuffle(undone)
        early = list(best.left) + undone
        repairs += 1
        try:
            plan = _greedy_once(inv, policy, sha, deadline, early, prefix=keep, work=work)
            return plan, repairs, best
        except _Stuck as exc:
            if len(exc.left) < len(best.left):
                best, k_at = exc, 0  # a better partial plan: search around it, near its end
    return None, repairs, best


def _replay(st: GreedyState, prefix: list[Wave]) -> None:
    """Apply waves already formed to a fresh state: their moves made, their hosts upgraded."""
    m = st.model
    vi, hi = m.vm_index, m.host_index
    for w in prefix:
        for mig in w.migrations:
            st.move(vi[mig.vm], hi[mig.dst])
        for h in w.hosts:
            st.upgraded[hi[h]] = True


def _greedy_once(
    inv: Inventory,
    policy: Policy,
    inventory_sha256: str,
    deadline: float | None,
    early: list[str],
    *,
    prefix: list[Wave] | None = None,
    work: _Work | None = None,
) -> Plan:
    st = GreedyState(inv, policy)
    m = st.model
    waves: list[Wave] = list(prefix or ())
    _replay(st, waves)
    gone = {h for w in waves for h in w.hosts}
    remaining = [
        (t, i) for t, i in host_order(inv, policy, st, early) if m.host_names[i] not in gone
    ]
    nobody_down = np.zeros(len(m.host_names), dtype=bool)
    broken = [r for r in headroom(m, policy.headroom, nobody_down) if not r.ok]
    if broken:
        raise InfeasibleError(
            [
                f"{r.group}: headroom is already broken before any host goes down: {r.rc} free "
                f"{r.free} < {r.required} required"
                for r in broken
            ]
        )
    while remaining:
        gw = _fill_wave(st, remaining, len(waves), deadline, work)
        if not gw.names:
            raise _Stuck(
                [
                    f"greedy planner: no host of the remaining {len(remaining)} can go down: "
                    f"{gw.last_failure or 'limits'}"
                ],
                [m.host_names[i] for _, i in remaining],
                waves,
            )
        st.upgraded |= gw.in_wave
        waves.append(
            Wave(len(waves) + 1, tuple(sorted(gw.names)), tuple(gw.migrations_), tuple(gw.stops))
        )
    return Plan(
        inventory_sha256=inventory_sha256,
        policy=policy,
        waves=tuple(waves),
        generator={"name": "greedy"},
    )


def _fill_wave(
    st: GreedyState,
    remaining: list[tuple[int, int]],
    done: int,
    deadline: float | None,
    work: _Work | None = None,
) -> GreedyWave:
    """One wave: the hosts of `remaining` (taken out of it) that every family lets join, each
    with its VMs moved; `done` waves came before."""
    inv, m = st.inv, st.model
    hooks = greedy_hooks(st.inv, st.policy)
    fills = [h.fill for h in hooks]
    closes = [f.closed for f in fills if f.closed is not None]
    # each family's refusals, the shared one first, in the registry's order
    refusals = [r for h in hooks for r in (h.fill.refuses, h.refuses) if r is not None]
    afters = [h.after for h in hooks if h.after is not None]
    gw = GreedyWave(st)
    for fill in fills:
        if fill.start is not None:
            fill.start(gw)
    for tier, i in list(remaining):
        if any(closed(gw, tier) for closed in closes):
            break
        if deadline is not None and time.monotonic() > deadline:
            raise TimeLimitReached(
                [
                    f"greedy planner: stopped at the time limit after {done} wave(s), "
                    f"{len(remaining)} host(s) still to place (not a proof; allow more time)"
                ]
            )
        reject = next((r for refuses in refusals if (r := refuses(gw, i, tier)) is not None), None)
        p = Placement()
        if reject is None:
            gw.in_wave[i] = True
            p = evacuate(st, i, gw.in_wave)
            if work is not None:
                work.evacuations += 1
            if p.failure:
                reject = p.failure
            else:
                reject = next((r for after in afters if (r := after(gw, i)) is not None), None)
                if reject is not None:
                    st.revert(p)
            if reject is not None:
                gw.in_wave[i] = False
        if reject is not None:
            gw.last_failure = reject or gw.last_failure
            for fill in fills:
                if fill.refused is not None:
                    fill.refused(gw, i, tier)
            continue
        gw.names.add(inv.hosts[i].name)
        for fill in fills:
            if fill.joined is not None:
                fill.joined(gw, i)
        remaining.remove((tier, i))
        for j, src, dst in p.moves:
            gw.received.add(dst)
            vm = inv.vms[j]
            kind = method_for(vm, inv, st.policy) or "cold"
            gw.migrations_.append(Migration(vm.id, m.host_names[src], m.host_names[dst], kind))
        gw.stops.extend(Stop(inv.vms[j].id, inv.hosts[i].name) for j in p.stops)
    return gw
