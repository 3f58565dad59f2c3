"""The schedule in the calendar, as the report's Gantt chart draws it: real dates on the axis,
the maintenance windows shaded, the closed hours between them compressed.

A `Schedule` carries a `CalendarAxis` when its times count from a date: a simulated run's
timeline written in calendar time (`rollwave simulate --start`, or a plan with a schedule:
its header's `calendar`), or an estimate placed in the plan's schedule (`place_in_windows`: each
of the plan's windows starts its hosts when it opens; the estimate itself knows no windows).

`compress` maps time onto the drawn axis: inside an opening (and while work that started in it
runs on after its close) time keeps its length; each closed stretch between is drawn
`GAP_SHARE` of the active time wide, and marked with its real length.
"""

from __future__ import annotations

import datetime as _dt
import math
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from planner.plan import Schedule as PlanSchedule
from planner.report.schedule import HostSpan, Schedule, Span, StopSpan, WaveSpan

GAP_SHARE = 0.04  # a compressed gap's width, as a share of the drawn active time


@dataclass(frozen=True)
class CalendarAxis:
    """Time 0 is `start`; `openings` (seconds from it, sorted, disjoint; None: never closes)
    are the windows' openings the run met."""

    start: _dt.datetime
    openings: tuple[tuple[float, float | None], ...]

    def at(self, t: float) -> _dt.datetime:
        return self.start + _dt.timedelta(seconds=t)


def from_header(header: Mapping[str, Any]) -> CalendarAxis | None:
    """The axis a timeline's header gives (`calendar`), None without one or when unreadable."""
    cal = header.get("calendar")
    if not isinstance(cal, Mapping):
        return None
    try:
        start = _dt.datetime.fromisoformat(str(cal["start"]))
        ops = tuple(
            (float(a), None if b is None else float(b)) for a, b in cal.get("openings") or ()
        )
    except (KeyError, TypeError, ValueError):
        return None
    return CalendarAxis(start, ops) if start.tzinfo is not None else None


def from_plan(plan_schedule: PlanSchedule) -> CalendarAxis:
    """The axis of a plan's schedule: its start and its windows."""
    t0 = plan_schedule.start
    return CalendarAxis(
        t0,
        tuple(
            ((w.start - t0).total_seconds(), (w.end - t0).total_seconds())
            for w in plan_schedule.windows
        ),
    )


def place_in_windows(schedule: Schedule, plan_schedule: PlanSchedule) -> Schedule:
    """An estimate (hosts back to back from time 0, windows unknown to it) placed in the plan's
    schedule: the hosts of each window moved together so that the first starts when the window
    opens (never before the previous window's last host is done)."""
    window_of = {h: w.index for w in plan_schedule.windows for h in w.hosts}
    axis = from_plan(plan_schedule)
    opens = {w.index: axis.openings[i][0] for i, w in enumerate(plan_schedule.windows)}
    first: dict[int, float] = {}
    for h in schedule.hosts:
        k = window_of.get(h.host)
        if k is not None:
            first[k] = min(first.get(k, math.inf), h.start)
    shift: dict[int, float] = {}
    done = -math.inf
    for k in sorted(first):
        shift[k] = d = max(opens[k], done) - first[k]
        done = max(h.end + d for h in schedule.hosts if window_of.get(h.host) == k)

    def by_host(name: str) -> float:
        return shift.get(window_of.get(name, 0), 0.0)

    hosts = tuple(_moved(h, by_host(h.host)) for h in schedule.hosts)
    wave_shift: dict[int, float] = {}
    for h in schedule.hosts:
        wave_shift.setdefault(h.wave, by_host(h.host))
    return replace(
        schedule,
        hosts=hosts,
        migrations=tuple(_moved(m, by_host(m.src)) for m in schedule.migrations),
        stops=tuple(_moved(s, by_host(s.host)) for s in schedule.stops),
        waves=tuple(_moved(w, wave_shift.get(w.index, 0.0)) for w in schedule.waves),
        calendar=axis,
        note=(schedule.note + "; " if schedule.note else "")
        + "placed in the plan's maintenance windows (each window's hosts from its opening)",
    )


def _moved(x: Any, d: float) -> Any:
    """A span with every time field moved by d."""
    fields = ("start", "end", "drained")
    return replace(x, **{f: getattr(x, f) + d for f in fields if hasattr(x, f)})


# ---------------------------------------------------------------------------------------------
# The drawn axis
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Compressed:
    """The piecewise map from time to the drawn axis: `segments` (t0, t1, x0) drawn from x0 on,
    at one second a second; between them, gaps `(x0, x1, seconds closed)`."""

    axis: CalendarAxis
    segments: tuple[tuple[float, float, float], ...]
    gaps: tuple[tuple[float, float, float], ...]

    def x(self, t: float) -> float:
        i = max(0, bisect_right([s[0] for s in self.segments], t) - 1)
        t0, t1, x0 = self.segments[i]
        if t <= t1:
            return x0 + max(0.0, t - t0)
        if i + 1 < len(self.segments):  # inside a gap: across it in proportion
            n0, _, nx = self.segments[i + 1]
            end = x0 + (t1 - t0)
            return end + (nx - end) * (t - t1) / (n0 - t1)
        return x0 + (t - t0)

    def drawn_openings(self) -> list[tuple[float, float]]:
        out = []
        for a, b in self.axis.openings:
            b2 = b if b is not None else self.segments[-1][1]
            if b2 > self.segments[0][0] and a < self.segments[-1][1]:
                out.append((self.x(a), self.x(b2)))
        return out


def compress(schedule: Schedule) -> tuple[Schedule, Compressed]:
    """The schedule with its times on the drawn axis, and the map (the schedule must carry a
    calendar)."""
    axis = schedule.calendar
    assert axis is not None
    busy = sorted((h.start, h.end) for h in schedule.hosts) + sorted(
        (s.start, s.end) for s in (*schedule.soaks, *schedule.rollbacks)
    )
    end = max([schedule.makespan_s, *(e for _, e in busy)], default=0.0)
    # Active stretches: each opening the run met (to its close, or its last work), merged with
    # the work itself; what lies between is closed and compressed.
    spans = [(a, b if b is not None else end) for a, b in axis.openings if a <= end]
    spans += busy
    spans.sort()
    merged: list[list[float]] = []
    for a, b in spans:
        a = max(a, 0.0)
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    if not merged:
        merged = [[0.0, max(end, 1.0)]]
    active = sum(b - a for a, b in merged)
    gap_w = GAP_SHARE * active
    segments, gaps = [], []
    x = 0.0
    for i, (a, b) in enumerate(merged):
        if i:
            gaps.append((x, x + gap_w, a - merged[i - 1][1]))
            x += gap_w
        elif a > 0:  # the start before the first opening: a gap of its own
            gaps.append((0.0, gap_w, a))
            x = gap_w
        segments.append((a, b, x))
        x += b - a
    comp = Compressed(axis, tuple(segments), tuple(gaps))
    f = comp.x
    out = replace(
        schedule,
        hosts=tuple(
            HostSpan(h.host, h.wave, f(h.start), f(h.drained), f(h.end), h.ok)
            for h in schedule.hosts
        ),
        migrations=tuple(replace(m, start=f(m.start), end=f(m.end)) for m in schedule.migrations),
        stops=tuple(StopSpan(s.vm, s.host, s.wave, f(s.start), f(s.end)) for s in schedule.stops),
        waves=tuple(WaveSpan(w.index, f(w.start), f(w.end)) for w in schedule.waves),
        rollbacks=tuple(Span(f(s.start), f(s.end), s.label, s.host) for s in schedule.rollbacks),
        soaks=tuple(Span(f(s.start), f(s.end), s.label, s.host) for s in schedule.soaks),
    )
    return out, comp


def ticks(comp: Compressed, scale: float, per_segment: int = 3) -> list[tuple[float, str]]:
    """Tick positions (drawn axis, divided by `scale`) and date labels: each active stretch's
    start with its day, then a few times of day inside it."""
    out: list[tuple[float, str]] = []
    for a, b, x0 in comp.segments:
        d = comp.axis.at(a)
        out.append((x0 / scale, f"{d:%a %d %b}\n{d:%H:%M}"))
        step = (b - a) / per_segment
        for k in range(1, per_segment):
            t = a + k * step
            out.append(((x0 + k * step) / scale, f"{comp.axis.at(t):%H:%M}"))
    return out


def hours(seconds: float) -> str:
    h = seconds / 3600
    return f"{h / 24:.1f} d closed" if h >= 48 else f"{h:.0f} h closed"


__all__ = [
    "GAP_SHARE",
    "CalendarAxis",
    "Compressed",
    "compress",
    "from_header",
    "from_plan",
    "hours",
    "place_in_windows",
    "ticks",
]
