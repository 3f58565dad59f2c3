"""Remedies in the solver's models: none. The models make no predictions; the planner
(`planner.app.predict`, behind `rollwave plan`) chooses each VM's remedy before they run (a cold
remedy migrates cold, a stopped VM cannot move, in the inventory they are given) and writes the
remedies, force_complete_after_s and predictions on their plan. Solved alone, a plan has none;
the checker judges them with estimates (`check_plan(..., estimates=)`)."""

from __future__ import annotations

from solver.rules.base import Encodings, Relaxed

_NOT_YET = (
    "the models make no predictions: the planner chooses remedies before they run "
    "(rollwave plan); solved alone, a plan has none"
)

ENCODINGS = Encodings(
    "remedy",
    greedy=Relaxed(_NOT_YET),
    waves=Relaxed(_NOT_YET),
    placement=Relaxed(_NOT_YET),
    exact=Relaxed(_NOT_YET),
)
