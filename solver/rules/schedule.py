"""Maintenance windows in the solver's models: none yet. The planners write no schedule and do
not place hosts in windows (that comes with issue 16's planner: `rollwave plan --start`); the
checker judges a plan's schedule against the policy's windows."""

from __future__ import annotations

from solver.rules.base import Encodings, Relaxed

_NOT_YET = "windows come with issue 16's planner: it writes no schedule"

ENCODINGS = Encodings(
    "schedule",
    greedy=Relaxed(_NOT_YET),
    waves=Relaxed(_NOT_YET),
    placement=Relaxed(_NOT_YET),
    exact=Relaxed(_NOT_YET),
)
