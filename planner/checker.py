"""The plan checker: the one judge of every plan, whoever wrote it.

It replays a plan wave by wave against the inventory, without the solver (as BtrPlace's
ReconfigurationPlanChecker does), and reports every violation with its wave, rule, objects and
numbers. Since nothing leaves a host outside the wave during a wave, the end-of-wave state bounds
every in-flight state, so the state rules are checked at each wave's end.

Each rule family is one named function below; `RULES` lists them with a one-line meaning.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planner import bounds
from planner.capacity import CapacityModel, HeadroomRow, format_amount, headroom
from planner.inventory import Inventory
from planner.plan import Migration, Plan, Stop, Wave
from planner.policy import Policy, select_hosts

RULES: dict[str, str] = {
    "digest": "the plan was made for this inventory file (sha256 of its bytes)",
    "wave_index": "waves are numbered 1, 2, 3, ... in order and none is empty",
    "unknown": "every host and VM the plan names exists in the inventory",
    "coverage": "every host to upgrade is in exactly one wave; no other host is",
    "order": "hosts selected by policy.first come before, policy.last after, all others",
    "wave_size": "a wave's hosts within max_hosts_per_wave (and per AZ, per rack)",
    "ha_group": "every HA group keeps min_available hosts available",
    "evacuation": "every VM on a wave host migrates or is stopped, exactly once",
    "source": "a migration starts from the VM's current host, which is in the wave",
    "destination": "a migration goes to a compute host that is enabled, up, not in the wave",
    "method": "live only for an ACTIVE VM with migration live; cold only for live or cold",
    "stop": "a VM is stopped in place only if its migration is none and allow_stop is set",
    "version": "no migration from an upgraded host to one that is not upgraded",
    "az": "a VM pinned to an AZ stays in it",
    "aggregates": "a VM with allowed_aggregates lands in one of them",
    "capacity": "no host holds more than its effective capacity in any class",
    "anti_affinity": "at most max_server_per_host members of a hard anti-affinity group per host",
    "affinity": "members of a hard affinity group share a host",
    "headroom": "per scope group and class, free capacity >= k largest hosts and reserve %",
    "inventory.capacity": "the inventory has no host over capacity",
    "inventory.headroom": "the inventory keeps the headroom before any host goes down",
    "inventory.ha_group": "the inventory's HA groups have min_available hosts available",
    "inventory.anti_affinity": "the inventory's hard anti-affinity groups hold",
    "inventory.affinity": "the inventory's hard affinity groups hold",
}


@dataclass(frozen=True)
class Violation:
    rule: str
    message: str
    wave: int | None = None
    objects: tuple[str, ...] = ()
    numbers: Mapping[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        where = f"wave {self.wave}" if self.wave is not None else "plan"
        if self.rule.startswith("inventory."):
            where = "inventory"
        return f"{where}: [{self.rule}] {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "wave": self.wave,
            "rule": self.rule,
            "message": self.message,
            "objects": list(self.objects),
            "numbers": dict(self.numbers),
        }


@dataclass(frozen=True)
class CheckReport:
    violations: tuple[Violation, ...]
    warnings: tuple[Violation, ...]
    metrics: Mapping[str, Any]

    @property
    def ok(self) -> bool:
        return not self.violations

    def by_rule(self) -> Counter[str]:
        return Counter(v.rule for v in self.violations)

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.ok,
            "violations": [v.to_dict() for v in self.violations],
            "warnings": [v.to_dict() for v in self.warnings],
            "metrics": dict(self.metrics),
        }


def vm_label(inv: Inventory, vm_id: str) -> str:
    """How messages name a VM: its name and the start of its id (ids stay whole in `objects`)."""
    if not inv.has_vm(vm_id):
        return vm_id
    name = inv.vm(vm_id).name
    return f"{name} ({vm_id[:8]})" if name and name != vm_id else vm_id


# ---------------------------------------------------------------------------------------------
# The replay state
# ---------------------------------------------------------------------------------------------
class State:
    """Where every VM is, which hosts are upgraded, and the capacity model, between waves."""

    def __init__(self, inv: Inventory, policy: Policy) -> None:
        self.inv = inv
        self.policy = policy
        self.model = CapacityModel(inv)
        self.host_of: dict[str, str] = {v.id: v.host for v in inv.vms}
        self.on_host: dict[str, set[str]] = defaultdict(set)
        for v in inv.vms:
            self.on_host[v.host].add(v.id)
        target = policy.target_version
        self.upgraded: set[str] = (
            {h.name for h in inv.hosts if h.version == target} if target is not None else set()
        )
        self.stopped: set[str] = set()

    def move(self, vm: str, dst: str) -> None:
        src = self.host_of[vm]
        self.on_host[src].discard(vm)
        self.on_host[dst].add(vm)
        self.host_of[vm] = dst
        self.model.move(self.model.vm_index[vm], self.model.host_index[dst])

    def down_mask(self, hosts: Iterable[str]) -> np.ndarray[Any, np.dtype[np.bool_]]:
        mask = np.zeros(len(self.model.host_names), dtype=bool)
        for h in hosts:
            i = self.model.host_index.get(h)
            if i is not None:
                mask[i] = True
        return mask


# ---------------------------------------------------------------------------------------------
# Inventory rules (before any wave)
# ---------------------------------------------------------------------------------------------
def rule_inventory_capacity(state: State) -> Iterator[Violation]:
    m = state.model
    over = m.over_capacity()
    for i, c in zip(*np.nonzero(over), strict=True):
        rc = m.classes[c]
        host = m.host_names[i]
        yield Violation(
            "inventory.capacity",
            f"{host} holds {format_amount(rc, m.used[i, c])} of {rc}, more than its effective "
            f"capacity {format_amount(rc, m.cap[i, c])}",
            objects=(host,),
            numbers={"used": int(m.used[i, c]), "capacity": int(m.cap[i, c])},
        )


def rule_inventory_groups(state: State) -> Iterator[Violation]:
    for g in state.inv.server_groups:
        if not g.hard:
            continue
        members = state.inv.members(g.id)
        if g.anti:
            counts = Counter(v.host for v in members)
            for host, n in sorted(counts.items()):
                if n > g.max_server_per_host:
                    yield Violation(
                        "inventory.anti_affinity",
                        f"server group {g.name or g.id}: {n} members on {host}, "
                        f"max_server_per_host is {g.max_server_per_host}",
                        objects=(g.id, host),
                        numbers={"members": n, "max": g.max_server_per_host},
                    )
        else:
            hosts = sorted({v.host for v in members})
            if len(hosts) > 1:
                yield Violation(
                    "inventory.affinity",
                    f"affinity group {g.name or g.id} is split over {len(hosts)} hosts: "
                    + ", ".join(hosts),
                    objects=(g.id, *hosts),
                    numbers={"hosts": len(hosts)},
                )


# ---------------------------------------------------------------------------------------------
# Plan-level rules
# ---------------------------------------------------------------------------------------------
def rule_digest(plan: Plan, digest: str | None) -> Iterator[Violation]:
    if digest is not None and plan.inventory_sha256 != digest:
        made_for = (
            f"inventory sha256 {plan.inventory_sha256[:12]}..."
            if plan.inventory_sha256
            else "no recorded inventory (its inventory_sha256 is empty)"
        )
        yield Violation(
            "digest",
            f"the plan was made for {made_for}, this inventory file is {digest[:12]}...",
            objects=(plan.inventory_sha256, digest),
        )


def rule_wave_index(plan: Plan) -> Iterator[Violation]:
    for pos, w in enumerate(plan.waves, start=1):
        if w.index != pos:
            yield Violation(
                "wave_index",
                f"wave at position {pos} has index {w.index}; waves are numbered 1, 2, 3, ...",
                wave=w.index,
                numbers={"position": pos, "index": w.index},
            )
        if not w.hosts:
            yield Violation("wave_index", "wave has no hosts", wave=w.index)


def rule_unknown(inv: Inventory, plan: Plan) -> Iterator[Violation]:
    for w in plan.waves:
        for h in w.hosts:
            if not inv.has_host(h):
                yield Violation("unknown", f"unknown host {h!r} in the wave", w.index, (h,))
        for m in w.migrations:
            if not inv.has_vm(m.vm):
                yield Violation("unknown", f"unknown VM {m.vm!r} in a migration", w.index, (m.vm,))
            for h in (m.src, m.dst):
                if not inv.has_host(h):
                    yield Violation(
                        "unknown", f"migration of {m.vm} names unknown host {h!r}", w.index, (h,)
                    )
        for s in w.stops:
            if not inv.has_vm(s.vm):
                yield Violation("unknown", f"unknown VM {s.vm!r} in a stop", w.index, (s.vm,))
            if not inv.has_host(s.host):
                yield Violation(
                    "unknown", f"stop names unknown host {s.host!r}", w.index, (s.host,)
                )


def rule_coverage(inv: Inventory, plan: Plan) -> Iterator[Violation]:
    to_upgrade = {h.name for h in inv.hosts_to_upgrade(plan.policy.target_version)}
    seen: dict[str, int] = {}
    for w in plan.waves:
        for h in w.hosts:
            if h in seen:
                yield Violation(
                    "coverage",
                    f"{h} is upgraded twice (waves {seen[h]} and {w.index})",
                    w.index,
                    (h,),
                )
                continue
            seen[h] = w.index
            if inv.has_host(h) and h not in to_upgrade:
                version = inv.host(h).version
                yield Violation(
                    "coverage",
                    f"{h} already runs the target version {version}; it must not be in a wave",
                    w.index,
                    (h,),
                )
    missing = sorted(to_upgrade - set(seen))
    if missing:
        shown = ", ".join(missing[:10]) + (
            f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        )
        yield Violation(
            "coverage",
            f"{len(missing)} host(s) to upgrade are in no wave: {shown}",
            objects=tuple(missing),
            numbers={"missing": len(missing)},
        )


def rule_order(inv: Inventory, plan: Plan) -> Iterator[Violation]:
    p = plan.policy
    wave_of = plan.wave_of()
    first = select_hosts(inv, p.first) & wave_of.keys()
    last = select_hosts(inv, p.last) & wave_of.keys()
    others = wave_of.keys() - first - last
    if first and (others or last):
        latest_first = max(first, key=lambda h: wave_of[h])
        rest = others | last
        earliest = min(rest, key=lambda h: wave_of[h])
        if wave_of[earliest] < wave_of[latest_first]:
            yield Violation(
                "order",
                f"{earliest} (wave {wave_of[earliest]}) comes before {latest_first} "
                f"(wave {wave_of[latest_first]}), which policy.first puts first",
                wave_of[earliest],
                (earliest, latest_first),
            )
    if last and others:
        earliest_last = min(last, key=lambda h: wave_of[h])
        latest = max(others, key=lambda h: wave_of[h])
        if wave_of[latest] > wave_of[earliest_last]:
            yield Violation(
                "order",
                f"{latest} (wave {wave_of[latest]}) comes after {earliest_last} "
                f"(wave {wave_of[earliest_last]}), which policy.last puts last",
                wave_of[latest],
                (latest, earliest_last),
            )


# ---------------------------------------------------------------------------------------------
# Per-wave rules: before the moves
# ---------------------------------------------------------------------------------------------
def rule_wave_size(inv: Inventory, policy: Policy, wave: Wave) -> Iterator[Violation]:
    hosts = [inv.host(h) for h in dict.fromkeys(wave.hosts) if inv.has_host(h)]
    if len(hosts) > policy.max_hosts_per_wave:
        yield Violation(
            "wave_size",
            f"{len(hosts)} hosts, max_hosts_per_wave is {policy.max_hosts_per_wave}",
            wave.index,
            numbers={"hosts": len(hosts), "max": policy.max_hosts_per_wave},
        )
    for attr, limit, what in (
        ("az", policy.max_hosts_per_wave_per_az, "AZ"),
        ("rack", policy.max_hosts_per_wave_per_rack, "rack"),
    ):
        if limit is None:
            continue
        counts = Counter(getattr(h, attr) for h in hosts if getattr(h, attr) is not None)
        for key, n in sorted(counts.items()):
            if n > limit:
                yield Violation(
                    "wave_size",
                    f"{n} hosts of {what} {key}, max_hosts_per_wave_per_{attr} is {limit}",
                    wave.index,
                    (key,),
                    {"hosts": n, "max": limit},
                )


def rule_ha_groups(
    inv: Inventory, wave_hosts: set[str], rule: str = "ha_group", wave: int | None = None
) -> Iterator[Violation]:
    for g in inv.ha_groups:
        unavailable = [
            h for h in g.hosts if h in wave_hosts or (inv.has_host(h) and not inv.host(h).available)
        ]
        available = len(g.hosts) - len(unavailable)
        if available < g.min_available:
            yield Violation(
                rule,
                f"HA group {g.name}: {available} of {len(g.hosts)} hosts available, "
                f"min_available is {g.min_available} (unavailable: {', '.join(unavailable)})",
                wave,
                (g.name, *unavailable),
                {"available": available, "min_available": g.min_available},
            )


def rule_evacuation(state: State, wave: Wave) -> Iterator[Violation]:
    """Every VM on the wave's hosts at the wave's start is migrated or stopped exactly once."""
    handled = Counter([m.vm for m in wave.migrations] + [s.vm for s in wave.stops])
    for vm, n in sorted(handled.items()):
        if n > 1:
            yield Violation(
                "evacuation",
                f"{vm_label(state.inv, vm)} is migrated or stopped {n} times in one wave",
                wave.index,
                (vm,),
                {"times": n},
            )
    for host in dict.fromkeys(wave.hosts):
        left = sorted(v for v in state.on_host.get(host, ()) if v not in handled)
        if left:
            shown = ", ".join(vm_label(state.inv, v) for v in left[:8]) + (
                f" and {len(left) - 8} more" if len(left) > 8 else ""
            )
            yield Violation(
                "evacuation",
                f"{len(left)} VM(s) on {host} are neither migrated nor stopped: {shown}",
                wave.index,
                (host, *left),
                {"vms": len(left)},
            )


def rule_migration(
    state: State, wave: Wave, m: Migration, wave_hosts: set[str]
) -> Iterator[Violation]:
    """Source, destination, method, version, AZ and aggregate rules of one migration."""
    inv, w = state.inv, wave.index
    if not (inv.has_vm(m.vm) and inv.has_host(m.src) and inv.has_host(m.dst)):
        return  # reported by rule_unknown
    vm = inv.vm(m.vm)
    label = vm_label(inv, m.vm)
    current = state.host_of[m.vm]
    if m.src != current:
        yield Violation(
            "source", f"{label} is on {current}, not on {m.src}", w, (m.vm, current, m.src)
        )
    if current not in wave_hosts:
        yield Violation(
            "source",
            f"{label} leaves {current}, which is not in this wave (no VM leaves a host that is "
            "not in maintenance)",
            w,
            (m.vm, current),
        )
    dst = inv.host(m.dst)
    why = []
    if not dst.is_compute:
        why.append("a controller")
    if not dst.enabled:
        why.append("disabled")
    if not dst.up:
        why.append("down")
    if m.dst in wave_hosts:
        why.append("in this wave")
    if m.dst == current:
        why.append("its current host")
    if why:
        yield Violation(
            "destination",
            f"{label} -> {m.dst}: destination is {', '.join(why)}",
            w,
            (m.vm, m.dst),
        )
    if m.method == "live" and not (vm.status == "ACTIVE" and vm.migration == "live"):
        yield Violation(
            "method",
            f"{label} cannot be live-migrated (status {vm.status}, migration {vm.migration})",
            w,
            (m.vm,),
        )
    if m.method == "cold" and vm.migration not in ("live", "cold"):
        yield Violation(
            "method", f"{label} cannot be migrated at all (migration {vm.migration})", w, (m.vm,)
        )
    if current in state.upgraded and m.dst not in state.upgraded:
        yield Violation(
            "version",
            f"{label}: {current} is upgraded, {m.dst} is not (Nova refuses newer -> older)",
            w,
            (m.vm, current, m.dst),
        )
    if vm.az is not None and dst.az != vm.az:
        yield Violation(
            "az", f"{label} is pinned to AZ {vm.az}; {m.dst} is in {dst.az}", w, (m.vm, m.dst)
        )
    if vm.allowed_aggregates and not set(vm.allowed_aggregates) & set(dst.aggregates):
        yield Violation(
            "aggregates",
            f"{label} may only run in aggregates {', '.join(vm.allowed_aggregates)}; "
            f"{m.dst} is in {', '.join(dst.aggregates) or 'none'}",
            w,
            (m.vm, m.dst),
        )


def rule_stop(state: State, wave: Wave, s: Stop, wave_hosts: set[str]) -> Iterator[Violation]:
    inv, policy, w = state.inv, state.policy, wave.index
    if not (inv.has_vm(s.vm) and inv.has_host(s.host)):
        return
    vm = inv.vm(s.vm)
    label = vm_label(inv, s.vm)
    current = state.host_of[s.vm]
    if s.host != current:
        yield Violation("stop", f"{label} is on {current}, not on {s.host}", w, (s.vm,))
    if current not in wave_hosts:
        yield Violation(
            "stop",
            f"{label} is stopped on {current}, which is not in this wave",
            w,
            (s.vm, current),
        )
    if vm.migration != "none":
        yield Violation(
            "stop",
            f"{label} can migrate (migration {vm.migration}); only VMs with migration none may "
            "be stopped in place",
            w,
            (s.vm,),
        )
    elif not policy.allow_stop:
        yield Violation(
            "stop",
            f"{label} would be stopped in place but the policy does not allow_stop",
            w,
            (s.vm,),
        )


# ---------------------------------------------------------------------------------------------
# Per-wave rules: the end-of-wave state
# ---------------------------------------------------------------------------------------------
def rule_capacity(state: State, wave: int, touched: Iterable[str]) -> Iterator[Violation]:
    """Hosts that received VMs are within capacity (usage only grows on destinations)."""
    m = state.model
    for host in sorted(set(touched)):
        i = m.host_index[host]
        for c in np.flatnonzero(m.used[i] > m.cap[i]):
            rc = m.classes[c]
            yield Violation(
                "capacity",
                f"{host}: {rc} used {format_amount(rc, m.used[i, c])} > effective capacity "
                f"{format_amount(rc, m.cap[i, c])}",
                wave,
                (host,),
                {"used": int(m.used[i, c]), "capacity": int(m.cap[i, c])},
            )


def rule_server_groups(
    state: State, wave: int, moved: Mapping[str, str], before: Mapping[str, int]
) -> Iterator[Violation]:
    """Hard (anti-)affinity of groups with a member moved in this wave. `moved`: vm -> dst;
    `before`: group -> number of hosts its members used at the wave's start."""
    inv = state.inv
    groups = {inv.vm(v).server_group for v in moved} - {None}
    for gid in sorted(g for g in groups if g is not None):
        g = inv.group(gid)
        if not g.hard:
            continue
        members = [v.id for v in inv.members(gid)]
        if g.anti:
            counts = Counter(state.host_of[v] for v in members)
            for host in sorted({moved[v] for v in members if v in moved}):
                if counts[host] > g.max_server_per_host:
                    yield Violation(
                        "anti_affinity",
                        f"server group {g.name or gid}: {counts[host]} members on {host}, "
                        f"max_server_per_host is {g.max_server_per_host}",
                        wave,
                        (gid, host),
                        {"members": counts[host], "max": g.max_server_per_host},
                    )
        else:
            hosts = sorted({state.host_of[v] for v in members})
            if len(hosts) > max(1, before[gid]):
                yield Violation(
                    "affinity",
                    f"affinity group {g.name or gid} is split over {', '.join(hosts)}",
                    wave,
                    (gid, *hosts),
                    {"hosts": len(hosts)},
                )


def rule_headroom(
    state: State,
    wave: int | None,
    wave_hosts: set[str],
    rule: str = "headroom",
    rows: list[HeadroomRow] | None = None,
) -> Iterator[Violation]:
    """`rows`: the headroom with `wave_hosts` down, when the caller has computed it already."""
    h = state.policy.headroom
    if rows is None:
        rows = headroom(state.model, h, state.down_mask(wave_hosts))
    for row in rows:
        if row.ok:
            continue
        parts = []
        if row.required_failures > row.free:
            parts.append(
                f"< {format_amount(row.rc, row.required_failures)} needed for N+{h.failures} "
                f"(largest: {', '.join(row.largest_hosts)})"
            )
        if row.required_reserve > row.free:
            parts.append(
                f"< {format_amount(row.rc, row.required_reserve)} reserve "
                f"({h.reserve_percent:g}% of {format_amount(row.rc, row.total)})"
            )
        down = f"with {len(wave_hosts)} host(s) down, " if wave_hosts else ""
        yield Violation(
            rule,
            f"{row.group}: {down}{row.rc} free {format_amount(row.rc, row.free)} "
            + " and ".join(parts),
            wave,
            (row.group, row.rc),
            {"free": row.free, "required": row.required},
        )


# ---------------------------------------------------------------------------------------------
# The whole check
# ---------------------------------------------------------------------------------------------
def check_inventory(inv: Inventory, policy: Policy) -> list[Violation]:
    """What is wrong with the cloud before any plan: over-capacity, headroom or HA already broken,
    hard server groups already violated."""
    state = State(inv, policy)
    out = list(rule_inventory_capacity(state))
    out += rule_headroom(state, None, set(), rule="inventory.headroom")
    out += rule_ha_groups(inv, set(), rule="inventory.ha_group")
    out += rule_inventory_groups(state)
    return out


def check_plan(inv: Inventory, plan: Plan, *, digest: str | None = None) -> CheckReport:
    """Replay `plan` on `inv`; `digest` (default: the inventory file's) must match the plan's."""
    policy = plan.policy
    violations: list[Violation] = []
    violations += rule_digest(plan, digest if digest is not None else inv.digest)
    violations += check_inventory(inv, policy)
    violations += rule_wave_index(plan)
    violations += rule_unknown(inv, plan)
    violations += rule_coverage(inv, plan)
    violations += rule_order(inv, plan)

    state = State(inv, policy)
    per_wave: list[dict[str, Any]] = []
    moves_per_vm: Counter[str] = Counter()
    min_slack: dict[str, float] = {}
    worst_util = 0.0
    for wave in plan.waves:
        wave_hosts = {h for h in wave.hosts if inv.has_host(h)}
        violations += rule_wave_size(inv, policy, wave)
        violations += rule_ha_groups(inv, wave_hosts, wave=wave.index)
        violations += rule_evacuation(state, wave)
        moved: dict[str, str] = {}
        for m in wave.migrations:
            violations += rule_migration(state, wave, m, wave_hosts)
            if inv.has_vm(m.vm) and inv.has_host(m.dst) and inv.host(m.dst).is_compute:
                moved.setdefault(m.vm, m.dst)
        for s in wave.stops:
            violations += rule_stop(state, wave, s, wave_hosts)
        groups_before = {
            gid: len({state.host_of[v.id] for v in inv.members(gid)})
            for gid in {inv.vm(v).server_group for v in moved} - {None}
            if gid is not None
        }
        for vm, dst in moved.items():
            if state.host_of[vm] != dst:
                state.move(vm, dst)
                moves_per_vm[vm] += 1
        violations += rule_capacity(state, wave.index, moved.values())
        violations += rule_server_groups(state, wave.index, moved, groups_before)
        rows = headroom(state.model, policy.headroom, state.down_mask(wave_hosts))
        violations += rule_headroom(state, wave.index, wave_hosts, rows=rows)
        # metrics of this wave
        for r in rows:
            if r.required > 0:
                key = f"{r.group}/{r.rc}"
                min_slack[key] = min(min_slack.get(key, float("inf")), r.free / r.required)
        util = state.model.utilisation()
        if util.size:
            worst_util = max(worst_util, float(util[state.model.available].max(initial=0.0)))
        per_wave.append(
            {
                "index": wave.index,
                "hosts": len(wave.hosts),
                "migrations": len(wave.migrations),
                "live": sum(1 for m in wave.migrations if m.method == "live"),
                "cold": sum(1 for m in wave.migrations if m.method == "cold"),
                "stops": len(wave.stops),
            }
        )
        for s in wave.stops:
            state.stopped.add(s.vm)
        state.upgraded |= wave_hosts

    warnings = _soft_group_warnings(state) + _summary_warnings(plan, moves_per_vm)
    metrics = _metrics(inv, plan, moves_per_vm, per_wave, min_slack, worst_util, warnings)
    # The inventory's problems first, then the plan's, then wave by wave (stable within).
    violations.sort(key=lambda v: (0 if v.rule.startswith("inventory.") else 1, v.wave or 0))
    return CheckReport(tuple(violations), tuple(warnings), metrics)


def _soft_group_warnings(state: State) -> list[Violation]:
    out = []
    for g in state.inv.server_groups:
        if g.hard:
            continue
        members = [v.id for v in state.inv.members(g.id)]
        hosts = Counter(state.host_of[v] for v in members)
        if g.anti and any(n > g.max_server_per_host for n in hosts.values()):
            out.append(
                Violation(
                    "soft_anti_affinity",
                    f"soft anti-affinity group {g.name or g.id} shares hosts at the end",
                    objects=(g.id,),
                )
            )
        if not g.anti and len(hosts) > 1:
            out.append(
                Violation(
                    "soft_affinity",
                    f"soft affinity group {g.name or g.id} is split over "
                    f"{len(hosts)} hosts at the end",
                    objects=(g.id,),
                )
            )
    return out


def _summary_warnings(plan: Plan, moves: Counter[str]) -> list[Violation]:
    out = []
    s = plan.summary
    actual = {"waves": len(plan.waves), "migrations": sum(len(w.migrations) for w in plan.waves)}
    for key, value in actual.items():
        if key in s and s[key] != value:
            out.append(Violation("summary", f"summary says {key} = {s[key]}, the plan has {value}"))
    return out


def _metrics(
    inv: Inventory,
    plan: Plan,
    moves: Counter[str],
    per_wave: list[dict[str, Any]],
    min_slack: dict[str, float],
    worst_util: float,
    warnings: list[Violation],
) -> dict[str, Any]:
    migrations = sum(len(w.migrations) for w in plan.waves)
    moved = len(moves)
    lb = bounds.lower_bounds(inv, plan.policy)
    out: dict[str, Any] = {
        "waves": len(plan.waves),
        "hosts_upgraded": len(plan.hosts),
        "migrations": migrations,
        "live_migrations": sum(w["live"] for w in per_wave),
        "cold_migrations": sum(w["cold"] for w in per_wave),
        "stops": sum(w["stops"] for w in per_wave),
        "vms_moved": moved,
        "vms_moved_more_than_once": sum(1 for n in moves.values() if n > 1),
        "migrations_per_moved_vm": round(migrations / moved, 4) if moved else 0.0,
        "max_utilisation": round(worst_util, 4),
        "min_headroom_ratio": {k: round(v, 4) for k, v in sorted(min_slack.items())},
        "soft_group_warnings": sum(1 for w in warnings if w.rule.startswith("soft_")),
        "lower_bounds": lb.to_dict(),
        "per_wave": per_wave,
    }
    if lb.waves:
        out["wave_gap"] = round(len(plan.waves) / lb.waves - 1.0, 4)
    if lb.migrations:
        out["migration_gap"] = round(migrations / lb.migrations - 1.0, 4)
    return out


SUMMARY_KEYS = (
    "waves",
    "hosts_upgraded",
    "migrations",
    "live_migrations",
    "cold_migrations",
    "stops",
    "vms_moved",
    "vms_moved_more_than_once",
    "migrations_per_moved_vm",
    "lower_bounds",
    "wave_gap",
    "migration_gap",
)


def plan_summary(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The part of the checker's metrics a plan file records as its `summary`."""
    return {k: metrics[k] for k in SUMMARY_KEYS if k in metrics}
