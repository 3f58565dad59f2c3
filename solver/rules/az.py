"""AZ pins in the solver's models."""

from __future__ import annotations

from typing import TYPE_CHECKING

from planner.inventory import VM
from planner.rules import az as rule
from solver.rules.base import Builtin, Encodings, ExactHooks, GreedyHooks, Relaxed, narrow

if TYPE_CHECKING:
    from planner.capacity import BoolArray
    from solver.exact import ExactModel
    from solver.greedy import GreedyState


def _eligible(
    st: GreedyState, vm: VM, j: int, in_wave: BoolArray, ok: BoolArray | None
) -> BoolArray | None:
    if vm.az is None:
        return ok
    return narrow(ok, st.az_code == st.az_index.get(vm.az, -1))


def _vm(em: ExactModel, j: int, cand: list[int]) -> None:
    """A pinned VM is never on a host of another AZ (but its own, before it moves)."""
    ctx, vm = em.ctx, em.ctx.inv.vms[j]
    if vm.az is None:
        return
    h0 = int(ctx.vm_host0[j])
    em.forbid(j, [h for h in cand if ctx.inv.hosts[h].az != vm.az and h != h0], rule.words(vm.az))


ENCODINGS = Encodings(
    "az",
    greedy=GreedyHooks(eligible=_eligible),
    waves=Relaxed(
        "it keeps a pinned VM's demand in its headroom group (context.unpinned_demand); the "
        "placement phase picks hosts in its AZ"
    ),
    placement=Builtin("a VM's candidates are hosts of its AZ (context.static_ok)"),
    exact=ExactHooks(vm=_vm),
)
