"""Migration method and stops: `live` only for an ACTIVE VM whose migration is live, `cold` only
for one whose migration is live or cold (`method`); a VM is stopped in place only on its current
host, in its host's wave, if its migration is none (or it is the remedy `stop`, see
`planner.rules.remedy`) and the policy has allow_stop (`stop`).

Proofs name the stops by `stop`. Lower bound: every VM on a host to upgrade that cannot be
stopped migrates at least once; one that cannot migrate while stops are not allowed has no plan."""

from __future__ import annotations

from planner.inventory import VM
from planner.plan import Method, Migration, Stop
from planner.policy import Policy
from planner.rules.base import (
    BoundsContext,
    Family,
    Numbered,
    Out,
    State,
    Violation,
    WaveStep,
    Words,
    vm_label,
)


def stoppable(policy: Policy, vm: VM) -> bool:
    """The VM stays on its host, stopped, while the host is upgraded."""
    return policy.allow_stop and vm.migration == "none"


def method_for(vm: VM) -> Method | None:
    """live, cold, or None when the VM cannot move (migration none)."""
    if vm.migration == "none":
        return None
    if vm.migration == "live" and vm.status == "ACTIVE":
        return "live"
    return "cold"


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
    inv = state.inv
    for i, m in moves:
        vm = inv.vm(m.vm)
        if m.method == "live" and not (vm.status == "ACTIVE" and vm.migration == "live"):
            out.append(
                (
                    i,
                    Violation(
                        "method",
                        f"{vm_label(inv, m.vm)} cannot be live-migrated (status {vm.status}, "
                        f"migration {vm.migration})",
                        step.index,
                        (m.vm,),
                    ),
                )
            )
        if m.method == "cold" and vm.migration not in ("live", "cold"):
            out.append(
                (
                    i,
                    Violation(
                        "method",
                        f"{vm_label(inv, m.vm)} cannot be migrated at all (migration "
                        f"{vm.migration})",
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
    if vm.migration != "none" and s.remedy != "stop":
        out.append(
            Violation(
                "stop",
                f"{label} can migrate (migration {vm.migration}); only VMs with migration none "
                "may be stopped in place, or others as the remedy stop",
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
    for h in bc.to_upgrade:
        for v in bc.inv.vms_on(h.name):
            if stoppable(bc.policy, v):
                continue
            bc.migrations += 1
            if v.migration == "none":
                bc.obstacle(
                    f"VM {v.name or v.id} ({v.id}) on {h.name} cannot migrate (migration none) "
                    "and the policy does not allow_stop",
                    "method",
                    v.id,
                )


FAMILY = Family(
    name="method",
    rules={
        "method": "live only for an ACTIVE VM with migration live; cold only for live or cold",
        "stop": "a VM is stopped in place only if its migration is none (or as the remedy "
        "stop) and allow_stop is set",
    },
    migrations=_migrations,
    stops=_stops,
    bound=_bound,
    owns=lambda key: key == "stop",
    # max_concurrent_live_migrations: how many at once per source host (the simulator and the
    # executor pace migrations by it; no plan can break it)
    policy_keys={"allow_stop": "bool", "max_concurrent_live_migrations": "int"},
)
