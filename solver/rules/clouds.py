"""Two clouds (side-by-side plans): the in-place models never write one (no roles, no
cross-cloud moves, no AZ map), so the family never binds on their plans; the side-by-side
planner (`solver.sidebyside`) keeps it by construction and the checker re-judges its plans."""

from __future__ import annotations

from solver.rules.base import Builtin, Encodings

_IN_PLACE = (
    "it writes in-place plans only (no host roles, no cross-cloud moves), on which the family "
    "never binds"
)

ENCODINGS = Encodings(
    "clouds",
    greedy=Builtin(_IN_PLACE),
    waves=Builtin(_IN_PLACE),
    placement=Builtin(_IN_PLACE),
    exact=Builtin(_IN_PLACE),
)
