"""Hard affinity: members of a hard affinity server group share a host, so they move together.
At a wave's end a group with a member moved may be on no more hosts than at the wave's start (a
group already split in the inventory is reported once, before any wave). Proofs name a group
`affinity:<id>`."""

from __future__ import annotations

from planner.inventory import ServerGroup
from planner.rules.base import Family, Out, State, Violation, WaveStep, Words

_BEFORE = "affinity.before"  # group id -> hosts its members used at the wave's start


def words(sg_id: str, name: str, members: int) -> Words:
    return Words(
        f"affinity:{sg_id}",
        f"the affinity of server group {name} ({members} members share a host)",
        f"a soft affinity policy for {name}, or a host large enough for all of them",
    )


def _hard(g: ServerGroup) -> bool:
    return g.hard and not g.anti


def _wave(state: State, step: WaveStep, out: Out) -> None:
    inv = state.inv
    step.memo[_BEFORE] = {
        gid: len({state.host_of[v.id] for v in inv.members(gid)})
        for gid in step.groups()
        if _hard(inv.group(gid))
    }


def _group(state: State, g: ServerGroup, step: WaveStep | None, out: Out) -> None:
    if not _hard(g):
        return
    if step is None:
        hosts = sorted({v.host for v in state.inv.members(g.id)})
        if len(hosts) > 1:
            out.append(
                Violation(
                    "inventory.affinity",
                    f"affinity group {g.name or g.id} is split over {len(hosts)} hosts: "
                    + ", ".join(hosts),
                    objects=(g.id, *hosts),
                    numbers={"hosts": len(hosts)},
                )
            )
        return
    hosts = sorted({state.host_of[v.id] for v in state.inv.members(g.id)})
    if len(hosts) > max(1, step.memo[_BEFORE][g.id]):
        out.append(
            Violation(
                "affinity",
                f"affinity group {g.name or g.id} is split over {', '.join(hosts)}",
                step.index,
                (g.id, *hosts),
                {"hosts": len(hosts)},
            )
        )


FAMILY = Family(
    name="affinity",
    rules={
        "affinity": "members of a hard affinity group share a host",
        "inventory.affinity": "the inventory's hard affinity groups hold",
    },
    wave=_wave,
    group=_group,
    owns=lambda key: key.startswith("affinity:"),
)
