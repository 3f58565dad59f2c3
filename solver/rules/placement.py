"""Placement's limits (traits, allocation units, provider type) in the solver's models: each
VM's hosts are those `planner.placement` says Placement accepts, known before any model runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from planner.inventory import VM
from planner.placement import acceptance, describe
from planner.rules import placement as rule
from solver.rules.base import Builtin, Encodings, ExactHooks, GreedyHooks, Relaxed, narrow

if TYPE_CHECKING:
    from planner.capacity import BoolArray
    from solver.exact import ExactModel
    from solver.greedy import GreedyState


def _eligible(
    st: GreedyState, vm: VM, j: int, in_wave: BoolArray, ok: BoolArray | None
) -> BoolArray | None:
    mask = acceptance(st.model.inventory).mask(vm)
    return ok if mask is None else narrow(ok, mask)


def _vm(em: ExactModel, j: int, cand: list[int]) -> None:
    """A VM is never on a host Placement refuses it (but its own, before it moves)."""
    inv = em.ctx.inv
    vm = inv.vms[j]
    mask = acceptance(inv).mask(vm)
    if mask is None:
        return
    h0 = int(em.ctx.vm_host0[j])
    em.forbid(j, [h for h in cand if not mask[h] and h != h0], rule.words(describe(inv, vm)))


ENCODINGS = Encodings(
    "placement",
    greedy=GreedyHooks(eligible=_eligible),
    waves=Relaxed(
        "it counts demand per headroom group, not per host; the placement phase picks only "
        "hosts Placement accepts"
    ),
    placement=Builtin("a VM's candidates are the hosts Placement accepts (context.static_ok)"),
    exact=ExactHooks(vm=_vm),
)
