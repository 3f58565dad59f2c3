"""The plan's structure (digest, wave numbers, known names, every host to upgrade in exactly one
wave): every model writes its plan that way."""

from __future__ import annotations

from solver.rules.base import Builtin, Encodings

_WRITTEN = "plans are written from the hosts to upgrade, each in one wave, numbered in order"

ENCODINGS = Encodings(
    "structure",
    greedy=Builtin(_WRITTEN + " (greedy_plan)"),
    waves=Builtin("every host to upgrade goes down in exactly one wave (cum[W - 1] == n per type)"),
    placement=Builtin("it moves the VMs of the wave model's waves; cpsat writes the plan"),
    exact=Builtin("y[h, w]: exactly one slot per host to upgrade; the waves are a prefix"),
)
