"""Lower bounds on a plan's waves and migrations, to report its quality (the gap).

Every bound here is valid: no plan satisfying the policy can do better. Where a bound shows that
no plan exists at all, `infeasible` says why in an operator's terms.

Waves: at most max_hosts_per_wave hosts a wave (and per AZ, per rack); an HA group with a spare
members above min_available loses at most a of them a wave; and headroom caps the compute hosts
that may be down at once (m_cap below). With policy.first / policy.last, each tier of hosts needs
those waves on its own and consecutive tiers share at most one boundary wave (in which the later
tier has at most max_hosts_per_wave - 1 places), so the tiers' needs add up.

m_cap: VMs that start on available hosts and cannot be stopped always occupy available hosts that
are not in maintenance (destinations must be enabled and up), so with m available hosts down, per
class, sum(cap) - (the m smallest caps) - that demand >= what headroom requires at least (per scope
group, the k largest caps after removing the group's m largest, or reserve % of what remains).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planner.capacity import CapacityModel, format_amount, scope_groups
from planner.inventory import Host, Inventory
from planner.policy import Policy, select_hosts


@dataclass(frozen=True)
class LowerBounds:
    waves: int
    migrations: int
    # The most compute hosts headroom lets down at once (None: headroom does not limit it).
    max_compute_hosts_down: int | None
    # What each bound on waves came to: {"max_hosts_per_wave": 5, "headroom": 7, ...}.
    wave_bounds: dict[str, int] = field(default_factory=dict)
    infeasible: tuple[str, ...] = ()

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
    return policy.allow_stop and inv.vm(vm_id).migration == "none"


def lower_bounds(inv: Inventory, policy: Policy) -> LowerBounds:
    to_upgrade = inv.hosts_to_upgrade(policy.target_version)
    n = len(to_upgrade)
    bounds: dict[str, int] = {}
    reasons: list[str] = []
    if n == 0:
        return LowerBounds(0, 0, None, {}, ())
    bounds["max_hosts_per_wave"] = math.ceil(n / policy.max_hosts_per_wave)
    for attr, limit in (
        ("az", policy.max_hosts_per_wave_per_az),
        ("rack", policy.max_hosts_per_wave_per_rack),
    ):
        if limit is None:
            continue
        counts = Counter(getattr(h, attr) for h in to_upgrade if getattr(h, attr) is not None)
        if counts:
            key, most = counts.most_common(1)[0]
            bounds[f"max_hosts_per_wave_per_{attr} ({key})"] = math.ceil(most / limit)

    upgrade_names = {h.name for h in to_upgrade}
    for g in inv.ha_groups:
        avail = [h for h in g.hosts if inv.has_host(h) and inv.host(h).available]
        spare = len(avail) - g.min_available
        pending = [h for h in avail if h in upgrade_names]
        if not pending:
            continue
        if spare <= 0:
            reasons.append(
                f"HA group {g.name}: {len(avail)} of {len(g.hosts)} hosts available and "
                f"min_available is {g.min_available}, so none of {', '.join(pending)} can go down"
            )
        else:
            bounds[f"ha_group {g.name}"] = math.ceil(len(pending) / spare)

    migrations = 0
    for h in to_upgrade:
        for v in inv.vms_on(h.name):
            if stoppable(inv, policy, v.id):
                continue
            migrations += 1
            if v.migration == "none":
                reasons.append(
                    f"VM {v.name or v.id} ({v.id}) on {h.name} cannot migrate (migration none) "
                    "and the policy does not allow_stop"
                )

    m_cap, why = _max_compute_down(inv, policy, upgrade_names)
    if why:
        reasons.append(why)
    n_avail = sum(1 for h in to_upgrade if h.is_compute and h.available)
    if m_cap is not None and n_avail:
        if m_cap == 0:
            bounds["headroom"] = n_avail * 10**6  # flagged infeasible above; keep the bound sane
        else:
            bounds["headroom"] = math.ceil(n_avail / min(m_cap, policy.max_hosts_per_wave))
    if reasons and "headroom" in bounds and bounds["headroom"] >= 10**6:
        del bounds["headroom"]
    tiers = _tier_bound(inv, policy, to_upgrade, m_cap if not reasons else None)
    if tiers is not None:
        bounds["order (first/last)"] = tiers
    waves = max(bounds.values()) if bounds else 0
    return LowerBounds(waves, migrations, m_cap, bounds, tuple(reasons))


def _waves_for(
    inv: Inventory, policy: Policy, hosts: list[Host], m_cap: int | None
) -> tuple[int, int]:
    """(waves, waves beyond one shared with an earlier tier) that `hosts` alone need: by the
    wave size limits, their HA groups' spare members and the headroom cap on hosts down."""
    n = len(hosts)
    if n == 0:
        return 0, 0
    M = policy.max_hosts_per_wave
    need = [math.ceil(n / M)]
    for attr, limit in (
        ("az", policy.max_hosts_per_wave_per_az),
        ("rack", policy.max_hosts_per_wave_per_rack),
    ):
        if limit is None:
            continue
        counts = Counter(getattr(h, attr) for h in hosts if getattr(h, attr) is not None)
        if counts:
            need.append(math.ceil(counts.most_common(1)[0][1] / limit))
    names = {h.name for h in hosts}
    for g in inv.ha_groups:
        avail = [h for h in g.hosts if inv.has_host(h) and inv.host(h).available]
        spare = len(g.hosts) - (len(g.hosts) - len(avail)) - g.min_available
        pending = [h for h in avail if h in names]
        if pending and spare > 0:
            need.append(math.ceil(len(pending) / spare))
    n_avail = sum(1 for h in hosts if h.is_compute and h.available)
    if m_cap and n_avail:
        need.append(math.ceil(n_avail / min(m_cap, M)))
    alone = max(need)
    # Sharing its first wave with the previous tier's last one (which holds at least one host of
    # that tier) saves at most that wave, and leaves at most M - 1 places in it.
    beyond = max(alone - 1, math.ceil(max(0, n - (M - 1)) / M))
    return alone, beyond


def _tier_bound(
    inv: Inventory, policy: Policy, to_upgrade: tuple[Host, ...], m_cap: int | None
) -> int | None:
    """policy.first hosts all come no later than the others, policy.last ones no earlier: the
    tiers' waves overlap in at most one boundary wave each, so their needs add up."""
    first = select_hosts(inv, policy.first)
    last = select_hosts(inv, policy.last)
    if not (first or last) or first & last:
        return None
    tiers = [
        [h for h in to_upgrade if h.name in first],
        [h for h in to_upgrade if h.name not in first and h.name not in last],
        [h for h in to_upgrade if h.name in last],
    ]
    tiers = [t for t in tiers if t]
    if len(tiers) < 2:
        return None
    total = _waves_for(inv, policy, tiers[0], m_cap)[0]
    for t in tiers[1:]:
        total += _waves_for(inv, policy, t, m_cap)[1]
    return total


def _max_compute_down(
    inv: Inventory, policy: Policy, upgrade: set[str]
) -> tuple[int | None, str | None]:
    """(m_cap, why not even one) — see the module docstring."""
    model = CapacityModel(inv)
    avail = model.available
    cand = np.array([avail[i] and name in upgrade for i, name in enumerate(model.host_names)])
    n_cand = int(cand.sum())
    if n_cand == 0:
        return None, None
    # Non-stoppable demand on available hosts.
    keep = np.array([not stoppable(inv, policy, v) for v in model.vm_ids], dtype=bool)
    on_avail = avail[model.vm_host] & keep
    demand = (
        model.demand[on_avail].sum(axis=0)
        if on_avail.any()
        else np.zeros(len(model.classes), dtype=np.int64)
    )
    cap_total = model.cap[avail].sum(axis=0)
    small = np.sort(model.cap[cand], axis=0)  # ascending, per class
    small_cum = np.vstack([np.zeros((1, small.shape[1]), dtype=np.int64), np.cumsum(small, axis=0)])
    names, group = scope_groups(inv, policy.headroom.scope)
    k = policy.headroom.failures
    pct = policy.headroom.reserve_percent / 100.0
    ms = np.arange(0, n_cand + 1)
    req = np.zeros((n_cand + 1, len(model.classes)), dtype=np.int64)
    for g in range(len(names)):
        caps = -np.sort(-model.cap[avail & (group == g)], axis=0)  # descending per class
        if len(caps) == 0:
            continue
        pre = np.vstack([np.zeros((1, caps.shape[1]), dtype=np.int64), np.cumsum(caps, axis=0)])
        lo = np.minimum(ms, len(caps))
        hi = np.minimum(ms + k, len(caps))
        rest_k = pre[hi] - pre[lo]
        rest_total = pre[len(caps)] - pre[lo]
        req += np.maximum(rest_k, np.ceil(rest_total * pct - 1e-9).astype(np.int64))
    free = cap_total[None, :] - small_cum - demand[None, :]
    ok = np.all(free >= req, axis=1)
    ok[0] = True
    # Not monotone in m in general: take the largest m that passes, not the first failure.
    best = int(np.flatnonzero(ok).max())
    if best == 0:
        c = int(np.argmax(req[1] - free[1]))
        rc = model.classes[c]
        return 0, (
            f"headroom: even with the smallest host down, {rc} free "
            f"{format_amount(rc, int(free[1, c]))} < {format_amount(rc, int(req[1, c]))} "
            f"required for N+{k} (scope {policy.headroom.scope}); no host can be taken down"
        )
    return best, None
