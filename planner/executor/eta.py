"""The ETA: a model of the rest of the plan, scaled by the pace observed so far.

At each wave's start the remaining plan is simulated from the live state (one deterministic run,
no random failures) with the executor's own limits, by the `Estimator` the executor was given
(the simulator, wired by `planner.app.execute`). The model's time for each wave is kept, and
for the wave at hand the work of each of its steps: a migration weighs its modelled duration
(`mig_end - mig_start`: its transfer and the orchestration around it), a host its disable, its
upgrade command and the wait until it is enabled again (`host_times`). As the wave's steps finish,
the ETA is recomputed without simulating again: the work finished so far puts the wave at a point
of the model's schedule, the model time at which the model had finished as much work (between two
of the model's step ends, linearly). So a wave whose tiny VMs moved first is not taken for nearly
done while its big VM is still moving: their work is a sliver of the wave's. The pace is the real
over the model time of everything measured so far, the finished waves and this wave up to that
point. The rest of the wave and every later wave are the model's times scaled by that pace (a
model that is 2x too optimistic on this cloud soon gives a 2x longer ETA, already within the first
wave).

The canary's soak is wall-clock time, the same on any cloud: it is never scaled by the pace, and
while the run soaks, the ETA counts the soak's time left down second by second.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

from planner.executor.ports import Estimator
from planner.inventory import Inventory
from planner.plan import Plan


def vm_step(vm: str) -> str:
    """The key of a VM's migration step (`Eta.step_done`)."""
    return f"vm/{vm}"


def host_step(host: str) -> str:
    """The key of a host's step (disable, upgrade command, enable)."""
    return f"host/{host}"


@dataclass
class Eta:
    estimator: Estimator
    canary: bool = True  # the canary is still ahead (its soak is in the model's time)
    predicted: dict[int, float] = field(default_factory=dict)  # wave -> model seconds
    actual: dict[int, float] = field(default_factory=dict)  # wave -> real seconds
    remaining_s: float | None = None  # model seconds for the rest, at the last estimate
    error: str | None = None
    # The wave under way, from the last estimate (None between waves):
    wave: int | None = None
    wave_s: float = 0.0  # model seconds for what was left of it at the estimate
    later_s: float = 0.0  # model seconds for the waves after it (and the soak, if any)
    work: dict[str, float] = field(default_factory=dict)  # step key -> model seconds of work
    # The model's progress through the wave: (model s from its start, work finished by then),
    # one point per step end, in time order, from (0, 0).
    curve: list[tuple[float, float]] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # its steps' keys, curve[1:]'s order
    t0: float = 0.0  # real time (the executor's clock) of the estimate
    done: int = 0  # its steps finished since the estimate
    done_work: float = 0.0  # their work
    dropped_work: float = 0.0  # work of steps given up since (never done, not needed any more)
    t_last: float = 0.0  # real seconds from the estimate to the last finished step
    _seen: set[str] = field(default_factory=set)
    # The canary's soak: model seconds of it still ahead in remaining_s, and the real time at
    # which the soak under way ends (None: not soaking).
    soak_ahead_s: float = 0.0
    soak_until: float | None = None

    def estimate(
        self, view: Inventory, remaining: Plan, first_wave: int, now: float = 0.0
    ) -> float | None:
        """Model seconds for `remaining` (its wave 1 is execution wave `first_wave`, under way
        from real time `now` on)."""
        self.wave, self.work, self.curve, self.order, self._seen = None, {}, [], [], set()
        self.done, self.done_work, self.dropped_work = 0, 0.0, 0.0
        self.t0, self.t_last, self.soak_ahead_s = now, 0.0, 0.0
        if not remaining.waves:
            self.remaining_s = 0.0
            return 0.0
        try:
            fc = self.estimator.forecast(view, remaining, canary=self.canary)
        except Exception as exc:  # the ETA is advice: never let it stop a run
            self.error = f"{type(exc).__name__}: {exc}"
            self.remaining_s = None
            return None
        for i, (a, b) in enumerate(fc.waves):
            if a == a and b == b:  # not NaN
                self.predicted.setdefault(first_wave + i, b - a)
        self.remaining_s = fc.makespan_s
        self.soak_ahead_s = min(max(fc.soak_s, 0.0), fc.makespan_s)
        start, end = fc.waves[0]
        if math.isfinite(start) and math.isfinite(end):
            self.wave, self.wave_s = first_wave, end - start
            self.later_s = max(fc.makespan_s - end, 0.0)
            self._model_wave(list(fc.steps), start, end)
        return fc.makespan_s

    def _model_wave(self, steps: list[tuple[float, str, float]], start: float, end: float) -> None:
        """The work of each step of the wave under way and the model's progress curve."""
        if sum(w for _, _, w in steps) <= 0:  # a model without durations: steps by count
            steps = [(e, k, 1.0) for e, k, _ in steps]
        steps.sort()
        cum = 0.0
        self.curve = [(0.0, 0.0)]
        for e, key, w in steps:
            # a VM moved twice in the model (a retry elsewhere) weighs both attempts
            self.work[key] = self.work.get(key, 0.0) + w
            cum += w
            self.order.append(key)
            self.curve.append((min(max(e - start, 0.0), end - start), cum))

    @property
    def wave_work(self) -> float:
        return self.curve[-1][1] if self.curve else 0.0

    def _weight(self, key: str | None) -> float:
        """A step's work; a step the model did not have (a VM found on the host mid-wave) weighs
        as much as the wave's average step."""
        if key is not None and key in self.work:
            return self.work[key]
        return self.wave_work / len(self.work) if self.work else 0.0

    def step_done(self, now: float, key: str | None = None, *, dropped: bool = False) -> None:
        """A step of the wave under way has ended: a migration (`vm_step`), a host
        (`host_step`). `dropped`: given up (a VM left where it is, a host not upgraded): its work
        is no longer ahead, but it tells nothing about the pace."""
        if self.wave is None or (key is not None and key in self._seen):
            return
        if key is not None:
            self._seen.add(key)
        w = self._weight(key)
        if dropped:
            self.dropped_work += w
            return
        self.done += 1
        self.done_work += w
        self.t_last = max(now - self.t0, 0.0)

    def wave_fraction(self) -> float | None:
        """The part of the wave under way's work behind it, done or given up (None: no wave)."""
        if self.wave is None or self.wave_work <= 0:
            return None
        return min((self.done_work + self.dropped_work) / self.wave_work, 1.0)

    def wave_done(self, k: int, seconds: float) -> None:
        self.actual[k] = seconds
        if self.wave == k:
            self.remaining_s = self.later_s
            self.wave = None

    # -- the canary's soak ----------------------------------------------------------------------
    def soak_begin(self, now: float, seconds: float) -> None:
        """The run soaks from `now` for `seconds`: the model's soak (if it had one) is now this
        one, counted down in real time."""
        if self.remaining_s is not None:
            self.remaining_s = max(self.remaining_s - self.soak_ahead_s, 0.0)
        self.soak_ahead_s = 0.0
        self.soak_until = now + max(seconds, 0.0)

    def soak_end(self) -> None:
        self.soak_until = None

    def soak_left(self, now: float | None) -> float | None:
        """Real seconds of the soak under way still to wait (None: not soaking)."""
        if self.soak_until is None:
            return None
        return max(self.soak_until - now, 0.0) if now is not None else None

    # -- where the run stands --------------------------------------------------------------------
    @property
    def pace(self) -> float:
        """Real / predicted time of the finished waves (1.0 until one is finished)."""
        done = [k for k in self.actual if k in self.predicted and self.predicted[k] > 0]
        if not done:
            return 1.0
        return sum(self.actual[k] for k in done) / sum(self.predicted[k] for k in done)

    def _at(self, work: float) -> float:
        """The model time (from the wave's start) at which the model had finished `work`."""
        if self.wave is None or work <= 0 or len(self.curve) < 2:
            return 0.0
        if work >= self.wave_work:
            return self.curve[-1][0]
        i = bisect.bisect_left([c for _, c in self.curve], work)
        (t1, c1), (t2, c2) = self.curve[i - 1], self.curve[i]
        return t1 + (t2 - t1) * (work - c1) / (c2 - c1) if c2 > c1 else t2

    def _position(self) -> float:
        """Where the work finished puts the wave under way in the model's schedule (model s)."""
        return self._at(self.done_work) if self.done else 0.0

    def now_pace(self) -> float:
        """Real / model time of everything measured: the finished waves, and the wave under
        way up to its last finished step."""
        done = [k for k in self.actual if k in self.predicted and self.predicted[k] > 0]
        real = sum(self.actual[k] for k in done)
        model = sum(self.predicted[k] for k in done)
        tau = self._position()
        if tau > 0:
            real, model = real + self.t_last, model + tau
        return real / model if model > 0 else 1.0

    def left(self, now: float | None = None) -> tuple[float, float, float] | None:
        """(real seconds left, model seconds left, pace) at real time `now` (None: at the
        estimate), or None without an estimate. The model's soak still ahead is counted as it
        is (wall time); a soak under way, by its time left."""
        if self.remaining_s is None:
            return None
        soak = self.soak_ahead_s
        if now is not None and self.soak_until is not None:
            soak += max(self.soak_until - now, 0.0)
        if self.wave is None or now is None:
            pace = self.pace if self.wave is None else self.now_pace()
            rest = max(self.remaining_s - self.soak_ahead_s, 0.0)
            return rest * pace + soak, self.remaining_s, pace
        pace = self.now_pace()
        tau = self._position()
        # finished and given-up work alike are behind: the rest of the wave from there
        wave_left = max(self.wave_s - max(self._at(self.done_work + self.dropped_work), tau), 0.0)
        # this wave ends, in real time from the estimate, at its last step plus the model's
        # rest of it at this pace; the time since that step is already spent
        end = (self.t_last if tau > 0 else 0.0) + wave_left * pace
        spent = max(now - self.t0, 0.0)
        later = max(self.later_s - self.soak_ahead_s, 0.0)
        return max(end - spent, 0.0) + later * pace + soak, wave_left + self.later_s, pace

    def text(self, now: float | None = None) -> str:
        got = self.left(now)
        if got is None:
            return ""
        from planner.executor.ui import hms

        real, model, pace = got
        soak = self.soak_left(now)
        if soak is not None:
            rest = f"model {hms(model)}" + ("" if abs(pace - 1.0) < 1e-9 else f" x {pace:.3g} pace")
            return f"ETA {hms(real)} (soak {hms(soak)} left + {rest})"
        if abs(pace - 1.0) < 1e-9:
            return f"ETA {hms(real)} (model)"
        return f"ETA {hms(real)} (model {hms(model)} x {pace:.3g} pace)"

    def record(self, now: float) -> dict[str, Any] | None:
        """What the journal keeps of the ETA at real time `now` (`execute --status` counts it
        down from the record's time)."""
        got = self.left(now)
        if got is None:
            return None
        real, model, pace = got
        rec: dict[str, Any] = {
            "left_s": round(real, 1),
            "model_s": round(model, 1),
            "pace": round(pace, 4),
        }
        soak = self.soak_left(now)
        if soak is not None:
            rec["soak_left_s"] = round(soak, 1)
        return rec
