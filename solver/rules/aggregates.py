"""Aggregate bindings in the solver's models."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from planner.inventory import VM
from planner.rules import aggregates as rule
from solver.rules.base import Builtin, Encodings, ExactHooks, GreedyHooks, Relaxed, narrow

if TYPE_CHECKING:
    from planner.capacity import BoolArray
    from solver.exact import ExactModel
    from solver.greedy import GreedyState


def _eligible(
    st: GreedyState, vm: VM, j: int, in_wave: BoolArray, ok: BoolArray | None
) -> BoolArray | None:
    if not vm.allowed_aggregates and not vm.forbidden_aggregates:
        return ok
    agg = np.zeros(len(st.model.host_names), dtype=bool)
    for a in vm.allowed_aggregates:
        if a in st.agg_mask:
            agg |= st.agg_mask[a]
    if not vm.allowed_aggregates:
        agg[:] = True
    for a in vm.forbidden_aggregates:
        if a in st.agg_mask:
            agg &= ~st.agg_mask[a]
    return narrow(ok, agg)


def _vm(em: ExactModel, j: int, cand: list[int]) -> None:
    """A bound VM is never on a host outside its aggregates, nor in a forbidden one (but its
    own, before it moves)."""
    ctx, vm = em.ctx, em.ctx.inv.vms[j]
    h0 = int(ctx.vm_host0[j])
    if vm.allowed_aggregates:
        allowed = set(vm.allowed_aggregates)
        off = [h for h in cand if not allowed & set(ctx.inv.hosts[h].aggregates) and h != h0]
        em.forbid(j, off, rule.words(vm.allowed_aggregates))
    if vm.forbidden_aggregates:
        banned = set(vm.forbidden_aggregates)
        off = [h for h in cand if banned & set(ctx.inv.hosts[h].aggregates) and h != h0]
        em.forbid(j, off, rule.words_out(vm.forbidden_aggregates))


ENCODINGS = Encodings(
    "aggregates",
    greedy=GreedyHooks(eligible=_eligible),
    waves=Relaxed(
        "it keeps a bound VM's demand in its headroom group when its aggregates lie there "
        "(context.unpinned_demand); the placement phase picks hosts in its aggregates"
    ),
    placement=Builtin("a VM's candidates are hosts in its aggregates (context.static_ok)"),
    exact=ExactHooks(vm=_vm),
)
