"""Migration method and stops, by Nova's own rules: a VM moves only in a way Nova accepts in its
state and the policy permits (`permitted`, preferred first; `method`), and is stopped in place
only on its current host, in its host's wave, if it has no such way (or it is the remedy `stop`,
see `planner.rules.remedy`) and the policy has allow_stop (`stop`). A VM with no way and no stop
either has no plan (`unmovable: refuse`, the default) or leaves its host out of the plan, not
upgraded (`unmovable: leave`; `left_out`). A host that is down is upgraded only when every VM on
it can be evacuated (`allow_evacuate`); otherwise it is left out.

Nova's checks (nova 34.0.0, nova/compute/api.py, the `check_instance_state` decorators), by the
API status a snapshot reads (vm_state STOPPED is status SHUTOFF):
- live migration: ACTIVE, PAUSED (api.py:5586), the source up (conductor live_migrate.py:84);
- cold migration: ACTIVE, SHUTOFF (api.py:4293-4294), the source up (`check_instance_host`);
- evacuate: ACTIVE, SHUTOFF, ERROR (api.py:5718-5719), the source down (api.py:5736-5741);
- shelve: ACTIVE, SHUTOFF, PAUSED, SUSPENDED (api.py:4556); unshelve to a host needs 2.91 and
  the VM comes back ACTIVE. A SUSPENDED VM moves only this way.
- a hard affinity group's member: the scheduler's ServerGroupAffinityFilter
  (scheduler/filters/affinity_filter.py:143-165) admits only hosts holding a member, the moving
  VM's own included, so no scheduled live or cold migration moves one ("No valid host was
  found"), nor an evacuation. The group moves whole (`policy.affinity_moves`): shelve every
  member, then unshelve each to the planned host; or forced live migrations (2.30-2.67), which a
  default Nova fails late (compute/manager.py:1956-1960: VM ERROR, API 500) unless
  [workarounds] disable_group_policy_check_upcall=True. Nested allocations (a VGPU) cannot be
  forced ("complex allocations"), so such a group is shelved or does not move.
Statuses Nova leaves in passing (MIGRATING, VERIFY_RESIZE, ...) or a file leaves empty are
planned as before (cold unless live applies); the executor meets them at run time.

Proofs name the stops by `stop`. Lower bound: every VM on a host to upgrade that cannot be
stopped migrates at least once; one that cannot move while stops are not allowed has no plan
(unless `unmovable: leave`)."""

from __future__ import annotations

from planner.inventory import STANDARD_CLASSES, VM, Host, Inventory
from planner.plan import CROSS_CLOUD, Method, Migration, Stop
from planner.policy import Policy
from planner.rules.base import (
    BoundsContext,
    Family,
    Numbered,
    Out,
    PlanCheck,
    State,
    Violation,
    WaveStep,
    Words,
    shown,
    vm_label,
)

LIVE_STATES = frozenset({"ACTIVE", "PAUSED"})
COLD_STATES = frozenset({"ACTIVE", "SHUTOFF"})
EVACUATE_STATES = frozenset({"ACTIVE", "SHUTOFF", "ERROR"})
SHELVE_STATES = frozenset({"ACTIVE", "SHUTOFF", "PAUSED", "SUSPENDED"})
# Statuses a VM sits in (not passing through): outside these, planned as before (see above).
SETTLED = LIVE_STATES | COLD_STATES | EVACUATE_STATES | SHELVE_STATES | {"RESCUE"}
_LEFT = "_rollwave_left_out"  # Inventory cache: Policy -> left_out


def affinity_bound(inv: Inventory, vm: VM) -> bool:
    """A member of a hard affinity group: it moves only with its group."""
    g = vm.server_group
    return g is not None and inv.has_group(g) and inv.group(g).hard and not inv.group(g).anti


def nested(vm: VM) -> bool:
    """Demand beyond VCPU, MEMORY_MB and DISK_GB (a VGPU, a PCI device): Nova allocates it from a
    child provider, and a forced move cannot carry such allocations."""
    return any(rc not in STANDARD_CLASSES for rc in vm.resources)


def _shelvable(vm: VM, policy: Policy, group: bool) -> bool:
    # Shelving is downtime: allow_stop permits it, and affinity_moves: shelve for a group.
    allowed = policy.allow_stop or (group and policy.affinity_moves == "shelve")
    return allowed and vm.migration != "none" and vm.status in SHELVE_STATES


def _group_method(inv: Inventory, policy: Policy, gid: str) -> Method | None:
    """How a hard affinity group moves: every member the same way, or none moves."""
    members = inv.members(gid)
    hosts = [inv.host(v.host) for v in members if inv.has_host(v.host)]
    if any(not h.up for h in hosts):
        return None  # the filter keeps an evacuation on the down host itself
    if policy.affinity_moves == "forced" and all(
        v.migration == "live" and v.status in LIVE_STATES and not nested(v) for v in members
    ):
        return "live-forced"
    if all(_shelvable(v, policy, True) for v in members):
        return "shelve"
    return None


def permitted(
    vm: VM, inv: Inventory, policy: Policy, host: str | None = None
) -> tuple[Method, ...]:
    """The ways Nova and the policy let `vm` leave `host` (its inventory host by default),
    preferred first; empty: none."""
    h: Host | None = inv.host(host or vm.host) if inv.has_host(host or vm.host) else None
    if vm.migration == "none":
        return ()
    if affinity_bound(inv, vm):
        m = _group_method(inv, policy, vm.server_group or "")
        return () if m is None else (m,)
    if h is not None and not h.up:
        ok = policy.allow_evacuate and vm.local_disk_gb == 0 and vm.status in EVACUATE_STATES
        return ("evacuate",) if ok else ()
    out: list[Method] = []
    if vm.migration == "live" and vm.status in LIVE_STATES:
        out.append("live")
    if vm.status in COLD_STATES or vm.status not in SETTLED:
        out.append("cold")
    if _shelvable(vm, policy, False):
        out.append("shelve")
    return tuple(out)


def method_for(vm: VM, inv: Inventory | None = None, policy: Policy | None = None) -> Method | None:
    """The preferred way `vm` moves (`permitted`'s first), or None when it cannot move. Without
    the inventory and policy: by its own state and migration kind only."""
    if inv is not None and policy is not None:
        ways = permitted(vm, inv, policy)
        return ways[0] if ways else None
    if vm.migration == "none":
        return None
    if vm.migration == "live" and vm.status in LIVE_STATES:
        return "live"
    if vm.status in COLD_STATES or vm.status not in SETTLED:
        return "cold"
    return None


def why_not(vm: VM, inv: Inventory, policy: Policy) -> str:
    """Why `vm` has no permitted way to move, in an operator's words."""
    if vm.migration == "none":
        return "migration none"
    if affinity_bound(inv, vm):
        g = inv.group(vm.server_group or "")
        how = policy.affinity_moves or ("shelve" if policy.allow_stop else None)
        if how is None:
            return (
                f"hard affinity group {g.name or g.id}: Nova's affinity filter refuses moving a "
                "member alone; set allow_stop (the group is shelved and unshelved, downtime) or "
                "affinity_moves: forced (needs disable_group_policy_check_upcall)"
            )
        return (
            f"hard affinity group {g.name or g.id}: not every member can move by {how} (states, "
            "migration kinds, a host down, or nested allocations that cannot be forced)"
        )
    if inv.has_host(vm.host) and not inv.host(vm.host).up:
        if not policy.allow_evacuate:
            return "its host is down and the policy does not allow_evacuate"
        if vm.local_disk_gb:
            return (
                "its host is down and its disk is local (evacuation rebuilds from shared storage)"
            )
        return f"its host is down and Nova evacuates no VM in status {vm.status}"
    if vm.status == "SUSPENDED":
        return "SUSPENDED: Nova moves it only by shelve and unshelve, which needs allow_stop"
    if vm.status == "PAUSED":
        return "PAUSED with migration cold: Nova cold-migrates only ACTIVE and SHUTOFF VMs"
    return f"Nova migrates no VM in status {vm.status}"


def stoppable(policy: Policy, vm: VM, inv: Inventory | None = None) -> bool:
    """The VM stays on its host, stopped, while the host is upgraded: it has no way to move
    (`method_for`) and the policy has allow_stop."""
    return policy.allow_stop and method_for(vm, inv, policy) is None


def left_out(inv: Inventory, policy: Policy) -> dict[str, str]:
    """Hosts to upgrade the plan leaves out, not upgraded, with why: a host that is down with a VM
    that cannot be evacuated, and with `unmovable: leave` a host with a VM that can neither move
    nor be stopped. Cached per inventory and policy."""
    cache: dict[Policy, dict[str, str]] = inv.__dict__.setdefault(_LEFT, {})
    found = cache.get(policy)
    if found is not None:
        return found
    out: dict[str, str] = {}
    for h in inv.hosts_to_upgrade(policy.target_version):
        stuck = [v for v in inv.vms_on(h.name) if method_for(v, inv, policy) is None]
        if not stuck or (h.up and (policy.allow_stop or policy.unmovable != "leave")):
            continue
        labels = [f"{vm_label(inv, v.id)}: {why_not(v, inv, policy)}" for v in stuck]
        head = "down; " if not h.up else ""
        out[h.name] = f"{head}{len(stuck)} VM(s) cannot move: " + shown(labels, 3)
    cache[policy] = out
    return out


def to_upgrade(inv: Inventory, policy: Policy) -> tuple[Host, ...]:
    """The hosts a plan upgrades: those not on the target version, less `left_out`."""
    left = left_out(inv, policy)
    hosts = inv.hosts_to_upgrade(policy.target_version)
    return tuple(h for h in hosts if h.name not in left) if left else hosts


def words(n: int) -> Words:
    return Words(
        "stop",
        f"allow_stop false ({n} VM(s) on hosts to upgrade cannot migrate)",
        "allow_stop: true (they are stopped in place during their host's wave)",
    )


# -- the check ----------------------------------------------------------------------------------
def _migrations(
    state: State, step: WaveStep, moves: list[tuple[int, Migration]], out: Numbered
) -> None:
    inv, policy = state.inv, state.policy
    for i, m in moves:
        if m.method == CROSS_CLOUD:  # not a Nova move: the clouds family judges it
            continue
        vm = inv.vm(m.vm)
        ways = permitted(vm, inv, policy, state.host_of[m.vm])
        if m.method in ways:
            continue
        if not ways:
            why = f"it cannot move at all ({why_not(vm, inv, policy)})"
        else:
            why = f"Nova and the policy permit only {', '.join(ways)} (status {vm.status})"
        out.append(
            (
                i,
                Violation(
                    "method",
                    f"{vm_label(inv, m.vm)} cannot move by {m.method}: {why}",
                    step.index,
                    (m.vm,),
                ),
            )
        )


def _stops(state: State, step: WaveStep, stops: list[tuple[int, Stop]], out: Numbered) -> None:
    for i, s in stops:
        found: Out = []
        _stop(state, step, s, found)
        out.extend((i, v) for v in found)


def _stop(state: State, step: WaveStep, s: Stop, out: Out) -> None:
    inv, w = state.inv, step.index
    vm = inv.vm(s.vm)
    label = vm_label(inv, s.vm)
    current = state.host_of[s.vm]
    if s.host != current:
        out.append(Violation("stop", f"{label} is on {current}, not on {s.host}", w, (s.vm,)))
    if current not in step.hosts:
        out.append(
            Violation(
                "stop",
                f"{label} is stopped on {current}, which is not in this wave",
                w,
                (s.vm, current),
            )
        )
    # A VM that could migrate may be stopped only as the remedy `stop` (planner.rules.remedy
    # judges that the policy's non_converging allows it); allow_stop is needed either way.
    if method_for(vm, inv, state.policy) is not None and s.remedy != "stop":
        out.append(
            Violation(
                "stop",
                f"{label} can migrate ({method_for(vm, inv, state.policy)}); only VMs that cannot "
                "move may be stopped in place, or others as the remedy stop",
                w,
                (s.vm,),
            )
        )
    elif not state.policy.allow_stop:
        out.append(
            Violation(
                "stop",
                f"{label} would be stopped in place but the policy does not allow_stop",
                w,
                (s.vm,),
            )
        )


# -- lower bounds -------------------------------------------------------------------------------
def _bound(bc: BoundsContext) -> None:
    inv, policy = bc.inv, bc.policy
    for h in bc.to_upgrade:
        for v in inv.vms_on(h.name):
            if stoppable(policy, v, inv):
                continue
            bc.migrations += 1
            if method_for(v, inv, policy) is None:
                bc.obstacle(
                    f"VM {v.name or v.id} ({v.id}) on {h.name} cannot move "
                    f"({why_not(v, inv, policy)}) and the policy does not allow_stop "
                    "(unmovable: leave would leave its host out, not upgraded)",
                    "method",
                    v.id,
                )


def _plan(pc: PlanCheck, out: Out) -> None:
    """Hosts left out (not upgraded) are reported as warnings, each with why."""
    for host, why in sorted(left_out(pc.inv, pc.plan.policy).items()):
        pc.warnings.append(Violation("left_out", f"{host} is not upgraded: {why}", None, (host,)))


FAMILY = Family(
    name="method",
    rules={
        "method": "a VM moves only in a way Nova accepts in its state and the policy permits "
        "(live: ACTIVE, PAUSED; cold: ACTIVE, SHUTOFF; evacuate: off a down host; shelve; "
        "a hard affinity group's members only by its remedy)",
        "stop": "a VM is stopped in place only if it cannot move (or as the remedy stop) and "
        "allow_stop is set",
        "left_out": "a host left out, not upgraded (a warning: down, or unmovable: leave)",
    },
    plan=_plan,
    migrations=_migrations,
    stops=_stops,
    bound=_bound,
    owns=lambda key: key == "stop",
    # max_concurrent_live_migrations: how many at once per source host (the simulator and the
    # executor pace migrations by it; no plan can break it)
    policy_keys={
        "allow_stop": "bool",
        "max_concurrent_live_migrations": "int",
        "allow_evacuate": "bool",
    },
)
