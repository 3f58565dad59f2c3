"""Nova's other moves, as `planner.rules.method` plans them (docs/executor.md):

- `evacuate`: Nova's evacuate to the planned host (2.68: no force, the VM keeps its state; an
  ERROR VM comes back ACTIVE), off a host whose compute service is down;
- `shelve`: shelve, offload if Nova kept it on the host (shelved_offload_time > 0), then, once
  every mate of its hard affinity group is offloaded too (the affinity filter admits only hosts
  holding a member), unshelve to the planned host (2.91); it comes back ACTIVE;
- `live-forced`: a forced live migration (2.30, the scheduler bypassed), for a hard affinity
  group's members under `affinity_moves: forced`; it needs the operator's
  [workarounds] disable_group_policy_check_upcall=True, else Nova fails it late (VM ERROR).

The migration runs (`planner.executor.migrations`) start these through `start` and let `poll`
drive a shelve between its steps; the rest of a run (retries, give-up, journal) is theirs."""

from __future__ import annotations

from planner.executor.cloud import Cloud, Server
from planner.executor.states import VmRun

# A shelved VM's statuses: kept on its host, then offloaded (no host).
SHELVED, OFFLOADED = "SHELVED", "SHELVED_OFFLOADED"
NOVA_MOVES = ("evacuate", "shelve", "live-forced")


def start(cloud: Cloud, v: VmRun) -> None:
    """The first call of `v`'s move."""
    if v.method == "evacuate":
        cloud.evacuate(v.vm, v.dst)
    elif v.method == "shelve":
        v.unshelving = False
        srv = cloud.server(v.vm)
        if srv is None or srv.status not in (SHELVED, OFFLOADED):  # a retry: shelved already
            cloud.shelve(v.vm)
    elif v.method == "live-forced":
        cloud.live_migrate_forced(v.vm, v.dst)
    else:
        raise ValueError(f"not one of Nova's other moves: {v.method}")


def shelve_poll(cloud: Cloud, v: VmRun, srv: Server) -> str | None:
    """A shelve between its steps: what it did ("offload", "unshelve", "wait" for its mates), or
    None when the VM is past them (unshelved: the caller judges it as any migration)."""
    if not srv.settled or srv.status not in (SHELVED, OFFLOADED):
        return None
    if v.unshelving:
        return None  # still offloaded after its unshelve: Nova refused the host (no fault)
    if srv.status == SHELVED:
        cloud.shelve_offload(v.vm)
        return "offload"
    for mate in v.mates:
        s = cloud.server(mate)
        if s is not None and s.status != OFFLOADED and s.host != v.dst:
            return "wait"  # a mate still on the source: the filter would refuse the host
    cloud.unshelve(v.vm, v.dst)
    v.unshelving = True
    return "unshelve"
