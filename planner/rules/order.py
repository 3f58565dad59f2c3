"""Order: hosts that `policy.first` selects are in no later wave than any other host, hosts that
`policy.last` selects in no earlier wave than any other (a boundary wave may be shared).

Proofs name it by `order_first` and `order_last`. Lower bound: each tier (first, the others,
last) needs its own waves by every other family, and consecutive tiers share at most one
boundary wave, in which the later tier has at most max_hosts_per_wave - 1 places."""

from __future__ import annotations

import math

from planner.inventory import Host, Inventory
from planner.policy import Policy, select_hosts
from planner.rules.base import BoundsContext, Family, Out, PlanCheck, Violation, Words

FIRST, OTHER, LAST = 0, 1, 2  # tiers, in the order they are upgraded


def selected(inv: Inventory, p: Policy) -> tuple[frozenset[str], frozenset[str]]:
    """The hosts policy.first and policy.last select."""
    return select_hosts(inv, p.first), select_hosts(inv, p.last)


def tier_of(name: str, first: frozenset[str], last: frozenset[str]) -> int:
    return FIRST if name in first else LAST if name in last else OTHER


def words_first(p: Policy) -> Words:
    return Words(
        "order_first",
        f"the order of policy.first ({', '.join(p.first)}) before all others",
        "select fewer hosts in policy.first (or none)",
    )


def words_last(p: Policy) -> Words:
    return Words(
        "order_last",
        f"the order of policy.last ({', '.join(p.last)}) after all others",
        "select fewer hosts in policy.last (or none)",
    )


# -- the check ----------------------------------------------------------------------------------
def _plan(pc: PlanCheck, out: Out) -> None:
    p = pc.plan.policy
    wave_of = pc.plan.wave_of()
    first = select_hosts(pc.inv, p.first) & wave_of.keys()
    last = select_hosts(pc.inv, p.last) & wave_of.keys()
    others = wave_of.keys() - first - last
    if first and (others or last):
        latest_first = max(first, key=lambda h: wave_of[h])
        rest = others | last
        earliest = min(rest, key=lambda h: wave_of[h])
        if wave_of[earliest] < wave_of[latest_first]:
            out.append(
                Violation(
                    "order",
                    f"{earliest} (wave {wave_of[earliest]}) comes before {latest_first} "
                    f"(wave {wave_of[latest_first]}), which policy.first puts first",
                    wave_of[earliest],
                    (earliest, latest_first),
                )
            )
    if last and others:
        earliest_last = min(last, key=lambda h: wave_of[h])
        latest = max(others, key=lambda h: wave_of[h])
        if wave_of[latest] > wave_of[earliest_last]:
            out.append(
                Violation(
                    "order",
                    f"{latest} (wave {wave_of[latest]}) comes after {earliest_last} "
                    f"(wave {wave_of[earliest_last]}), which policy.last puts last",
                    wave_of[latest],
                    (latest, earliest_last),
                )
            )


# -- lower bounds -------------------------------------------------------------------------------
def _waves_for(bc: BoundsContext, hosts: list[Host]) -> tuple[int, int]:
    """(waves, waves beyond one shared with an earlier tier) that `hosts` alone need."""
    n = len(hosts)
    if n == 0:
        return 0, 0
    M = bc.policy.max_hosts_per_wave
    alone = bc.need(hosts)
    # Sharing its first wave with the previous tier's last one (which holds at least one host of
    # that tier) saves at most that wave, and leaves at most M - 1 places in it.
    beyond = max(alone - 1, math.ceil(max(0, n - (M - 1)) / M))
    return alone, beyond


def _combine(bc: BoundsContext) -> None:
    """The tiers' needs added up (policy.first hosts no later than the others, policy.last ones
    no earlier: their waves overlap in at most one boundary wave each)."""
    first, last = selected(bc.inv, bc.policy)
    if not (first or last) or first & last:
        return
    tiers = [
        [h for h in bc.to_upgrade if h.name in first],
        [h for h in bc.to_upgrade if h.name not in first and h.name not in last],
        [h for h in bc.to_upgrade if h.name in last],
    ]
    tiers = [t for t in tiers if t]
    if len(tiers) < 2:
        return
    total = _waves_for(bc, tiers[0])[0]
    for t in tiers[1:]:
        total += _waves_for(bc, t)[1]
    bc.bounds["order (first/last)"] = total


FAMILY = Family(
    name="order",
    rules={"order": "hosts selected by policy.first come before, policy.last after, all others"},
    plan=_plan,
    combine=_combine,
    owns=lambda key: key in ("order_first", "order_last"),
)
