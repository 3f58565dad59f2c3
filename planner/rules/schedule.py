"""Maintenance windows and the plan's schedule: a host goes down only inside a window of the
policy that applies to it (`windows`, see planner.windows), and the plan's `schedule` says which
opening each host is expected in.

A plan need not have a schedule (the planner writes one with `plan --start`); when it
has one, the checker judges it: every host of the plan's waves in exactly one scheduled window,
none else, windows numbered 1, 2, ... in time order, each opening before it closes, none
overlapping the next, none before the schedule's start, and `last_done` not before it
(`schedule`); each host's window inside an opening of the policy's windows that apply to it
(`schedule_window`). A policy window's `azs` naming no AZ of the inventory is a warning
(`window_azs`: policies are reused across clouds).

The policy's `execution` (pipelined or lockstep) is this family's what-if key too: it decides
when hosts go down, as the windows do.
"""

from __future__ import annotations

import datetime as _dt

from planner.inventory import Inventory
from planner.plan import Schedule, ScheduledWindow
from planner.policy import Policy
from planner.rules.base import Family, Out, PlanCheck, Violation, shown
from planner.windows import openings

KEY = "schedule"


def active(inv: Inventory, p: Policy) -> bool:
    """The family binds a planner only with windows (a schedule without windows is any time)."""
    return bool(p.windows)


def _at(t: _dt.datetime) -> str:
    return t.isoformat()


def _shape(s: Schedule, hosts: list[str], out: Out) -> None:
    """Coverage and well-formed times."""
    seen: dict[str, int] = {}
    waved = set(hosts)
    prev: ScheduledWindow | None = None
    for pos, w in enumerate(s.windows, start=1):
        objs = (str(w.index),)
        if w.index != pos:
            out.append(
                Violation(
                    KEY,
                    f"scheduled window at position {pos} has index {w.index}; they are numbered "
                    "1, 2, 3, ...",
                    objects=objs,
                    numbers={"position": pos, "index": w.index},
                )
            )
        if not w.start < w.end:
            out.append(
                Violation(
                    KEY,
                    f"window {w.index} ends ({_at(w.end)}) before it starts ({_at(w.start)})"
                    if w.end < w.start
                    else f"window {w.index} starts and ends at {_at(w.start)}",
                    objects=objs,
                )
            )
        if w.start < s.start:
            out.append(
                Violation(
                    KEY,
                    f"window {w.index} starts ({_at(w.start)}) before the schedule "
                    f"({_at(s.start)})",
                    objects=objs,
                )
            )
        if prev is not None and w.start < prev.end:
            out.append(
                Violation(
                    KEY,
                    f"window {w.index} starts ({_at(w.start)}) before window {prev.index} ends "
                    f"({_at(prev.end)}); windows are in time order, apart",
                    objects=(str(prev.index), str(w.index)),
                )
            )
        prev = w
        if not w.hosts:
            out.append(Violation(KEY, f"window {w.index} has no hosts", objects=objs))
        for h in w.hosts:
            if h in seen:
                out.append(
                    Violation(
                        KEY,
                        f"{h} is scheduled twice (windows {seen[h]} and {w.index})",
                        objects=(h,),
                    )
                )
                continue
            seen[h] = w.index
            if h not in waved:
                out.append(
                    Violation(KEY, f"{h} is scheduled but in no wave of the plan", objects=(h,))
                )
    missing = [h for h in hosts if h not in seen]
    if missing:
        out.append(
            Violation(
                KEY,
                f"{len(missing)} host(s) of the plan's waves are in no scheduled window: "
                f"{shown(missing, 10)}",
                objects=tuple(missing),
                numbers={"missing": len(missing)},
            )
        )
    if s.last_done is not None and s.last_done < s.start:
        out.append(
            Violation(
                KEY,
                f"last_done ({_at(s.last_done)}) is before the schedule's start ({_at(s.start)})",
            )
        )


def _inside(pc: PlanCheck, s: Schedule, out: Out) -> None:
    """Each host's window inside an opening of the windows that apply to it."""
    windows = pc.plan.policy.windows
    if not windows:
        return  # always open
    inv = pc.inv
    for w in s.windows:
        if not w.start < w.end:
            continue  # `schedule` reports it
        fits: dict[str | None, tuple[_dt.datetime, _dt.datetime] | None] = {}
        bad: list[str] = []
        for h in w.hosts:
            if not inv.has_host(h):
                continue  # `unknown` reports hosts of the waves; the rest `schedule`
            az = inv.host(h).az
            if az not in fits:
                fits[az] = next(openings(windows, w.start, az), None)
            o = fits[az]
            if o is None or o[0] != w.start or w.end > o[1]:
                bad.append(h)
        for h in bad:
            o = fits[inv.host(h).az]
            why = (
                "no window of the policy applies to its AZ"
                if o is None
                else f"the windows that apply to it are closed then (next open {_at(o[0])} to "
                f"{_at(o[1])})"
                if o[0] != w.start
                else f"the windows that apply to it close at {_at(o[1])}"
            )
            out.append(
                Violation(
                    "schedule_window",
                    f"{h} is scheduled in window {w.index} ({_at(w.start)} to {_at(w.end)}), but "
                    f"{why}",
                    objects=(h, str(w.index)),
                )
            )


def _azs(pc: PlanCheck) -> None:
    known = {h.az for h in pc.inv.hosts if h.az is not None}
    for i, w in enumerate(pc.plan.policy.windows):
        for az in w.azs:
            if az not in known:
                pc.warnings.append(
                    Violation(
                        "window_azs",
                        f"policy windows[{i}] names AZ {az!r}, which no host of this inventory "
                        "is in",
                        objects=(az,),
                    )
                )


def _plan(pc: PlanCheck, out: Out) -> None:
    if pc.plan.policy.windows:
        _azs(pc)
    s = pc.plan.schedule
    if s is None or pc.plan.side_by_side:
        return  # side by side, the schedule holds crossings (family project_window)
    _shape(s, list(pc.plan.hosts), out)
    _inside(pc, s, out)


FAMILY = Family(
    name=KEY,
    rules={
        KEY: "the schedule puts every host of the waves in exactly one window, with well-formed "
        "times",
        "schedule_window": "each host's scheduled window is inside an opening of the policy's "
        "windows that apply to it",
        "window_azs": "a warning: a policy window's azs name AZs of the inventory",
    },
    plan=_plan,
    owns=lambda key: key == KEY,
    active=active,
    # windows are a list of objects: what-ifs over them come with the planner that acts on them
    policy_keys={"execution": "str"},
)
