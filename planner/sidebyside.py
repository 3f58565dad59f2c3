"""Side by side: which cloud each host is in, wave by wave, read off a plan.

A side-by-side plan (`Plan.mode`) starts with every host in the old cloud. A host of a wave is
emptied during the wave and, at its end, leaves the old cloud and takes its role
(`Wave.roles`): a controller or a compute of the new cloud, or retired. VMs reach the new cloud
only by cross-cloud moves onto computes that joined in an earlier wave. The checker's families
(`planner.rules.clouds`, `planner.rules.cloud_headroom`), the planner and the simulator read the
plan through `Membership`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from planner.plan import CROSS_CLOUD, HostRole, Plan

# The new control plane is an HA group from the start: at least this many controllers.
MIN_NEW_CONTROLLERS = 2


@dataclass(frozen=True)
class Membership:
    """Each host that leaves the old cloud: the wave it leaves at the end of, and its role."""

    left: dict[str, tuple[int, HostRole]]

    @classmethod
    def of(cls, plan: Plan) -> Membership:
        left: dict[str, tuple[int, HostRole]] = {}
        for w in plan.waves:
            for h in w.hosts:
                if h not in left:
                    left[h] = (w.index, w.roles.get(h, "new-compute"))
        return cls(left)

    def old_at_start(self, host: str, wave: int) -> bool:
        """`host` is in the old cloud at the start of wave `wave`."""
        got = self.left.get(host)
        return got is None or got[0] >= wave

    def new_compute_at_start(self, host: str, wave: int) -> bool:
        """`host` is a compute of the new cloud at the start of wave `wave`."""
        got = self.left.get(host)
        return got is not None and got[0] < wave and got[1] == "new-compute"

    def new_computes_before(self, wave: int) -> set[str]:
        return {h for h, (i, r) in self.left.items() if i < wave and r == "new-compute"}

    def left_upto(self, wave: int) -> set[str]:
        """The hosts that have left the old cloud by the end of wave `wave`."""
        return {h for h, (i, _) in self.left.items() if i <= wave}

    def with_role(self, role: HostRole) -> dict[str, int]:
        return {h: i for h, (i, r) in self.left.items() if r == role}


def final_hosts(
    initial: dict[str, str], plan: Plan, known: Iterable[str]
) -> dict[str, tuple[str, int]]:
    """Each VM's host after the plan and the wave it arrived there in (0: it never moved); the
    first migration of a VM in a wave moves it, as the checker's replay does; `known` the VM
    ids the inventory has."""
    where = {v: (h, 0) for v, h in initial.items()}
    ids = set(known)
    for w in plan.waves:
        seen: set[str] = set()
        for m in w.migrations:
            if m.vm in ids and m.vm not in seen:
                seen.add(m.vm)
                where[m.vm] = (m.dst, w.index)
    return where


def has_side_by_side_parts(plan: Plan) -> list[str]:
    """What in `plan` belongs to a side-by-side plan (for an in-place plan: none)."""
    parts = []
    if any(w.roles for w in plan.waves):
        parts.append("host roles")
    if any(m.method == CROSS_CLOUD for _, m in plan.migrations()):
        parts.append("cross-cloud moves")
    if plan.az_map is not None:
        parts.append("an AZ map")
    return parts
