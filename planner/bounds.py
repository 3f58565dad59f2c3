"""Lower bounds on a plan's waves and migrations, to report its quality (the gap).

Every bound here is valid: no plan satisfying the policy can do better. Where a bound shows that
no plan exists at all, `infeasible` says why in an operator's terms.

Each rule family computes its own part (`planner.rules`, its `bound` hook: the wave size limits,
the cap on a wave's migrations, the HA groups' spare members, the migrations VMs that cannot be
stopped need, the headroom's m_cap and packing bounds); families whose bound combines the others'
(`combine`: the tiers of policy.first / policy.last) come last. This module runs them, in the
registry's order, once per (inventory, policy): the result is kept on the inventory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from planner.inventory import Inventory
from planner.policy import Policy
from planner.rules import FAMILIES
from planner.rules.base import BoundsContext
from planner.rules.headroom import Knapsack, headroom_knapsacks
from planner.rules.method import stoppable as _stoppable
from planner.rules.method import to_upgrade as _to_upgrade
from planner.rules.packing import packing_waves

__all__ = [
    "Knapsack",
    "LowerBounds",
    "headroom_knapsacks",
    "lower_bounds",
    "packing_waves",
    "stoppable",
]


@dataclass(frozen=True)
class LowerBounds:
    waves: int
    migrations: int
    # The most compute hosts headroom lets down at once (None: headroom does not limit it).
    max_compute_hosts_down: int | None
    # What each bound on waves came to: {"max_hosts_per_wave": 5, "headroom": 7, ...}.
    wave_bounds: dict[str, int] = field(default_factory=dict)
    infeasible: tuple[str, ...] = ()
    # The rule family behind each of `infeasible`, in order, and what it is about: ("ha_group",
    # group name), ("method", a VM that cannot migrate) or ("headroom", resource class).
    obstacles: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "waves": self.waves,
            "migrations": self.migrations,
            "migrations_per_vm": 1.0,
            "max_compute_hosts_down": self.max_compute_hosts_down,
            "wave_bounds": dict(self.wave_bounds),
            "infeasible": list(self.infeasible),
        }


def stoppable(inv: Inventory, policy: Policy, vm_id: str) -> bool:
    return _stoppable(policy, inv.vm(vm_id), inv)


_CACHE = "_lower_bounds"  # attribute of the inventory: policy -> LowerBounds


def lower_bounds(inv: Inventory, policy: Policy) -> LowerBounds:
    """The bounds for (inventory, policy), computed once and kept on the inventory (both are
    immutable): the planner, the checker and the reports ask for them again and again. The
    result is shared; do not change it."""
    try:
        hash(policy)
    except TypeError:  # a policy built with lists: nothing to key it by
        return _compute(inv, policy)
    cache: dict[Policy, LowerBounds] = inv.__dict__.setdefault(_CACHE, {})
    found = cache.get(policy)
    if found is None:
        found = cache[policy] = _compute(inv, policy)
    return found


def _compute(inv: Inventory, policy: Policy) -> LowerBounds:
    to_upgrade = _to_upgrade(inv, policy)
    if not to_upgrade:
        return LowerBounds(0, 0, None, {}, ())
    bc = BoundsContext(inv, policy, to_upgrade)
    bc.needs = [f.need for f in FAMILIES if f.need is not None]
    for f in FAMILIES:
        if f.bound is not None:
            f.bound(bc)
    for f in FAMILIES:
        if f.combine is not None:
            f.combine(bc)
    waves = max(bc.bounds.values()) if bc.bounds else 0
    return LowerBounds(
        waves,
        bc.migrations,
        bc.max_down,
        bc.bounds,
        tuple(bc.reasons),
        tuple(bc.obstacles),
    )
