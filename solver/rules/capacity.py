"""Capacity in the solver's models: every destination has room for what it receives."""

from __future__ import annotations

from typing import TYPE_CHECKING

from solver.rules.base import Builtin, Encodings, ExactHooks, Relaxed

if TYPE_CHECKING:
    from solver.exact import ExactModel


def _exact(em: ExactModel) -> None:
    """Usage <= effective capacity on every host a VM may land on, at every slot's end."""
    ctx = em.ctx
    hosts = sorted({h for c in em.cand.values() for h in c})
    for w in range(1, em.W + 1):
        for h in hosts:
            for c in range(ctx.C):
                if any((j, w, h) in em.at and ctx.demand[j, c] for j in em.cand):
                    em.m.add(em.used(h, c, w) <= int(ctx.cap[h, c]))


ENCODINGS = Encodings(
    "capacity",
    greedy=Builtin("GreedyState.choose takes only hosts with room for the VM in every class"),
    waves=Relaxed(
        "it plans each headroom group's demand in aggregate; the placement phase puts every VM "
        "within its host's capacity"
    ),
    placement=Builtin(
        "its fit test and CP-SAT model (cpsat_assign) keep every host within capacity"
    ),
    exact=ExactHooks(build=_exact),
)
