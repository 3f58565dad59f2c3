"""The first/last order in the solver's models: hosts go tier by tier (policy.first, the others,
policy.last), consecutive tiers sharing at most a boundary wave."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from planner.rules import order as rule
from planner.rules.base import Words
from solver.rules.base import (
    Builtin,
    Encodings,
    ExactHooks,
    FillHooks,
    Filling,
    GreedyHooks,
    WaveHooks,
)

if TYPE_CHECKING:
    from solver.context import Context
    from solver.exact import ExactModel
    from solver.waves import WaveModel

_BLOCKED = "order"  # the earliest tier a host was refused in this wave


# -- filling a wave: hosts come tier by tier; once a host is refused, no later tier joins ---------
def _closed(f: Filling, tier: int) -> bool:
    blocked: int | None = f.memo.get(_BLOCKED)
    return blocked is not None and tier > blocked


def _refused(f: Filling, h: int, tier: int) -> None:
    blocked: int | None = f.memo.get(_BLOCKED)
    f.memo[_BLOCKED] = tier if blocked is None else min(blocked, tier)


FILL = FillHooks(closed=_closed, refused=_refused)


# -- the wave model -------------------------------------------------------------------------------
def _type_key(ctx: Context) -> Callable[[int], Hashable]:
    """Hosts of a type share their tier, and whether policy.last selects them."""
    _first, last = rule.selected(ctx.inv, ctx.policy)
    return lambda h: (int(ctx.tier[h]), ctx.host_names[h] in last)


def _boundary(wm: WaveModel, before: list[int], after: list[int], words: Words) -> None:
    """Every host of `before` in a wave <= b, every host of `after` in a wave >= b."""
    if not before or not after:
        return
    m, W = wm.m, wm.W
    beta = [m.new_bool_var("") for _ in range(W)]  # beta[w]: b <= w
    m.add(beta[W - 1] == 1)
    for w in range(W - 1):
        m.add_implication(beta[w], beta[w + 1])
    for i in before:
        for w in range(W - 1):
            wm.add(wm.cum[i][w] >= wm.types[i].n, words, beta[w])
    for i in after:
        for w in range(W - 1):
            wm.add(wm.cnt[i][w] == 0, words, beta[w].Not())


def _build_waves(wm: WaveModel) -> None:
    types, p = wm.types, wm.ctx.policy
    first = [i for i, t in enumerate(types) if t.tier == rule.FIRST]
    rest1 = [i for i, t in enumerate(types) if t.tier != rule.FIRST or t.in_last]
    others = [i for i, t in enumerate(types) if t.tier == rule.OTHER]
    lasts = [i for i, t in enumerate(types) if t.tier == rule.LAST or t.in_last]
    _boundary(wm, first, rest1, rule.words_first(p))
    _boundary(wm, others, lasts, rule.words_last(p))


# -- the exact model ------------------------------------------------------------------------------
def _build_exact(em: ExactModel) -> None:
    ctx, m, W = em.ctx, em.m, em.W
    p = ctx.policy
    index = {h: sum(w * em.y[h, w] for w in range(1, W + 1)) for h in em.todo}
    names = ctx.host_names
    sel_first, sel_last = rule.selected(ctx.inv, p)
    first = {h for h in em.todo if names[h] in sel_first}
    last = {h for h in em.todo if names[h] in sel_last}
    others = set(em.todo) - first - last
    if first and (others or last):
        g = em.guard(rule.words_first(p))
        t = m.new_int_var(1, W, "t_first")
        for h in first:
            m.add(index[h] <= t).only_enforce_if(g)
        for h in others | last:
            m.add(t <= index[h]).only_enforce_if(g)
    if last and others:
        g = em.guard(rule.words_last(p))
        t = m.new_int_var(1, W, "t_last")
        for h in others:
            m.add(index[h] <= t).only_enforce_if(g)
        for h in last:
            m.add(t <= index[h]).only_enforce_if(g)


ENCODINGS = Encodings(
    "order",
    # host_order puts the tiers in order; a wave takes no host of a later tier once one is
    # refused. Hosts both first and last are not told apart (the checker then rejects the plan).
    greedy=GreedyHooks(fill=FILL),
    waves=WaveHooks(fill=FILL, type_key=_type_key, build=_build_waves),
    placement=Builtin(
        "it places the wave model's waves; its repairs move hosts only where context.order_ok "
        "allows"
    ),
    exact=ExactHooks(build=_build_exact),
)
