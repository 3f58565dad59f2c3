"""Remedies in the solver's models: none yet. The planners make no predictions (they come with
issue 15's planner: `rollwave plan --model`), so they write no remedies, no
force_complete_after_s, and keep neither max_migration_s nor max_downtime_s; the checker judges
those with estimates (`check_plan(..., estimates=)`)."""

from __future__ import annotations

from solver.rules.base import Encodings, Relaxed

_NOT_YET = (
    "predictions come with issue 15's planner: it writes no remedies and does not keep "
    "max_migration_s or max_downtime_s"
)

ENCODINGS = Encodings(
    "remedy",
    greedy=Relaxed(_NOT_YET),
    waves=Relaxed(_NOT_YET),
    placement=Relaxed(_NOT_YET),
    exact=Relaxed(_NOT_YET),
)
