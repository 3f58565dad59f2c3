"""Per-project windows (side-by-side plans): the in-place models write in-place plans only, on
which the family never binds (project windows mean nothing in place); the side-by-side planner
schedules the crossings in them after the waves (`planner.app.sidebyside`, by `sim.crosscloud`'s
timing)."""

from __future__ import annotations

from solver.rules.base import Builtin, Encodings

_IN_PLACE = (
    "it writes in-place plans only, on which the family never binds (project windows apply "
    "side by side)"
)

ENCODINGS = Encodings(
    "project_window",
    greedy=Builtin(_IN_PLACE),
    waves=Builtin(_IN_PLACE),
    placement=Builtin(_IN_PLACE),
    exact=Builtin(_IN_PLACE),
)
