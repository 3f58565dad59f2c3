"""The inventory of a cloud: hosts, VMs, server groups and HA groups, as immutable records.

Capacities follow Placement: effective = floor((total - reserved) * allocation_ratio), per resource
class (VCPU, MEMORY_MB, DISK_GB and any other class, all treated alike). Controllers host no VMs
and add no compute capacity. Mapping fields are plain dicts for speed and pickling; treat them as
read-only. Reading and writing files is `planner.formats`' job.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["compute", "controller"]
MigrationKind = Literal["live", "cold", "none"]
GroupPolicy = Literal["anti-affinity", "affinity", "soft-anti-affinity", "soft-affinity"]

ROLES: tuple[Role, ...] = ("compute", "controller")
MIGRATION_KINDS: tuple[MigrationKind, ...] = ("live", "cold", "none")
GROUP_POLICIES: tuple[GroupPolicy, ...] = (
    "anti-affinity",
    "affinity",
    "soft-anti-affinity",
    "soft-affinity",
)
# Placement's standard classes come first in every table; others follow alphabetically.
STANDARD_CLASSES = ("VCPU", "MEMORY_MB", "DISK_GB")


def effective_capacity(total: int, reserved: int, ratio: float) -> int:
    """Placement's rule: an allocation fits while used + amount <= (total - reserved) * ratio.

    Placement compares in floating point against integer usage, so flooring the product gives
    exactly the same verdict with integers only.
    """
    return max(0, math.floor((total - reserved) * ratio))


def pool_key(rc: str, traits: Iterable[str]) -> str:
    """The capacity column of class `rc` on a nested provider: `rc@CUSTOM_A+CUSTOM_B` when the
    provider carries custom traits (a vGPU type, a PCI device kind), else `rc`. A VM's demand
    allocated from such a provider needs a provider of the same key on its destination."""
    custom = sorted(t for t in traits if t.startswith("CUSTOM_"))
    return f"{rc}@{'+'.join(custom)}" if custom else rc


def base_class(key: str) -> str:
    """The Placement class of a capacity column (`VGPU@CUSTOM_X` -> `VGPU`)."""
    return key.split("@", 1)[0]


@dataclass(frozen=True, slots=True)
class Units:
    """An inventory's allocation units: Placement refuses an amount outside [min_unit,
    max_unit] or not a multiple of step_size, whatever is free."""

    min_unit: int = 1
    max_unit: int | None = None
    step_size: int = 1

    def accepts(self, n: int) -> bool:
        return (
            n >= self.min_unit
            and (self.max_unit is None or n <= self.max_unit)
            and n % self.step_size == 0
        )


@dataclass(frozen=True, slots=True)
class Provider:
    """A nested resource provider under a compute node (a physical GPU holding VGPU, a PCI
    device): its own inventory, traits and units, counted apart from the root's."""

    name: str
    capacity: Mapping[str, int]
    reserved: Mapping[str, int] = field(default_factory=dict)
    allocation_ratio: Mapping[str, float] = field(default_factory=dict)
    traits: tuple[str, ...] = ()
    units: Mapping[str, Units] = field(default_factory=dict)

    def key(self, rc: str) -> str:
        return pool_key(rc, self.traits)

    def effective(self, rc: str) -> int:
        if rc not in self.capacity:
            return 0
        return effective_capacity(
            self.capacity[rc], self.reserved.get(rc, 0), self.allocation_ratio.get(rc, 1.0)
        )


def order_classes(classes: Iterable[str]) -> tuple[str, ...]:
    found = set(classes)
    std = [c for c in STANDARD_CLASSES if c in found]
    return (*std, *sorted(found - set(STANDARD_CLASSES)))


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    role: Role
    az: str | None
    rack: str | None
    aggregates: tuple[str, ...]
    version: str
    enabled: bool
    up: bool
    capacity: Mapping[str, int]
    reserved: Mapping[str, int] = field(default_factory=dict)
    allocation_ratio: Mapping[str, float] = field(default_factory=dict)
    disabled_reason: str | None = None
    # Placement's view beyond the root inventory (all optional; see docs/formats.md):
    traits: tuple[str, ...] = ()  # the compute node provider's traits
    units: Mapping[str, Units] = field(default_factory=dict)  # the root inventory's units
    providers: tuple[Provider, ...] = ()  # nested providers (children of the compute node)
    # Usage Placement counts on the host that no VM of the inventory accounts for (consumers
    # Nova does not know, allocations larger than the VMs'), per capacity column: it stays.
    other_usage: Mapping[str, int] = field(default_factory=dict)
    drift: tuple[str, ...] = ()  # where Placement's usages and the VMs' allocations disagree

    @property
    def is_compute(self) -> bool:
        return self.role == "compute"

    @property
    def available(self) -> bool:
        """Enabled and up: may receive VMs and counts towards headroom (when not in maintenance)."""
        return self.enabled and self.up

    def effective(self, rc: str) -> int:
        """Effective capacity of one class (or column, `pool_key`), the root's and its nested
        providers' of that key together; controllers add none."""
        if not self.is_compute:
            return 0
        n = 0
        if rc in self.capacity:
            n = effective_capacity(
                self.capacity[rc], self.reserved.get(rc, 0), self.allocation_ratio.get(rc, 1.0)
            )
        base = base_class(rc)
        for p in self.providers:
            if base in p.capacity and p.key(base) == rc:
                n += p.effective(base)
        return n

    def columns(self) -> set[str]:
        """The capacity columns the host offers: root classes and its providers' keys."""
        out = set(self.capacity)
        for p in self.providers:
            out.update(p.key(rc) for rc in p.capacity)
        return out


@dataclass(frozen=True, slots=True)
class VM:
    id: str
    name: str
    project: str
    host: str
    status: str
    resources: Mapping[str, int]
    az: str | None = None
    allowed_aggregates: tuple[str, ...] = ()
    server_group: str | None = None
    migration: MigrationKind = "live"
    dirty_rate_mb_s: float | None = None
    # True/False, or a size in GiB; True means the DISK_GB allocation is on local disk.
    local_disk: bool | int | None = None
    # Placement's view (optional): the traits its flavor requires or forbids, and where its
    # allocations are: provider name -> class -> amount (the host's root or a nested provider).
    required_traits: tuple[str, ...] = ()
    forbidden_traits: tuple[str, ...] = ()
    allocations: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # Aggregates it may not land in (tenant isolation keeping other projects out).
    forbidden_aggregates: tuple[str, ...] = ()

    @property
    def local_disk_gb(self) -> int:
        """GiB a block migration must copy besides memory (0 for shared or volume storage)."""
        if self.local_disk is True:
            return int(self.resources.get("DISK_GB", 0))
        if self.local_disk is False or self.local_disk is None:
            return 0
        return int(self.local_disk)

    @property
    def memory_mb(self) -> int:
        return int(self.resources.get("MEMORY_MB", 0))


@dataclass(frozen=True, slots=True)
class ServerGroup:
    id: str
    name: str
    policy: GroupPolicy
    max_server_per_host: int = 1

    @property
    def hard(self) -> bool:
        return not self.policy.startswith("soft-")

    @property
    def anti(self) -> bool:
        return self.policy.endswith("anti-affinity")


@dataclass(frozen=True, slots=True)
class HAGroup:
    name: str
    hosts: tuple[str, ...]
    min_available: int


@dataclass(frozen=True)
class Inventory:
    """A snapshot of one cloud. Build with `formats.load_inventory` or directly; both validate
    cross-references the same way (`formats.validate_inventory`)."""

    cloud: str
    taken_at: str
    hosts: tuple[Host, ...]
    vms: tuple[VM, ...]
    server_groups: tuple[ServerGroup, ...] = ()
    ha_groups: tuple[HAGroup, ...] = ()
    # sha256 of the file's bytes when read from a file (the plan records it); not part of equality.
    digest: str | None = field(default=None, compare=False)
    source: str | None = field(default=None, compare=False)

    _host: dict[str, Host] = field(init=False, repr=False, compare=False)
    _vm: dict[str, VM] = field(init=False, repr=False, compare=False)
    _group: dict[str, ServerGroup] = field(init=False, repr=False, compare=False)
    _on_host: dict[str, tuple[VM, ...]] = field(init=False, repr=False, compare=False)
    _members: dict[str, tuple[VM, ...]] = field(init=False, repr=False, compare=False)
    _demand: dict[str, dict[str, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Indexes are derived once; duplicates are rejected by formats.validate_inventory.
        setattr_ = object.__setattr__
        setattr_(self, "_host", {h.name: h for h in self.hosts})
        setattr_(self, "_vm", {v.id: v for v in self.vms})
        setattr_(self, "_group", {g.id: g for g in self.server_groups})
        on_host: dict[str, list[VM]] = {h.name: [] for h in self.hosts}
        members: dict[str, list[VM]] = {g.id: [] for g in self.server_groups}
        for v in self.vms:
            on_host.setdefault(v.host, []).append(v)
            if v.server_group is not None:
                members.setdefault(v.server_group, []).append(v)
        setattr_(self, "_on_host", {k: tuple(v) for k, v in on_host.items()})
        setattr_(self, "_members", {k: tuple(v) for k, v in members.items()})
        demand: dict[str, dict[str, int]] = {}
        for v in self.vms:
            if v.allocations and v.host in self._host:
                demand[v.id] = _keyed_demand(self._host[v.host], v)
        setattr_(self, "_demand", demand)

    # -- look-ups -------------------------------------------------------------------------------
    def host(self, name: str) -> Host:
        return self._host[name]

    def has_host(self, name: str) -> bool:
        return name in self._host

    def vm(self, vm_id: str) -> VM:
        return self._vm[vm_id]

    def has_vm(self, vm_id: str) -> bool:
        return vm_id in self._vm

    def group(self, group_id: str) -> ServerGroup:
        return self._group[group_id]

    def has_group(self, group_id: str) -> bool:
        return group_id in self._group

    def demand(self, vm: VM) -> Mapping[str, int]:
        """The VM's demand per capacity column: its resources, with what a nested provider
        of its host holds under that provider's key (`pool_key`)."""
        return self._demand.get(vm.id, vm.resources)

    def vms_on(self, host: str) -> tuple[VM, ...]:
        return self._on_host.get(host, ())

    def members(self, group_id: str) -> tuple[VM, ...]:
        return self._members.get(group_id, ())

    # -- derived views --------------------------------------------------------------------------
    @property
    def compute_hosts(self) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h.is_compute)

    @property
    def resource_classes(self) -> tuple[str, ...]:
        """Every class a compute host offers or a VM asks for, Placement's standard ones first."""
        found: set[str] = set()
        for h in self.hosts:
            if h.is_compute:
                found.update(h.columns())
                found.update(h.other_usage)
        for v in self.vms:
            found.update(self.demand(v))
        return order_classes(found)

    @property
    def azs(self) -> tuple[str, ...]:
        return tuple(sorted({h.az for h in self.hosts if h.is_compute and h.az is not None}))

    def usage(self, host: str) -> dict[str, int]:
        used: dict[str, int] = {}
        for v in self.vms_on(host):
            for rc, n in self.demand(v).items():
                used[rc] = used.get(rc, 0) + n
        return used

    def hosts_to_upgrade(self, target_version: str | None) -> tuple[Host, ...]:
        """Hosts running another version than the target; every host when there is no target."""
        if target_version is None:
            return self.hosts
        return tuple(h for h in self.hosts if h.version != target_version)


def _keyed_demand(host: Host, vm: VM) -> dict[str, int]:
    """`vm.resources`, with the amounts its allocations hold on a nested provider of its host
    moved to that provider's column."""
    out = dict(vm.resources)
    by_name = {p.name: p for p in host.providers}
    for pname, alloc in vm.allocations.items():
        p = by_name.get(pname)
        if p is None:
            continue
        for rc, n in alloc.items():
            key = p.key(rc)
            if key == rc or n <= 0:
                continue
            moved = min(n, out.get(rc, 0))
            if moved:
                out[rc] -= moved
                if out[rc] == 0:
                    del out[rc]
                out[key] = out.get(key, 0) + moved
    return out
