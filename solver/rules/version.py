"""Version order in the solver's models.

A VM leaves only a host of the current wave, which is not upgraded yet: no move starts from an
upgraded host (the rule for labels that are no release). With ordered releases a move from a
wave host to a host that runs an older release is refused too: the greedy planner and the
placement phase never offer such a host, the exact model forbids the move. When every host to
upgrade runs a release no newer than any destination's (the usual cloud: one old release, one
target), the family cannot bind and no model calls its hooks (`planner.rules.version.binds`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

import numpy as np

from planner import releases
from planner.inventory import VM, Inventory
from planner.policy import Policy
from planner.rules import version as rule
from solver.rules.base import (
    Encodings,
    ExactHooks,
    GreedyHooks,
    PlacementHooks,
    Relaxed,
    WaveRule,
    narrow,
)

if TYPE_CHECKING:
    from planner.capacity import BoolArray, IntArray
    from solver.exact import ExactModel
    from solver.greedy import GreedyState
    from solver.placement_state import Block, PlacementState

UNKNOWN = -1  # a label that is no release: never refused by order


def ordinals(inv: Inventory, policy: Policy) -> tuple[IntArray, int]:
    """Each host's release position (UNKNOWN for labels that are no release), and the
    target's."""
    o = np.array([_o(h.version) for h in inv.hosts], dtype=np.int64)
    return o, _o(policy.target_version)


def _o(label: str | None) -> int:
    p = releases.order(label)
    return UNKNOWN if p is None else p


def allowed(o: IntArray, t: int, upgraded: BoolArray, src: int) -> BoolArray:
    """Hosts a VM on wave host `src` may go to: those that run, now, a release no older."""
    s = int(o[src])
    if s == UNKNOWN:
        return np.ones(len(o), dtype=bool)
    now = np.where(upgraded, t, o)
    out: BoolArray = (now == UNKNOWN) | (now >= s)
    return out


# -- the greedy planner ---------------------------------------------------------------------------
_GREEDY: WeakKeyDictionary[GreedyState, tuple[IntArray, int]] = WeakKeyDictionary()


def _eligible(
    st: GreedyState, vm: VM, j: int, in_wave: BoolArray, ok: BoolArray | None
) -> BoolArray | None:
    memo = _GREEDY.get(st)
    if memo is None:
        memo = _GREEDY[st] = ordinals(st.inv, st.policy)
    o, t = memo
    return narrow(ok, allowed(o, t, st.upgraded, int(st.model.vm_host[j])))


# -- the placement phase --------------------------------------------------------------------------
class _Order(WaveRule):
    def __init__(self, st: PlacementState) -> None:
        self.o, self.t = ordinals(st.ctx.inv, st.ctx.policy)
        self.upgraded = st.upgraded  # as it stands while this wave is placed

    def allows(self, b: Block, hosts: Any) -> Any:
        return allowed(self.o, self.t, self.upgraded, b.src)[hosts]


def _rule(st: PlacementState, waves: list[list[int]], i: int) -> WaveRule | None:
    return _Order(st)


# -- the exact model ------------------------------------------------------------------------------
def _build_exact(em: ExactModel) -> None:
    """A VM on host s at the end of slot w-1 is on host d at the end of slot w only if d runs
    then a release no older than s's: d's own, or the target once d went down in an earlier
    slot. Only the pairs (s, d) the order can refuse get clauses."""
    ctx = em.ctx
    o, t = ordinals(ctx.inv, ctx.policy)
    refused: dict[int, list[tuple[int, bool, bool]]] = {}  # s -> (d, own release, target)
    for s in em.todo:
        if o[s] == UNKNOWN:
            continue
        for d in range(ctx.H):
            own = bool(o[d] != UNKNOWN and o[d] < o[s])
            after = bool(ctx.is_todo[d] and t != UNKNOWN and t < o[s])
            if d != s and (own or after):
                refused.setdefault(s, []).append((d, own, after))
    if not refused:
        return
    g = em.guard(rule.words())
    m = em.m
    for j, cand in em.cand.items():
        h0 = int(ctx.vm_host0[j])
        for w in range(1, em.W + 1):
            for s in [h0] if w == 1 else cand:
                if s not in refused or (w > 1 and (j, w - 1, s) not in em.at):
                    continue
                prev = [] if w == 1 else [em.at[j, w - 1, s].Not()]
                for d, own, after in refused[s]:
                    if (j, w, d) not in em.at:
                        continue
                    now = em.at[j, w, d].Not()
                    before = [em.y[d, k] for k in range(1, w)] if ctx.is_todo[d] else []
                    if own and (after or not before):
                        m.add_bool_or([*prev, now]).only_enforce_if(g)
                    elif own:  # allowed once d is upgraded
                        m.add_bool_or([*prev, now, *before]).only_enforce_if(g)
                    else:  # refused once d is upgraded (a target older than s's release)
                        for y in before:
                            m.add_bool_or([*prev, now, y.Not()]).only_enforce_if(g)


ENCODINGS = Encodings(
    "version",
    greedy=GreedyHooks(eligible=_eligible),
    waves=Relaxed(
        "it chooses which hosts go down together, not where VMs go; the placement phase offers "
        "a VM only hosts running a release no older than its host's"
    ),
    placement=PlacementHooks(rule=_rule),
    exact=ExactHooks(build=_build_exact),
)
