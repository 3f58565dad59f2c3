"""Hard anti-affinity in the solver's models."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from planner.inventory import VM
from planner.rules import anti_affinity as rule
from solver.rules.base import Builtin, Encodings, ExactHooks, GreedyHooks, Relaxed

if TYPE_CHECKING:
    from planner.capacity import BoolArray
    from solver.context import ServerGroupInfo
    from solver.exact import ExactModel
    from solver.greedy import GreedyState


def _eligible(
    st: GreedyState, vm: VM, j: int, in_wave: BoolArray, ok: BoolArray | None
) -> BoolArray | None:
    """Not onto a host that holds max_server_per_host members of its group already."""
    gid = vm.server_group
    if gid is not None:
        g = st.inv.group(gid)
        if g.hard and g.anti:
            if ok is None:
                ok = np.ones(len(st.model.host_names), dtype=bool)
            for h, n in st.group_count[gid].items():
                if n >= g.max_server_per_host:
                    ok[h] = False  # `ok` is this call's own (every hook returns a new mask)
    return ok


def _group(em: ExactModel, sg: ServerGroupInfo) -> None:
    ctx, m = em.ctx, em.m
    members = [int(j) for j in sg.members]
    if not (sg.hard and sg.anti) or len(members) < 2 or not any(j in em.cand for j in members):
        return
    g = em.guard(rule.words(sg.id, sg.name, len(members), sg.max_per_host))
    hosts = sorted({h for j in members if j in em.cand for h in em.cand[j]})
    for w in range(1, em.W + 1):
        for h in hosts:
            terms = [em.at[j, w, h] for j in members if (j, w, h) in em.at]
            fixed = sum(1 for j in members if j not in em.cand and int(ctx.vm_host0[j]) == h)
            if len(terms) + fixed > sg.max_per_host:
                m.add(sum(terms) + fixed <= sg.max_per_host).only_enforce_if(g)


ENCODINGS = Encodings(
    "anti_affinity",
    greedy=GreedyHooks(eligible=_eligible),
    waves=Relaxed(
        "it plans demand per headroom group, not per host; the placement phase keeps the "
        "groups, and a wave it cannot place is forbidden in the next wave order (a nogood)"
    ),
    placement=Builtin("candidates_mask leaves out full hosts; CP-SAT counts members per host"),
    exact=ExactHooks(group=_group),
)
