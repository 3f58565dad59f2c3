"""Reasons no plan can exist, found before searching, in an operator's terms and with numbers.

Every check here is a proof: a necessary condition that any valid plan meets. So when one fails
the planner stops with exit code 3 and says which AZ, resource class, server group or HA group is
the obstacle and by how much. (When all pass and the search still finds nothing, `explain` asks
CP-SAT which rule families conflict.)

1. The cloud already breaks the policy (over capacity, headroom or HA already broken, server
   groups already violated): the checker would reject every plan.
2. `bounds.lower_bounds`' own findings: an HA group without a spare member, a VM that cannot
   migrate while stops are not allowed, no host can go down without breaking headroom.
3. A VM that must leave its host but has no host it may run on with enough capacity.
4. A hard anti-affinity group whose members cannot all find a host when one of theirs is down.
5. A hard affinity group whose members cannot move together anywhere.
6. Headroom per group with one host down, at best: a host that must go down at some point,
   alone, even after moving to other groups all the demand they could possibly take, leaves
   its group short.
"""

from __future__ import annotations

import math

import numpy as np

from planner.bounds import LowerBounds
from planner.capacity import format_amount, headroom
from planner.checker import check_inventory
from planner.policy import select_hosts
from solver.aggregate import build_aggregates, required
from solver.context import Context, wave_limits_ok

SHOWN = 8  # reasons per family, at most


def precheck(ctx: Context, lb: LowerBounds) -> list[str]:
    reasons: list[str] = []
    inv_problems = check_inventory(ctx.inv, ctx.policy)
    for v in inv_problems[:SHOWN]:
        reasons.append(f"the cloud already breaks the policy: {v.message}")
    if len(inv_problems) > SHOWN:
        reasons.append(f"... and {len(inv_problems) - SHOWN} more problems in the inventory")
    reasons += list(lb.infeasible)
    if inv_problems:
        return reasons
    reasons += _first_last_overlap(ctx)
    reasons += _vm_destinations(ctx)
    reasons += _anti_affinity(ctx)
    reasons += _affinity(ctx)
    reasons += _headroom_one_down(ctx)
    return reasons


def _vm_label(ctx: Context, j: int) -> str:
    vm = ctx.inv.vms[j]
    return f"VM {vm.name} ({vm.id})" if vm.name and vm.name != vm.id else f"VM {vm.id}"


def _pins(ctx: Context, j: int) -> str:
    vm = ctx.inv.vms[j]
    parts = []
    if vm.az is not None:
        parts.append(f"AZ {vm.az}")
    if vm.allowed_aggregates:
        parts.append(f"aggregates {', '.join(vm.allowed_aggregates)}")
    return " and ".join(parts) if parts else "any enabled compute host"


def _largest(ctx: Context, mask: np.ndarray, demand: np.ndarray) -> str:
    """The class that fails first and the most any of the hosts offers of it."""
    caps = ctx.cap[mask]
    short = [c for c in range(ctx.C) if demand[c] > 0 and (caps[:, c] < demand[c]).all()]
    c = short[0] if short else int(np.argmax(demand))
    rc = ctx.classes[c]
    best = int(caps[:, c].max()) if caps.size else 0
    return (
        f"it needs {format_amount(rc, int(demand[c]))} of {rc}; the largest of them offers "
        f"{format_amount(rc, best)}"
    )


def _first_last_overlap(ctx: Context) -> list[str]:
    """Hosts that policy.first and policy.last both select must be upgraded in the wave where
    the first ones end, and so must every host that neither selects (the checker's order rule:
    first hosts no later than any other, last ones no earlier than any other)."""
    p = ctx.policy
    todo = {ctx.host_names[int(h)] for h in ctx.todo}
    first = select_hosts(ctx.inv, p.first) & todo
    last = select_hosts(ctx.inv, p.last) & todo
    both = sorted(first & last)
    if not both:
        return []
    others = sorted(todo - first - last)
    together = both + others
    shown = ", ".join(both[:5]) + (f" and {len(both) - 5} more" if len(both) > 5 else "")
    head = f"policy.first and policy.last both select {shown}: the order rule then needs them"
    head += (
        f" and the {len(others)} host(s) neither selects in one wave" if others else " in one wave"
    )
    index = ctx.model.host_index
    wave = [index[h] for h in together]
    if len(wave) > p.max_hosts_per_wave:
        return [f"{head}, {len(wave)} hosts, more than max_hosts_per_wave ({p.max_hosts_per_wave})"]
    for g in ctx.ha:
        n = sum(1 for h in g.hosts if int(h) in set(wave))
        if n > max(g.limit, 0):
            return [
                f"{head}, with {n} hosts of HA group {g.name} of which at most "
                f"{max(g.limit, 0)} may be down at once"
            ]
    if not wave_limits_ok(ctx, wave):
        return [f"{head}, which the per-AZ or per-rack wave limits do not allow"]
    return []


def _vm_destinations(ctx: Context) -> list[str]:
    out: list[str] = []
    seen = 0
    # Hosts large enough, per (pins, demand): VMs share flavors and pins, so this is small.
    fitting: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}
    for j in range(len(ctx.inv.vms)):
        h = int(ctx.vm_host0[j])
        if not ctx.is_todo[h] or ctx.stuck[j] or ctx.movable_none[j]:
            continue
        static = ctx.static_ok(j)
        key = (id(static), tuple(int(x) for x in ctx.demand[j]))
        idx = fitting.get(key)
        if idx is None:
            idx = np.flatnonzero(static & np.all(ctx.cap >= ctx.demand[j], axis=1))[:2]
            fitting[key] = idx
        if idx.size > 1 or (idx.size == 1 and int(idx[0]) != h):
            continue
        ok = static.copy()
        ok[h] = False
        seen += 1
        if len(out) < SHOWN:
            where = _pins(ctx, j)
            if not ok.any():
                out.append(
                    f"{_vm_label(ctx, j)} on {ctx.host_names[h]} must move, but no other "
                    f"enabled host is in {where}"
                )
            else:
                out.append(
                    f"{_vm_label(ctx, j)} on {ctx.host_names[h]} must move, but none of the "
                    f"{int(ok.sum())} other enabled host(s) in {where} is large enough: "
                    + _largest(ctx, ok, ctx.demand[j])
                )
    if seen > len(out):
        out.append(f"... and {seen - len(out)} more VMs with no possible destination")
    return out


def _anti_affinity(ctx: Context) -> list[str]:
    out: list[str] = []
    for g in ctx.server_groups:
        if not (g.hard and g.anti) or len(g.members) == 0:
            continue
        moving = [
            int(j) for j in g.members if ctx.is_todo[int(ctx.vm_host0[j])] and not ctx.stuck[j]
        ]
        if not moving:
            continue
        hosts = np.zeros(ctx.H, dtype=bool)
        for j in g.members:
            hosts |= ctx.static_ok(int(j))
            hosts[int(ctx.vm_host0[j])] = True
        n = len(g.members)
        p = g.max_per_host
        k = int(hosts.sum())
        # When a host holding a moving member goes down, the n members need ceil(n / p) hosts
        # among the others.
        need = math.ceil(n / p)
        if k - 1 >= need:
            continue
        azs = sorted({ctx.inv.hosts[int(h)].az or "?" for h in np.flatnonzero(hosts)})
        where = f" in {', '.join(azs)}" if len(azs) <= 3 else ""
        per = f"at most {p} per host" if p > 1 else "one per host"
        out.append(
            f"server group {g.name} (anti-affinity, {n} members, {per}): only {k} host(s)"
            f"{where} may hold its members; with one of them down, {k - 1} remain for "
            f"{n} members, which need {need}"
        )
        if len(out) >= SHOWN:
            break
    return out


def _affinity(ctx: Context) -> list[str]:
    out: list[str] = []
    for g in ctx.server_groups:
        if not g.hard or g.anti or len(g.members) < 2:
            continue
        hosts = {int(ctx.vm_host0[j]) for j in g.members}
        if len(hosts) != 1:
            continue  # already split: reported as an inventory problem
        h = hosts.pop()
        if not ctx.is_todo[h]:
            continue
        members = [int(j) for j in g.members]
        stuck = [j for j in members if ctx.stuck[j]]
        if stuck and len(stuck) < len(members):
            out.append(
                f"server group {g.name} (affinity): {_vm_label(ctx, stuck[0])} cannot migrate "
                f"and would be stopped on {ctx.host_names[h]} while the other members must "
                "leave it, splitting the group"
            )
            continue
        if stuck:
            continue
        ok = np.ones(ctx.H, dtype=bool)
        for j in members:
            ok &= ctx.static_ok(j)
        ok[h] = False
        total = ctx.demand[members].sum(axis=0)
        if (ok & np.all(ctx.cap >= total, axis=1)).any():
            continue
        if not ok.any():
            out.append(
                f"server group {g.name} (affinity, {len(members)} members on "
                f"{ctx.host_names[h]}): no other enabled host may hold all of them"
            )
        else:
            out.append(
                f"server group {g.name} (affinity, {len(members)} members on "
                f"{ctx.host_names[h]}) must move together, but no other eligible host is large "
                "enough: " + _largest(ctx, ok, total)
            )
        if len(out) >= SHOWN:
            break
    return out


def _headroom_one_down(ctx: Context) -> list[str]:
    """Each host to upgrade goes down at least once; at best alone, after as much of its
    group's movable demand as the other groups can take has left.

    The other groups together can take at most the sum of their slack now (free minus required)
    plus the demand stuck on their hosts (taking a host down lowers a group's requirement by at
    most its capacity and its free capacity by its capacity less that stuck demand); the pseudo-
    group of hosts outside every headroom group, its free capacity."""
    if not ctx.todo.size:
        return []
    agg = build_aggregates(ctx)
    G, C = ctx.G, ctx.C
    rule = ctx.policy.headroom
    gi = {n: i for i, n in enumerate(ctx.group_names)}
    ci = {c: i for i, c in enumerate(ctx.classes)}
    absorb = np.zeros((G + 1, C), dtype=np.int64)
    for r in headroom(ctx.model, rule):
        absorb[gi[r.group], ci[r.rc]] = max(0, r.slack)
    absorb[G] = agg.base_free[G]
    leavable = np.zeros((G + 1, C), dtype=np.int64)
    for g in range(G + 1):
        on = (ctx.group_of == g) & ctx.available
        absorb[g] += ctx.stuck_demand[on].sum(axis=0)
        leavable[g] = ctx.unpinned_demand[on].sum(axis=0)
    worst: dict[tuple[int, int], tuple[int, int, int, int, int]] = {}
    for h in ctx.todo:
        h = int(h)
        g = int(ctx.group_of[h])
        if not (0 <= g < G):
            continue
        down = np.zeros(ctx.H, dtype=bool)
        others = absorb.sum(axis=0) - absorb[g]
        if ctx.available[h]:
            down[h] = True
            free = agg.base_free[g] - agg.down_weight[h]
            room = np.minimum(leavable[g], others)
        else:
            free = agg.base_free[g] - ctx.mov_demand[h]
            room = np.minimum(leavable[g] + ctx.unpinned_demand[h], others)
        for c in range(C):
            req = required(agg, g, c, down)
            short = req - int(free[c]) - int(room[c])
            if short > 0 and ((g, c) not in worst or short > worst[(g, c)][0]):
                worst[(g, c)] = (short, h, int(free[c]), req, int(room[c]))
    out: list[str] = []
    need = _requirement(rule.failures, rule.reserve_percent)
    for (g, c), (_short, h, free_c, req, room_c) in sorted(worst.items()):
        rc = ctx.classes[c]
        what = (
            f"with {ctx.host_names[h]} down"
            if ctx.available[h]
            else f"once the VMs of {ctx.host_names[h]} (disabled or down) are moved"
        )
        extra = ""
        if G > 1 or agg.members[G].any():
            extra = f", and at most {format_amount(rc, room_c)} of its VMs could move to other " + (
                "AZs" if rule.scope == "az" else "groups"
            )
        out.append(
            f"{ctx.group_names[g]}: {what}, {rc} free {format_amount(rc, free_c)} < "
            f"{format_amount(rc, req)} needed for {need}{extra}"
        )
    return out[:SHOWN]


def _requirement(k: int, reserve: float) -> str:
    parts = []
    if k > 0:
        parts.append(f"N+{k}")
    if reserve > 0:
        parts.append(f"a {reserve:g}% reserve")
    return " and ".join(parts) or "headroom"
