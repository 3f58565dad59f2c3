"""Plans for pipelining: a pass over solved (and duration-shaped) waves that lowers the predicted
pipelined makespan (`planner.pipelined`: admission control replayed over the predicted
durations), keeping the waves, which hosts go in each, and every VM moved once as solved.

Run pipelined, a host waits for its evacuees' destinations: a destination of an earlier wave must
be back in service, upgraded, before the host may enter maintenance. The solvers send a wave's
evacuees to the hosts upgraded just before (the emptiest), so each wave waits for the previous to
end, as in lock-step: a chain. The pass cuts it:

- destinations: an evacuee of wave k whose destination was upgraded fewer than `lag` waves before
  goes instead to a host upgraded at least `lag` waves before (or one already at the target
  version, outside the plan) of the same AZ and aggregates (so every scope group's capacity and
  headroom is as solved) with room for it at every wave's end from k on (no fuller than the
  fullest host as solved, or, tried too, up to each host's effective capacity; hard
  anti-affinity kept; members of affinity groups stay together and soft groups are not counted
  per host here, so those are not moved). By then, run pipelined, it is back;
- gathered: those that stay with a host of the `lag` - 1 waves before go, where there is room, to
  one of them predicted back sooner (the waits gather on the hosts that return first);
- order: inside each wave, first the hosts that evacuees of the next waves still go to (those
  wait for them), then the longest maintenance first (the others fill in behind it; a long host
  last would end alone).

It tries lags 2, 3, 4 (stopping at the first that predicts worse than the one before: a longer
lag finds less room), each with the balance as solved and up to capacity, gathers on the best,
and keeps the plan whose predicted pipelined makespan is least (the plan as given when none is
better). Lock-step validity is kept by construction (the waves' usage is checked at every wave's
end) and re-proved by the checker, which has the last word: the planner falls back to the waves
as given should it refuse the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from planner.admission import AdmissionState
from planner.estimates import Estimates, How
from planner.inventory import Inventory
from planner.pipelined import Maintenance, maintenance_of, replay
from planner.plan import Migration, Plan
from solver.durations import _in_affinity_groups, _Usage

LAGS = (2, 3, 4)  # waves between an evacuee's destination's upgrade and its own host's
MAX_TRIED = 60  # destinations tried per evacuee


@dataclass(frozen=True)
class Piped:
    plan: Plan
    before_s: float  # predicted pipelined makespan as given
    after_s: float  # and of the plan returned
    lag: int  # the lag kept (0: the plan as given)
    moved: int  # evacuees sent elsewhere
    full: bool = False  # sent up to their destinations' capacity (the balance as solved not kept)
    gathered: int = 0  # evacuees sent to a host of the near waves predicted back sooner


def plan_for_pipelining(
    inv: Inventory,
    plan: Plan,
    est: Estimates,
    how: Mapping[str, How],
    shutdown_s: float = 0.0,
) -> Piped:
    """The plan with its evacuees' destinations and its waves' host order chosen for the least
    predicted pipelined makespan (see the module's docstring)."""
    if not plan.waves:
        return Piped(plan, 0.0, 0.0, 0, 0)
    base = maintenance_of(inv, plan, est, how, shutdown_s)
    piped = replace(plan, policy=replace(plan.policy, execution="pipelined"))
    state = AdmissionState.of(inv, piped)  # the plan's moves: shared by its reorderings
    before = replay(inv, piped, base, state=state).makespan_s
    best = Piped(plan, before, before, 0, 0)
    ordered = longest_first(plan, base)
    got = replay(inv, ordered, base, "pipelined", state).makespan_s
    if got < best.after_s - 1e-6:
        best = Piped(ordered, before, got, 0, 0)
    for full in (False, True):
        last = best.after_s
        for lag in LAGS:
            if lag >= len(plan.waves):
                break
            moved, redirected = redirect(inv, plan, lag, full)
            if not moved:
                break  # as the balanced try (full), or none to send
            ordered = longest_first(redirected, base, lag)
            got = replay(inv, ordered, base, "pipelined").makespan_s
            if got < best.after_s - 1e-6:
                best = Piped(ordered, before, got, lag, moved, full)
            if got > last + 1e-6:
                break  # a longer lag leaves less room: no better from here on
            last = got
    if best.lag:
        back = replay(inv, best.plan, base, "pipelined").end_s
        n, gathered = gather(inv, best.plan, best.lag, back, best.full)
        if n:
            gathered = longest_first(gathered, base, best.lag)
            got = replay(inv, gathered, base, "pipelined").makespan_s
            if got < best.after_s - 1e-6:
                best = replace(best, plan=gathered, after_s=got, gathered=n)
    return best


def longest_first(plan: Plan, maint: Mapping[str, Maintenance], lag: int = 2) -> Plan:
    """Each wave's hosts in order: first those that receive evacuees of a wave fewer than `lag`
    (at least 2) after theirs (the hosts of that wave wait for them to be back: they start
    first), then the longest predicted maintenance first; ties by name."""
    wave = {h: k for k, w in enumerate(plan.waves) for h in w.hosts}
    near = max(lag, 2)
    soon = {
        m.dst
        for k, w in enumerate(plan.waves)
        for m in w.migrations
        if m.dst in wave and 0 < k - wave[m.dst] < near
    }
    zero = Maintenance(0.0, 0.0)

    def key(h: str) -> tuple[int, float, str]:
        return (0 if h in soon else 1, -maint.get(h, zero).total_s, h)

    waves = tuple(replace(w, hosts=tuple(sorted(w.hosts, key=key))) for w in plan.waves)
    return replace(plan, waves=waves)


def redirect(inv: Inventory, plan: Plan, lag: int, full: bool = False) -> tuple[int, Plan]:
    """The plan with each evacuee whose destination was upgraded fewer than `lag` waves before
    its own host sent, where there is room, to a host upgraded at least `lag` waves before (or
    outside the plan, at the target version); how many were. `full`: up to the destinations'
    effective capacity (else no fuller than the fullest host as solved); none when that is the
    same."""
    W = len(plan.waves)
    wave_of = {h: k for k, w in enumerate(plan.waves) for h in w.hosts}
    usage = _Usage(inv, plan, full)
    if full and usage.balanced:
        return 0, plan
    moves = [m for w in plan.waves for m in w.migrations]
    # Members of affinity groups move together, and soft groups are not counted per host here:
    # those stay as solved (hard anti-affinity is counted with the usage).
    together = _in_affinity_groups(inv, moves) | {
        i for i, m in enumerate(moves) if _soft(inv, inv.vm(m.vm).server_group)
    }
    target = plan.policy.target_version
    # Candidate destinations by (AZ, aggregates): per wave, and those already at the target
    # version outside the plan (always ready).
    by_kind: dict[tuple[object, ...], list[list[str]]] = {}
    ready: dict[tuple[object, ...], list[str]] = {}
    for h in sorted(inv.compute_hosts, key=lambda h: h.name):
        if not h.available:
            continue
        key = (h.az, tuple(sorted(h.aggregates)))
        k = wave_of.get(h.name)
        if k is None:
            if h.version == target:
                ready.setdefault(key, []).append(h.name)
        else:
            by_kind.setdefault(key, [[] for _ in range(W)])[k].append(h.name)
    out: list[list[Migration]] = [[] for _ in range(W)]
    moved = 0
    mi = 0
    for k, w in enumerate(plan.waves):
        for m in w.migrations:
            idx, mi = mi, mi + 1
            d = wave_of.get(m.dst)
            if d is None or not (0 <= k - d < lag) or k - d == 0 or idx in together:
                out[k].append(m)
                continue
            dst = inv.host(m.dst)
            key = (dst.az, tuple(sorted(dst.aggregates)))
            new = _better(usage, m, k, lag, by_kind.get(key), ready.get(key, ()))
            if new is None:
                out[k].append(m)
                continue
            usage.redirect(k, m.vm, m.dst, new)
            out[k].append(replace(m, dst=new))
            moved += 1
    if not moved:
        return 0, plan
    waves = tuple(replace(w, migrations=tuple(out[k])) for k, w in enumerate(plan.waves))
    return moved, replace(plan, waves=waves)


def _soft(inv: Inventory, group: str | None) -> bool:
    """A soft server group (its members kept as solved: the checker warns when they part or
    meet)."""
    return group is not None and inv.has_group(group) and not inv.group(group).hard


def _better(
    usage: _Usage,
    m: Migration,
    k: int,
    lag: int,
    waves: list[list[str]] | None,
    ready: list[str] | tuple[str, ...],
) -> str | None:
    """A destination for m (of wave k) upgraded at least `lag` waves before k, or ready, that
    holds its VM at every wave's end from k on: the latest such wave first (the emptiest), the
    ready hosts last; None if none of the first few does."""
    need: np.ndarray = usage.demand[m.vm]
    grp = None
    if (g := usage.group.get(m.vm)) is not None:
        grp = (g, 1)
    tried = 0
    older = (h for j in range(k - lag, -1, -1) for h in (waves[j] if waves else ()))
    for cand in (older, iter(ready)):
        for h in cand:
            if h == m.src:
                continue
            tried += 1
            if tried > MAX_TRIED:
                return None
            if usage.takes(h, k, need, grp):
                return h
    return None


def gather(
    inv: Inventory, plan: Plan, lag: int, back: Mapping[str, float], full: bool = False
) -> tuple[int, Plan]:
    """The plan with each evacuee whose destination was upgraded fewer than `lag` waves before
    its own host sent, where there is room, to a host of those waves predicted back sooner
    (`back`: each host's predicted return), of the same AZ and aggregates: the waits gather on
    the hosts that return first, each host in the plan's order taking the soonest; how many
    were. `full` as for `redirect`."""
    wave_of = {h: k for k, w in enumerate(plan.waves) for h in w.hosts}
    usage = _Usage(inv, plan, full)
    moves = [m for w in plan.waves for m in w.migrations]
    together = _in_affinity_groups(inv, moves) | {
        i for i, m in enumerate(moves) if _soft(inv, inv.vm(m.vm).server_group)
    }
    inf = float("inf")
    by_kind: dict[tuple[object, ...], list[list[str]]] = {}
    for host in sorted(inv.compute_hosts, key=lambda h: (back.get(h.name, inf), h.name)):
        k = wave_of.get(host.name)
        if host.available and k is not None:
            key = (host.az, tuple(sorted(host.aggregates)))
            by_kind.setdefault(key, [[] for _ in plan.waves])[k].append(host.name)
    order = {h: i for w in plan.waves for i, h in enumerate(w.hosts)}
    out: list[list[Migration]] = []
    moved = mi = 0
    for k, w in enumerate(plan.waves):
        idx = {id(m): i for i, m in enumerate(w.migrations, mi)}
        mi += len(w.migrations)
        new: dict[int, Migration] = {}
        for m in sorted(w.migrations, key=lambda m: (order.get(m.src, 0), m.vm)):
            d = wave_of.get(m.dst)
            if d is None or not 0 < k - d < lag or idx[id(m)] in together:
                continue
            dst = inv.host(m.dst)
            near = by_kind.get((dst.az, tuple(sorted(dst.aggregates))))
            if near is None:
                continue
            need: np.ndarray = usage.demand[m.vm]
            g = usage.group.get(m.vm)
            cands = sorted(
                (h for j in range(max(0, k - lag + 1), k) for h in near[j]),
                key=lambda h: (back.get(h, inf), h),
            )
            for tried, h in enumerate(cands):
                if h == m.dst or tried >= MAX_TRIED or back.get(h, inf) >= back.get(m.dst, inf):
                    break
                if h != m.src and usage.takes(h, k, need, None if g is None else (g, 1)):
                    usage.redirect(k, m.vm, m.dst, h)
                    new[id(m)] = replace(m, dst=h)
                    moved += 1
                    break
        out.append([new.get(id(m), m) for m in w.migrations])
    if not moved:
        return 0, plan
    waves = tuple(replace(w, migrations=tuple(out[k])) for k, w in enumerate(plan.waves))
    return moved, replace(plan, waves=waves)
