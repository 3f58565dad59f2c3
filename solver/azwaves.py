"""Waves per AZ when the policy's maintenance windows are per AZ and a wave's AZs are never open
together long enough for it: run lock-step, a wave goes down only while the windows of all its
hosts' AZs are open at once, and when that never lasts the wave's maintenance (its slowest host
at the 95th percentile) the wave can never run. Each such wave is split into one wave per AZ, so
no AZ waits for another's window.

A part is the wave's hosts of one AZ with their own migrations (by source) and stops, in the
wave's place: the part with hosts `policy.first` selects first, the one with hosts
`policy.last` selects last, the others by AZ name. Nothing else changes: the same VMs move to
the same destinations, each from the same host. What the checker proved of the whole wave holds
of each part run in turn (a destination receives part of what it received, a source still up
keeps its VMs, fewer hosts are down at once), and the planner re-checks the result: it keeps the
waves as solved, with a note, should the checker refuse it.

Only lock-step, and only those waves: split waves are more waves, each lasting its slowest host
(lock-step, where the windows overlap long enough, they cost windows), and run pipelined a host
is admitted in its own AZ's window while the hosts of later waves wait for the first wave with a
host waiting (measured with `benchmarks/windows_bench.py`: every mixed wave split, Berlin and New
York nights, 5 windows became 7).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Sequence
from dataclasses import replace

from planner.inventory import Inventory
from planner.plan import Migration, Plan, Stop, Wave
from planner.policy import Policy, selector_matches
from planner.windows import Window, openings

# Common openings are looked for over two weeks (windows recur weekly) from the plan's start,
# else from this Monday.
WEEKS_FROM = _dt.datetime(2026, 1, 5, tzinfo=_dt.UTC)
SPAN = _dt.timedelta(days=14)


def applies(plan: Plan) -> bool:
    """Whether `per_az` may split any wave of `plan`: lock-step, with windows per AZ."""
    return plan.policy.execution == "lockstep" and any(w.azs for w in plan.policy.windows)


def per_az(
    inv: Inventory,
    plan: Plan,
    need_s: Callable[[Wave], float],
    start: _dt.datetime | None = None,
) -> Plan:
    """The plan with each wave of several AZs whose windows are never open together for
    `need_s(wave)` seconds (over two weeks from `start`) split into one wave per AZ (lock-step
    only; see the module's docstring); the plan itself when there is none."""
    windows = plan.policy.windows
    if not applies(plan):
        return plan
    longest: dict[tuple[str | None, ...], float] = {}
    waves: list[Wave] = []
    for w in plan.waves:
        azs = tuple(sorted({inv.host(h).az for h in w.hosts}, key=lambda a: a or ""))
        if len(azs) > 1 and azs not in longest:
            longest[azs] = _together_s(windows, azs, start or WEEKS_FROM)
        apart = len(azs) > 1 and longest[azs] < need_s(w)
        parts = _parts(inv, plan.policy, w) if apart else [w]
        waves += [replace(p, index=len(waves) + i + 1) for i, p in enumerate(parts)]
    if len(waves) == len(plan.waves):
        return plan
    return replace(plan, waves=tuple(waves))


def _together_s(windows: Sequence[Window], azs: Sequence[str | None], start: _dt.datetime) -> float:
    """The longest time, in seconds, the windows of all these AZs are open at once (over `SPAN`
    from `start`)."""
    end = start + SPAN
    common: list[tuple[_dt.datetime, _dt.datetime]] | None = None
    for az in azs:
        mine = []
        for o, c in openings(windows, start, az):
            if o >= end:
                break
            mine.append((o, min(c, end)))
        if common is None:
            common = mine
            continue
        both = []
        i = j = 0
        while i < len(common) and j < len(mine):
            lo = max(common[i][0], mine[j][0])
            hi = min(common[i][1], mine[j][1])
            if lo < hi:
                both.append((lo, hi))
            if common[i][1] < mine[j][1]:
                i += 1
            else:
                j += 1
        common = both
    return max(((c - o).total_seconds() for o, c in common or ()), default=0.0)


def _parts(inv: Inventory, policy: Policy, w: Wave) -> list[Wave]:
    az = {h: inv.host(h).az for h in w.hosts}
    names = sorted({a or "" for a in az.values()})
    if len(names) < 2:
        return [w]

    def tier(a: str) -> tuple[int, str]:
        hosts = [inv.host(h) for h in w.hosts if (az[h] or "") == a]
        if any(selector_matches(s, h) for s in policy.first for h in hosts):
            return (0, a)
        if any(selector_matches(s, h) for s in policy.last for h in hosts):
            return (2, a)
        return (1, a)

    order = sorted(names, key=tier)
    hosts: dict[str, list[str]] = {a: [] for a in order}
    for h in w.hosts:
        hosts[az[h] or ""].append(h)
    moves: dict[str, list[Migration]] = {a: [] for a in order}
    for m in w.migrations:  # a VM leaving a host outside the wave goes with the first part
        moves[(az[m.src] or "") if m.src in az else order[0]].append(m)
    stops: dict[str, list[Stop]] = {a: [] for a in order}
    for s in w.stops:
        stops[(az[s.host] or "") if s.host in az else order[0]].append(s)
    return [
        replace(
            w,
            hosts=tuple(hosts[a]),
            migrations=tuple(moves[a]),
            stops=tuple(stops[a]),
            roles={h: r for h, r in w.roles.items() if h in hosts[a]},
        )
        for a in order
    ]
