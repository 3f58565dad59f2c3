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

Each proof also names the rule families it rests on (their words from `planner.rules`, the exact
model's keys), as `InfeasibleError.blame` carries them: the anti-affinity of a server group, the
AZ pin of the VMs pinned to an AZ, a group's headroom of a class... A proof that rests on no
policy rule (a VM larger than every host it may use, a host over capacity) names none: only more
capacity helps. A pre-check never decides whether relaxing a family gives a plan
(`relaxing_alone` stays None); its `one_step` says only what its own numbers prove: "N+1
everywhere (headroom.failures 1) is not enough" when the same pre-check still fails with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planner import rules
from planner.bounds import LowerBounds
from planner.capacity import IntArray, format_amount, headroom
from planner.checker import check_inventory
from planner.placement import acceptance, describe
from planner.policy import select_hosts
from planner.rules import (
    affinity,
    aggregates,
    anti_affinity,
    az,
    ha_group,
    migrations_per_wave,
    order,
    placement,
    wave_size,
)
from planner.rules import headroom as room
from planner.rules.base import Words
from solver.aggregate import build_aggregates, required
from solver.context import Context, wave_limits_ok
from solver.rules import ENCODINGS
from solver.rules import headroom as room_solver

SHOWN = 8  # reasons per family, at most


@dataclass
class Proof:
    """What the pre-checks prove: reasons (empty: nothing proven) and the rule families they
    rest on, each once, in `InfeasibleError.blame`'s form."""

    reasons: list[str] = field(default_factory=list)
    blame: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.reasons)

    def add(
        self, reason: str, families: Sequence[Words] = (), steps: dict[str, str] | None = None
    ) -> None:
        self.reasons.append(reason)
        self.name(families, steps)

    def name(self, families: Sequence[Words], steps: dict[str, str] | None = None) -> None:
        """Name each family once; a step found by a later check fills in an earlier entry's."""
        have = {b["key"]: b for b in self.blame}
        for f in families:
            step = (steps or {}).get(f.key)
            if f.key not in have:
                have[f.key] = f.blame(one_step=step)
                self.blame.append(have[f.key])
            elif step and not have[f.key].get("one_step"):
                have[f.key]["one_step"] = step

    def extend(self, other: Proof) -> None:
        self.reasons += other.reasons
        have = {b["key"]: b for b in self.blame}
        for b in other.blame:
            if b["key"] not in have:
                self.blame.append(b)
            elif b.get("one_step") and not have[b["key"]].get("one_step"):
                have[b["key"]]["one_step"] = b["one_step"]

    def lines(self) -> list[str]:
        """The reasons, then one line per family: how to relax it (not checked to give a
        plan) and what its one step is known to do."""
        out = list(self.reasons)
        for b in self.blame:
            step = f"; {b['one_step']}" if b.get("one_step") else ""
            out.append(
                f"to relax {b['rule']}: {b['relax']} (the proof rests on it; whether relaxing "
                f"it gives a plan: not checked{step})"
            )
        return out


def precheck(ctx: Context, lb: LowerBounds) -> list[str]:
    """The reasons no plan can exist (empty: none found); `precheck_proof` also names the rule
    families."""
    return precheck_proof(ctx, lb).reasons


def precheck_proof(ctx: Context, lb: LowerBounds) -> Proof:
    proof = Proof()
    inv_problems = check_inventory(ctx.inv, ctx.policy)
    for i, v in enumerate(inv_problems):
        fs = _violation_families(ctx, v.rule, v.objects)
        if i < SHOWN:
            proof.add(f"the cloud already breaks the policy: {v.message}", fs)
        else:  # beyond the shown ones: still named
            proof.name(fs)
    if len(inv_problems) > SHOWN:
        proof.add(f"... and {len(inv_problems) - SHOWN} more problems in the inventory")
    _bounds_findings(ctx, lb, proof)
    if inv_problems:
        return proof
    for check in (_first_last_overlap, _vm_destinations, _anti_affinity, _affinity):
        proof.extend(check(ctx))
    proof.extend(_headroom_one_down(ctx))
    return proof


def _violation_families(ctx: Context, rule: str, objects: tuple[str, ...]) -> list[Words]:
    """The family an inventory problem breaks (none for over-capacity: physics)."""
    if rule == "inventory.headroom" and len(objects) >= 2:
        return [room.words(ctx.policy, objects[0], objects[1])]
    if rule == "inventory.ha_group" and objects:
        return [ha_group.words_of(ctx.inv, objects[0])]
    if rule in ("inventory.anti_affinity", "inventory.affinity") and objects:
        for sg in ctx.server_groups:
            if sg.id == objects[0]:
                if sg.anti:
                    words = anti_affinity.words(sg.id, sg.name, len(sg.members), sg.max_per_host)
                    return [words]
                return [affinity.words(sg.id, sg.name, len(sg.members))]
    return []


def _not_enough(ctx: Context, key: str) -> str:
    """The family's one step (`planner.rules.one_step`), which a proof's numbers show is not
    enough."""
    step = rules.one_step(ctx.inv, ctx.policy, key)
    assert step is not None
    return f"{step.label} is not enough"


def _bounds_findings(ctx: Context, lb: LowerBounds, proof: Proof) -> None:
    """`lower_bounds`' findings with their families (`LowerBounds.obstacles`: each finding's
    family says which, `solver.rules` `Encodings.obstacle`)."""
    for i, reason in enumerate(lb.infeasible):
        kind, what = lb.obstacles[i] if i < len(lb.obstacles) else ("", "")
        enc = ENCODINGS.get(kind)
        fs, steps = enc.obstacle(ctx, lb, what) if enc and enc.obstacle else ([], {})
        proof.add(reason, fs, steps)


def _pin_families(ctx: Context, j: int, useful: np.ndarray | None = None) -> list[Words]:
    """The pins of VM j that keep it off some available host (of `useful`, when given)."""
    vm = ctx.inv.vms[j]
    pool = ctx.available if useful is None else ctx.available & useful
    out = []
    if vm.az is not None:
        off = np.array([ctx.inv.hosts[h].az != vm.az for h in range(ctx.H)], dtype=bool)
        if (pool & off).any():
            out.append(az.words(vm.az))
    if vm.allowed_aggregates:
        allowed = set(vm.allowed_aggregates)
        off = np.array([not allowed & set(h.aggregates) for h in ctx.inv.hosts], dtype=bool)
        if (pool & off).any():
            out.append(aggregates.words(vm.allowed_aggregates))
    if vm.forbidden_aggregates:
        banned = set(vm.forbidden_aggregates)
        off = np.array([bool(banned & set(h.aggregates)) for h in ctx.inv.hosts], dtype=bool)
        if (pool & off).any():
            out.append(aggregates.words_out(vm.forbidden_aggregates))
    place = acceptance(ctx.inv).mask(vm)
    if place is not None and (pool & ~place).any():
        out.append(placement.words(describe(ctx.inv, vm)))
    return out


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
    if vm.forbidden_aggregates:
        parts.append(f"no aggregate of {', '.join(vm.forbidden_aggregates)}")
    if acceptance(ctx.inv).mask(vm) is not None:
        parts.append(f"hosts Placement accepts ({describe(ctx.inv, vm)})")
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


def _first_last_overlap(ctx: Context) -> Proof:
    """Hosts that policy.first and policy.last both select must be upgraded in the wave where
    the first ones end, and so must every host that neither selects (the checker's order rule:
    first hosts no later than any other, last ones no earlier than any other)."""
    p = ctx.policy
    todo = {ctx.host_names[int(h)] for h in ctx.todo}
    first = select_hosts(ctx.inv, p.first) & todo
    last = select_hosts(ctx.inv, p.last) & todo
    both = sorted(first & last)
    proof = Proof()
    if not both:
        return proof
    others = sorted(todo - first - last)
    together = both + others
    shown = ", ".join(both[:5]) + (f" and {len(both) - 5} more" if len(both) > 5 else "")
    head = f"policy.first and policy.last both select {shown}: the order rule then needs them"
    head += (
        f" and the {len(others)} host(s) neither selects in one wave" if others else " in one wave"
    )
    index = ctx.model.host_index
    wave = [index[h] for h in together]
    # the order families as the exact model guards them (order_last only with hosts neither
    # selects)
    tiers = [order.words_first(p)] + ([order.words_last(p)] if others else [])
    if len(wave) > p.max_hosts_per_wave:
        f = wave_size.words(p)
        step = {f.key: _not_enough(ctx, f.key)} if len(wave) > p.max_hosts_per_wave + 1 else {}
        proof.add(
            f"{head}, {len(wave)} hosts, more than max_hosts_per_wave ({p.max_hosts_per_wave})",
            [*tiers, f],
            step,
        )
        return proof
    for i, g in enumerate(ctx.ha):
        n = sum(1 for h in g.hosts if int(h) in set(wave))
        if n > max(g.limit, 0):
            group = ctx.inv.ha_groups[i]
            f = ha_group.words(g.name, group.min_available, len(group.hosts))
            step = (
                {f.key: _not_enough(ctx, f.key)}
                if n > max(g.limit + 1, 0) and group.min_available > 0
                else {}
            )
            proof.add(
                f"{head}, with {n} hosts of HA group {g.name} of which at most "
                f"{max(g.limit, 0)} may be down at once",
                [*tiers, f],
                step,
            )
            return proof
    cap = p.max_migrations_per_wave
    n = int(ctx.forced_migrations()[wave].sum())
    if cap is not None and n > cap:
        f = migrations_per_wave.words(p)
        proof.add(
            f"{head}, with {n} VMs that must migrate, more than max_migrations_per_wave ({cap})",
            [*tiers, f],
            {f.key: _not_enough(ctx, f.key)} if n > cap + 1 else {},
        )
        return proof
    if not wave_limits_ok(ctx, wave):
        limits: list[Words] = []
        hosts = [ctx.inv.hosts[h] for h in wave]
        for attr, limit in wave_size.limits(p):
            groups = wave_size.scoped(hosts, attr)
            if groups and max(len(g) for g in groups.values()) > limit:
                limits.append(wave_size.words_per(attr, limit))
        proof.add(f"{head}, which the per-AZ or per-rack wave limits do not allow", tiers + limits)
    return proof


def _vm_destinations(ctx: Context) -> Proof:
    proof = Proof()
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
        # Its pins are to blame when they keep it off a host large enough; with none such, only
        # capacity is (no family).
        large = np.all(ctx.cap >= ctx.demand[j], axis=1)
        large[h] = False
        pins = _pin_families(ctx, j, large)
        if len(proof.reasons) >= SHOWN:
            proof.name(pins)
        else:
            where = _pins(ctx, j)
            if not ok.any():
                proof.add(
                    f"{_vm_label(ctx, j)} on {ctx.host_names[h]} must move, but no other "
                    f"enabled host is in {where}",
                    pins,
                )
            else:
                proof.add(
                    f"{_vm_label(ctx, j)} on {ctx.host_names[h]} must move, but none of the "
                    f"{int(ok.sum())} other enabled host(s) in {where} is large enough: "
                    + _largest(ctx, ok, ctx.demand[j]),
                    pins,
                )
    if seen > len(proof.reasons):
        proof.add(f"... and {seen - len(proof.reasons)} more VMs with no possible destination")
    return proof


def _anti_affinity(ctx: Context) -> Proof:
    proof = Proof()
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
        families = [anti_affinity.words(g.id, g.name, n, p)]
        # The members' pins are to blame too when, without them, enough hosts would remain.
        loose = ctx.available.copy()
        for j in g.members:
            loose[int(ctx.vm_host0[j])] = True
        if int(loose.sum()) - 1 >= need:
            for j in g.members:
                families += _pin_families(ctx, int(j))
        azs = sorted({ctx.inv.hosts[int(h)].az or "?" for h in np.flatnonzero(hosts)})
        where = f" in {', '.join(azs)}" if len(azs) <= 3 else ""
        per = f"at most {p} per host" if p > 1 else "one per host"
        proof.add(
            f"server group {g.name} (anti-affinity, {n} members, {per}): only {k} host(s)"
            f"{where} may hold its members; with one of them down, {k - 1} remain for "
            f"{n} members, which need {need}",
            families,
        )
        if len(proof.reasons) >= SHOWN:
            break
    return proof


def _affinity(ctx: Context) -> Proof:
    proof = Proof()
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
        family = affinity.words(g.id, g.name, len(members))
        stuck = [j for j in members if ctx.stuck[j]]
        if stuck and len(stuck) < len(members):
            proof.add(
                f"server group {g.name} (affinity): {_vm_label(ctx, stuck[0])} cannot migrate "
                f"and would be stopped on {ctx.host_names[h]} while the other members must "
                "leave it, splitting the group",
                [family],
            )
            continue
        if stuck:
            continue
        ok = np.ones(ctx.H, dtype=bool)
        for j in members:
            ok &= ctx.static_ok(j)
        ok[h] = False
        total = ctx.demand[members].sum(axis=0)
        large = np.all(ctx.cap >= total, axis=1)
        if (ok & large).any():
            continue
        large[h] = False
        families = [family]
        for j in members:  # pins that keep the group off a host large enough
            families += _pin_families(ctx, j, large)
        if not ok.any():
            proof.add(
                f"server group {g.name} (affinity, {len(members)} members on "
                f"{ctx.host_names[h]}): no other enabled host may hold all of them",
                families,
            )
        else:
            proof.add(
                f"server group {g.name} (affinity, {len(members)} members on "
                f"{ctx.host_names[h]}) must move together, but no other eligible host is large "
                "enough: " + _largest(ctx, ok, total),
                families,
            )
        if len(proof.reasons) >= SHOWN:
            break
    return proof


# short, host, free, required, room, others bind, gain from hosts down beside it
Shortfall = tuple[int, int, int, int, int, bool, int]


def _headroom_one_down(ctx: Context) -> Proof:
    """Each host to upgrade goes down at least once; at best alone, after as much of its
    group's movable demand as the other groups can take has left.

    The other groups together can take at most the sum of their slack now (free minus required)
    plus the demand stuck on their hosts (taking a host down lowers a group's requirement by at
    most its capacity and its free capacity by its capacity less that stuck demand); the pseudo-
    group of hosts outside every headroom group, its free capacity. For the same reason, other
    hosts of its own group down in the same wave can raise its slack by at most their stuck
    demand (at most max_hosts_per_wave - 1 of them): "alone" is not always the best case.

    Families: the group's headroom of the class; the other groups' too when their slack is what
    limits the room (not the demand free to leave); and the pins that keep demand in the group
    when that demand is what limits it."""
    proof = Proof()
    worst = _shortfalls(ctx)
    if not worst:
        return proof
    rule = ctx.policy.headroom
    G = ctx.G
    agg = build_aggregates(ctx)
    fewer = room_solver.fewer_failures(ctx)
    worst2 = _shortfalls(fewer[0]) if fewer is not None else {}
    need = room.requirement(rule) or "headroom"
    for (g, c), (_short, h, free_c, req, room_c, others_bind, gain) in sorted(worst.items())[
        :SHOWN
    ]:
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
        if gain:
            extra += (
                f", and other hosts down beside it could lower the need by at most "
                f"{format_amount(rc, gain)} (their stopped VMs)"
            )
        # Short even with no requirement (its VMs do not fit at all): not its headroom.
        own = room.words(ctx.policy, ctx.group_names[g], rc)
        families = [own] if free_c + room_c >= 0 else []
        if others_bind:
            families += room_solver.class_words(ctx, rc, [o for o in range(G) if o != g])
        else:
            families += _group_pins(ctx, g, c)
        step = {own.key: fewer[1]} if fewer is not None and (g, c) in worst2 else {}
        proof.add(
            f"{ctx.group_names[g]}: {what}, {rc} free {format_amount(rc, free_c)} < "
            f"{format_amount(rc, req)} needed for {need}{extra}",
            families,
            step,
        )
    return proof


def _group_pins(ctx: Context, g: int, c: int) -> list[Words]:
    """The pins of the VMs held in group g (movable, demand of class c, not free to leave)."""
    out: list[Words] = []
    for j in range(len(ctx.inv.vms)):
        h = int(ctx.vm_host0[j])
        if int(ctx.group_of[h]) != g or ctx.stuck[j] or not ctx.demand[j, c]:
            continue
        if ctx.pinned_to_group(j):
            out += _pin_families(ctx, j)
    return list({f.key: f for f in out}.values())


def _shortfalls(ctx: Context) -> dict[tuple[int, int], Shortfall]:
    """(group, class) -> the worst shortfall over the hosts to upgrade."""
    if not ctx.todo.size:
        return {}
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
    beside = _beside(ctx)
    worst: dict[tuple[int, int], Shortfall] = {}
    for h in ctx.todo:
        h = int(h)
        g = int(ctx.group_of[h])
        if not (0 <= g < G):
            continue
        gain = beside(g, h)
        down = np.zeros(ctx.H, dtype=bool)
        others = absorb.sum(axis=0) - absorb[g]
        if ctx.available[h]:
            down[h] = True
            free = agg.base_free[g] - agg.down_weight[h]
            can_leave = leavable[g]
        else:
            free = agg.base_free[g] - ctx.mov_demand[h]
            can_leave = leavable[g] + ctx.unpinned_demand[h]
        room = np.minimum(can_leave, others)
        for c in range(C):
            req = required(agg, g, c, down)
            short = req - int(free[c]) - int(room[c]) - int(gain[c])
            if short > 0 and ((g, c) not in worst or short > worst[(g, c)][0]):
                worst[(g, c)] = (
                    short,
                    h,
                    int(free[c]),
                    req,
                    int(room[c]),
                    bool(others[c] < can_leave[c]),
                    int(gain[c]),
                )
    return worst


def _beside(ctx: Context) -> Any:
    """gain(g, h) -> (C,): the most that other hosts of group g down in host h's wave can add to
    g's slack. Each lowers the requirement by at most its capacity and the free capacity by its
    capacity less its stuck demand, so it gains at most its stuck demand; at most
    max_hosts_per_wave - 1 of them (available hosts to upgrade) join h: per class, the largest."""
    M = max(1, ctx.policy.max_hosts_per_wave)
    tops: dict[int, tuple[IntArray, IntArray, IntArray]] = {}
    for g in range(ctx.G):
        on = np.flatnonzero((ctx.group_of == g) & ctx.available & ctx.is_todo)
        s = -np.sort(-ctx.stuck_demand[on], axis=0)  # (n, C) largest first
        k = min(M - 1, len(on))
        z = np.zeros(ctx.C, dtype=np.int64)
        top_k = s[:k].sum(axis=0) if k else z  # the M-1 largest
        top_k1 = s[: k + 1].sum(axis=0) if len(on) else z  # the M largest
        kth = s[k - 1] if k else np.full(ctx.C, np.iinfo(np.int64).max, dtype=np.int64)
        tops[g] = (top_k, top_k1, kth)

    def gain(g: int, h: int) -> IntArray:
        top_k, top_k1, kth = tops[g]
        if not (ctx.available[h] and ctx.is_todo[h]):
            return top_k  # h is none of them
        own = ctx.stuck_demand[h]
        out: IntArray = np.where(own >= kth, top_k1 - own, top_k)
        return out

    return gain
