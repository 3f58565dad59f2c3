"""Maintenance windows in simulated time (policy `windows`, a start date).

A run's time 0 is `Calendar.start`. Each host has the openings of the windows that apply to its
AZ (`planner.windows.openings`, as seconds after the start, up to `HORIZON`) and its predicted
maintenance at the 95th percentile (`need`, the planner's rule: disable, drain, upgrade P95,
enable). A host enters maintenance only inside an opening, and only when its need ends before
the opening closes (pipelined: the host; lock-step: the wave, every host's windows open for the
wave's slowest need); else it waits for the first opening where it fits. Work under way when an
opening closes finishes after it: `outcome` reports each such host as an overrun.

Windows counted: the openings of all the hosts' windows merged (`nights`: per-AZ windows that
overlap are one), those in which at least one host entered maintenance.

The loop (`sim.loop`) asks `host_fit` and `wave_fit`; `outcome` reads a finished run. Plain data:
a `Calendar` is shared by every Monte Carlo run (and pickled to their processes).
"""

from __future__ import annotations

import datetime as _dt
import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from planner.windows import FOREVER, UTC, Window, openings

# Openings are listed this far after the start: a run waiting beyond it waits for ever (stalls).
HORIZON = _dt.timedelta(days=732)
INF = math.inf


@dataclass(frozen=True)
class Calendar:
    """The calendar of one simulation. `zones`: per calendar zone (the AZs' distinct windows),
    its openings `(open_s, close_s)` sorted, disjoint; `host_zone`: per host (the plan's
    indexing, `Prepared.hosts`) its zone; `need`: per host its P95 maintenance (s);
    `nights`: all zones' openings merged; `planned`: the plan's number of windows (its
    schedule), if it has one."""

    start: _dt.datetime
    zones: tuple[tuple[tuple[float, float], ...], ...]
    host_zone: tuple[int, ...]
    need: tuple[float, ...]
    nights: tuple[tuple[float, float], ...]
    planned: int | None = None

    def host_fit(self, h: int, t: float) -> float:
        """The first time from t at which host h may enter maintenance (INF: never)."""
        return fit(self.zones[self.host_zone[h]], t, self.need[h])

    def wave_fit(self, hs: Sequence[int], t: float) -> float:
        """The first time from t at which all of `hs` may enter maintenance together: every
        one's windows open for the slowest one's need (INF: never)."""
        zs = sorted({self.host_zone[h] for h in hs})
        need = max((self.need[h] for h in hs), default=0.0)
        s = t
        while True:
            got = [_opening(self.zones[z], s) for z in zs]
            if any(o is None for o in got):
                return INF
            ops = [o for o in got if o is not None]
            begin = max(o[0] for o in ops)
            if begin > s:
                s = begin
                continue
            close = min(o[1] for o in ops)
            if close - s >= need:
                return s
            s = close

    def at(self, t: float) -> _dt.datetime:
        """Simulated time t as a date (in the start's zone)."""
        return self.start + _dt.timedelta(seconds=t)

    def opening_of(self, h: int, t: float) -> tuple[float, float] | None:
        """The opening of host h's windows that contains t (None: none does)."""
        o = _opening(self.zones[self.host_zone[h]], t)
        return o if o is not None and o[0] <= t else None


def _opening(ops: Sequence[tuple[float, float]], t: float) -> tuple[float, float] | None:
    """The first opening that closes after t (None: none before the horizon)."""
    i = bisect_right(ops, (t, INF))
    if i and ops[i - 1][1] > t:
        return ops[i - 1]
    return ops[i] if i < len(ops) else None


def fit(ops: Sequence[tuple[float, float]], t: float, need: float) -> float:
    """The first time s >= t inside an opening that stays open until s + need (INF: none)."""
    i = bisect_right(ops, (t, INF))
    if i and ops[i - 1][1] > t:
        i -= 1
    for a, b in ops[i:]:
        s = a if a > t else t
        if b - s >= need:
            return s
    return INF


def build(
    windows: Sequence[Window],
    start: _dt.datetime,
    host_az: Sequence[str | None],
    need: Sequence[float],
    planned: int | None = None,
) -> Calendar:
    """The calendar from `start` of hosts in `host_az` with their P95 maintenance `need`."""
    t0 = start.astimezone(UTC)
    end = t0 + HORIZON
    zone_of: dict[tuple[Window, ...], int] = {}
    zones: list[tuple[tuple[float, float], ...]] = []
    host_zone = []
    for az in host_az:
        key = tuple(w for w in windows if w.applies(az))
        if key not in zone_of:
            zone_of[key] = len(zones)
            zones.append(_seconds(windows, t0, end, az))
        host_zone.append(zone_of[key])
    return Calendar(start, tuple(zones), tuple(host_zone), tuple(need), _merge(zones), planned)


def _seconds(
    windows: Sequence[Window], t0: _dt.datetime, end: _dt.datetime, az: str | None
) -> tuple[tuple[float, float], ...]:
    """The openings for a host in `az` as seconds after t0, up to `end` (no windows: one,
    never closing; windows, none of which applies: none)."""
    out = []
    for a, b in openings(windows, t0, az):
        if a >= end:
            break
        close = INF if b == FOREVER else (b - t0).total_seconds()
        out.append(((a - t0).total_seconds(), close))
        if b == FOREVER:
            break
    return tuple(out)


def _merge(
    zones: Sequence[Sequence[tuple[float, float]]],
) -> tuple[tuple[float, float], ...]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(o for z in zones for o in z):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# A run in the calendar
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CalendarOutcome:
    """A run in the calendar: the windows (merged openings) hosts entered maintenance in, with
    their hosts; the hosts whose maintenance went on after their opening closed (name, by how
    many seconds); hosts that entered outside any opening (none, by construction); the last
    host's end as a date."""

    windows: tuple[tuple[int, _dt.datetime, _dt.datetime, tuple[str, ...]], ...]
    overruns: tuple[tuple[str, float], ...]
    outside: tuple[str, ...]
    last_done: _dt.datetime | None
    planned: int | None

    @property
    def used(self) -> int:
        return len(self.windows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "windows_used": self.used,
            "windows_planned": self.planned,
            "last_done": self.last_done.isoformat() if self.last_done else None,
            "windows": [
                {
                    "index": i,
                    "start": a.isoformat(),
                    "end": b.isoformat(),
                    "hosts": list(hs),
                }
                for i, a, b, hs in self.windows
            ],
            "overruns": [{"host": h, "after_close_s": round(s, 3)} for h, s in self.overruns],
            "outside_windows": list(self.outside),
        }


def outcome(
    cal: Calendar,
    hosts: Sequence[str],
    host_status: Mapping[int, str],
    host_times: Mapping[int, tuple[float, float, float]],
) -> CalendarOutcome:
    """Where a finished run's hosts went in the calendar (hosts skipped, already down, are not
    counted: they never entered maintenance)."""
    by_night: dict[int, list[str]] = {}
    overruns, outside = [], []
    last = -INF
    for h, (s, _, e) in sorted(host_times.items(), key=lambda x: (x[1][0], x[0])):
        if host_status.get(h) == "down":
            continue
        last = max(last, e)
        o = cal.opening_of(h, s)
        if o is None:
            outside.append(hosts[h])
            continue
        if e > o[1]:
            overruns.append((hosts[h], e - o[1]))
        n = bisect_right(cal.nights, (s, INF)) - 1
        by_night.setdefault(n, []).append(hosts[h])
    wins = []
    for i, n in enumerate(sorted(by_night), start=1):
        a, b = cal.nights[n]
        hs = tuple(by_night[n])
        end = cal.at(b) if math.isfinite(b) else cal.at(last)
        wins.append((i, cal.at(a), end, hs))
    return CalendarOutcome(
        tuple(wins),
        tuple(overruns),
        tuple(outside),
        cal.at(last) if math.isfinite(last) else None,
        cal.planned,
    )


__all__ = ["HORIZON", "Calendar", "CalendarOutcome", "build", "fit", "outcome"]
