"""Migration methods and stops in the solver's models: a VM that Nova's state rules let move in
no permitted way is stopped in place when the policy allows it (`context.stuck`), and without
allow_stop it has no plan (`context.movable_none`) unless `unmovable: leave` left its host out
(`planner.rules.method.to_upgrade`, every model's hosts to upgrade); methods are chosen when a
plan is written (`planner.rules.method.method_for`: Nova's state rules, preferred first)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from planner.rules import method as rule
from solver.rules.base import Builtin, Encodings, ExactHooks

if TYPE_CHECKING:
    from planner.bounds import LowerBounds
    from planner.rules.base import Words
    from solver.context import Context
    from solver.exact import ExactModel


def _positions(em: ExactModel) -> None:
    """VMs on hosts to upgrade that cannot migrate while stops are not allowed: a family."""
    ctx = em.ctx
    if ctx.policy.allow_stop:
        return
    n = sum(
        1
        for j in range(len(ctx.inv.vms))
        if ctx.is_todo[int(ctx.vm_host0[j])] and ctx.movable_none[j]
    )
    if n:
        g = em.guard(rule.words(n))
        em.m.add_bool_or([g.Not()])


def _obstacle(ctx: Context, lb: LowerBounds, what: str) -> tuple[list[Words], dict[str, str]]:
    """A VM that cannot migrate while stops are not allowed: one family for all of them."""
    return [rule.words(sum(1 for kind, _ in lb.obstacles if kind == "method"))], {}


ENCODINGS = Encodings(
    "method",
    greedy=Builtin(
        "evacuate stops a VM that cannot move by Nova's state rules when allow_stop is set, "
        "else the host is refused; the method is method_for's"
    ),
    waves=Builtin("a VM stopped in place stays on its host (context.stuck_demand)"),
    placement=Builtin("wave_blocks stops the VMs that may be stopped; the rest move by method_for"),
    exact=ExactHooks(positions=_positions),
    obstacle=_obstacle,
)
