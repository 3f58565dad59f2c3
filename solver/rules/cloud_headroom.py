"""Headroom per cloud (side-by-side plans): the in-place models write in-place plans only, on
which the family never binds (their headroom is the family `headroom`'s); the side-by-side
planner (`solver.sidebyside`) checks both clouds' N+k before it takes a host into a wave."""

from __future__ import annotations

from solver.rules.base import Builtin, Encodings

_IN_PLACE = (
    "it writes in-place plans only, on which the family never binds (the family headroom "
    "keeps their N+k)"
)

ENCODINGS = Encodings(
    "cloud_headroom",
    greedy=Builtin(_IN_PLACE),
    waves=Builtin(_IN_PLACE),
    placement=Builtin(_IN_PLACE),
    exact=Builtin(_IN_PLACE),
)
