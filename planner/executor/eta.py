"""The ETA: the simulator's model of the rest of the plan, scaled by the pace observed so far.

At each wave's start the remaining plan is simulated from the live state (one deterministic run,
no random failures) with the executor's own limits. The model's time for each wave is kept, and
for the wave at hand the model time at which each of its steps (a migration, a host back in
service) ends. As the wave's steps finish, the ETA is recomputed without simulating again: the
steps done so far put the wave at a point of the model's schedule (n steps done: where the model
had its n-th step done), and the pace is the real over the model time of everything measured so
far, the finished waves and this wave up to that point. The rest of the wave and every later wave
are the model's times scaled by that pace (a model that is 2x too optimistic on this cloud soon
gives a 2x longer ETA, already within the first wave).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from planner.inventory import Inventory
from planner.plan import Plan
from sim.engine import prepare, simulate
from sim.model import SimModel


@dataclass
class Eta:
    model: SimModel
    predicted: dict[int, float] = field(default_factory=dict)  # wave -> model seconds
    actual: dict[int, float] = field(default_factory=dict)  # wave -> real seconds
    remaining_s: float | None = None  # model seconds for the rest, at the last estimate
    error: str | None = None
    # The wave under way, from the last estimate (None between waves):
    wave: int | None = None
    wave_s: float = 0.0  # model seconds for what was left of it at the estimate
    later_s: float = 0.0  # model seconds for the waves after it
    marks: list[float] = field(default_factory=list)  # model time each of its steps ends, sorted
    t0: float = 0.0  # real time (the executor's clock) of the estimate
    done: int = 0  # its steps finished since the estimate
    t_last: float = 0.0  # real seconds from the estimate to the last of them

    def estimate(
        self, view: Inventory, remaining: Plan, first_wave: int, now: float = 0.0
    ) -> float | None:
        """Model seconds for `remaining` (its wave 1 is execution wave `first_wave`, under way
        from real time `now` on)."""
        self.wave, self.marks, self.done, self.t0, self.t_last = None, [], 0, now, 0.0
        if not remaining.waves:
            self.remaining_s = 0.0
            return 0.0
        try:
            prep = prepare(view, remaining, self.model, check=False)
            res = simulate(prep, seed=0, record=False)
        except Exception as exc:  # the ETA is advice: never let it stop a run
            self.error = f"{type(exc).__name__}: {exc}"
            self.remaining_s = None
            return None
        for i, (a, b) in enumerate(zip(res.wave_start, res.wave_end, strict=True)):
            if a == a and b == b:  # not NaN
                self.predicted.setdefault(first_wave + i, b - a)
        self.remaining_s = res.makespan_s
        start, end = res.wave_start[0], res.wave_end[0]
        if math.isfinite(start) and math.isfinite(end):
            ends = [e for e, w in zip(res.mig_end, prep.m_wave, strict=True) if w == 0]
            ends += [res.host_times[h][2] for h in prep.waves[0][0] if h in res.host_times]
            self.marks = sorted(min(max(e - start, 0.0), end - start) for e in ends if e == e)
            self.wave, self.wave_s = first_wave, end - start
            self.later_s = max(res.makespan_s - end, 0.0)
        return res.makespan_s

    def step_done(self, now: float) -> None:
        """A step of the wave under way has finished (a migration, a host)."""
        if self.wave is not None:
            self.done += 1
            self.t_last = max(now - self.t0, 0.0)

    def wave_done(self, k: int, seconds: float) -> None:
        self.actual[k] = seconds
        if self.wave == k:
            self.remaining_s = self.later_s
            self.wave = None

    @property
    def pace(self) -> float:
        """Real / predicted time of the finished waves (1.0 until one is finished)."""
        done = [k for k in self.actual if k in self.predicted and self.predicted[k] > 0]
        if not done:
            return 1.0
        return sum(self.actual[k] for k in done) / sum(self.predicted[k] for k in done)

    def _position(self) -> float:
        """Where the steps done put the wave under way in the model's schedule (model s)."""
        if self.wave is None or not self.done or not self.marks:
            return 0.0
        return self.marks[min(self.done, len(self.marks)) - 1]

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
        estimate), or None without an estimate."""
        if self.remaining_s is None:
            return None
        if self.wave is None or now is None:
            pace = self.pace if self.wave is None else self.now_pace()
            return self.remaining_s * pace, self.remaining_s, pace
        pace = self.now_pace()
        tau = self._position()
        wave_left = max(self.wave_s - tau, 0.0)
        # this wave ends, in real time from the estimate, at its last step plus the model's
        # rest of it at this pace; the time since that step is already spent
        end = (self.t_last if tau > 0 else 0.0) + wave_left * pace
        spent = max(now - self.t0, 0.0)
        return max(end - spent, 0.0) + self.later_s * pace, wave_left + self.later_s, pace

    def text(self, now: float | None = None) -> str:
        got = self.left(now)
        if got is None:
            return ""
        from planner.executor.ui import hms

        real, model, pace = got
        if abs(pace - 1.0) < 1e-9:
            return f"ETA {hms(real)} (model)"
        return f"ETA {hms(real)} (model {hms(model)} x {pace:.3g} pace)"
