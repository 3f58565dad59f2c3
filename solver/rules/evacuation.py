"""Evacuation, sources and destinations in the solver's models: physics, kept by every model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from planner.inventory import VM
from solver.rules.base import Builtin, Encodings, GreedyHooks

if TYPE_CHECKING:
    from planner.capacity import BoolArray
    from solver.greedy import GreedyState, GreedyWave


def _refuses(g: GreedyWave, h: int, tier: int) -> str | None:
    """A host that received VMs in this wave cannot join it (they would have to leave again)."""
    return "" if h in g.received else None


def _eligible(
    st: GreedyState, vm: VM, j: int, in_wave: BoolArray, ok: BoolArray | None
) -> BoolArray:
    """Destinations: compute hosts that are enabled, up and not in the wave."""
    base: BoolArray = st.dest_ok & ~in_wave
    return base if ok is None else ok & base


ENCODINGS = Encodings(
    "evacuation",
    greedy=GreedyHooks(refuses=_refuses, eligible=_eligible),
    waves=Builtin("a host's movable demand leaves it in its wave (per headroom group)"),
    placement=Builtin(
        "every block on the wave's hosts gets a destination that is available and outside the "
        "wave, or the wave is repaired"
    ),
    exact=Builtin(
        "a VM leaves a host only in its wave, and then must; it lands only on an enabled, up "
        "compute host outside the wave (ExactModel._positions)"
    ),
)
