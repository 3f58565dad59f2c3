"""The planning problem as integer arrays, computed once from (inventory, policy).

Every phase of the CP-SAT planner (waves, destinations, explanations) and the baseline read this
instead of walking the inventory again. Rows follow `inventory.hosts`, columns `classes`, as in
`planner.capacity.CapacityModel` (whose effective capacities and usage it reuses).

Vocabulary: a host is *available* when it is a compute host, enabled and up (it may receive VMs
and counts towards headroom); *todo* hosts are those to upgrade; a VM is *stuck* when it cannot
move and the policy lets it be stopped in place (it stays on its host for the whole plan).
Headroom *groups* are the policy's scope groups (each AZ, or the cloud); compute hosts outside
every group (no AZ under an AZ scope) form one extra pseudo-group with no headroom rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from planner.capacity import BoolArray, CapacityModel, IntArray, scope_groups
from planner.inventory import VM, Inventory
from planner.placement import Signature, acceptance, signature
from planner.plan import Plan, Wave
from planner.policy import Policy
from planner.rules import FAMILIES, method, order
from planner.rules.base import PlanCheck, Violation
from planner.rules.method import method_for

__all__ = ["Context", "build_context", "method_for", "order_ok", "wave_limits_ok"]


@dataclass(frozen=True)
class HAGroupInfo:
    name: str
    hosts: IntArray  # todo hosts of the group that are available now (going down costs one)
    limit: int  # how many of them may be down in one wave


@dataclass(frozen=True)
class ServerGroupInfo:
    id: str
    name: str
    hard: bool
    anti: bool
    max_per_host: int
    members: IntArray  # VM indices


@dataclass
class Context:
    inv: Inventory
    policy: Policy
    model: CapacityModel  # the initial state; copy before changing it
    classes: tuple[str, ...]
    host_names: tuple[str, ...]
    cap: IntArray  # (H, C) effective capacity
    compute: BoolArray
    available: BoolArray  # compute, enabled and up
    upgraded0: BoolArray  # already at the target version
    todo: IntArray  # host indices to upgrade, in inventory order
    is_todo: BoolArray
    tier: IntArray  # order.FIRST, OTHER or LAST per host (meaningful for todo hosts)
    az_code: IntArray  # per host, index into az_names ("" for no AZ)
    az_names: tuple[str, ...]
    group_of: IntArray  # per host: headroom group index, G for the pseudo-group, -1 not compute
    group_names: tuple[str, ...]  # the G real groups
    rack_code: IntArray  # per host, -1 for no rack
    demand: IntArray  # (V, C)
    vm_host0: IntArray  # (V,) initial host
    stuck: BoolArray  # (V,) stopped in place, never moves
    movable_none: BoolArray  # (V,) migration none and stops not allowed: no plan can move it
    stuck_demand: IntArray  # (H, C)
    mov_demand: IntArray  # (H, C) demand of the VMs that must leave when the host goes down
    unpinned_demand: IntArray  # (H, C) part of mov_demand free to leave its headroom group
    vm_group: IntArray  # (V,) index into server_groups, -1 none
    server_groups: tuple[ServerGroupInfo, ...]
    ha: tuple[HAGroupInfo, ...]
    agg_mask: dict[str, BoolArray] = field(default_factory=dict)
    _mask_cache: dict[tuple[str | None, tuple[str, ...], int | None], BoolArray] = field(
        default_factory=dict
    )
    _pinned_cache: dict[tuple[str | None, tuple[str, ...], int | None], bool] = field(
        default_factory=dict
    )
    _pools: list[tuple[BoolArray, IntArray]] | None = None
    _forced: IntArray | None = None

    @property
    def H(self) -> int:
        return len(self.host_names)

    @property
    def C(self) -> int:
        return len(self.classes)

    @property
    def G(self) -> int:
        """Number of real headroom groups; index G is the pseudo-group."""
        return len(self.group_names)

    def static_ok(self, j: int) -> BoolArray:
        """Hosts VM j may ever run on: available, in its AZ, in one of its aggregates.
        Shared between VMs with the same pins; treat as read-only."""
        vm = self.inv.vms[j]
        place = acceptance(self.inv).mask(vm)
        key = (vm.az, _aggs(vm), None if place is None else id(place))
        mask = self._mask_cache.get(key)
        if mask is None:
            mask = self.available.copy()
            if vm.az is not None:
                mask &= np.array([n == vm.az for n in self.az_names], dtype=bool)[self.az_code]
            if vm.allowed_aggregates:
                agg = np.zeros(self.H, dtype=bool)
                for a in vm.allowed_aggregates:
                    if a in self.agg_mask:
                        agg |= self.agg_mask[a]
                mask &= agg
            for a in vm.forbidden_aggregates:
                if a in self.agg_mask:
                    mask &= ~self.agg_mask[a]
            if place is not None:  # the hosts Placement accepts (traits, units, provider type)
                mask &= place
            mask.setflags(write=False)
            self._mask_cache[key] = mask
        return mask

    def pools(self) -> list[tuple[BoolArray, IntArray]]:
        """(hosts, VMs) for every set of pins (AZ, aggregates) that restricts some VM, in a
        fixed order; VMs free to go anywhere are in none."""
        if self._pools is None:
            acc = acceptance(self.inv)
            keys: dict[tuple[str | None, tuple[str, ...], Signature | None], list[int]] = {}
            for j, vm in enumerate(self.inv.vms):
                place = signature(self.inv, vm) if acc.mask(vm) is not None else None
                pinned = vm.az is not None or vm.allowed_aggregates or vm.forbidden_aggregates
                if (pinned or place) and not self.stuck[j]:
                    keys.setdefault((vm.az, _aggs(vm), place), []).append(j)
            self._pools = [
                (self.static_ok(js[0]), np.asarray(js, dtype=np.int64))
                for _key, js in sorted(
                    keys.items(), key=lambda kv: (kv[0][0] or "", kv[0][1], repr(kv[0][2]))
                )
            ]
        return self._pools

    def forced_migrations(self) -> IntArray:
        """Per host, the VMs that start on it and are not stopped: they migrate in its wave."""
        if self._forced is None:
            self._forced = np.bincount(self.vm_host0[~self.stuck], minlength=self.H).astype(
                np.int64
            )
        return self._forced

    def pinned_to_group(self, j: int) -> bool:
        """True when every host VM j may run on lies in one headroom group."""
        vm = self.inv.vms[j]
        place = acceptance(self.inv).mask(vm)
        key = (vm.az, _aggs(vm), None if place is None else id(place))
        got = self._pinned_cache.get(key)
        if got is None:
            got = len(np.unique(self.group_of[self.static_ok(j)])) <= 1
            self._pinned_cache[key] = got
        return got


def _aggs(vm: VM) -> tuple[str, ...]:
    """A VM's aggregate pins as one key: the allowed ones, then `!` and the forbidden ones."""
    if not vm.forbidden_aggregates:
        return tuple(vm.allowed_aggregates)
    return (*vm.allowed_aggregates, "!", *vm.forbidden_aggregates)


def build_context(inv: Inventory, policy: Policy) -> Context:
    model = CapacityModel(inv)
    H, C, V = len(model.host_names), len(model.classes), len(inv.vms)
    target = policy.target_version
    upgraded0 = np.array([target is not None and h.version == target for h in inv.hosts], bool)
    todo_names = {h.name for h in method.to_upgrade(inv, policy)}
    is_todo = np.array([h.name in todo_names for h in inv.hosts], dtype=bool)
    first, last = order.selected(inv, policy)
    tier = np.array([order.tier_of(h.name, first, last) for h in inv.hosts], dtype=np.int64)
    az_names = tuple(sorted({h.az or "" for h in inv.hosts}))
    az_index = {a: i for i, a in enumerate(az_names)}
    az_code = np.array([az_index[h.az or ""] for h in inv.hosts], dtype=np.int64)
    group_names, group = scope_groups(inv, policy.headroom.scope)
    G = len(group_names)
    compute = model.compute.copy()
    group_of = np.where(compute, np.where(group >= 0, group, G), -1).astype(np.int64)
    racks = sorted({h.rack for h in inv.hosts if h.rack is not None})
    rack_index = {r: i for i, r in enumerate(racks)}
    rack_code = np.array(
        [rack_index[h.rack] if h.rack is not None else -1 for h in inv.hosts], dtype=np.int64
    )
    ways = [method.method_for(v, inv, policy) for v in inv.vms]
    stoppable = np.array([w is None and policy.allow_stop for w in ways], dtype=bool).reshape(V)
    movable_none = np.array([w is None and not policy.allow_stop for w in ways], dtype=bool)
    movable_none = movable_none.reshape(V)
    demand = model.demand
    vm_host0 = model.vm_host.copy()
    stuck_demand = np.zeros((H, C), dtype=np.int64)
    mov_demand = np.zeros((H, C), dtype=np.int64)
    if V:
        np.add.at(stuck_demand, vm_host0[stoppable], demand[stoppable])
        np.add.at(mov_demand, vm_host0[~stoppable], demand[~stoppable])
    aggs = sorted({a for h in inv.hosts for a in h.aggregates})
    agg_mask = {a: np.array([a in h.aggregates for h in inv.hosts], dtype=bool) for a in aggs}

    gids = [g.id for g in inv.server_groups]
    gindex = {g: i for i, g in enumerate(gids)}
    vm_group = np.array(
        [gindex.get(v.server_group, -1) if v.server_group else -1 for v in inv.vms],
        dtype=np.int64,
    ).reshape(V)
    sgs = tuple(
        ServerGroupInfo(
            id=g.id,
            name=g.name or g.id,
            hard=g.hard,
            anti=g.anti,
            max_per_host=max(1, g.max_server_per_host),
            members=np.flatnonzero(vm_group == i).astype(np.int64),
        )
        for i, g in enumerate(inv.server_groups)
    )
    host_index = model.host_index
    ha = []
    for g in inv.ha_groups:
        known = [h for h in g.hosts if h in host_index]
        unavailable = [h for h in known if not inv.host(h).available]
        # As the checker counts: hosts the inventory does not know count as available.
        spare = len(g.hosts) - len(unavailable) - g.min_available
        hosts = np.array(
            sorted(
                host_index[h] for h in known if inv.host(h).available and is_todo[host_index[h]]
            ),
            dtype=np.int64,
        )
        ha.append(HAGroupInfo(g.name, hosts, spare))

    ctx = Context(
        inv=inv,
        policy=policy,
        model=model,
        classes=model.classes,
        host_names=model.host_names,
        cap=model.cap,
        compute=compute,
        available=model.available.copy(),
        upgraded0=upgraded0,
        todo=np.flatnonzero(is_todo).astype(np.int64),
        is_todo=is_todo,
        tier=tier,
        az_code=az_code,
        az_names=az_names,
        group_of=group_of,
        group_names=tuple(group_names),
        rack_code=rack_code,
        demand=demand,
        vm_host0=vm_host0,
        stuck=stoppable,
        movable_none=movable_none,
        stuck_demand=stuck_demand,
        mov_demand=mov_demand,
        unpinned_demand=np.zeros((H, C), dtype=np.int64),
        vm_group=vm_group,
        server_groups=sgs,
        ha=tuple(ha),
        agg_mask=agg_mask,
    )
    unpinned = np.zeros((H, C), dtype=np.int64)
    for j in range(V):
        if stoppable[j]:
            continue
        # Free to leave: its hosts span groups, or lie outside its host's group (it must leave:
        # e.g. on a disabled host of an AZ with no other host up).
        ok = ctx.static_ok(j)
        if not ctx.pinned_to_group(j) or (
            ok.any() and int(group_of[ok][0]) != int(group_of[vm_host0[j]])
        ):
            unpinned[vm_host0[j]] += demand[j]
    ctx.unpinned_demand = unpinned
    return ctx


def wave_limits_ok(ctx: Context, wave: list[int]) -> bool:
    """Every rule family's test of a wave's hosts alone holds (`Family.hosts_ok`: the wave size
    limits, the HA groups, the cap on a wave's migrations as the inventory places its VMs)."""
    hosts = [ctx.inv.hosts[h] for h in wave]
    return all(f.hosts_ok(ctx.inv, ctx.policy, hosts) for f in FAMILIES if f.hosts_ok is not None)


def order_ok(ctx: Context, waves: list[list[int]]) -> bool:
    """The checker's order rule (policy.first before, policy.last after all others) holds."""
    plan = Plan(
        inventory_sha256="",
        policy=ctx.policy,
        waves=tuple(
            Wave(i + 1, tuple(ctx.host_names[h] for h in hs)) for i, hs in enumerate(waves)
        ),
    )
    out: list[Violation] = []
    assert order.FAMILY.plan is not None
    order.FAMILY.plan(PlanCheck(ctx.inv, plan, None), out)
    return not out
