"""Wave size: at most `max_hosts_per_wave` hosts in a wave, and at most
`max_hosts_per_wave_per_az` of one AZ and `max_hosts_per_wave_per_rack` of one rack.

Proofs name it by three keys: `size` (the global limit), `size_az` and `size_rack`. Lower
bound: the hosts to upgrade over each limit (the fullest AZ or rack for the scoped ones)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

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
    by_key,
)

SCOPED = ("az", "rack")  # host attributes a wave limit may apply to
SCOPE_WORD = {"az": "AZ", "rack": "rack"}


def limit_of(policy: Policy, attr: str) -> int | None:
    limit: int | None = getattr(policy, f"max_hosts_per_wave_per_{attr}")
    return limit


def limits(policy: Policy) -> list[tuple[str, int]]:
    """(host attribute, limit) of the per-AZ and per-rack limits that are set."""
    return [(a, n) for a in SCOPED if (n := limit_of(policy, a)) is not None]


def scoped(hosts: Sequence[Host], attr: str) -> dict[str, list[Host]]:
    """The hosts of each AZ or rack (`attr`), hosts without one left out."""
    return by_key(hosts, lambda h: getattr(h, attr))


# -- words --------------------------------------------------------------------------------------
def words(p: Policy) -> Words:
    return Words(
        "size", f"max_hosts_per_wave {p.max_hosts_per_wave}", "a larger max_hosts_per_wave"
    )


def words_per(attr: str, limit: int) -> Words:
    """attr: "az" or "rack"."""
    return Words(
        f"size_{attr}",
        f"max_hosts_per_wave_per_{attr} {limit}",
        f"a larger max_hosts_per_wave_per_{attr}",
    )


def _owns(key: str) -> bool:
    return key == "size" or key in {f"size_{a}" for a in SCOPED}


def one_step(inv: Inventory, p: Policy, key: str) -> Relaxation | None:
    """One more host a wave (in total, or of an AZ or rack)."""
    if key == "size":
        n = p.max_hosts_per_wave + 1
        return Relaxation(f"max_hosts_per_wave {n}", inv, p.with_changes(max_hosts_per_wave=n))
    attr = "max_hosts_per_wave_per_" + key.split("_", 1)[1]
    n = int(getattr(p, attr) or 0) + 1
    return Relaxation(f"{attr} {n}", inv, p.with_changes(**{attr: n}))


# -- the check ----------------------------------------------------------------------------------
def violations(
    inv: Inventory, policy: Policy, index: int, names: Sequence[str]
) -> Iterator[Violation]:
    hosts = [inv.host(h) for h in dict.fromkeys(names) if inv.has_host(h)]
    if len(hosts) > policy.max_hosts_per_wave:
        yield Violation(
            "wave_size",
            f"{len(hosts)} hosts, max_hosts_per_wave is {policy.max_hosts_per_wave}",
            index,
            numbers={"hosts": len(hosts), "max": policy.max_hosts_per_wave},
        )
    for attr, limit in limits(policy):
        for key, group in sorted(scoped(hosts, attr).items()):
            if len(group) > limit:
                yield Violation(
                    "wave_size",
                    f"{len(group)} hosts of {SCOPE_WORD[attr]} {key}, "
                    f"max_hosts_per_wave_per_{attr} is {limit}",
                    index,
                    (key,),
                    {"hosts": len(group), "max": limit},
                )


def _wave(state: State, step: WaveStep, out: Out) -> None:
    out.extend(violations(state.inv, state.policy, step.index, step.wave.hosts))


def hosts_ok(inv: Inventory, policy: Policy, hosts: list[Host]) -> bool:
    return not any(violations(inv, policy, 1, [h.name for h in hosts]))


class WaveCount:
    """The hosts of a wave being filled, in total and per AZ and rack: may one more join?"""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.limits = limits(policy)
        self.n = 0
        self.per: dict[str, dict[str, int]] = {a: {} for a, _ in self.limits}

    def full(self) -> bool:
        return self.n >= self.policy.max_hosts_per_wave

    def allows(self, host: Host) -> bool:
        """Its AZ and rack have room (the global limit is `full`)."""
        for attr, limit in self.limits:
            key = getattr(host, attr)
            if key is not None and self.per[attr].get(key, 0) >= limit:
                return False
        return True

    def add(self, host: Host) -> None:
        self.n += 1
        for attr, _ in self.limits:
            key = getattr(host, attr)
            self.per[attr][key] = self.per[attr].get(key, 0) + 1


# -- lower bounds -------------------------------------------------------------------------------
def _bounds(hosts: Sequence[Host], policy: Policy) -> Iterator[tuple[str, int]]:
    yield "max_hosts_per_wave", math.ceil(len(hosts) / policy.max_hosts_per_wave)
    for attr, limit in limits(policy):
        groups = scoped(hosts, attr)
        if groups:
            key, most = max(groups.items(), key=lambda kv: len(kv[1]))
            yield f"max_hosts_per_wave_per_{attr} ({key})", math.ceil(len(most) / limit)


def _bound(bc: BoundsContext) -> None:
    bc.bounds.update(_bounds(bc.to_upgrade, bc.policy))


def _need(bc: BoundsContext, hosts: list[Host]) -> int:
    return max(n for _, n in _bounds(hosts, bc.policy))


FAMILY = Family(
    name="wave_size",
    rules={"wave_size": "a wave's hosts within max_hosts_per_wave (and per AZ, per rack)"},
    wave=_wave,
    bound=_bound,
    need=_need,
    hosts_ok=hosts_ok,
    owns=_owns,
    one_step=one_step,
    policy_keys={
        "max_hosts_per_wave": "int",
        "max_hosts_per_wave_per_az": "int?",
        "max_hosts_per_wave_per_rack": "int?",
    },
)
