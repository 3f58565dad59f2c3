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
from collections.abc import Mapping, Set
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from planner.capacity import CapacityModel, headroom
from planner.errors import InfeasibleError
from planner.inventory import VM, Host, Inventory
from planner.plan import CROSS_CLOUD, HostRole, Method, Migration, Plan, Wave
from planner.policy import Policy
from planner.rules import FAMILIES
from planner.rules.method import affinity_bound, method_for
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
    short = new_cloud_short(inv, policy, opts.controllers)
    if short:
        reasons.append(short)
        blame.append(
            {
                "key": "headroom",
                "rule": f"N+{policy.headroom.failures} in the new cloud",
                "relax": "add spare hosts (they join the new cloud), fewer new controllers, or "
                "a lower headroom.failures",
                "relaxing_alone": None,
                "numbers": None,
                "one_step": None,
            }
        )
    if reasons:
        raise InfeasibleError(reasons, proven=True, blame=blame)


def controller_capacity_short(inv: Inventory, policy: Policy, controllers: int) -> str | None:
    """Why the old cloud cannot hold every VM with N+k until the first VM can cross, whichever
    hosts are chosen (None: this proof does not apply). No VM can be in the new cloud before
    some scope group of it has k + 1 available computes (with k or fewer, N+k leaves no room),
    and the controllers join no later than the first compute: until then the old cloud lacks
    the controllers and those k + 1 computes (controllers may be unavailable hosts, which take
    no capacity anyway). It keeps at most its capacity minus the `out` smallest hosts', and
    needs its VMs' usage plus at least the hosts ranked out+1 .. out+k by size (scope az or
    cloud: the sum over AZs of their k largest is at least the cloud's)."""
    model = CapacityModel(inv)
    avail = model.available
    k = policy.headroom.failures
    n = int(avail.sum())
    movers = _movers(inv, policy)
    hosts = sum(1 for h in inv.hosts if h.is_compute and h.name in movers)
    out = k + 1 + max(0, controllers - max(hosts - n, 0))
    if hosts < controllers:
        return (
            f"only {hosts} compute host(s); the new control plane needs {controllers} freed hosts"
        )
    for c, rc in enumerate(model.classes):
        caps = np.sort(model.cap[avail, c])  # ascending
        # VMs on available hosts stay on available hosts until they can cross (a move goes to
        # an enabled, up host); those on unavailable ones take no room the headroom counts.
        used = int(model.used[avail, c].sum())
        keep = int(caps.sum()) - int(caps[:out].sum())
        desc = caps[::-1]
        need_k = int(desc[out : out + k].sum())
        need_r = math.ceil(policy.headroom.reserve_percent / 100 * keep)
        need = max(need_k, need_r)
        if keep - used < need:
            return (
                f"not enough capacity to free {controllers} controller nodes and the new "
                f"cloud's first {k + 1} computes (no VM can cross before: N+{k}) while the old "
                f"cloud's headroom holds: {rc} capacity left at best {keep:,}, used {used:,}, "
                f"free {keep - used:,} < {need:,} needed for N+{k}"
            )
    return None


def new_cloud_short(inv: Inventory, policy: Policy, controllers: int) -> str | None:
    """Why the new cloud can never hold every VM with its N+k (None: this proof does not apply).
    At the end of the last wave that takes a compute host, every VM is on a compute that joined
    before it, and the new cloud keeps N+k over those: in each scope group at most its capacity
    but its k largest hosts'. The controllers and that wave's host are not among them: at least
    `controllers` + 1 hosts, of which at most as many as are unavailable (no room anyway) may
    be unavailable ones. The most any choice of those leaves, per class: a small knapsack over
    the groups of how many of each group's smallest hosts are out."""
    rule = policy.headroom
    model = CapacityModel(inv)
    movers = _movers(inv, policy)
    names, group = model.scope_groups(rule.scope)
    compute = np.array([h.is_compute and h.name in movers for h in inv.hosts], dtype=bool)
    unavailable = int((compute & ~model.available).sum())
    out = max(0, controllers + 1 - unavailable)
    k = rule.failures
    for c, rc in enumerate(model.classes):
        used = int(model.used[:, c].sum())
        if used == 0:
            continue
        # best[s]: the most room the groups so far keep with s of their hosts out.
        best = [0] + [-1] * out
        for g in range(len(names)):
            caps = np.sort(model.cap[np.flatnonzero(compute & model.available & (group == g)), c])
            n = len(caps)
            room = [int(caps[j : max(n - k, j)].sum()) for j in range(min(out, n) + 1)]
            nxt = [-1] * (out + 1)
            for s0, b in enumerate(best):
                if b < 0:
                    continue
                for j, r in enumerate(room):
                    if s0 + j <= out:
                        nxt[s0 + j] = max(nxt[s0 + j], b + r)
            best = nxt
        most = best[out]
        if 0 <= most < used:
            return (
                f"the new cloud cannot hold every VM with N+{k}: its computes are every host "
                f"but the {controllers} new controllers and the last wave's, and keep N+{k} per "
                f"{rule.scope}; the most {rc} they can offer is {most:,}, the VMs use {used:,}"
            )
    return None


def _movers(inv: Inventory, policy: Policy) -> set[str]:
    return {h.name for h in inv.hosts_to_upgrade(policy.target_version)}


def lower_bounds(inv: Inventory, policy: Policy, controllers: int) -> dict[str, int]:
    """waves: every host leaves in some wave, at most max_hosts_per_wave a wave, and a VM can
    cross only after the wave the new controllers and first computes join in, so a cloud with
    VMs needs two. vms_moved_twice: no VM can cross before some scope group of the new cloud
    has k + 1 available computes (N+k leaves no room in a group of k or fewer), and the new
    controllers join no later than the first compute; so the controllers and the first group's
    k + 1 computes are emptied inside the old cloud, and their VMs cross later: moved twice.
    The least that can be: over the groups, the group's k + 1 emptiest available hosts and the
    `controllers` emptiest of the other compute hosts."""
    hosts = len(inv.hosts)
    waves = math.ceil(hosts / max(policy.max_hosts_per_wave, 1)) if hosts else 0
    if inv.vms:
        waves = max(waves, 2)
    movers = _movers(inv, policy)
    model = CapacityModel(inv)
    _, group = model.scope_groups(policy.headroom.scope)
    count = {h.name: len(inv.vms_on(h.name)) for h in inv.hosts if h.is_compute}
    k1 = max(policy.headroom.failures, 0) + 1
    best: int | None = None
    for g in sorted({int(x) for x in group if x >= 0}):
        mine = sorted(
            (count[h.name], h.name)
            for h in inv.hosts
            if h.name in count
            and h.name in movers
            and model.available[model.host_index[h.name]]
            and group[model.host_index[h.name]] == g
        )
        if len(mine) < k1:
            continue
        first = {n for _, n in mine[:k1]}
        rest = sorted(c for n, c in count.items() if n not in first)
        total = sum(c for c, _ in mine[:k1]) + sum(rest[:controllers])
        best = total if best is None else min(best, total)
    return {"waves": waves, "vms_moved_twice": best or 0}


# ---------------------------------------------------------------------------------------------
# The greedy
# ---------------------------------------------------------------------------------------------
class _State:
    """The clouds between waves: where every VM is, which hosts have left the old cloud."""

    def __init__(
        self, inv: Inventory, policy: Policy, opts: SideBySideOptions, spread: int = 1
    ) -> None:
        # Into the new cloud: the fitting compute with the most free memory (spread = 1), or
        # the least (-1: packed, keeping the large holes the last VMs may need).
        self.spread = spread
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
        # A pinned VM: its own AZ in the old cloud; in the new cloud its AZ's name through the
        # AZ map (two old AZs may merge into one): the families `az` and `sbs_az`.
        if vm.az is not None:
            amap = self.opts.az_map or {}
            if dst in self.new_computes:
                if h.az is None or amap.get(h.az, h.az) != amap.get(vm.az, vm.az):
                    return False
            elif h.az != vm.az:
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
        dst = best(self.new_computes, self.spread)
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
        method = method_for(vm, self.inv, self.policy)
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
        return self.new_headroom()

    def cross_out(
        self, leaving: set[str], moved: set[str], *, mend: bool = False, limit: int | None = None
    ) -> list[Migration]:
        """Cross VMs of the old cloud's hosts that stay (not `leaving`, not moved in this wave)
        into the new cloud while it keeps its headroom: the tightest scope group's hosts
        first (crossing out of it gives its N+k room), inside it the emptiest (they leave next
        with nothing left to move). `mend`: only until the old cloud's headroom holds again
        (undone if it does not). Hard affinity members stay (their group moves whole)."""
        inv, model = self.inv, self.model
        unit = np.maximum(model.cap.max(axis=0, initial=1), 1)
        slack = self.old_slack(unit, leaving)
        _, group = model.scope_groups(self.policy.headroom.scope)

        def key(h: Host) -> tuple[float, int, int, str]:
            i = self.hi[h.name]
            used = int(model.used[i].sum())
            tight = round(slack.get(int(group[i]), 0.0), 1)
            return (tight, len(self.on_host[h.name]), used, h.name)

        stay = [
            h
            for h in inv.hosts
            if h.is_compute and h.name not in self.left and h.name not in leaving
        ]
        mem = model.class_index.get("MEMORY_MB", 0)
        free = model.free
        # Each cloud's room beyond its N+k per scope group and class, kept up to date as VMs
        # cross (the requirement depends only on which hosts are in the cloud): a VM that fits
        # its host takes its demand off the new cloud's free capacity and gives it to the old's.
        room_new = self._room(np.array([h not in set(self.new_computes) for h in model.host_names]))
        gone = set(self.left) | leaving
        room_old = self._room(np.array([h in gone for h in model.host_names]))
        out: list[Migration] = []
        for h in sorted(stay, key=key):
            for v in sorted(self.on_host[h.name]):
                if limit is not None and len(out) >= limit:
                    break
                vm = inv.vm(v)
                if v in moved or affinity_bound(inv, vm):
                    continue
                demand = model.demand[model.vm_index[v]]
                ok = [
                    d
                    for d in self.new_computes
                    if np.all(room_new[int(group[self.hi[d]])] >= demand) and self._fits(vm, d)
                ]
                if not ok:
                    continue
                dst = max(ok, key=lambda d: (self.spread * int(free[self.hi[d], mem]), d))
                self.move(v, dst)
                room_new[int(group[self.hi[dst]])] -= demand
                room_old[int(group[self.hi[h.name]])] += demand
                moved.add(v)
                out.append(Migration(v, h.name, dst, CROSS_CLOUD))
                holds = mend and all(np.all(r >= 0) for r in room_old.values())
                if holds and self.headroom_ok(leaving) is None:
                    return out
        if mend:
            _undo(self, out)
            return []
        return out

    def _room(self, down: Any) -> dict[int, Any]:
        """Per scope group, free capacity beyond the N+k requirement per class, over the
        available compute hosts not `down`."""
        names, _ = self.model.scope_groups(self.policy.headroom.scope)
        out: dict[int, Any] = {}
        for r in headroom(self.model, self.policy.headroom, down):
            g = names.index(r.group)
            row = out.setdefault(g, np.zeros(len(self.model.classes), dtype=np.int64))
            row[self.model.class_index[r.rc]] = r.free - r.required
        return out

    def old_slack(self, unit: Any, leaving: Set[str] = frozenset()) -> dict[int, float]:
        """Per scope group, the old cloud's free capacity beyond its N+k, in units of the largest
        host's (the tightest class)."""
        names, _ = self.model.scope_groups(self.policy.headroom.scope)
        gone = set(self.left) | leaving
        mask = np.array([h in gone for h in self.model.host_names], dtype=bool)
        out: dict[int, float] = {}
        for r in headroom(self.model, self.policy.headroom, mask):
            c = self.model.class_index[r.rc]
            g = names.index(r.group)
            out[g] = min(out.get(g, math.inf), (r.free - r.required) / float(unit[c]))
        return out

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


# The orders the greedy may take hosts out of the old cloud in once the new cloud has computes
# (before, always the emptiest first: their VMs move twice). `plan_side_by_side` tries each and
# keeps the best plan.
# Each also with the crossings packed into the new cloud (`+packed`) instead of spread.
STRATEGIES = (
    "balanced",
    "least-free",
    "emptiest",
    "balanced+packed",
    "least-free+packed",
    "emptiest+packed",
)


def plan_side_by_side(
    inv: Inventory, policy: Policy, opts: SideBySideOptions, digest: str = ""
) -> SideBySideOutcome:
    """A side-by-side plan, or `InfeasibleError`: the greedy in each of `STRATEGIES`, the plan
    with the fewest waves, then the fewest VMs moved twice, then the fewest moves inside the
    old cloud."""
    precheck(inv, policy, opts)
    best: tuple[tuple[int, int, int], SideBySideOutcome] | None = None
    first_error: InfeasibleError | None = None
    for strategy in STRATEGIES:
        try:
            out = _greedy(inv, policy, opts, strategy, digest)
        except InfeasibleError as exc:
            first_error = first_error or exc
            continue
        m = out.metrics
        key = (m["waves"], m["vms_moved_twice"], m["moves_inside_old_cloud"])
        if best is None or key < best[0]:
            best = (key, out)
    if best is None:
        assert first_error is not None
        raise first_error
    return best[1]


def _greedy(
    inv: Inventory, policy: Policy, opts: SideBySideOptions, strategy: str, digest: str
) -> SideBySideOutcome:
    order_name, _, packed = strategy.partition("+")
    st = _State(inv, policy, opts, spread=-1 if packed else 1)
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

    def balanced() -> Any:
        # Scope groups whose new cloud has fewer than k + 1 available computes first (no VM can
        # cross into it before), then the group whose old cloud has the most headroom to spare
        # (a host leaving takes its free capacity out of it); inside a group the least free.
        slack = st.old_slack(unit)
        _, group = st.model.scope_groups(policy.headroom.scope)
        avail = st.model.available
        joined = Counter(int(group[st.hi[h]]) for h in st.new_computes if avail[st.hi[h]])
        k1 = policy.headroom.failures + 1

        def key(h: Host) -> tuple[bool, float, float, str]:
            g = int(group[st.hi[h.name]])
            return (joined[g] >= k1, -round(slack.get(g, 0.0), 1), *least_free(h))

        return key

    max_size = policy.max_hosts_per_wave
    waves: list[Wave] = []
    while len(st.left) < len(computes) + len(old_controllers):
        index = len(waves) + 1
        # Before the new cloud has computes, every VM freed moves twice: the emptiest hosts
        # first. Then by the strategy.
        order: Any = emptiest
        if st.new_computes:
            order = {"balanced": balanced(), "least-free": least_free}.get(order_name, emptiest)
        pending = sorted((h for h in computes if h.name not in st.left), key=order)
        if not pending:
            wave = _retire(st, old_controllers, index, [])
        else:
            rest = sorted((h for h in computes if h.name not in st.left), key=emptiest)
            wave = _fill_some(st, pending, rest, index)
            if all(h.name in st.left for h in computes) and len(wave.hosts) < max_size:
                # The old cloud is empty: its controllers may retire in the same wave.
                wave = _retire(st, old_controllers, index, [inv.host(h) for h in wave.hosts], wave)
        if st.new_computes and pending:
            wave = _cross_ahead(st, wave)
        waves.append(wave)
        st.new_computes = [h for h, r in st.left.items() if r == "new-compute"]
    plan = Plan(
        inventory_sha256=digest,
        policy=policy,
        waves=tuple(waves),
        generator={"name": "side-by-side greedy", "seed": opts.seed, "strategy": strategy},
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
        cap = policy.max_migrations_per_wave
        if not failed and cap is not None and len(moves) + len(mine) > cap:
            failed = f"{h.name}: max_migrations_per_wave {cap}"
        if failed:
            _undo(st, mine)
            why = why or failed
            continue
        taken.append(h)
        moves.extend(mine)
        short = st.headroom_ok(leaving)
        if short is not None and st.new_computes and not first:
            # Mend the old cloud's headroom by crossing VMs of its hosts that stay.
            room = None if cap is None else max(cap - len(moves), 0)
            moves.extend(st.cross_out(leaving, {m.vm for m in moves}, mend=True, limit=room))
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


def _cross_ahead(st: _State, wave: Wave) -> Wave:
    """After the wave's hosts are emptied: cross VMs of old hosts that stay into the new cloud
    while it keeps its headroom (`_State.cross_out`). A VM crosses once in any plan, so this
    adds no move; it drains the old cloud ahead of its last hosts, which then need not hold its
    VMs with N+k, and the next waves' hosts leave with fewer VMs to move inside the old cloud
    (moved twice)."""
    cap = st.policy.max_migrations_per_wave
    room = None if cap is None else cap - len(wave.migrations)
    extra = st.cross_out(set(wave.hosts), {m.vm for m in wave.migrations}, limit=room)
    if not extra:
        return wave
    return replace(wave, migrations=(*wave.migrations, *extra))


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
