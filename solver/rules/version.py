"""Version order in the solver's models: kept by construction."""

from __future__ import annotations

from solver.rules.base import Builtin, Encodings

_LEAVES = (
    "a VM leaves only a host of the current wave, which is not upgraded yet, so no migration "
    "starts from an upgraded host"
)

ENCODINGS = Encodings(
    "version",
    greedy=Builtin(_LEAVES),
    waves=Builtin(_LEAVES),
    placement=Builtin(_LEAVES),
    exact=Builtin(_LEAVES),
)
