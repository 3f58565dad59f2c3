"""Maintenance windows (policy `windows`, `planner.windows`): a wave's hosts go down only inside
a window that applies to each of them. Before a wave starts, the gate asks the calendar: open
now for every host of the wave (and, when the plan predicts the wave's duration, open long
enough for it), the wave starts; else no host is admitted. The waves under way finish whatever
the clock says (their hosts are already down), and the run waits for the next opening, or with
`--no-window-wait` stops (exit 5) to be resumed then. Every wait and opening is a `window` note
in the journal, which `--status` shows.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Sequence

from planner.errors import ExecutionError
from planner.executor.context import RunContext
from planner.executor.states import Ev, Op
from planner.windows import Window, openings

# Re-check at least this often while waiting (a Ctrl-C, a clock that jumps).
WAIT_STEP_S = 60.0


def iso(t: _dt.datetime) -> str:
    return t.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def admission(
    windows: Sequence[Window],
    azs: Iterable[str | None],
    now: _dt.datetime,
    need_s: float | None,
) -> tuple[_dt.datetime, _dt.datetime, bool] | None:
    """When hosts of these AZs may all go down together, from `now` on: (from, closes, fits),
    the first instant at which every AZ's window is open and, with `need_s`, stays open that
    long (`fits`); when no opening is that long, the first at which they are all open (`fits`
    False). None when no window applies to one of the AZs (never open)."""
    zones = sorted(set(azs), key=lambda a: a or "")
    for need in (need_s,) if need_s is None else (need_s, None):
        t = now
        for _ in range(2000):  # openings recur: a few weeks of them at most
            firsts = [next(openings(windows, t, az), None) for az in zones]
            if any(f is None for f in firsts):
                return None
            start = max(f[0] for f in firsts if f is not None)
            if start > t:
                t = start
                continue
            close = min(f[1] for f in firsts if f is not None)
            if need is None or (close - t).total_seconds() >= need:
                return t, close, need is not None or need_s is None
            t = close  # too short: the next opening
    return None


class WindowGate:
    """Admits each wave into the maintenance windows (`wait_for`), noting it in the journal."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self._azs: dict[str, str | None] = {}

    def _az(self, hosts: Sequence[str]) -> list[str | None]:
        ctx = self.ctx
        if any(h not in self._azs for h in hosts):
            inv = ctx.view if ctx.view is not None else ctx.snapshot()
            if any(not inv.has_host(h) for h in hosts):
                inv = ctx.snapshot()
            self._azs.update((h.name, h.az) for h in inv.hosts)
        return [self._azs.get(h) for h in hosts]

    def wait_for(self, k: int) -> None:
        """Return when wave k may start (or at once in a dry run, or after a Ctrl-C); raise
        ExecutionError when the run is not to wait, or when no window ever opens for it."""
        ctx = self.ctx
        windows = ctx.policy.windows
        if not windows:
            return
        wave = ctx.state.schedule[k - 1]
        hosts = [h for h in wave.hosts if h not in ctx.state.outcomes]
        if not hosts:
            return
        expected = self._expected(hosts)
        noted = False
        while not ctx.interrupts and not ctx.stop_reason:
            now = ctx.wall()
            got = admission(windows, self._az(hosts), now, wave.predicted_s)
            if got is None:
                raise ExecutionError(
                    f"wave {k}: no maintenance window of the policy applies to its hosts "
                    f"({', '.join(hosts)}): they can never go down"
                )
            start, close, fits = got
            if start <= now:
                ctx.log(
                    Ev.NOTE,
                    Op.WINDOW,
                    what="open",
                    wave=k,
                    closes=iso(close),
                    expected=expected,
                    fits=None if fits else False,
                )
                if not fits:
                    ctx.ui.warn(
                        f"wave {k}: its predicted {wave.predicted_s:.0f} s fit no window; "
                        f"started now, the window closes at {iso(close)}"
                    )
                return
            if ctx.dry:
                ctx.ui.line(
                    f"wave {k}: outside the maintenance windows; would wait until {iso(start)}"
                )
                return
            if not noted:
                noted = True
                ctx.log(
                    Ev.NOTE,
                    Op.WINDOW,
                    what="wait",
                    wave=k,
                    opens=iso(start),
                    closes=iso(close),
                    expected=expected,
                )
                ctx.notify("window_wait", wave=k, message=f"the next window opens at {iso(start)}")
                if not ctx.opts.window_wait:
                    raise ExecutionError(
                        f"wave {k}: outside the maintenance windows; the next opens at "
                        f"{iso(start)} (--no-window-wait): resume the run then"
                    )
                ctx.ui.line(
                    f"[bold]wave {k}[/]: the maintenance window is closed; waiting until "
                    f"{iso(start)} (Ctrl-C stops the run; --resume continues it)"
                )
            left = (start - now).total_seconds()
            ctx.sleep(min(max(left, 0.05), WAIT_STEP_S))

    def _expected(self, hosts: Sequence[str]) -> int | None:
        """The plan's window (its `schedule`) for these hosts: the latest of theirs."""
        sched = self.ctx.plan.schedule
        if sched is None:
            return None
        of = sched.window_of()
        got = [of[h].index for h in hosts if h in of]
        return max(got) if got else None
