"""The plan in the calendar (`rollwave plan --start DATE`): which opening of the policy's
maintenance windows each host is expected in, run as the policy's `execution` says.

Pipelined (`pipelined_schedule`): the plan's admission replay (`planner.pipelined.replay`) over
each host's predicted maintenance, where a host admission accepts also waits until an opening of
its windows is open long enough for its own maintenance at the 95th percentile. Hosts share a
scheduled window when their AZs' openings start together and last as long (as the checker's
`schedule_window` wants); a host whose opening starts elsewhere waits for the current one's close
(scheduled windows stay apart).

Lock-step: a wave goes down at the first instant, from when the previous wave is predicted to end,
at which every one of its hosts' windows is open long enough for the wave's predicted maintenance
at its 95th percentile (`Estimates.maintenance_s(..., p95=True)`: no host is taken down when it
could overrun the window's end); the next wave follows after its median (`predicted_s`).
Consecutive waves in one opening share a scheduled window (from the first one's start to the
opening's close); a wave whose hosts' windows are not open for all of that waits for the next
opening.
Without policy windows every time is open: one window, from the start to the last host done.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass

from planner.errors import InfeasibleError, UsageError
from planner.estimates import Estimates, How
from planner.inventory import Inventory
from planner.pipelined import Maintenance, evacuees, maintenance_of, replay
from planner.plan import Plan, Schedule, ScheduledWindow, Wave
from planner.windows import FOREVER, UTC, Window, openings

MAX_JUMPS = 5000  # openings tried for one wave before giving up (years of nightly windows)


def parse_start(text: str, windows: tuple[Window, ...]) -> _dt.datetime:
    """`--start`: ISO 8601 (`2026-12-14T22:00`, a date, or with an offset). Without an offset
    it is the wall clock of the first window's zone (UTC without windows)."""
    try:
        t = _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--start: {text!r} is not a date and time (ISO 8601, e.g. 2026-12-14T22:00 or "
            "2026-12-14T22:00+01:00)"
        ) from None
    if t.tzinfo is None:
        from planner.windows import zone

        t = t.replace(tzinfo=zone(windows[0].tz) if windows else UTC)
    return t


def wave_p95_s(est: Estimates, w: Wave, how: Mapping[str, How]) -> float:
    """The wave's slowest host, its upgrade at the 95th percentile."""
    return max(
        (est.maintenance_s(h, vms, p95=True, how=how) for h, vms in evacuees(w).items()),
        default=0.0,
    )


@dataclass
class _Open:
    start: _dt.datetime
    end: _dt.datetime
    azs: set[str | None]
    hosts: list[str]


def schedule(
    inv: Inventory,
    plan: Plan,
    est: Estimates,
    how: Mapping[str, How],
    start: _dt.datetime,
    maintenance: Mapping[str, Maintenance] | None = None,
) -> Schedule:
    """The plan's schedule from `start`, as its policy's execution runs it; InfeasibleError
    when a host (pipelined) or a wave (lock-step) fits no opening. `maintenance`: each host's
    expected maintenance for the pipelined replay (default: `maintenance_of`, median upgrades)."""
    if plan.policy.execution == "pipelined":
        return pipelined_schedule(inv, plan, est, how, start, maintenance)
    windows = plan.policy.windows
    t = start.astimezone(UTC)
    done: list[_Open] = []
    cur: _Open | None = None
    for w in plan.waves:
        need = _dt.timedelta(seconds=wave_p95_s(est, w, how))
        median = _dt.timedelta(seconds=w.predicted_s or wave_p95_s(est, w, how))
        azs = {inv.host(h).az for h in w.hosts}
        if cur is not None and t < cur.end:
            if t + need <= cur.end and _open_over(windows, azs, cur.start, cur.end):
                cur.hosts.extend(w.hosts)
                cur.azs |= azs
                t += median
                continue
            t = cur.end  # another opening: windows stay apart
        if cur is not None:
            done.append(cur)
        s, close = _earliest(windows, azs, t, need, w.index)
        cur = _Open(s, close, set(azs), list(w.hosts))
        t = s + median
    if cur is not None:
        done.append(cur)
    last = t.replace(microsecond=0)
    out = [
        ScheduledWindow(
            i, o.start.astimezone(start.tzinfo), _end(o.end, last, start), tuple(o.hosts)
        )
        for i, o in enumerate(done, start=1)
    ]
    return Schedule(start, tuple(out), last.astimezone(start.tzinfo))


class _Calendar:
    """The replay's gate: seconds from `start` <-> the calendar, one scheduled window open at a
    time."""

    def __init__(
        self,
        inv: Inventory,
        plan: Plan,
        need: Mapping[str, float],
        start: _dt.datetime,
    ) -> None:
        self.inv, self.windows, self.need = inv, plan.policy.windows, need
        self.t0 = start.astimezone(UTC)
        self.wave = {h: w.index for w in plan.waves for h in w.hosts}
        self.done: list[_Open] = []
        self.cur: _Open | None = None

    def at(self, t: float) -> _dt.datetime:
        return self.t0 + _dt.timedelta(seconds=t)

    def secs(self, d: _dt.datetime) -> float:
        return (d - self.t0).total_seconds()

    def _joins(self, h: str, now: _dt.datetime) -> bool:
        """h may go down now inside the current window."""
        cur = self.cur
        if cur is None or now >= cur.end:
            return False
        az = self.inv.host(h).az
        if now + _dt.timedelta(seconds=self.need[h]) > cur.end:
            return False
        return az in cur.azs or _open_over(self.windows, {az}, cur.start, cur.end)

    def earliest(self, h: str, t: float) -> float:
        now = self.at(t)
        if self._joins(h, now):
            return t
        need = _dt.timedelta(seconds=self.need[h])
        s, _ = _earliest(self.windows, {self.inv.host(h).az}, now, need, self.wave[h], h)
        cur = self.cur
        if cur is not None and now < cur.end:  # another opening: windows stay apart
            if cur.end == FOREVER:
                raise InfeasibleError(
                    [
                        f"schedule: host {h} of wave {self.wave[h]} goes down only in openings "
                        f"that are not those of AZ {', '.join(sorted(map(str, cur.azs)))}, "
                        "whose windows never close (a schedule's windows do not overlap)"
                    ]
                )
            s = max(s, cur.end)
        return max(t, self.secs(s))

    def entered(self, h: str, t: float) -> None:
        now = self.at(t)
        if not self._joins(h, now):
            az = self.inv.host(h).az
            need = _dt.timedelta(seconds=self.need[h])
            s, close = _earliest(self.windows, {az}, now, need, self.wave[h], h)
            if self.cur is not None:
                self.done.append(self.cur)
            self.cur = _Open(s, close, {az}, [])
        assert self.cur is not None
        self.cur.azs.add(self.inv.host(h).az)
        self.cur.hosts.append(h)


def pipelined_schedule(
    inv: Inventory,
    plan: Plan,
    est: Estimates,
    how: Mapping[str, How],
    start: _dt.datetime,
    maintenance: Mapping[str, Maintenance] | None = None,
) -> Schedule:
    """The plan's schedule run pipelined: its admission replay with each host's P95 maintenance
    inside an opening of its windows."""
    need: dict[str, float] = {}
    for w in plan.waves:
        for h, vms in evacuees(w).items():
            need.setdefault(h, est.maintenance_s(h, vms, p95=True, how=how))
    cal = _Calendar(inv, plan, need, start)
    if maintenance is None:
        maintenance = maintenance_of(inv, plan, est, how)
    run = replay(inv, plan, maintenance, gate=cal)
    if run.stalled:
        raise InfeasibleError(
            [
                f"schedule: admission control cannot take {len(run.stalled)} host(s) down in "
                f"the predicted run ({', '.join(run.stalled[:5])}"
                f"{', ...' if len(run.stalled) > 5 else ''})"
            ]
        )
    if cal.cur is not None:
        cal.done.append(cal.cur)
    last = cal.at(run.makespan_s).replace(microsecond=0)
    out = [
        ScheduledWindow(
            i, o.start.astimezone(start.tzinfo), _end(o.end, last, start), tuple(o.hosts)
        )
        for i, o in enumerate(cal.done, start=1)
    ]
    return Schedule(start, tuple(out), last.astimezone(start.tzinfo))


def _end(end: _dt.datetime, last: _dt.datetime, start: _dt.datetime) -> _dt.datetime:
    """An opening that never closes (no windows) ends, in the plan, when the last host is done."""
    return (last if end == FOREVER else end).astimezone(start.tzinfo)


def _open_over(
    windows: tuple[Window, ...], azs: set[str | None], a: _dt.datetime, b: _dt.datetime
) -> bool:
    """Every AZ's windows are open from a to b."""
    for az in azs:
        o = next(openings(windows, a, az), None)
        if o is None or o[0] != a or o[1] < b:
            return False
    return True


def _earliest(
    windows: tuple[Window, ...],
    azs: set[str | None],
    t: _dt.datetime,
    need: _dt.timedelta,
    index: int,
    host: str | None = None,
) -> tuple[_dt.datetime, _dt.datetime]:
    """The first instant from t at which every AZ's windows are open for `need`, and when the
    first of them closes."""
    who = f"wave {index}" if host is None else f"host {host} of wave {index}"
    whose = "its slowest host's" if host is None else "its"
    s = t
    longest = _dt.timedelta(0)
    for _ in range(MAX_JUMPS):
        ops = [next(openings(windows, s, az), None) for az in sorted(azs, key=str)]
        if any(o is None for o in ops):
            never = [str(az) for az, o in zip(sorted(azs, key=str), ops, strict=True) if o is None]
            raise InfeasibleError(
                [
                    f"schedule: {who} {'has hosts' if host is None else 'is'} in AZ "
                    f"{', '.join(never)}, to which no "
                    "maintenance window of the policy applies"
                ]
            )
        begin = max(o[0] for o in ops if o is not None)
        if begin > s:
            s = begin
            continue
        close = min(o[1] for o in ops if o is not None)
        if close - s >= need:
            return s, close
        longest = max(longest, close - s)
        s = close
    raise InfeasibleError(
        [
            f"schedule: {who} is predicted to need {_hm(need)} ({whose} "
            f"maintenance at the 95th percentile) with its hosts down; no opening of the windows "
            f"that apply to them is that long (the longest: {_hm(longest)}): longer windows, or "
            "fewer VMs a host to drain"
        ]
    )


def _hm(d: _dt.timedelta) -> str:
    m = round(d.total_seconds() / 60)
    return f"{m // 60} h {m % 60:02d} min"


def summary(s: Schedule) -> dict[str, object]:
    """The plan summary's calendar fields."""
    return {
        "windows": len(s.windows),
        "last_done": s.last_done.isoformat() if s.last_done else None,
    }
