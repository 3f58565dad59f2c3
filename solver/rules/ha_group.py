"""HA groups in the solver's models: at most `limit` available members of a group down in one
wave, its members above min_available (`context.HAGroupInfo.limit`, as the checker counts)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from planner.rules import ha_group as rule
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
    from planner.bounds import LowerBounds
    from planner.rules.base import Words
    from solver.context import Context
    from solver.exact import ExactModel
    from solver.waves import WaveModel

_GROUPS = "ha_group"  # per group: (limit, available members); then counts per wave


def _groups(f: Filling) -> list[tuple[int, frozenset[str]]]:
    inv = f.inv
    out = []
    for g in inv.ha_groups:
        known = [h for h in g.hosts if inv.has_host(h)]
        up = frozenset(h for h in known if inv.host(h).available)
        out.append((len(g.hosts) - (len(known) - len(up)) - g.min_available, up))
    return out


def _start(f: Filling) -> None:
    f.memo[_GROUPS] = (_groups(f), [0] * len(f.inv.ha_groups))


def _refuses(f: Filling, h: int, tier: int) -> str | None:
    """As the checker counts: every group keeps min_available of its hosts available (one
    already below it in the inventory takes no host at all)."""
    groups, down = f.memo[_GROUPS]
    name = f.host(h).name
    for (limit, up), n in zip(groups, down, strict=True):
        if n + (name in up) > limit:
            return f"{name}: HA group would fall below min_available"
    return None


def _joined(f: Filling, h: int) -> None:
    groups, down = f.memo[_GROUPS]
    name = f.host(h).name
    for i, (_limit, up) in enumerate(groups):
        down[i] += name in up


FILL = FillHooks(start=_start, refuses=_refuses, joined=_joined)


# -- the wave model -------------------------------------------------------------------------------
def _type_key(ctx: Context) -> Callable[[int], Hashable]:
    """A host of an HA group is a type of its own."""
    members = {int(h) for g in ctx.ha for h in g.hosts}
    return lambda h: h if h in members else -1


def _build_waves(wm: WaveModel) -> None:
    ctx, types = wm.ctx, wm.types
    for gi, g in enumerate(ctx.ha):
        idx = [i for i, t in enumerate(types) if gi in t.ha]
        if len(idx) > max(g.limit, 0):
            group = ctx.inv.ha_groups[gi]
            words = rule.words(g.name, group.min_available, len(group.hosts))
            for w in range(wm.W):
                wm.add(sum(wm.cnt[i][w] for i in idx) <= max(g.limit, 0), words)


# -- the exact model ------------------------------------------------------------------------------
def _build_exact(em: ExactModel) -> None:
    ctx, m = em.ctx, em.m
    for i, ha in enumerate(ctx.ha):
        hs = [int(h) for h in ha.hosts]
        if len(hs) <= max(ha.limit, 0):
            continue
        group = ctx.inv.ha_groups[i]
        g = em.guard(rule.words(ha.name, group.min_available, len(group.hosts)))
        for w in range(1, em.W + 1):
            m.add(sum(em.y[h, w] for h in hs) <= max(ha.limit, 0)).only_enforce_if(g)


def _obstacle(ctx: Context, lb: LowerBounds, what: str) -> tuple[list[Words], dict[str, str]]:
    """An HA group without a spare member."""
    return [rule.words_of(ctx.inv, what)], {}


ENCODINGS = Encodings(
    "ha_group",
    greedy=GreedyHooks(fill=FILL),
    waves=WaveHooks(fill=FILL, type_key=_type_key, build=_build_waves),
    placement=Builtin(
        "it places the wave model's waves; its repairs move hosts only where "
        "context.wave_limits_ok allows"
    ),
    exact=ExactHooks(build=_build_exact),
    obstacle=_obstacle,
)
