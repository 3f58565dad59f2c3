"""Host capacity as Nova and Placement see it: hosts x resource classes as integer numpy arrays.

Built once from an inventory, updated by moves, with vectorised fit tests ("which hosts can take
this VM?") that stay fast at 10,000 hosts. The headroom rule (N+k, reserve %) is computed here so
that the checker, the solver and the simulator share one definition of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from planner.inventory import Inventory
from planner.policy import Headroom

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def format_amount(rc: str, n: float) -> str:
    """An amount in an operator's units: MEMORY_MB in GiB, DISK_GB in GB, VCPU as vCPU."""
    if rc == "MEMORY_MB":
        return f"{n / 1024:,.1f} GiB"
    if rc == "DISK_GB":
        return f"{n:,.0f} GB"
    if rc == "VCPU":
        return f"{n:,.0f} vCPU"
    return f"{n:,.0f} {rc}"


class CapacityModel:
    """Effective capacity, usage and free capacity per host and class, plus VM demands.

    Rows follow `inventory.hosts`, columns `classes`. Controllers have zero capacity and are never
    destinations. Mutable on purpose (it is a working state); the inventory itself never changes.
    """

    def __init__(self, inv: Inventory, classes: Sequence[str] | None = None) -> None:
        self.inventory = inv
        self.classes: tuple[str, ...] = tuple(classes) if classes else inv.resource_classes
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        self.host_names: tuple[str, ...] = tuple(h.name for h in inv.hosts)
        self.host_index = {n: i for i, n in enumerate(self.host_names)}
        H, C, V = len(inv.hosts), len(self.classes), len(inv.vms)
        self.cap: IntArray = np.zeros((H, C), dtype=np.int64)
        for i, h in enumerate(inv.hosts):
            for c, rc in enumerate(self.classes):
                self.cap[i, c] = h.effective(rc)
        self.compute: BoolArray = np.array([h.is_compute for h in inv.hosts], dtype=bool)
        # Enabled and up; maintenance (a wave) is applied by the caller as an extra mask.
        self.available: BoolArray = np.array(
            [h.is_compute and h.available for h in inv.hosts], dtype=bool
        )
        self.vm_ids: tuple[str, ...] = tuple(v.id for v in inv.vms)
        self.vm_index = {v: i for i, v in enumerate(self.vm_ids)}
        self.demand: IntArray = np.zeros((V, C), dtype=np.int64)
        for j, v in enumerate(inv.vms):
            for rc, n in inv.demand(v).items():
                self.demand[j, self.class_index[rc]] = n
        self.vm_host = np.array([self.host_index[v.host] for v in inv.vms], dtype=np.int64)
        self.used: IntArray = np.zeros((H, C), dtype=np.int64)
        if V:
            np.add.at(self.used, self.vm_host, self.demand)
        # What Placement counts that no VM accounts for stays where it is (docs/concepts.md).
        for i, h in enumerate(inv.hosts):
            for rc, n in h.other_usage.items():
                if rc in self.class_index:
                    self.used[i, self.class_index[rc]] += n
        self.free: IntArray = self.cap - self.used

    # -- state --------------------------------------------------------------------------------
    def copy(self) -> CapacityModel:
        other = object.__new__(CapacityModel)
        other.__dict__.update(self.__dict__)
        other.used = self.used.copy()
        other.free = self.free.copy()
        other.vm_host = self.vm_host.copy()
        return other

    def move(self, vm: int, dst: int) -> None:
        src = int(self.vm_host[vm])
        d = self.demand[vm]
        self.used[src] -= d
        self.free[src] += d
        self.used[dst] += d
        self.free[dst] -= d
        self.vm_host[vm] = dst

    # -- queries ------------------------------------------------------------------------------
    def fits(self, vm: int, candidates: BoolArray | None = None) -> BoolArray:
        """Hosts whose free capacity takes the VM in every class (among candidates, if given)."""
        ok: BoolArray = np.all(self.free >= self.demand[vm], axis=1) & self.compute
        return ok & candidates if candidates is not None else ok

    def fits_demand(self, demand: IntArray, candidates: BoolArray | None = None) -> BoolArray:
        ok: BoolArray = np.all(self.free >= demand, axis=1) & self.compute
        return ok & candidates if candidates is not None else ok

    def over_capacity(self) -> BoolArray:
        """(H, C) mask of host/class pairs whose usage exceeds the effective capacity."""
        return self.used > self.cap

    def scope_groups(self, scope: str) -> tuple[tuple[str, ...], npt.NDArray[np.int64]]:
        """`scope_groups` of the model's inventory, computed once per scope (it never changes)."""
        cache: dict[str, tuple[tuple[str, ...], npt.NDArray[np.int64]]]
        cache = self.__dict__.setdefault("_scope_groups", {})
        if scope not in cache:
            cache[scope] = scope_groups(self.inventory, scope)
        return cache[scope]

    def utilisation(self) -> npt.NDArray[np.float64]:
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(self.cap > 0, self.used / np.maximum(self.cap, 1), 0.0)
        return u.astype(np.float64)


@dataclass(frozen=True, slots=True)
class HeadroomRow:
    """Headroom of one scope group and class: `free` against `required` over available hosts."""

    group: str
    rc: str
    free: int
    required: int
    required_failures: int  # the k largest effective capacities
    required_reserve: int  # reserve_percent of the total
    total: int
    largest_hosts: tuple[str, ...]  # the hosts behind required_failures

    @property
    def ok(self) -> bool:
        return self.free >= self.required

    @property
    def slack(self) -> int:
        return self.free - self.required


NO_AZ = "(no AZ)"


def scope_groups(inv: Inventory, scope: str) -> tuple[tuple[str, ...], npt.NDArray[np.int64]]:
    """Group names and the group index of each host (-1: in no group, i.e. controllers).

    With scope az, compute hosts whose `az` is null form one more group, `(no AZ)`, last: they
    are protected like any AZ (Nova puts them in its default AZ), never left out of the rule.
    """
    if scope == "cloud":
        return ("cloud",), np.array([0 if h.is_compute else -1 for h in inv.hosts], dtype=np.int64)
    names = inv.azs
    if any(h.is_compute and h.az is None for h in inv.hosts):
        names = (*names, NO_AZ)
    idx: dict[str | None, int] = {a: i for i, a in enumerate(names)}
    if NO_AZ in names:
        idx[None] = len(names) - 1
    return names, np.array(
        [idx[h.az] if h.is_compute and h.az in idx else -1 for h in inv.hosts], dtype=np.int64
    )


def required_headroom(caps: IntArray, rule: Headroom) -> tuple[int, int]:
    """(k largest, reserve) that the rule requires, in one class, of a scope group whose hosts
    (available, not down) have the effective capacities `caps`: the sum of the k largest, and
    reserve_percent of their total (rounded up). The headroom is max of the two."""
    k = rule.failures
    need_k = 0
    if k > 0 and len(caps):
        need_k = int(caps[np.argsort(-caps, kind="stable")[:k]].sum())
    need_r = int(np.ceil(int(caps.sum()) * rule.reserve_percent / 100.0 - 1e-9))
    return need_k, need_r


def headroom(
    model: CapacityModel, rule: Headroom, down: BoolArray | None = None
) -> list[HeadroomRow]:
    """The N+k rule per scope group and class, over compute hosts that are available and not down.

    free = sum over those hosts of max(free, 0); required = max(sum of the k largest effective
    capacities among them, reserve_percent of their total effective capacity).
    """
    names, group = model.scope_groups(rule.scope)
    avail = model.available if down is None else model.available & ~down
    free = np.maximum(model.free, 0)
    rows: list[HeadroomRow] = []
    k = rule.failures
    for g, name in enumerate(names):
        sel = np.flatnonzero(avail & (group == g))
        for c, rc in enumerate(model.classes):
            caps = model.cap[sel, c]
            total = int(caps.sum())
            need_k, need_r = required_headroom(caps, rule)
            largest: tuple[str, ...] = ()
            if k > 0 and len(sel):
                top = np.argsort(-caps, kind="stable")[:k]
                largest = tuple(model.host_names[int(sel[t])] for t in top)
            rows.append(
                HeadroomRow(
                    group=name,
                    rc=rc,
                    free=int(free[sel, c].sum()),
                    required=max(need_k, need_r),
                    required_failures=need_k,
                    required_reserve=need_r,
                    total=total,
                    largest_hosts=largest,
                )
            )
    return rows
