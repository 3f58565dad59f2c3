"""Migrations per wave: at most `max_migrations_per_wave` migrations in one wave, to bound the
network load of a wave (optional: absent or null, no cap).

Proofs name it `migrations_per_wave`; its one step is a cap one larger.

Lower bounds. A VM can leave its host only in that host's wave (`source`), and every VM on a
wave's hosts that cannot be stopped migrates in it (`evacuation`), so a wave holds at least the
sum, over its hosts, of the VMs that start on them and cannot be stopped (VMs that arrived
since only add to it). Hosts are then items of that weight and waves bins of the cap holding at
most max_hosts_per_wave hosts: waves >= ceil(those VMs / cap), and the other bin-packing bounds
(`packing.packing_waves`: hosts heavier than half the cap each need a wave of their own, ...).
No weight is negative, so a tier (first/last) alone is bound the same way. A host with more
such VMs than the cap has no plan at all."""

from __future__ import annotations

import math

from planner.inventory import Host, Inventory
from planner.policy import Policy
from planner.rules.base import (
    BoundsContext,
    Family,
    Out,
    Relaxation,
    State,
    Violation,
    WaveStep,
    Words,
)
from planner.rules.method import stoppable
from planner.rules.packing import packing_waves

KEY = "migrations_per_wave"


def words(p: Policy) -> Words:
    return Words(
        KEY,
        f"max_migrations_per_wave {p.max_migrations_per_wave}",
        "a larger max_migrations_per_wave (or none)",
    )


def one_step(inv: Inventory, p: Policy, key: str) -> Relaxation | None:
    """One migration more a wave."""
    if p.max_migrations_per_wave is None:
        return None
    n = p.max_migrations_per_wave + 1
    more = p.with_changes(max_migrations_per_wave=n)
    return Relaxation(f"max_migrations_per_wave {n}", inv, more)


def forced(inv: Inventory, policy: Policy, host: str) -> int:
    """VMs that start on `host` and cannot be stopped: they migrate in its wave."""
    return sum(1 for v in inv.vms_on(host) if not stoppable(policy, v, inv))


# -- the check ----------------------------------------------------------------------------------
def _wave(state: State, step: WaveStep, out: Out) -> None:
    cap = state.policy.max_migrations_per_wave
    n = len(step.wave.migrations)
    if cap is not None and n > cap:
        out.append(
            Violation(
                KEY,
                f"{n} migrations, max_migrations_per_wave is {cap}",
                step.index,
                numbers={"migrations": n, "max": cap},
            )
        )


def hosts_ok(inv: Inventory, policy: Policy, hosts: list[Host]) -> bool:
    cap = policy.max_migrations_per_wave
    return cap is None or sum(forced(inv, policy, h.name) for h in hosts) <= cap


# -- lower bounds -------------------------------------------------------------------------------
def _waves(bc: BoundsContext, hosts: list[Host]) -> int:
    cap = bc.policy.max_migrations_per_wave
    if cap is None or not hosts:
        return 0
    weights = [float(forced(bc.inv, bc.policy, h.name)) for h in hosts]
    packed = packing_waves(weights, float(cap), bc.policy.max_hosts_per_wave)
    return max(math.ceil(sum(weights) / cap), packed)


def _bound(bc: BoundsContext) -> None:
    cap = bc.policy.max_migrations_per_wave
    if cap is None:
        return
    over = False
    for h in bc.to_upgrade:
        n = forced(bc.inv, bc.policy, h.name)
        if n > cap:
            over = True
            bc.obstacle(
                f"{h.name}: {n} VMs must migrate in its wave (they cannot be stopped), more than "
                f"max_migrations_per_wave {cap}",
                KEY,
                h.name,
            )
    if not over:
        bc.bounds["max_migrations_per_wave"] = _waves(bc, list(bc.to_upgrade))


def _need(bc: BoundsContext, hosts: list[Host]) -> int:
    return _waves(bc, hosts)


FAMILY = Family(
    name=KEY,
    rules={KEY: "a wave's migrations within max_migrations_per_wave"},
    wave=_wave,
    bound=_bound,
    need=_need,
    hosts_ok=hosts_ok,
    owns=lambda key: key == KEY,
    one_step=one_step,
    active=lambda inv, p: p.max_migrations_per_wave is not None,
    policy_keys={"max_migrations_per_wave": "int?"},
)
