"""Per-project windows side by side (the policy's `project_windows`, planner.project_windows): a
VM of a windowed project starts crossing into the new cloud only inside an opening of its
project's windows that stays open for its crossing. The time needed is the plan's prediction for
that move (`predicted.duration_s`) when the plan carries one; without it, being inside an opening
is enough (a schedule's `crossings` interval is an opening shared by several VMs, not one VM's
time). A move already under way (its VM stopped by an earlier run) is finished whatever the clock
says: holding it would only lengthen its downtime.

Within a wave, a crossing whose window is closed is held back while the wave's other moves go on;
the wave then waits for the earliest opening of what it holds, or with `--no-window-wait` stops
(exit 5) to be resumed then. The wave's hosts take their roles only once every VM has left.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from planner.executor.window import admission, iso
from planner.plan import Migration
from planner.windows import Window

# Re-check at least this often while waiting (a clock that jumps, a Ctrl-C).
WAIT_STEP_S = 60.0


@dataclass(frozen=True)
class Verdict:
    """One windowed crossing judged at `now`: `go` (open now, until `closes`), or wait until
    `opens`. `fits` False: no opening is as long as `need_s`, so the first opening is taken."""

    vm: str
    project: str
    go: bool
    opens: _dt.datetime
    closes: _dt.datetime
    need_s: float | None
    fits: bool = True


def need_of(m: Migration) -> float | None:
    """The seconds a crossing must find its window open for: the plan's prediction, if any."""
    if m.predicted is not None and m.predicted.duration_s:
        return float(m.predicted.duration_s)
    return None


def judge(
    vm: str, project: str, windows: Sequence[Window], now: _dt.datetime, need_s: float | None
) -> Verdict | None:
    """When this crossing may start from `now` on; None when its project's windows never open."""
    got = admission(windows, (None,), now, need_s)
    if got is None:
        return None
    start, close, fits = got
    return Verdict(vm, project, start <= now, start, close, need_s, fits)


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


Clock = Callable[[], _dt.datetime]


def held_message(held: Sequence[Verdict]) -> str:
    first = min(held, key=lambda v: v.opens)
    projects = sorted({v.project for v in held})
    return (
        f"{len(held)} crossing(s) of project(s) {', '.join(projects)} wait for their windows; "
        f"the first opens at {iso(first.opens)}"
    )
