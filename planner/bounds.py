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

Packing: m_cap counts hosts as if all were the smallest; with hardware generations of different
sizes, which hosts may go down *together* matters. Summed over scope groups, at the end of a wave
whose hosts are D, free = T - demand - sum over D of (cap - stopped demand) - the movable demand of
D's unavailable hosts (T: the available hosts' capacity, demand: every VM on them; exact up to
VMs of unavailable hosts evacuated earlier, which only lower it), while the rule requires at
least reserve % of (T - cap(D)), and at least the k largest capacities left once the M largest
hosts to upgrade are down. Per class and part of the rule that is a knapsack: sum over D of a
weight per host <= a budget, the same for every wave. A wave sequence is then a packing of the
hosts into bins of that budget holding at most M hosts each, and bin-packing bounds apply (see
`packing_waves`): total weight / budget; hosts heavier than half the budget each need a wave of
their own, and the lighter hosts that fit beside none of them need more waves. A tier (first/last)
alone is packed only in knapsacks where no host weighs less than nothing: a host of another tier
sharing its boundary wave could otherwise make room for it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planner.capacity import BoolArray, CapacityModel, format_amount, scope_groups
from planner.inventory import VM, Host, Inventory
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
    # The rule behind each of `infeasible`, in order: ("ha_group", group name), ("allow_stop",
    # VM id) or ("headroom", resource class).
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
    return _stoppable(policy, inv.vm(vm_id))


def _stoppable(policy: Policy, vm: VM) -> bool:
    return policy.allow_stop and vm.migration == "none"


def _stoppable_mask(inv: Inventory, policy: Policy) -> BoolArray:
    """`stoppable` of every VM, in `inv.vms` order (a CapacityModel's VM order)."""
    return np.array([_stoppable(policy, v) for v in inv.vms], dtype=bool)


def lower_bounds(inv: Inventory, policy: Policy) -> LowerBounds:
    to_upgrade = inv.hosts_to_upgrade(policy.target_version)
    n = len(to_upgrade)
    bounds: dict[str, int] = {}
    reasons: list[str] = []
    obstacles: list[tuple[str, str]] = []
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
            obstacles.append(("ha_group", g.name))
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
                obstacles.append(("allow_stop", v.id))

    # One capacity model and stop mask for m_cap and the knapsacks (they run on every plan).
    model = CapacityModel(inv)
    stuck = _stoppable_mask(inv, policy)
    m_cap, why = _max_compute_down(inv, policy, upgrade_names, model, stuck)
    if why:
        reasons.append(why[1])
        obstacles.append(("headroom", why[0]))
    n_avail = sum(1 for h in to_upgrade if h.is_compute and h.available)
    if m_cap is not None and n_avail:
        if m_cap == 0:
            bounds["headroom"] = n_avail * 10**6  # flagged infeasible above; keep the bound sane
        else:
            bounds["headroom"] = math.ceil(n_avail / min(m_cap, policy.max_hosts_per_wave))
    if reasons and "headroom" in bounds and bounds["headroom"] >= 10**6:
        del bounds["headroom"]
    knapsacks = headroom_knapsacks(inv, policy, model, stuck) if not reasons else []
    packed = _packing_bound(knapsacks, to_upgrade, policy.max_hosts_per_wave)
    if packed:
        bounds["headroom (packing)"] = packed
    tiers = _tier_bound(inv, policy, to_upgrade, m_cap if not reasons else None, knapsacks)
    if tiers is not None:
        bounds["order (first/last)"] = tiers
    waves = max(bounds.values()) if bounds else 0
    return LowerBounds(waves, migrations, m_cap, bounds, tuple(reasons), tuple(obstacles))


def _waves_for(
    inv: Inventory,
    policy: Policy,
    hosts: list[Host],
    m_cap: int | None,
    knapsacks: list[Knapsack] | None = None,
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
    # Hosts of other tiers may share a boundary wave: only knapsacks where no host weighs less
    # than nothing (none can make room for this tier's hosts) bound this tier alone.
    sound = [ks for ks in knapsacks or [] if min(ks.weight.values(), default=0.0) >= 0]
    need.append(_packing_bound(sound, hosts, M))
    alone = max(need)
    # Sharing its first wave with the previous tier's last one (which holds at least one host of
    # that tier) saves at most that wave, and leaves at most M - 1 places in it.
    beyond = max(alone - 1, math.ceil(max(0, n - (M - 1)) / M))
    return alone, beyond


def _tier_bound(
    inv: Inventory,
    policy: Policy,
    to_upgrade: tuple[Host, ...],
    m_cap: int | None,
    knapsacks: list[Knapsack] | None = None,
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
    total = _waves_for(inv, policy, tiers[0], m_cap, knapsacks)[0]
    for t in tiers[1:]:
        total += _waves_for(inv, policy, t, m_cap, knapsacks)[1]
    return total


def _max_compute_down(
    inv: Inventory, policy: Policy, upgrade: set[str], model: CapacityModel, stuck: BoolArray
) -> tuple[int | None, tuple[str, str] | None]:
    """(m_cap, (the class, why) not even one) — see the module docstring."""
    avail = model.available
    cand = np.array([avail[i] and name in upgrade for i, name in enumerate(model.host_names)])
    n_cand = int(cand.sum())
    if n_cand == 0:
        return None, None
    # Non-stoppable demand on available hosts.
    keep = ~stuck
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
            rc,
            f"headroom: even with the smallest host down, {rc} free "
            f"{format_amount(rc, int(free[1, c]))} < {format_amount(rc, int(req[1, c]))} "
            f"required for N+{k} (scope {policy.headroom.scope}); no host can be taken down",
        )
    return best, None


# ---------------------------------------------------------------------------------------------
# Packing: which hosts may be down together
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Knapsack:
    """One class and one part of the headroom rule as a knapsack every wave obeys: the weights of
    its hosts add up to at most `budget` (see the module docstring). Hosts not named weigh 0."""

    rc: str
    part: str  # "capacity", "reserve" or "failures"
    weight: dict[str, float]
    budget: float


def headroom_knapsacks(
    inv: Inventory,
    policy: Policy,
    model: CapacityModel | None = None,
    stuck: BoolArray | None = None,
) -> list[Knapsack]:
    """The knapsacks of every class, for the hosts to upgrade. Empty when nothing is to upgrade;
    a class whose free capacity is already negative has none (the cloud breaks the rule, other
    checks say so). `model` (unmoved) and `stuck` (`stoppable` per VM) save rebuilding them."""
    todo = inv.hosts_to_upgrade(policy.target_version)
    if not todo:
        return []
    model = model if model is not None else CapacityModel(inv)
    stuck = stuck if stuck is not None else _stoppable_mask(inv, policy)
    avail = model.available
    H, C = len(model.host_names), len(model.classes)
    on_avail = avail[model.vm_host] if len(model.vm_ids) else np.zeros(0, dtype=bool)
    demand = model.demand[on_avail].sum(axis=0) if on_avail.any() else np.zeros(C, np.int64)
    stuck_on = np.zeros((H, C), dtype=np.int64)
    mov_on = np.zeros((H, C), dtype=np.int64)
    if len(model.vm_ids):
        np.add.at(stuck_on, model.vm_host[stuck], model.demand[stuck])
        np.add.at(mov_on, model.vm_host[~stuck], model.demand[~stuck])
    total = model.cap[avail].sum(axis=0)
    rule = policy.headroom
    # A slightly smaller share than the rule's keeps the bound valid whatever the rounding.
    pct = max(0.0, rule.reserve_percent / 100.0 - 1e-12)
    k = rule.failures
    M = policy.max_hosts_per_wave
    todo_names = {h.name for h in todo}
    is_todo = np.array([n in todo_names for n in model.host_names], dtype=bool)
    # Per class, the k largest capacities that surely stay up: per group, after the M largest
    # hosts to upgrade are down.
    names, group = model.scope_groups(rule.scope)
    keep_k = np.zeros(C, dtype=np.int64)
    if k > 0:
        for g in range(len(names)):
            sel = np.flatnonzero(avail & (group == g))
            for c in range(C):
                order = sel[np.argsort(-model.cap[sel, c], kind="stable")]
                down = np.cumsum(is_todo[order]) <= M
                left = order[~(down & is_todo[order])]
                keep_k[c] += int(model.cap[left[:k], c].sum())
    out: list[Knapsack] = []
    idx = [model.host_index[h.name] for h in todo if h.is_compute]
    for c, rc in enumerate(model.classes):
        base: dict[str, float] = {}
        gross: dict[str, float] = {}
        for i in idx:
            name = model.host_names[i]
            if avail[i]:
                base[name] = float(model.cap[i, c] - stuck_on[i, c])
                gross[name] = float(model.cap[i, c])
            else:
                base[name] = float(mov_on[i, c])
                gross[name] = 0.0
        free = float(total[c] - demand[c])
        if free < 0:
            continue
        out.append(Knapsack(rc, "capacity", base, free))
        if pct > 0:
            w = {n: base[n] - pct * gross[n] for n in base}
            out.append(Knapsack(rc, "reserve", w, free - pct * float(total[c])))
        if k > 0:
            out.append(Knapsack(rc, "failures", base, free - float(keep_k[c])))
    return out


def packing_waves(weights: list[float], budget: float, per_wave: int) -> int:
    """A lower bound on the bins (waves) needed to pack items of these weights into bins whose
    weights add up to at most `budget` and that hold at most `per_wave` items each; 0 when it
    says nothing (a budget of zero or less, or an item that fits nowhere: other bounds and
    pre-checks speak then)."""
    n = len(weights)
    if n == 0 or per_wave < 1:
        return 0
    M = per_wave
    w = np.sort(np.asarray(weights, dtype=np.float64))[::-1]
    tol = 1e-9 * (abs(budget) + float(np.abs(w).sum()) + 1.0)
    best = math.ceil(n / M)
    if budget <= tol or M == 1:
        return best
    total = float(w.sum())
    best = max(best, math.ceil((total - tol) / budget))
    # Items of negative weight (hosts that stopped VMs fill beyond their share) loosen every
    # bin they join: two heavy items conflict only if even the M - 2 lightest cannot save them.
    neg = float(np.minimum(w, 0.0)[::-1][: max(0, M - 2)].sum())
    room = budget - neg
    if w[0] > room + tol:
        return 0  # an item that fits in no bin: not this bound's business
    big = w > room / 2 + tol
    nb = int(big.sum())
    if nb:
        # Heavy items pairwise conflict: a bin each. Light items join them only where they fit
        # beside one, at most M - 1 a bin; fitting is a threshold, so the heaviest heavy items,
        # which fewest light ones fit beside, take their share first (a greedy that is exact on
        # such nested neighbourhoods, weights of several light items together ignored).
        small = w[~big]
        rising = np.sort(small)
        joined = 0
        for wb in w[big]:  # heaviest first
            fit = int(np.searchsorted(rising, room - wb + tol, side="right"))
            joined += max(0, min(M - 1, fit - joined))
        best = max(best, nb + math.ceil((len(small) - joined) / M))
        lightest_big = float(w[big].min())
        alone = small[small + lightest_big > room + tol]  # fit beside no heavy item
        spare = float((budget - w[big]).sum())  # what heavy items' bins leave for the others
        best = max(best, nb + math.ceil(max(0.0, float(small.sum()) - spare - tol) / budget))
        lone = float(alone.sum()) + float(np.minimum(small, 0.0).sum())
        best = max(best, nb + math.ceil(max(0.0, lone - tol) / budget))
    return best


def _packing_bound(knapsacks: list[Knapsack], hosts: Iterable[Host], per_wave: int) -> int:
    """The most waves any knapsack needs for `hosts` (0: none says anything)."""
    names = [h.name for h in hosts]
    best = 0
    for ks in knapsacks:
        best = max(best, packing_waves([ks.weight.get(n, 0.0) for n in names], ks.budget, per_wave))
    return best
