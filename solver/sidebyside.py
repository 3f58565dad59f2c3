"""The side-by-side planner (`rollwave plan --mode side-by-side`): a greedy, wave by wave.

Wave 1 frees the new controllers (the `controllers` emptiest compute hosts that can be freed)
and, while the old cloud's headroom holds, the first new computes, by live (or cold) migration
inside the old cloud. Every later wave takes up to max_hosts_per_wave more hosts of the old
cloud, emptiest first; each VM on them crosses into a compute of the new cloud when one has room
(with the new cloud's headroom kept), else moves inside the old cloud (a VM that will cross
later: moved twice). At the wave's end its hosts join the new cloud as computes. The old
controllers retire once the old cloud is empty. A host is taken into a wave only if every VM
on it is placed and both clouds keep their headroom; the checker re-judges the whole plan.

Objectives, in order: fewest waves (each wave as full as the rules allow), fewest VMs moved
twice (cross first, moves inside the old cloud only when nothing in the new cloud fits), total
downtime (every VM crosses exactly once, so it is the same for every plan of the same moves).
Pre-checks prove the plain impossibilities (`precheck`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from planner.capacity import BoolArray, CapacityModel, headroom
from planner.errors import InfeasibleError
from planner.inventory import VM, Host, Inventory
from planner.plan import CROSS_CLOUD, HostRole, Method, Migration, Plan, Wave
from planner.policy import Policy
from planner.rules import FAMILIES
from planner.rules.method import method_for
from planner.sidebyside import MIN_NEW_CONTROLLERS


@dataclass(frozen=True)
class SideBySideOptions:
    controllers: int = MIN_NEW_CONTROLLERS
    az_map: Mapping[str, str] | None = None
    seed: int = 0
    # VMs whose live migration is predicted not to finish (the migration model's estimates,
    # computed by the caller): a move inside the old cloud is cold for them.
    cold: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SideBySideOutcome:
    plan: Plan
    metrics: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Pre-checks and lower bounds
# ---------------------------------------------------------------------------------------------
def precheck(inv: Inventory, policy: Policy, opts: SideBySideOptions) -> None:
    """Raise `InfeasibleError` (proven) when no side-by-side plan can exist."""
    reasons: list[str] = []
    blame: list[dict[str, Any]] = []
    at_target = [h.name for h in inv.hosts if h.name not in _movers(inv, policy)]
    if at_target:
        reasons.append(
            f"{len(at_target)} host(s) already run the target version {policy.target_version} "
            f"({', '.join(at_target[:5])}): side by side moves every host into the new cloud "
            "(set target_version to the new release, which no host runs yet)"
        )
    if policy.max_hosts_per_wave < opts.controllers:
        reasons.append(
            f"the {opts.controllers} new controllers join in one wave (an HA group from the "
            f"start) but max_hosts_per_wave is {policy.max_hosts_per_wave}"
        )
        blame.append(
            {
                "key": "size",
                "rule": f"max_hosts_per_wave {policy.max_hosts_per_wave}",
                "relax": f"max_hosts_per_wave {opts.controllers} (or fewer new controllers)",
                "relaxing_alone": None,
                "numbers": None,
                "one_step": None,
            }
        )
    short = controller_capacity_short(inv, policy, opts.controllers)
    if short:
        reasons.append(short)
        blame.append(
            {
                "key": "headroom",
                "rule": f"N+{policy.headroom.failures} headroom in the old cloud",
                "relax": "add spare hosts, or a lower headroom.failures while the controllers "
                "are freed",
                "relaxing_alone": None,
                "numbers": None,
                "one_step": None,
            }
        )
    tail = tail_short(inv, policy)
    if tail:
        reasons.append(tail)
        blame.append(
            {
                "key": "size",
                "rule": f"max_hosts_per_wave {policy.max_hosts_per_wave} with N+"
                f"{policy.headroom.failures} in the old cloud",
                "relax": "a higher max_hosts_per_wave (the old cloud's last hosts leave "
                "together), spare hosts in the old cloud, or a lower headroom.failures",
                "relaxing_alone": None,
                "numbers": None,
                "one_step": None,
            }
        )
    if reasons:
        raise InfeasibleError(reasons, proven=True, blame=blame)


def controller_capacity_short(inv: Inventory, policy: Policy, controllers: int) -> str | None:
    """Why `controllers` compute hosts cannot be freed while the old cloud keeps N+k, whichever
    hosts are chosen (None: this proof does not apply). For any choice, the old cloud keeps at
    most its capacity minus the `controllers` smallest hosts', and needs its VMs' usage plus at
    least the hosts ranked controllers+1 .. controllers+k by size (scope az or cloud: the sum
    over AZs of their k largest is at least the cloud's)."""
    model = CapacityModel(inv)
    avail = model.available
    k = policy.headroom.failures
    n = int(avail.sum())
    if n < controllers:
        return (
            f"only {n} available compute host(s); the new control plane needs {controllers} "
            "freed hosts"
        )
    for c, rc in enumerate(model.classes):
        caps = np.sort(model.cap[avail, c])  # ascending
        used = int(model.used[:, c].sum())
        keep = int(caps.sum()) - int(caps[:controllers].sum())
        desc = caps[::-1]
        need_k = int(desc[controllers : controllers + k].sum())
        need_r = math.ceil(policy.headroom.reserve_percent / 100 * keep)
        need = max(need_k, need_r)
        if keep - used < need:
            return (
                f"not enough capacity to free {controllers} controller nodes while the old "
                f"cloud's headroom holds: {rc} capacity left at best {keep:,}, used {used:,}, "
                f"free {keep - used:,} < {need:,} needed for N+{k}"
            )
    return None


def tail_short(inv: Inventory, policy: Policy) -> str | None:
    """Why the old cloud's last hosts of some scope group cannot leave (None: this proof does
    not apply). The last wave that takes hosts of a group takes at most `m` of them (the wave's
    size); until that wave, those hosts stay, keep the group's N+k (k >= 1) and hold at least
    the VMs they started with (a VM leaves only a host of its wave, and every such host
    leaves). So some `m` hosts of the group must have, from the start, as much free capacity of
    every class as its smallest host's: if the `m` freest do not, no plan exists."""
    rule = policy.headroom
    if rule.failures < 1:
        return None
    m = _wave_size(policy)
    model = CapacityModel(inv)
    names, group = model.scope_groups(rule.scope)
    for g, name in enumerate(names):
        sel = np.flatnonzero(model.available & (group == g))
        if len(sel) <= m or not model.used[sel].any():
            continue
        for c, rc in enumerate(model.classes):
            free = np.sort(np.maximum(model.free[sel, c], 0))[::-1]
            most = int(free[:m].sum())
            smallest = int(model.cap[sel, c].min())
            if most < smallest:
                return (
                    f"the old cloud's last hosts in {name} leave in one wave (at most {m}) and "
                    f"keep N+{rule.failures} until then with the VMs they hold: the most free "
                    f"{rc} any {m} of its {len(sel)} hosts have is {most:,}, less than its "
                    f"smallest host's {smallest:,}"
                )
    return None


def _wave_size(policy: Policy) -> int:
    """The most hosts of one scope group a wave can take."""
    m = policy.max_hosts_per_wave
    if policy.headroom.scope == "az" and policy.max_hosts_per_wave_per_az is not None:
        m = min(m, policy.max_hosts_per_wave_per_az)
    return m


def _movers(inv: Inventory, policy: Policy) -> set[str]:
    return {h.name for h in inv.hosts_to_upgrade(policy.target_version)}


def lower_bounds(inv: Inventory, policy: Policy, controllers: int) -> dict[str, int]:
    """waves: every host leaves in some wave, at most max_hosts_per_wave a wave, and a VM can
    cross only after the wave the new controllers and first computes join in, so a cloud with
    VMs needs two; vms_moved_twice: the new controllers and the new cloud's first k+1 computes
    (N+k needs k+1 of them before a VM can cross) are emptied while the new cloud has no compute,
    so their VMs move inside the old cloud first: at least the VMs of the emptiest such hosts."""
    hosts = len(inv.hosts)
    waves = math.ceil(hosts / max(policy.max_hosts_per_wave, 1)) if hosts else 0
    if inv.vms:
        waves = max(waves, 2)
    counts = sorted(len(inv.vms_on(h.name)) for h in inv.hosts if h.is_compute)
    first = controllers + max(policy.headroom.failures, 0) + 1
    return {"waves": waves, "vms_moved_twice": sum(counts[:first])}


# ---------------------------------------------------------------------------------------------
# The greedy
# ---------------------------------------------------------------------------------------------
class _State:
    """The clouds between waves: where every VM is, which hosts have left the old cloud."""

    def __init__(self, inv: Inventory, policy: Policy, opts: SideBySideOptions) -> None:
        self.inv = inv
        self.policy = policy
        self.opts = opts
        self.model = CapacityModel(inv)
        self.host_of: dict[str, str] = {v.id: v.host for v in inv.vms}
        self.on_host: dict[str, set[str]] = {h.name: set() for h in inv.hosts}
        for v in inv.vms:
            self.on_host[v.host].add(v.id)
        self.left: dict[str, HostRole] = {}
        self.new_computes: list[str] = []  # joined before the wave being built
        self.hi = self.model.host_index
        self.members: dict[str, list[str]] = {}
        for v in inv.vms:
            if v.server_group is not None:
                self.members.setdefault(v.server_group, []).append(v.id)

    # -- placing one VM ------------------------------------------------------------------------
    def _fits(self, vm: VM, dst: str) -> bool:
        h = self.inv.host(dst)
        if not h.available or not h.is_compute:
            return False
        # A pinned VM: its own AZ (the family `az` judges every move), renamed in the new cloud
        # through the AZ map (`sbs_az`).
        if vm.az is not None and h.az != vm.az:
            return False
        if vm.allowed_aggregates and not set(vm.allowed_aggregates) & set(h.aggregates):
            return False
        j = self.model.vm_index[vm.id]
        demand = self.model.demand[j]
        if vm.server_group is not None:
            g = self.inv.group(vm.server_group)
            if g.hard and g.anti:
                on_dst = sum(1 for m in self.members[g.id] if self.host_of[m] == dst)
                if on_dst + 1 > g.max_server_per_host:
                    return False
            elif g.hard:
                # Hard affinity: the members on this VM's host move with it, as a block; the
                # first goes where the whole block fits, the others follow it.
                src = self.host_of[vm.id]
                block = [m for m in self.members[g.id] if self.host_of[m] == src]
                others = {self.host_of[m] for m in self.members[g.id]} - {src}
                if others:
                    return others == {dst} and bool(np.all(self.model.free[self.hi[dst]] >= demand))
                idx = [self.model.vm_index[m] for m in block]
                demand = self.model.demand[idx].sum(axis=0)
        return bool(np.all(self.model.free[self.hi[dst]] >= demand))

    def place(self, vm: VM, leaving: set[str]) -> tuple[str, Method] | None:
        """Move `vm` (whose host leaves in this wave) and say where: into a compute of the new
        cloud if one fits and the new cloud keeps its headroom (the one with the most free
        memory: spread), else to a host of the old cloud that stays (the one with the least free
        memory that fits: the freest hosts of the old cloud leave last and carry its headroom
        then). None: nowhere (not moved)."""
        free = self.model.free
        mem = self.model.class_index.get("MEMORY_MB", 0)

        def best(cands: list[str], sign: int = 1) -> str | None:
            ok = [d for d in cands if self._fits(vm, d)]
            return max(ok, key=lambda d: (sign * int(free[self.hi[d], mem]), d)) if ok else None

        src = self.host_of[vm.id]
        dst = best(self.new_computes)
        if dst is not None:
            self.move(vm.id, dst)
            if self.new_headroom() is None:
                return dst, CROSS_CLOUD
            self.move(vm.id, src)
        olds = [
            h.name
            for h in self.inv.hosts
            if h.name not in self.left and h.name not in leaving and h.is_compute
        ]
        dst = best(olds, -1)
        method = method_for(vm)
        if method == "live" and vm.id in self.opts.cold:
            method = "cold"
        if dst is None or method is None:
            return None
        self.move(vm.id, dst)
        return dst, method

    def move(self, vm: str, dst: str) -> None:
        src = self.host_of[vm]
        self.on_host[src].discard(vm)
        self.on_host[dst].add(vm)
        self.host_of[vm] = dst
        self.model.move(self.model.vm_index[vm], self.hi[dst])

    # -- headroom of both clouds --------------------------------------------------------------
    def headroom_ok(self, leaving: set[str]) -> str | None:
        """None, or which cloud's N+k fails with `leaving` down."""
        rule = self.policy.headroom
        names = self.model.host_names
        gone = set(self.left) | leaving
        if any(self.on_host[h] for h in names if h not in gone):
            mask = np.array([h in gone for h in names], dtype=bool)
            for r in headroom(self.model, rule, mask):
                if not r.ok:
                    return f"the old cloud's N+{rule.failures} in {r.group} ({r.rc})"
            tail = self.tail_short(mask)
            if tail:
                return tail
        return self.new_headroom()

    def tail_short(self, gone: BoolArray) -> str | None:
        """`tail_short`'s proof on the state after this wave: a dead end if some scope group's
        hosts that stay could never all leave (its freest `m` lack a smallest host's free
        capacity, and VMs only arrive on them until their own wave)."""
        rule = self.policy.headroom
        if rule.failures < 1:
            return None
        m = _wave_size(self.policy)
        names, group = self.model.scope_groups(rule.scope)
        stay = self.model.available & ~gone
        for g, name in enumerate(names):
            sel = np.flatnonzero(stay & (group == g))
            if len(sel) <= m or not self.model.used[sel].any():
                continue
            free = np.sort(np.maximum(self.model.free[sel], 0), axis=0)[::-1]
            if np.any(free[:m].sum(axis=0) < self.model.cap[sel].min(axis=0)):
                return f"the old cloud's last hosts in {name} could not leave together"
        return None

    def new_headroom(self) -> str | None:
        rule = self.policy.headroom
        if self.new_computes:
            keep = set(self.new_computes)
            mask = np.array([h not in keep for h in self.model.host_names], dtype=bool)
            for r in headroom(self.model, rule, mask):
                if not r.ok:
                    return f"the new cloud's N+{rule.failures} in {r.group} ({r.rc})"
        return None


def _hosts_ok(inv: Inventory, policy: Policy, hosts: list[Host]) -> bool:
    return all(f.hosts_ok(inv, policy, hosts) for f in FAMILIES if f.hosts_ok is not None)


def plan_side_by_side(
    inv: Inventory, policy: Policy, opts: SideBySideOptions, digest: str = ""
) -> SideBySideOutcome:
    """A side-by-side plan, or `InfeasibleError`."""
    precheck(inv, policy, opts)
    st = _State(inv, policy, opts)
    movers = _movers(inv, policy)
    computes = [h for h in inv.hosts if h.is_compute and h.name in movers]
    old_controllers = [h for h in inv.hosts if not h.is_compute and h.name in movers]

    def emptiest(h: Host) -> tuple[int, int, str]:
        used = st.model.used[st.hi[h.name]]
        return (len(st.on_host[h.name]), int(used.sum()), h.name)

    # Free capacity in units of the largest host's, per class (absolute, not a fraction: the
    # old cloud's N+k is a sum of free capacity against whole hosts).
    unit = np.maximum(st.model.cap.max(axis=0, initial=1), 1)

    def least_free(h: Host) -> tuple[float, str]:
        i = st.hi[h.name]
        return (float((np.maximum(st.model.free[i], 0) / unit).min()), h.name)

    max_size = policy.max_hosts_per_wave
    waves: list[Wave] = []
    while len(st.left) < len(computes) + len(old_controllers):
        index = len(waves) + 1
        # Before the new cloud has computes, every VM freed moves twice: the emptiest hosts
        # first. Then the least free first: a host leaving takes its free capacity out of the
        # old cloud's headroom, so the old cloud keeps the most (its last hosts, which leave
        # together, are the freest).
        order: Any = least_free if st.new_computes else emptiest
        pending = sorted((h for h in computes if h.name not in st.left), key=order)
        if not pending:
            wave = _retire(st, old_controllers, index, [])
        else:
            rest = sorted((h for h in computes if h.name not in st.left), key=emptiest)
            wave = _fill_some(st, pending, rest, index)
            if all(h.name in st.left for h in computes) and len(wave.hosts) < max_size:
                # The old cloud is empty: its controllers may retire in the same wave.
                wave = _retire(st, old_controllers, index, [inv.host(h) for h in wave.hosts], wave)
        waves.append(wave)
        st.new_computes = [h for h, r in st.left.items() if r == "new-compute"]
    plan = Plan(
        inventory_sha256=digest,
        policy=policy,
        waves=tuple(waves),
        generator={"name": "side-by-side greedy", "seed": opts.seed},
        mode="side-by-side",
        az_map=dict(opts.az_map) if opts.az_map is not None else None,
    )
    return SideBySideOutcome(plan, plan_metrics(inv, plan, opts.controllers))


def _fill(st: _State, pending: list[Host], index: int, *, first: bool) -> Wave:
    """One wave: hosts taken emptiest first while every VM on them is placed and both clouds
    keep their headroom; wave 1's first `controllers` hosts become the new controllers."""
    inv, policy = st.inv, st.policy
    taken: list[Host] = []
    moves: list[Migration] = []
    # taken[:ok] and moves[:ok_moves] keep every rule; a host after them that breaks only the
    # old cloud's headroom stays while the wave fills (emptying more hosts may mend it: the old
    # cloud's last hosts leave together), and is given back at the end if it is not mended.
    ok = ok_moves = 0
    why = ""
    for h in pending:
        if len(taken) >= policy.max_hosts_per_wave:
            break
        if not _hosts_ok(inv, policy, [*taken, h]):
            why = why or f"{h.name}: the wave's size, HA groups or order"
            continue
        if any(m.dst == h.name for m in moves):
            continue  # it received VMs in this wave: a VM moves once a wave
        leaving = {t.name for t in taken} | {h.name}
        mine: list[Migration] = []
        failed = ""
        vms = sorted(
            st.on_host[h.name], key=lambda v: (-int(st.model.demand[st.model.vm_index[v]].sum()), v)
        )
        for v in vms:
            got = st.place(inv.vm(v), leaving)
            if got is None:
                failed = f"{h.name}: no host takes {inv.vm(v).name or v}"
                break
            mine.append(Migration(v, h.name, got[0], got[1]))
        if failed:
            _undo(st, mine)
            why = why or failed
            continue
        taken.append(h)
        moves.extend(mine)
        short = st.headroom_ok(leaving)
        if short is None:
            ok, ok_moves = len(taken), len(moves)
        else:
            why = why or f"{h.name}: {short}"
    _undo(st, moves[ok_moves:])
    taken, moves = taken[:ok], moves[:ok_moves]
    if first and len(taken) < st.opts.controllers:
        raise InfeasibleError(
            [
                f"wave 1 frees {len(taken)} host(s), the new control plane needs "
                f"{st.opts.controllers} ({why})"
            ],
            proven=False,
        )
    if not taken:
        raise InfeasibleError(
            [f"no host can leave the old cloud in wave {index} ({why})"], proven=False
        )
    roles: dict[str, HostRole] = {}
    for i, t in enumerate(taken):
        roles[t.name] = "new-controller" if first and i < st.opts.controllers else "new-compute"
    st.left.update(roles)
    return Wave(index, tuple(t.name for t in taken), tuple(moves), roles=roles)


def _fill_some(st: _State, pending: list[Host], emptiest: list[Host], index: int) -> Wave:
    """`_fill` in the order given; if no host can leave so, the emptiest first (fewer VMs to
    place, more room for the new cloud), then with one scope group's hosts first (the old
    cloud's last hosts of a group leave together), group by group."""
    try:
        return _fill(st, pending, index, first=index == 1)
    except InfeasibleError:
        if index == 1:
            raise
        orders = [emptiest]
        names, group = st.model.scope_groups(st.policy.headroom.scope)
        for g in range(len(names)):
            mine = [h for h in pending if group[st.hi[h.name]] == g]
            if mine and len(mine) < len(pending):
                orders.append(mine + [h for h in pending if h not in mine])
        for order in orders:
            try:
                return _fill(st, order, index, first=False)
            except InfeasibleError:
                continue
        raise


def _undo(st: _State, moves: list[Migration]) -> None:
    for m in reversed(moves):
        st.move(m.vm, m.src)


def _retire(
    st: _State, controllers: list[Host], index: int, taken: list[Host], wave: Wave | None = None
) -> Wave:
    """The old controllers, once the old cloud is empty, as many a wave as the rules allow
    (added to `wave`, whose hosts are `taken`, if given)."""
    added: list[Host] = []
    for h in controllers:
        if h.name in st.left or len(taken) + len(added) >= st.policy.max_hosts_per_wave:
            continue
        if _hosts_ok(st.inv, st.policy, [*taken, *added, h]):
            added.append(h)
    if wave is not None:
        roles: dict[str, HostRole] = {**wave.roles}
        roles.update((t.name, "retired") for t in added)
        st.left.update(roles)
        return replace(wave, hosts=(*wave.hosts, *(t.name for t in added)), roles=roles)
    if not added:
        raise InfeasibleError(
            [f"no old controller can retire in wave {index} (HA groups or the wave's size)"],
            proven=False,
        )
    new: dict[str, HostRole] = {t.name: "retired" for t in added}
    st.left.update(new)
    return Wave(index, tuple(t.name for t in added), roles=new)


def plan_metrics(inv: Inventory, plan: Plan, controllers: int) -> dict[str, Any]:
    per_vm: Counter[str] = Counter()
    cross = inside = 0
    for _, m in plan.migrations():
        per_vm[m.vm] += 1
        if m.method == CROSS_CLOUD:
            cross += 1
        else:
            inside += 1
    ctl = sorted(h for w in plan.waves for h, r in w.roles.items() if r == "new-controller")
    return {
        "mode": "side-by-side",
        "waves": len(plan.waves),
        "migrations": cross + inside,
        "cross_cloud_moves": cross,
        "moves_inside_old_cloud": inside,
        "vms_moved_twice": sum(1 for n in per_vm.values() if n >= 2),
        "new_controllers": ctl,
        "new_computes": sum(1 for w in plan.waves for r in w.roles.values() if r == "new-compute"),
        "lower_bounds": lower_bounds(inv, plan.policy, controllers),
    }
