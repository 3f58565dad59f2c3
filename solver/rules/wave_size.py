"""Wave size limits in the solver's models (in total, per AZ, per rack)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from planner.rules import wave_size as rule
from planner.rules.base import by_key
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

_COUNT = "wave_size"


# -- filling a wave (greedy planner, wave model heuristic) ---------------------------------------
def _start(f: Filling) -> None:
    f.memo[_COUNT] = rule.WaveCount(f.policy)


def _closed(f: Filling, tier: int) -> bool:
    count: rule.WaveCount = f.memo[_COUNT]
    return count.full()


def _refuses(f: Filling, h: int, tier: int) -> str | None:
    count: rule.WaveCount = f.memo[_COUNT]
    return None if count.allows(f.host(h)) else ""


def _joined(f: Filling, h: int) -> None:
    count: rule.WaveCount = f.memo[_COUNT]
    count.add(f.host(h))


FILL = FillHooks(start=_start, closed=_closed, refuses=_refuses, joined=_joined)


def _by(items: list[int], of: Callable[[int], Any], attr: str) -> list[list[int]]:
    """`items` grouped by the AZ or rack (`attr`) of what `of` gives for each."""
    return list(by_key(items, lambda i: getattr(of(i), attr)).values())


# -- the wave model -------------------------------------------------------------------------------
def _type_key(ctx: Context) -> Callable[[int], Hashable]:
    """Hosts of a type share their AZ and rack where a wave limit applies to them."""
    scoped = [a for a, _ in rule.limits(ctx.policy)]
    return lambda h: tuple(getattr(ctx.inv.hosts[h], a) for a in scoped)


def _wave(wm: WaveModel, w: int, size: Any, used: Any) -> None:
    M = wm.ctx.policy.max_hosts_per_wave
    wm.add(size <= M if used is None else size <= M * used, rule.words(wm.ctx.policy))


def _build_waves(wm: WaveModel) -> None:
    types = wm.types
    for attr, limit in rule.limits(wm.ctx.policy):
        words = rule.words_per(attr, limit)
        for idx in _by(list(range(len(types))), lambda i: types[i], attr):
            if sum(types[i].n for i in idx) > limit:
                for w in range(wm.W):
                    wm.add(sum(wm.cnt[i][w] for i in idx) <= limit, words)


# -- the exact model ------------------------------------------------------------------------------
def _build_exact(em: ExactModel) -> None:
    p, m = em.ctx.policy, em.m
    slots = range(1, em.W + 1)
    if len(em.todo) > p.max_hosts_per_wave:
        g = em.guard(rule.words(p))
        for w in slots:
            m.add(sum(em.y[h, w] for h in em.todo) <= p.max_hosts_per_wave).only_enforce_if(g)
    for attr, limit in rule.limits(p):
        for hs in _by(em.todo, lambda h: em.ctx.inv.hosts[h], attr):
            if len(hs) <= limit:
                continue
            g = em.guard(rule.words_per(attr, limit))
            for w in slots:
                m.add(sum(em.y[h, w] for h in hs) <= limit).only_enforce_if(g)


ENCODINGS = Encodings(
    "wave_size",
    greedy=GreedyHooks(fill=FILL),
    waves=WaveHooks(fill=FILL, type_key=_type_key, wave=_wave, build=_build_waves),
    placement=Builtin(
        "it places the wave model's waves; its repairs move hosts only where "
        "context.wave_limits_ok allows"
    ),
    exact=ExactHooks(build=_build_exact),
)
