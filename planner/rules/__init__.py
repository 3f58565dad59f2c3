"""The rule families, one module each, and their registry.

`FAMILIES` lists them in the order the checker reports their violations, the lower bounds
list their findings and the solver's models encode them (`solver.rules` keys its encodings by
the same names). A new rule is a module here, with its `FAMILY`, added to `FAMILIES`; see
docs/architecture.md for the rest of the way.
"""

from __future__ import annotations

from planner.inventory import Inventory
from planner.policy import Policy
from planner.rules import (
    affinity,
    aggregates,
    anti_affinity,
    az,
    capacity,
    cloud_headroom,
    clouds,
    evacuation,
    ha_group,
    headroom,
    method,
    migrations_per_wave,
    order,
    placement,
    project_windows,
    remedy,
    schedule,
    structure,
    version,
    wave_size,
)
from planner.rules.base import Family, Relaxation, Violation, Words

FAMILIES: tuple[Family, ...] = (
    structure.FAMILY,
    clouds.FAMILY,
    capacity.FAMILY,
    wave_size.FAMILY,
    migrations_per_wave.FAMILY,
    ha_group.FAMILY,
    order.FAMILY,
    schedule.FAMILY,
    project_windows.FAMILY,
    evacuation.FAMILY,
    method.FAMILY,
    remedy.FAMILY,
    version.FAMILY,
    az.FAMILY,
    aggregates.FAMILY,
    placement.FAMILY,
    headroom.FAMILY,
    cloud_headroom.FAMILY,
    anti_affinity.FAMILY,
    affinity.FAMILY,
)
BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES}

# Every checker rule and its meaning: the plan's rules, then the inventory's.
RULES: dict[str, str] = {
    **{r: m for f in FAMILIES for r, m in f.rules.items() if not r.startswith("inventory.")},
    **{r: m for f in FAMILIES for r, m in f.rules.items() if r.startswith("inventory.")},
}


def family_of(key: str) -> Family | None:
    """The family a proof's key belongs to ("size_az" -> wave_size, "ha:ctl" -> ha_group)."""
    return next((f for f in FAMILIES if f.owns(key)), None)


def one_step(inv: Inventory, policy: Policy, key: str) -> Relaxation | None:
    """The smallest relaxation of the family a proof names by `key` (None: it has none)."""
    f = family_of(key)
    return f.one_step(inv, policy, key) if f is not None and f.one_step is not None else None


def policy_keys() -> dict[str, str]:
    """Every policy key a what-if may vary, with how its values read."""
    return {k: kind for f in FAMILIES for k, kind in f.policy_keys.items()}


__all__ = [
    "BY_NAME",
    "FAMILIES",
    "RULES",
    "Family",
    "Relaxation",
    "Violation",
    "Words",
    "family_of",
    "one_step",
    "policy_keys",
]
