"""Headroom (N+k): per scope group (each AZ, or the cloud) and resource class, over the compute
hosts that are available and not in the wave, free capacity >= the k largest effective
capacities, and >= reserve_percent of their total (`capacity.headroom` computes it).

Proofs name a group's headroom of a class `headroom:<group>:<class>`; its one step is N+(k-1)
everywhere (headroom.failures is one setting for every group and class).

Lower bounds. m_cap: VMs that start on available hosts and cannot be stopped always occupy
available hosts that are not in maintenance (destinations must be enabled and up), so with m
available hosts down, per class, sum(cap) - (the m smallest caps) - that demand >= what headroom
requires at least (per scope group, the k largest caps after removing the group's m largest, or
reserve % of what remains).

Packing: m_cap counts hosts as if all were the smallest; with hardware generations of different
sizes, which hosts may go down *together* matters. Summed over scope groups, at the end of a wave
whose hosts are D, free = T - demand - sum over D of (cap - stopped demand) - the movable demand of
D's unavailable hosts (T: the available hosts' capacity, demand: every VM on them; exact up to
VMs of unavailable hosts evacuated earlier, which only lower it), while the rule requires at
least reserve % of (T - cap(D)), and at least the k largest capacities left once the M largest
hosts to upgrade are down. Per class and part of the rule that is a knapsack: sum over D of a
weight per host <= a budget, the same for every wave. A wave sequence is then a packing of the
hosts into bins of that budget holding at most M hosts each, and bin-packing bounds apply
(`packing.packing_waves`). A tier (first/last) alone is packed only in knapsacks where no host
weighs less than nothing: a host of another tier sharing its boundary wave could otherwise make
room for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from planner.capacity import (
    BoolArray,
    CapacityModel,
    HeadroomRow,
    format_amount,
    headroom,
    scope_groups,
)
from planner.inventory import Host, Inventory
from planner.policy import Headroom, Policy
from planner.rules.base import (
    BoundsContext,
    Family,
    Out,
    Relaxation,
    State,
    Violation,
    WaveStep,
    Words,
)
from planner.rules.method import stoppable, to_upgrade
from planner.rules.packing import packing_waves


def requirement(rule: Headroom) -> str:
    """What the rule requires, in words: "N+1", "10% reserve", "N+1 and 10% reserve"; empty
    when it requires nothing."""
    parts = []
    if rule.failures > 0:
        parts.append(f"N+{rule.failures}")
    if rule.reserve_percent > 0:
        parts.append(f"{rule.reserve_percent:g}% reserve")
    return " and ".join(parts)


def words(p: Policy, group: str, rc: str) -> Words:
    return Words(
        f"headroom:{group}:{rc}",
        f"{requirement(p.headroom) or 'the'} headroom of {rc} in {group}",
        f"lower headroom.failures or reserve_percent, or add {rc} capacity to {group}",
    )


def one_step(inv: Inventory, p: Policy, key: str) -> Relaxation | None:
    """N+(k-1) everywhere: the smallest relaxation, one setting for every group and class."""
    if p.headroom.failures <= 1:
        return None
    k = p.headroom.failures - 1
    label = f"N+{k} everywhere (headroom.failures {k})"
    return Relaxation(label, inv, p.with_changes(**{"headroom.failures": k}))


# -- the check ----------------------------------------------------------------------------------
def _violations(
    state: State, rows: list[HeadroomRow], down: set[str], wave: int | None, out: Out
) -> None:
    h = state.policy.headroom
    rule = "inventory.headroom" if wave is None else "headroom"
    for row in rows:
        if row.ok:
            continue
        parts = []
        if row.required_failures > row.free:
            parts.append(
                f"< {format_amount(row.rc, row.required_failures)} needed for N+{h.failures} "
                f"(largest: {', '.join(row.largest_hosts)})"
            )
        if row.required_reserve > row.free:
            parts.append(
                f"< {format_amount(row.rc, row.required_reserve)} reserve "
                f"({h.reserve_percent:g}% of {format_amount(row.rc, row.total)})"
            )
        where = f"with {len(down)} host(s) down, " if down else ""
        out.append(
            Violation(
                rule,
                f"{row.group}: {where}{row.rc} free {format_amount(row.rc, row.free)} "
                + " and ".join(parts),
                wave,
                (row.group, row.rc),
                {"free": row.free, "required": row.required},
            )
        )


def _cloud(state: State, out: Out) -> None:
    rows = headroom(state.model, state.policy.headroom, state.down_mask(()))
    _violations(state, rows, set(), None, out)


def _after(state: State, step: WaveStep, out: Out) -> None:
    _violations(state, step.headroom_rows(), step.hosts, step.index, out)


# -- lower bounds -------------------------------------------------------------------------------
def stoppable_mask(inv: Inventory, policy: Policy) -> BoolArray:
    """`method.stoppable` of every VM, in `inv.vms` order (a CapacityModel's VM order)."""
    return np.array([stoppable(policy, v, inv) for v in inv.vms], dtype=bool)


def max_compute_down(
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
    todo = to_upgrade(inv, policy)
    if not todo:
        return []
    model = model if model is not None else CapacityModel(inv)
    stuck = stuck if stuck is not None else stoppable_mask(inv, policy)
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


def packing_bound(knapsacks: list[Knapsack], hosts: Iterable[Host], per_wave: int) -> int:
    """The most waves any knapsack needs for `hosts` (0: none says anything)."""
    names = [h.name for h in hosts]
    best = 0
    for ks in knapsacks:
        best = max(best, packing_waves([ks.weight.get(n, 0.0) for n in names], ks.budget, per_wave))
    return best


_KNAPSACKS = "headroom.knapsacks"


def _bound(bc: BoundsContext) -> None:
    inv, policy = bc.inv, bc.policy
    # One capacity model and stop mask for m_cap and the knapsacks (they run on every plan).
    model = bc.model
    stuck = stoppable_mask(inv, policy)
    m_cap, why = max_compute_down(inv, policy, bc.upgrade_names, model, stuck)
    bc.max_down = m_cap
    if why:
        bc.obstacle(why[1], "headroom", why[0])
    n_avail = sum(1 for h in bc.to_upgrade if h.is_compute and h.available)
    if m_cap is not None and n_avail:
        if m_cap == 0:
            bc.bounds["headroom"] = n_avail * 10**6  # flagged infeasible above; keep the bound sane
        else:
            bc.bounds["headroom"] = math.ceil(n_avail / min(m_cap, policy.max_hosts_per_wave))
    if bc.reasons and "headroom" in bc.bounds and bc.bounds["headroom"] >= 10**6:
        del bc.bounds["headroom"]
    knapsacks = headroom_knapsacks(inv, policy, model, stuck) if not bc.reasons else []
    bc.memo[_KNAPSACKS] = knapsacks
    packed = packing_bound(knapsacks, bc.to_upgrade, policy.max_hosts_per_wave)
    if packed:
        bc.bounds["headroom (packing)"] = packed


def _need(bc: BoundsContext, hosts: list[Host]) -> int:
    M = bc.policy.max_hosts_per_wave
    need = 0
    m_cap = bc.max_down if not bc.reasons else None
    n_avail = sum(1 for h in hosts if h.is_compute and h.available)
    if m_cap and n_avail:
        need = math.ceil(n_avail / min(m_cap, M))
    # Hosts of other tiers may share a boundary wave: only knapsacks where no host weighs less
    # than nothing (none can make room for this tier's hosts) bound this tier alone.
    knapsacks: list[Knapsack] = bc.memo.get(_KNAPSACKS, [])
    sound = [ks for ks in knapsacks if min(ks.weight.values(), default=0.0) >= 0]
    return max(need, packing_bound(sound, hosts, M))


FAMILY = Family(
    name="headroom",
    rules={
        "headroom": "per scope group and class, free capacity >= k largest hosts and reserve %",
        "inventory.headroom": "the inventory keeps the headroom before any host goes down",
    },
    cloud=_cloud,
    after=_after,
    bound=_bound,
    need=_need,
    owns=lambda key: key.startswith("headroom:"),
    one_step=one_step,
    policy_keys={
        "headroom.failures": "int",
        "headroom.scope": "str",
        "headroom.reserve_percent": "float",
    },
)
