"""The ETA: the simulator's model of the rest of the plan, scaled by the pace observed so far.

At each wave's start the remaining plan is simulated from the live state (one deterministic run,
no random failures) with the executor's own limits; the model's prediction for each finished
wave is kept, and the ratio of the real to the predicted time of the finished waves scales the
rest (a model that is 2x too optimistic on this cloud soon gives a 2x longer ETA).
"""

from __future__ import annotations

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

    def estimate(self, view: Inventory, remaining: Plan, first_wave: int) -> float | None:
        """Model seconds for `remaining` (its wave 1 is execution wave `first_wave`)."""
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
        return res.makespan_s

    @property
    def pace(self) -> float:
        """Real / predicted time of the finished waves (1.0 until one is finished)."""
        done = [k for k in self.actual if k in self.predicted and self.predicted[k] > 0]
        if not done:
            return 1.0
        return sum(self.actual[k] for k in done) / sum(self.predicted[k] for k in done)

    def text(self) -> str:
        if self.remaining_s is None:
            return ""
        from planner.executor.ui import hms

        scaled = self.remaining_s * self.pace
        if abs(self.pace - 1.0) < 1e-9:
            return f"ETA {hms(scaled)} (model)"
        return f"ETA {hms(scaled)} (model {hms(self.remaining_s)} x {self.pace:.3g} pace)"
