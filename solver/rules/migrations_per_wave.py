"""The cap on a wave's migrations in the solver's models.

A wave's migrations are the VMs on its hosts when it starts that are not stopped: those that
started there, and those an earlier wave sent there (to a host not upgraded yet: they move
twice). The greedy planner counts them as they are; the wave model and its heuristic count the
VMs that start on each host (hosts of a type then have as many); the placement phase keeps room
in every later wave for the VMs it sends to that wave's hosts; the exact model counts moves."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

import numpy as np

from planner.rules import migrations_per_wave as rule
from planner.rules.base import Words
from solver.rules.base import (
    Encodings,
    ExactHooks,
    FillHooks,
    Filling,
    GreedyHooks,
    PlacementHooks,
    WaveHooks,
    WaveRule,
)

if TYPE_CHECKING:
    from ortools.sat.python import cp_model

    from planner.bounds import LowerBounds
    from solver.context import Context
    from solver.exact import ExactModel
    from solver.placement_state import Block, PlacementState
    from solver.waves import WaveModel

_COUNT = "migrations_per_wave"


# -- filling a wave (greedy planner, wave model heuristic) ---------------------------------------
def _start(f: Filling) -> None:
    f.memo[_COUNT] = [0, 0]  # the wave's migrations, and the last host's (asked before it moves)


def _refuses(f: Filling, h: int, tier: int) -> str | None:
    cap = f.policy.max_migrations_per_wave
    if cap is None:
        return None
    count = f.memo[_COUNT]
    count[1] = f.migrations(h)
    if count[0] + count[1] <= cap:
        return None
    return f"{f.host(h).name}: its VMs would take the wave past max_migrations_per_wave {cap}"


def _joined(f: Filling, h: int) -> None:
    count = f.memo[_COUNT]
    count[0] += count[1]


FILL = FillHooks(start=_start, refuses=_refuses, joined=_joined)


# -- the wave model -------------------------------------------------------------------------------
def _type_key(ctx: Context) -> Callable[[int], Hashable]:
    """Under a cap, hosts of a type send as many VMs away."""
    if ctx.policy.max_migrations_per_wave is None:
        return lambda h: None
    forced = ctx.forced_migrations()
    return lambda h: int(forced[h])


def _wave(wm: WaveModel, w: int, size: Any, used: Any) -> None:
    cap = wm.ctx.policy.max_migrations_per_wave
    if cap is None:
        return
    forced = wm.ctx.forced_migrations()
    per_type = [int(forced[t.hosts[0]]) for t in wm.types]
    if sum(n * t.n for n, t in zip(per_type, wm.types, strict=True)) <= cap:
        return  # every host in one wave stays within the cap
    terms = [n * wm.cnt[i][w] for i, n in enumerate(per_type) if n]
    wm.add(sum(terms) <= cap, rule.words(wm.ctx.policy))


# -- the placement phase --------------------------------------------------------------------------
class _Room(WaveRule):
    """Wave i of `waves`: its own migrations (fixed by the waves before), and the room each later
    wave keeps for VMs sent to its hosts, which will have to move again then."""

    def __init__(self, st: PlacementState, waves: list[list[int]], i: int, cap: int) -> None:
        ctx = st.ctx
        self.cap = cap
        self.wave_of = np.full(ctx.H, -1, dtype=np.int64)
        self.room = np.full(len(waves), cap, dtype=np.int64)

        def leaving(h: int) -> int:
            return sum(1 for j in st.vms_on[h] if not ctx.stuck[j])

        for k in range(i + 1, len(waves)):
            for h in waves[k]:
                self.wave_of[h] = k
                self.room[k] -= leaving(h)
        self.now = sum(leaving(h) for h in waves[i])

    def broken(self) -> str | None:
        if self.now <= self.cap:
            return None
        return f"{self.now} VMs must leave its hosts, max_migrations_per_wave is {self.cap}"

    def allows(self, b: Block, hosts: Any) -> Any:
        k = self.wave_of[hosts]
        return (k < 0) | (self.room[np.maximum(k, 0)] >= len(b.vms))

    def take(self, b: Block, h: int, sign: int) -> None:
        k = int(self.wave_of[h])
        if k >= 0:
            self.room[k] -= sign * len(b.vms)

    def constrain(
        self, m: cp_model.CpModel, blocks: list[Block], cand: list[list[int]], y: list[list[Any]]
    ) -> None:
        into: dict[int, list[tuple[int, Any]]] = {}
        for b, lst, vs in zip(blocks, cand, y, strict=True):
            for h, v in zip(lst, vs, strict=True):
                k = int(self.wave_of[h])
                if k >= 0:
                    into.setdefault(k, []).append((len(b.vms), v))
        for k, terms in sorted(into.items()):
            if sum(n for n, _ in terms) > self.room[k]:
                m.add(sum(n * v for n, v in terms) <= int(self.room[k]))


def _rule(st: PlacementState, waves: list[list[int]], i: int) -> WaveRule | None:
    cap = st.ctx.policy.max_migrations_per_wave
    return None if cap is None else _Room(st, waves, i, cap)


# -- the exact model ------------------------------------------------------------------------------
def _build_exact(em: ExactModel) -> None:
    """A VM on a host of the wave when it starts moves (`moved`); at most the cap of them."""
    ctx, m = em.ctx, em.m
    cap = ctx.policy.max_migrations_per_wave
    if cap is None or len(em.cand) <= cap:
        return
    g = em.guard(rule.words(ctx.policy))
    for w in range(1, em.W + 1):
        moved = []
        for j, cand in em.cand.items():
            mv = m.new_bool_var("")
            h0 = int(ctx.vm_host0[j])
            for h in cand:
                if not ctx.is_todo[h]:
                    continue
                if w == 1:
                    if h == h0:
                        m.add_implication(em.y[h, 1], mv)
                else:
                    m.add_bool_or([em.at[j, w - 1, h].Not(), em.y[h, w].Not(), mv])
            moved.append(mv)
        m.add(sum(moved) <= cap).only_enforce_if(g)


# -- proofs ---------------------------------------------------------------------------------------
def _obstacle(ctx: Context, lb: LowerBounds, what: str) -> tuple[list[Words], dict[str, str]]:
    """A host with more VMs that must migrate than the cap: one more is not enough unless it
    has just one too many."""
    p = ctx.policy
    words = rule.words(p)
    cap = p.max_migrations_per_wave
    if cap is not None and rule.forced(ctx.inv, p, what) > cap + 1:
        step = rule.one_step(ctx.inv, p, words.key)
        assert step is not None
        return [words], {words.key: f"{step.label} is not enough"}
    return [words], {}


ENCODINGS = Encodings(
    rule.KEY,
    greedy=GreedyHooks(fill=FILL),
    waves=WaveHooks(fill=FILL, type_key=_type_key, wave=_wave),
    placement=PlacementHooks(rule=_rule),
    exact=ExactHooks(build=_build_exact),
    obstacle=_obstacle,
)
