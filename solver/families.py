"""The policy's rule families in an operator's words: one key, rule and relaxation per family.

The exact model (`solver.exact`) puts each family under its own assumption literal and the
pre-checks (`solver.precheck`) name the families their proofs rest on; both build them here, so a
proof names a family by the same key and words whichever of them found it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from planner.policy import Policy


@dataclass(frozen=True)
class Family:
    """One rule family under one assumption literal, in an operator's words."""

    key: str
    rule: str  # what must hold
    relax: str  # what relaxing it means


def stop(n: int) -> Family:
    return Family(
        "stop",
        f"allow_stop false ({n} VM(s) on hosts to upgrade cannot migrate)",
        "allow_stop: true (they are stopped in place during their host's wave)",
    )


def az_pin(az: str) -> Family:
    return Family(
        f"az:{az}",
        f"the AZ pin of the VMs pinned to {az}",
        f"let some VMs pinned to {az} run in another AZ (or add capacity to {az})",
    )


def aggregate_pin(aggregates: tuple[str, ...] | list[str]) -> Family:
    names = ", ".join(sorted(set(aggregates)))
    return Family(
        f"aggregates:{names}",
        f"the aggregates of the VMs bound to aggregates {names}",
        f"widen the aggregates those VMs may use (or add hosts to {names})",
    )


def size(p: Policy) -> Family:
    return Family(
        "size", f"max_hosts_per_wave {p.max_hosts_per_wave}", "a larger max_hosts_per_wave"
    )


def size_per(attr: str, limit: int) -> Family:
    """attr: "az" or "rack"."""
    return Family(
        f"size_{attr}",
        f"max_hosts_per_wave_per_{attr} {limit}",
        f"a larger max_hosts_per_wave_per_{attr}",
    )


def ha(name: str, min_available: int, hosts: int) -> Family:
    return Family(
        f"ha:{name}",
        f"HA group {name} (min_available {min_available} of {hosts} hosts)",
        f"a lower min_available for {name} (or one more host in it)",
    )


def order_first(p: Policy) -> Family:
    return Family(
        "order_first",
        f"the order of policy.first ({', '.join(p.first)}) before all others",
        "select fewer hosts in policy.first (or none)",
    )


def order_last(p: Policy) -> Family:
    return Family(
        "order_last",
        f"the order of policy.last ({', '.join(p.last)}) after all others",
        "select fewer hosts in policy.last (or none)",
    )


def headroom(p: Policy, group: str, rc: str) -> Family:
    rule = p.headroom
    return Family(
        f"headroom:{group}:{rc}",
        f"{requirement(rule.failures, rule.reserve_percent)} headroom of {rc} in {group}",
        f"lower headroom.failures or reserve_percent, or add {rc} capacity to {group}",
    )


def anti_affinity(sg_id: str, name: str, members: int, max_per_host: int) -> Family:
    per = f"at most {max_per_host} per host" if max_per_host > 1 else "one per host"
    return Family(
        f"anti:{sg_id}",
        f"the anti-affinity of server group {name} ({members} members, {per})",
        f"a larger max_server_per_host for {name}, a soft policy, or more hosts its members "
        "may use",
    )


def affinity(sg_id: str, name: str, members: int) -> Family:
    return Family(
        f"affinity:{sg_id}",
        f"the affinity of server group {name} ({members} members share a host)",
        f"a soft affinity policy for {name}, or a host large enough for all of them",
    )


def requirement(k: int, reserve: float) -> str:
    parts = []
    if k > 0:
        parts.append(f"N+{k}")
    if reserve > 0:
        parts.append(f"{reserve:g}% reserve")
    return " and ".join(parts) or "the"


def blame_entry(
    f: Family,
    *,
    relaxing_alone: bool | None = None,
    numbers: str | None = None,
    one_step: str | None = None,
) -> dict[str, Any]:
    """One family of a proof as `InfeasibleError.blame` carries it."""
    return {
        "key": f.key,
        "rule": f.rule,
        "relax": f.relax,
        "relaxing_alone": relaxing_alone,
        "numbers": numbers,
        "one_step": one_step,
    }
