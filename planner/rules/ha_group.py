"""HA groups: every HA group keeps `min_available` of its hosts available (enabled, up, not in
the wave) at every step; a host the inventory does not know counts as available.

Proofs name a group by `ha:<name>`. Lower bound: a group with `spare` members above
min_available loses at most that many a wave; with none spare, its hosts can never go down."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace

from planner.inventory import HAGroup, Host, Inventory
from planner.policy import Policy
from planner.rules.base import (
    BoundsContext,
    Family,
    Out,
    Relaxation,
    State,
    Violation,
    Words,
)


def words(name: str, min_available: int, hosts: int) -> Words:
    return Words(
        f"ha:{name}",
        f"HA group {name} (min_available {min_available} of {hosts} hosts)",
        f"a lower min_available for {name} (or one more host in it)",
    )


def words_of(inv: Inventory, name: str) -> Words:
    g = next(g for g in inv.ha_groups if g.name == name)
    return words(name, g.min_available, len(g.hosts))


def one_step(inv: Inventory, p: Policy, key: str) -> Relaxation | None:
    """One member fewer that must stay available."""
    name = key[3:]
    groups = tuple(
        replace(g, min_available=g.min_available - 1) if g.name == name else g
        for g in inv.ha_groups
    )
    m = next(g.min_available for g in groups if g.name == name)
    if m < 0:
        return None
    return Relaxation(f"min_available {m} for HA group {name}", replace(inv, ha_groups=groups), p)


# -- the check ----------------------------------------------------------------------------------
def violations(
    inv: Inventory, down: set[str], rule: str = "ha_group", wave: int | None = None
) -> Iterator[Violation]:
    for g in inv.ha_groups:
        unavailable = [
            h for h in g.hosts if h in down or (inv.has_host(h) and not inv.host(h).available)
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


def _down(state: State, hosts: set[str], wave: int | None, out: Out) -> None:
    rule = "inventory.ha_group" if wave is None else "ha_group"
    out.extend(violations(state.inv, hosts, rule, wave))


def hosts_ok(inv: Inventory, policy: Policy, hosts: list[Host]) -> bool:
    return not any(violations(inv, {h.name for h in hosts}))


# -- lower bounds -------------------------------------------------------------------------------
def _available(inv: Inventory, g: HAGroup) -> list[str]:
    return [h for h in g.hosts if inv.has_host(h) and inv.host(h).available]


def _bound(bc: BoundsContext) -> None:
    inv = bc.inv
    for g in inv.ha_groups:
        avail = _available(inv, g)
        spare = len(avail) - g.min_available
        pending = [h for h in avail if h in bc.upgrade_names]
        if not pending:
            continue
        if spare <= 0:
            bc.obstacle(
                f"HA group {g.name}: {len(avail)} of {len(g.hosts)} hosts available and "
                f"min_available is {g.min_available}, so none of {', '.join(pending)} can go "
                "down",
                "ha_group",
                g.name,
            )
        else:
            bc.bounds[f"ha_group {g.name}"] = math.ceil(len(pending) / spare)


def _need(bc: BoundsContext, hosts: list[Host]) -> int:
    names = {h.name for h in hosts}
    need = 0
    for g in bc.inv.ha_groups:
        avail = _available(bc.inv, g)
        spare = len(avail) - g.min_available
        pending = [h for h in avail if h in names]
        if pending and spare > 0:
            need = max(need, math.ceil(len(pending) / spare))
    return need


FAMILY = Family(
    name="ha_group",
    rules={
        "ha_group": "every HA group keeps min_available hosts available",
        "inventory.ha_group": "the inventory's HA groups have min_available hosts available",
    },
    down=_down,
    bound=_bound,
    need=_need,
    hosts_ok=hosts_ok,
    owns=lambda key: key.startswith("ha:"),
    one_step=one_step,
)
