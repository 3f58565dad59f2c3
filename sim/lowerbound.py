"""The lower bounds of a run's makespan (lower-bounds.md), failure-free, with the run's own upgrade
times: `lower_bound` for any plan of the cloud, `plan_lower_bound` for this plan's waves."""

from __future__ import annotations

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
    p_h = disable + drain bound + upgrade + enable; failure-free, with this run's upgrade times."""
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
    comp = [v for h, v in p.items() if prep.capacity.compute[h]]
    bound = max(
        max(p.values()),
        sum(p.values()) / prep.m_eff_all,
        sum(comp) / prep.m_eff_compute if comp else 0.0,
        prep.lb_bytes / prep.m_eff_compute + min(ups),
    )
    # The canary's soak: no host is worked on meanwhile, so it adds to every term.
    return float(bound) + _soak(prep)


def _soak(prep: Prepared) -> float:
    """The soak a failure-free run certainly makes: a canary, and a host that gets upgraded."""
    m = prep.model
    if m.canary_hosts <= 0 or m.soak_s <= 0:
        return 0.0
    upgraded = any(h not in prep.lb_not_upgraded for whosts, _, _ in prep.waves for h in whosts)
    return m.soak_s if upgraded else 0.0
