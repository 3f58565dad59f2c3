"""Hard anti-affinity: at most `max_server_per_host` members of a hard anti-affinity server group
on one host. At a wave's end only the hosts that received a member are judged (a group already
broken in the inventory is reported once, before any wave). Proofs name a group `anti:<id>`."""

from __future__ import annotations

from collections import Counter

from planner.inventory import ServerGroup
from planner.rules.base import Family, Out, State, Violation, WaveStep, Words


def words(sg_id: str, name: str, members: int, max_per_host: int) -> Words:
    per = f"at most {max_per_host} per host" if max_per_host > 1 else "one per host"
    return Words(
        f"anti:{sg_id}",
        f"the anti-affinity of server group {name} ({members} members, {per})",
        f"a larger max_server_per_host for {name}, a soft policy, or more hosts its members "
        "may use",
    )


def _group(state: State, g: ServerGroup, step: WaveStep | None, out: Out) -> None:
    if not (g.hard and g.anti):
        return
    inv, most = state.inv, g.max_server_per_host
    if step is None:
        counts = Counter(v.host for v in inv.members(g.id))
        for host, n in sorted(counts.items()):
            if n > most:
                out.append(
                    Violation(
                        "inventory.anti_affinity",
                        f"server group {g.name or g.id}: {n} members on {host}, "
                        f"max_server_per_host is {most}",
                        objects=(g.id, host),
                        numbers={"members": n, "max": most},
                    )
                )
        return
    members = [v.id for v in inv.members(g.id)]
    counts = Counter(state.host_of[v] for v in members)
    for host in sorted({step.moved[v][0] for v in members if v in step.moved}):
        if counts[host] > most:
            out.append(
                Violation(
                    "anti_affinity",
                    f"server group {g.name or g.id}: {counts[host]} members on {host}, "
                    f"max_server_per_host is {most}",
                    step.index,
                    (g.id, host),
                    {"members": counts[host], "max": most},
                )
            )


FAMILY = Family(
    name="anti_affinity",
    rules={
        "anti_affinity": (
            "at most max_server_per_host members of a hard anti-affinity group per host"
        ),
        "inventory.anti_affinity": "the inventory's hard anti-affinity groups hold",
    },
    group=_group,
    owns=lambda key: key.startswith("anti:"),
)
