"""Per-project maintenance windows for side-by-side plans (the policy's `project_windows`).

`project_windows: {web: [{days: mon-fri, start: "22:00", end: "06:00", tz: Europe/Berlin}]}`: a
VM of project `web` crosses into the new cloud (stop, copy, boot, verify: all of it downtime)
only inside an opening of its project's windows, whole. A project not named crosses at any time.
The windows have the syntax and the meaning of the policy's `windows` (planner.windows), without
`azs` (a project's window applies to all of its VMs). In place they mean nothing: a host's
maintenance takes every project's VMs along, and live migrations keep them running; the in-place
planner ignores them with a warning.

Here: reading and writing the policy key and the plan schedule's `crossings` (which opening each
windowed project's VMs are expected to cross in), and `fit`, the first opening long enough.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any

from planner.plan import Schedule, ScheduledCrossing
from planner.policy import Policy
from planner.reader import Reader, at, type_name
from planner.windows import FOREVER, Window, openings, read_windows

KEY = "project_windows"
# Openings tried for one crossing before giving up (years of nightly windows).
MAX_JUMPS = 5000


# ---------------------------------------------------------------------------------------------
# The policy key
# ---------------------------------------------------------------------------------------------
def read(r: Reader, d: Mapping[str, Any], loc: str) -> tuple[tuple[str, tuple[Window, ...]], ...]:
    """The policy's `project_windows` (absent or null: none), each problem located at
    `loc.project_windows.<project>[i].field`."""
    raw = d.get(KEY)
    if raw is None:
        return ()
    here = at(loc, KEY)
    if not isinstance(raw, dict):
        r.bad(here, f"must be an object (project -> list of windows), got {type_name(raw)}")
        return ()
    out: list[tuple[str, tuple[Window, ...]]] = []
    for project, items in raw.items():
        if not isinstance(project, str) or not project.strip():
            r.bad(here, f"has a key that is not a project name: {project!r}")
            continue
        n = len(r.problems)
        if not isinstance(items, list) or not items:
            r.bad(
                at(here, project),
                "must be a non-empty list of windows (leave the project out for any time), got "
                + (type_name(items) if not isinstance(items, list) else "an empty list"),
            )
            continue
        for i, item in enumerate(items):
            if isinstance(item, dict) and "azs" in item:
                r.bad(
                    at(at(at(here, project), i), "azs"),
                    "not for a project's window (it applies to every VM of the project)",
                )
        windows = read_windows(r, raw, project, here)
        if len(r.problems) == n:
            out.append((project, windows))
    return tuple(sorted(out))


def to_dict(p: Policy, d: dict[str, Any]) -> None:
    """Writes `project_windows` into a policy's dict, only when set."""
    if p.project_windows:
        d[KEY] = {name: [w.to_dict() for w in ws] for name, ws in p.project_windows}


# ---------------------------------------------------------------------------------------------
# The schedule's `crossings`
# ---------------------------------------------------------------------------------------------
def read_crossings(
    r: Reader, data: Mapping[str, Any], where: str, timestamp: Any
) -> tuple[ScheduledCrossing, ...]:
    """The schedule's `crossings`: [{project, start, end, vms}]; `timestamp(r, d, key, loc)`
    reads an aware datetime (the plan reader's)."""
    out = []
    for i, x in enumerate(r.items(data, "crossings", where, required=False)):
        loc = f"{where}.crossings[{i}]"
        d = r.obj(x, loc)
        if d is None:
            continue
        n = len(r.problems)
        c = ScheduledCrossing(
            project=r.str_(d, "project", loc),
            start=timestamp(r, d, "start", loc, required=True),
            end=timestamp(r, d, "end", loc, required=True),
            vms=r.str_list(d, "vms", loc, required=True),
        )
        if len(r.problems) == n:
            out.append(c)
    return tuple(out)


def write_crossings(s: Schedule, d: dict[str, Any]) -> None:
    if s.crossings:
        d["crossings"] = [
            {
                "project": c.project,
                "start": c.start.isoformat(),
                "end": c.end.isoformat(),
                "vms": list(c.vms),
            }
            for c in s.crossings
        ]


# ---------------------------------------------------------------------------------------------
# The calendar
# ---------------------------------------------------------------------------------------------
def fit(
    windows: Sequence[Window], t: _dt.datetime, need: _dt.timedelta
) -> tuple[_dt.datetime, _dt.datetime] | None:
    """The first opening of `windows` from `t` on that is open for `need` from where it is
    entered: (when to start, when it closes; FOREVER without windows); None when none is, within
    MAX_JUMPS openings (no opening that long)."""
    for k, (s, e) in enumerate(openings(windows, t)):
        if e == FOREVER or e - s >= need:
            return s, e
        if k >= MAX_JUMPS:
            break
    return None


def longest(windows: Sequence[Window], t: _dt.datetime) -> _dt.timedelta:
    """The longest opening in the first week after `t` (for messages)."""
    best = _dt.timedelta(0)
    for s, e in openings(windows, t):
        if s > t + _dt.timedelta(days=8):
            break
        best = max(best, e - s)
    return best


def hm(d: _dt.timedelta) -> str:
    m = round(d.total_seconds() / 60)
    return f"{m // 60} h {m % 60:02d} min"
