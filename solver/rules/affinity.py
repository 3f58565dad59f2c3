"""Hard affinity in the solver's models: members on one host move together."""

from __future__ import annotations

from typing import TYPE_CHECKING

from planner.rules import affinity as rule
from solver.rules.base import Builtin, Encodings, ExactHooks, Relaxed

if TYPE_CHECKING:
    from solver.context import ServerGroupInfo
    from solver.exact import ExactModel


def _group(em: ExactModel, sg: ServerGroupInfo) -> None:
    """Every member is where the first one is, at every slot's end."""
    m = em.m
    members = [int(j) for j in sg.members]
    if not sg.hard or sg.anti or len(members) < 2 or not any(j in em.cand for j in members):
        return
    g = em.guard(rule.words(sg.id, sg.name, len(members)))
    lead, rest = members[0], members[1:]
    for w in range(1, em.W + 1):
        for j in rest:
            where = set(em.hosts_of(lead)) | set(em.hosts_of(j))
            for h in sorted(where):
                a = em.on(lead, w, h)
                b = em.on(j, w, h)
                if isinstance(a, int) and isinstance(b, int):
                    if a != b:
                        m.add_bool_or([g.Not()])
                    continue
                m.add(a == b).only_enforce_if(g)


ENCODINGS = Encodings(
    "affinity",
    greedy=Builtin("evacuate moves a group's members on a host together, to where the others are"),
    waves=Relaxed(
        "it plans demand per headroom group, not per host; the placement phase moves a group's "
        "members together"
    ),
    placement=Builtin("wave_blocks makes a group's members on a host one block"),
    exact=ExactHooks(group=_group),
)
