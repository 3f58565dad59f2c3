"""A greedy constructive planner: fast, never optimal, always checked.

It forms waves one at a time from an ordered list of hosts (policy.first, then the emptiest hosts,
then policy.last), adding a host to the current wave only if every VM on it finds a destination
(already-upgraded hosts first, so VMs move once), the wave's size limits and HA groups allow it,
and headroom still holds with the wave's hosts down. It is the CP-SAT solver's hint and fallback.
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
from planner.policy import Policy, select_hosts


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
        ok: BoolArray = self.dest_ok & ~in_wave
        if vm.az is not None:
            ok = ok & (self.az_code == self.az_index.get(vm.az, -1))
        if vm.allowed_aggregates:
            agg = np.zeros_like(ok)
            for a in vm.allowed_aggregates:
                if a in self.agg_mask:
                    agg |= self.agg_mask[a]
            ok = ok & agg
        gid = vm.server_group
        if gid is not None:
            g = self.inv.group(gid)
            if g.hard and g.anti:
                for h, n in self.group_count[gid].items():
                    if n >= g.max_server_per_host:
                        ok[h] = False
        return ok

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


def method_for(vm: VM) -> str | None:
    """live, cold, or None when the VM cannot move (migration none)."""
    if vm.migration == "none":
        return None
    if vm.migration == "live" and vm.status == "ACTIVE":
        return "live"
    return "cold"


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
        kind = method_for(vm)
        if kind is None:
            if st.policy.allow_stop:
                p.stops.append(j)
                continue
            p.failure = f"VM {vm.name or vm.id} cannot migrate (migration none), allow_stop is off"
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


def host_order(inv: Inventory, policy: Policy, st: GreedyState) -> list[tuple[int, int]]:
    """(tier, host index) for every host to upgrade: policy.first (tier 0), others (1), policy.last
    (2); within a tier, hosts with the fewest VMs to move first, then the least used."""
    first = select_hosts(inv, policy.first)
    last = select_hosts(inv, policy.last)
    todo = {h.name for h in inv.hosts_to_upgrade(policy.target_version)}
    m = st.model
    util = m.utilisation().max(axis=1) if m.classes else np.zeros(len(m.host_names))
    out = []
    for i, h in enumerate(inv.hosts):
        if h.name not in todo:
            continue
        tier = 0 if h.name in first else 2 if h.name in last else 1
        out.append((tier, len(st.vms_on[i]), float(util[i]), h.name, i))
    out.sort()
    return [(t, i) for t, _, _, _, i in out]


def _headroom_ok(st: GreedyState, in_wave: BoolArray) -> bool:
    return all(r.ok for r in headroom(st.model, st.policy.headroom, in_wave))


def _ha_ok(inv: Inventory, wave_names: set[str]) -> bool:
    for g in inv.ha_groups:
        avail = sum(
            1 for h in g.hosts if h not in wave_names and inv.has_host(h) and inv.host(h).available
        )
        if avail < g.min_available:
            return False
    return True


def greedy_plan(
    inv: Inventory,
    policy: Policy,
    *,
    inventory_sha256: str = "",
    deadline: float | None = None,
) -> Plan:
    """Plan with the greedy rules above. Raises InfeasibleError when some host can never go, and
    TimeLimitReached when `time.monotonic()` passes `deadline` before the plan is complete."""
    st = GreedyState(inv, policy)
    m = st.model
    order = host_order(inv, policy, st)
    remaining = list(order)
    waves: list[Wave] = []
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
        in_wave = np.zeros(len(m.host_names), dtype=bool)
        names: set[str] = set()
        received: set[int] = set()
        per_az: Counter[str | None] = Counter()
        per_rack: Counter[str | None] = Counter()
        migrations: list[Migration] = []
        stops: list[Stop] = []
        blocked_tier: int | None = None
        last_failure = ""
        for tier, i in list(remaining):
            if len(names) >= policy.max_hosts_per_wave:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeLimitReached(
                    [
                        f"greedy planner: stopped at the time limit after {len(waves)} wave(s), "
                        f"{len(remaining)} host(s) still to place (not a proof; allow more time)"
                    ]
                )
            if blocked_tier is not None and tier > blocked_tier:
                break  # a host of an earlier tier waits for a later wave: keep the order
            h = inv.hosts[i]
            reject = _limits_reject(policy, h.az, h.rack, per_az, per_rack) or i in received
            if not reject and not _ha_ok(inv, names | {h.name}):
                reject = True
                last_failure = f"{h.name}: HA group would fall below min_available"
            p = Placement()
            if not reject:
                in_wave[i] = True
                p = evacuate(st, i, in_wave)
                if p.failure:
                    reject = True
                    last_failure = p.failure
                elif not _headroom_ok(st, in_wave):
                    st.revert(p)
                    reject = True
                    last_failure = f"{h.name}: headroom would break"
                if reject:
                    in_wave[i] = False
            if reject:
                if blocked_tier is None or tier < blocked_tier:
                    blocked_tier = tier
                continue
            names.add(h.name)
            per_az[h.az] += 1
            per_rack[h.rack] += 1
            remaining.remove((tier, i))
            for j, src, dst in p.moves:
                received.add(dst)
                vm = inv.vms[j]
                kind = method_for(vm) or "cold"
                migrations.append(Migration(vm.id, m.host_names[src], m.host_names[dst], kind))  # type: ignore[arg-type]
            stops.extend(Stop(inv.vms[j].id, h.name) for j in p.stops)
        if not names:
            raise InfeasibleError(
                [
                    f"greedy planner: no host of the remaining {len(remaining)} can go down: "
                    f"{last_failure or 'limits'}"
                ]
            )
        st.upgraded |= in_wave
        waves.append(Wave(len(waves) + 1, tuple(sorted(names)), tuple(migrations), tuple(stops)))
    return Plan(
        inventory_sha256=inventory_sha256,
        policy=policy,
        waves=tuple(waves),
        generator={"name": "greedy"},
    )


def _limits_reject(
    policy: Policy,
    az: str | None,
    rack: str | None,
    per_az: Counter[str | None],
    per_rack: Counter[str | None],
) -> bool:
    az_limit = policy.max_hosts_per_wave_per_az
    rack_limit = policy.max_hosts_per_wave_per_rack
    return (az_limit is not None and az is not None and per_az[az] >= az_limit) or (
        rack_limit is not None and rack is not None and per_rack[rack] >= rack_limit
    )
