"""The lower bounds of a run's makespan (lower-bounds.md), failure-free, with the run's own upgrade
times: `lower_bound` for any plan of the cloud, `plan_lower_bound` for this plan's waves."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from planner.inventory import Inventory
from planner.policy import Policy, selector_matches

if TYPE_CHECKING:
    from sim.prepare import Prepared


def plan_lower_bound(prep: Prepared, up_dur: list[float]) -> float:
    """This plan's own bound: its waves run one after another, so the makespan is at least the sum
    over waves of their slowest host's p_h (failure-free, with this run's upgrade times)."""
    m = prep.model
    total = _soak(prep)
    for whosts, _, stops in prep.waves:
        worst = 0.0
        for h in whosts:
            drain = prep.lb_drain.get(h, 0.0)
            if any(prep.stop_active[j] for j in stops.get(h, ())):
                drain = max(drain, m.shutdown_s)
            up = 0.0 if h in prep.lb_not_upgraded else up_dur[h]
            worst = max(worst, m.disable_s + drain + up + m.enable_s)
        total += worst
    return total


def lower_bound(prep: Prepared, up_dur: list[float]) -> float:
    """lower-bounds.md: makespan >= max(max_h p_h, sum_h p_h / m, bytes / (m x NIC) + min U),
    p_h = disable + drain bound + upgrade + enable; failure-free, with this run's upgrade times;
    and, when policy.first selects some of the plan's hosts, their chain before the others
    (`first_chain`)."""
    m = prep.model
    p: dict[int, float] = {}
    ups: list[float] = []
    for whosts, _, _ in prep.waves:
        for h in whosts:
            up = 0.0 if h in prep.lb_not_upgraded else up_dur[h]
            p[h] = m.disable_s + prep.lb_drain.get(h, 0.0) + up + m.enable_s
            ups.append(up)
    if not p:
        return 0.0
    # m_eff_compute counts the hosts headroom lets down at once among the *available* compute
    # hosts (planner.rules.headroom's m_cap): a disabled or down host does not count there, so it
    # shares only max_hosts_per_wave (m_eff_all) with the others.
    cap = prep.capacity
    unavailable = any(cap.compute[h] and not cap.available[h] for h in p)
    m_bytes = prep.m_eff_all if unavailable else prep.m_eff_compute
    bound = max(_spread(prep, p), prep.lb_bytes / m_bytes + min(ups))
    if prep.lb_first:
        # policy.first: no other host enters maintenance before the last host it selects has,
        # and at most c of those are in maintenance at once (the wave size, and per HA group its
        # members less min_available). Their intervals, at most c overlapping, contain a chain
        # of ceil(n / c) one after another (Mirsky: the largest set of intervals overlapping
        # each other, c, bounds the fewest chains); all but the chain's last end before the last
        # of them starts. So the other hosts start after at least the ceil(n / c) - 1 smallest
        # p_h of the first hosts, and then need their own spread bound.
        first = prep.lb_first
        solo = sum(sorted(p[h] for h in first)[: prep.lb_first_chain])
        rest = {h: x for h, x in p.items() if h not in set(first)}
        bound = max(bound, solo + _spread(prep, rest))
    # The canary's soak: no host is worked on meanwhile, so it adds to every term.
    return float(bound) + _soak(prep)


def _spread(prep: Prepared, p: dict[int, float]) -> float:
    """max(max_h p_h, sum_h p_h / m): the hosts spread over those that may be down at once (all:
    max_hosts_per_wave; available compute hosts: also what headroom lets down)."""
    if not p:
        return 0.0
    cap = prep.capacity
    comp = [v for h, v in p.items() if cap.compute[h] and cap.available[h]]
    return max(
        max(p.values()),
        sum(p.values()) / prep.m_eff_all,
        sum(comp) / prep.m_eff_compute if comp else 0.0,
    )


def first_chain(
    inv: Inventory, policy: Policy, hosts: Sequence[str], plan_hosts: Iterable[int]
) -> tuple[tuple[int, ...], int]:
    """The plan's hosts (indices into `hosts`) policy.first selects, and how many of them pass
    one after another before the last of them starts: ceil(n / c) - 1 with c at most
    max_hosts_per_wave at once, or per HA group ceil(n_g / c_g) - 1 with c_g its members less
    min_available (the longest); ((), 0) when it selects none of the plan's hosts, or all."""
    members = sorted(set(plan_hosts))
    first = tuple(
        h for h in members if any(selector_matches(s, inv.host(hosts[h])) for s in policy.first)
    )
    if not first or len(first) == len(members):
        return (), 0
    n = len(first)
    rounds = -(-n // policy.max_hosts_per_wave)
    names = {hosts[h] for h in first}
    for g in inv.ha_groups:
        k = len(names & set(g.hosts))
        if k:
            rounds = max(rounds, -(-k // max(1, len(g.hosts) - g.min_available)))
    return first, rounds - 1


def _soak(prep: Prepared) -> float:
    """The soak a failure-free run certainly makes: a canary, and a host that gets upgraded."""
    m = prep.model
    if m.canary_hosts <= 0 or m.soak_s <= 0:
        return 0.0
    upgraded = any(h not in prep.lb_not_upgraded for whosts, _, _ in prep.waves for h in whosts)
    return m.soak_s if upgraded else 0.0
