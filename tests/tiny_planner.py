"""A small search planner for tiny clouds, with the checker as its only oracle.

It exists to give the property tests a valid plan where the greedy planner finds none, and to
catch lower bounds that wrongly claim a cloud cannot be planned. It knows no rule itself: it
builds one-host waves in policy order (first, others, last), tries destinations for the wave's VMs
(upgraded hosts first) and keeps a wave only if `check_plan` finds nothing wrong with the plan so
far. A depth-first search under a budget of checker calls; None when the budget runs out or no
one-host-a-wave plan exists.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from planner.checker import check_plan
from planner.inventory import VM, Inventory
from planner.plan import Migration, Plan, Stop, Wave
from planner.policy import Policy, select_hosts


class _Budget(Exception):
    pass


def tiny_plan(inv: Inventory, policy: Policy, budget: int = 400) -> Plan | None:
    try:
        plan = _search(inv, policy, budget)
    except _Budget:
        return None
    # Prefixes were checked as they grew; the whole plan (even an empty one: nothing to upgrade,
    # but the cloud itself may be broken) must pass as well.
    return plan if plan is not None and check_plan(inv, plan).ok else None


def no_one_host_plan(inv: Inventory, policy: Policy, budget: int = 2000) -> bool:
    """True when the search tried every one-host-a-wave plan within `budget` checker calls and
    none passes (with max_hosts_per_wave 1: no plan exists at all); False when it found one or
    ran out of budget."""
    try:
        return _search(inv, policy, budget) is None
    except _Budget:
        return False


def _search(inv: Inventory, policy: Policy, budget: int) -> Plan | None:
    todo = [h.name for h in inv.hosts_to_upgrade(policy.target_version)]
    first = select_hosts(inv, policy.first)
    last = select_hosts(inv, policy.last)
    tier = {h: 0 if h in first else 2 if h in last else 1 for h in todo}
    calls = 0

    def ok(waves: list[Wave]) -> bool:
        nonlocal calls
        calls += 1
        if calls > budget:
            raise _Budget
        report = check_plan(inv, Plan("", policy, tuple(waves)))
        # The hosts not yet planned are the only thing a prefix may lack.
        return all(v.rule == "coverage" and v.wave is None for v in report.violations)

    def dfs(remaining: list[str], waves: list[Wave], host_of: dict[str, str]) -> Plan | None:
        if not remaining:
            return Plan("", policy, tuple(waves), generator={"name": "tiny"})
        low = min(tier[h] for h in remaining)
        upgraded = {h.name for h in inv.hosts if h.version == policy.target_version} | {
            h for w in waves for h in w.hosts
        }
        choices = sorted(
            (h for h in remaining if tier[h] == low),
            key=lambda h: (sum(1 for v in host_of.values() if v == h), h),
        )
        for h in choices:
            vms = [inv.vm(v) for v, at in host_of.items() if at == h]
            for moves, stops in _evacuations(inv, policy, h, vms, upgraded):
                wave = Wave(len(waves) + 1, (h,), tuple(moves), tuple(stops))
                if not ok([*waves, wave]):
                    continue
                after = dict(host_of)
                for m in moves:
                    after[m.vm] = m.dst
                found = dfs([x for x in remaining if x != h], [*waves, wave], after)
                if found is not None:
                    return found
        return None

    return dfs(todo, [], {v.id: v.host for v in inv.vms})


def _evacuations(
    inv: Inventory, policy: Policy, host: str, vms: list[VM], upgraded: set[str]
) -> Iterator[tuple[list[Migration], list[Stop]]]:
    """Every way to empty `host`: per VM a stop (when allowed) or a destination, best first."""
    options: list[list[tuple[str, str] | None]] = []
    dests = sorted(
        (h.name for h in inv.hosts if h.is_compute and h.available and h.name != host),
        key=lambda n: (n not in upgraded, n),
    )
    for v in vms:
        if v.migration == "none":
            options.append([None] if policy.allow_stop else [])
            continue
        method = "live" if v.migration == "live" and v.status == "ACTIVE" else "cold"
        options.append([(d, method) for d in dests])
    for combo in itertools.product(*options):
        moves = [
            Migration(v.id, host, c[0], c[1])  # type: ignore[arg-type]
            for v, c in zip(vms, combo, strict=True)
            if c is not None
        ]
        stops = [Stop(v.id, host) for v, c in zip(vms, combo, strict=True) if c is None]
        yield moves, stops
