"""Pure translation of an inventory (its JSON form) into what the sandbox creates in Nova.

Nova has no place for some inventory fields; they travel as the documented conventions of the
OpenStack adapter (`planner.openstack.conventions`, which `snapshot` reads back): the host labels
in the metadata of one aggregate with no hosts, `rollwave-labels`; AZs as aggregates; VM fields
as server metadata; controllers and HA groups in the mapping file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from planner.openstack.conventions import (
    DEFAULT_AZ,
    RACK_KEY,
    VERSION_KEY,
    host_name_ok,
    label_key,
)

# Statuses the sandbox can put a booted server into, through the real API.
SUPPORTED_STATUS = ("ACTIVE", "SHUTOFF", "PAUSED", "SUSPENDED", "ERROR")


@dataclass(frozen=True)
class FlavorSpec:
    name: str
    vcpus: int
    ram: int
    disk: int
    extra_specs: tuple[tuple[str, str], ...]


def flavor_for(resources: Mapping[str, int]) -> FlavorSpec:
    """The flavor whose Placement request is exactly `resources`.

    VCPU, MEMORY_MB and DISK_GB map to the flavor's vcpus/ram/disk; any other class goes in a
    `resources:<CLASS>` extra spec, as Nova's flavors express custom resources.
    """
    vcpus = int(resources.get("VCPU", 0))
    ram = int(resources.get("MEMORY_MB", 0))
    disk = int(resources.get("DISK_GB", 0))
    extras = tuple(
        sorted(
            (f"resources:{rc}", str(int(n)))
            for rc, n in resources.items()
            if rc not in ("VCPU", "MEMORY_MB", "DISK_GB") and int(n) > 0
        )
    )
    if vcpus == 0:
        extras = (*extras, ("resources:VCPU", "0"))
    if ram == 0:
        extras = (*extras, ("resources:MEMORY_MB", "0"))
    tail = "".join(f"-{k.split(':', 1)[1].lower()}{v}" for k, v in extras)
    return FlavorSpec(
        f"rw-{vcpus}c-{ram}m-{disk}g{tail}", max(vcpus, 1), max(ram, 1), disk, tuple(sorted(extras))
    )


def label_metadata(inv: Mapping[str, Any]) -> dict[str, str]:
    """The labels aggregate's metadata: every compute host's version and rack."""
    meta: dict[str, str] = {}
    for h in computes(inv):
        for key, f in ((VERSION_KEY, "version"), (RACK_KEY, "rack")):
            if h.get(f):
                meta[label_key(key, h["name"])] = str(h[f])
    return meta


@dataclass(frozen=True)
class AggregateSpec:
    name: str
    az: str | None
    metadata: tuple[tuple[str, str], ...]
    hosts: tuple[str, ...]


def computes(inv: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [h for h in inv.get("hosts", []) if h.get("role", "compute") == "compute"]


def controllers(inv: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [h for h in inv.get("hosts", []) if h.get("role", "compute") == "controller"]


def aggregates(inv: Mapping[str, Any]) -> list[AggregateSpec]:
    """The AZs and the inventory's aggregates, with their hosts (labels: `label_metadata`)."""
    hosts = computes(inv)
    meta: dict[str, dict[str, str]] = {
        a["name"]: {str(k): str(v) for k, v in (a.get("metadata") or {}).items()}
        for a in inv.get("aggregates", []) or []
        if isinstance(a, Mapping) and "name" in a
    }
    members: dict[str, list[str]] = {}
    zone: dict[str, str | None] = {}
    for h in hosts:
        az = h.get("az")
        if az and az != DEFAULT_AZ:
            members.setdefault(az, []).append(h["name"])
            zone[az] = az
        for agg in h.get("aggregates", []) or []:
            if agg not in zone:
                zone[agg] = None
            if h["name"] not in members.setdefault(agg, []):
                members[agg].append(h["name"])
    return [
        AggregateSpec(
            name, zone[name], tuple(sorted(meta.get(name, {}).items())), tuple(members[name])
        )
        for name in members
    ]


def check_seedable(inv: Mapping[str, Any]) -> list[str]:
    """Problems that would stop the sandbox from reproducing the inventory, in plain words."""
    problems: list[str] = []
    names = {h["name"] for h in computes(inv)}
    ctl = {h["name"] for h in controllers(inv)}
    problems += [
        f"host {n!r}: name has characters Nova metadata keys refuse"
        for n in sorted(names)
        if not host_name_ok(n)
    ]
    for vm in inv.get("vms", []):
        where = f"vm {vm.get('id')}"
        if vm.get("host") in ctl:
            problems.append(f"{where}: on controller {vm['host']} (controllers host no VMs)")
        elif vm.get("host") not in names:
            problems.append(f"{where}: host {vm.get('host')!r} is not a compute host")
        if str(vm.get("status", "ACTIVE")).upper() not in SUPPORTED_STATUS:
            problems.append(
                f"{where}: status {vm.get('status')!r} cannot be reproduced "
                f"(supported: {', '.join(SUPPORTED_STATUS)})"
            )
    return problems


# -- Placement's view (opt-in: only inventories with these fields) ------------------------------


def placement_host(h: Mapping[str, Any]) -> dict[str, Any]:
    """The driver's HostSpec fields for a host's `traits` and nested `providers`."""
    out: dict[str, Any] = {}
    if h.get("traits"):
        out["traits"] = tuple(str(t) for t in h["traits"])
    if h.get("providers"):
        out["providers"] = {str(k): dict(v) for k, v in h["providers"].items()}
    return out


AGGREGATE_SPECS = "aggregate_instance_extra_specs"


def flavor_for_vm(vm: Mapping[str, Any]) -> FlavorSpec:
    """`flavor_for` its resources, with `trait:X=required|forbidden` extra specs for its
    `required_traits` and `forbidden_traits`, and `aggregate_instance_extra_specs:K=V` for a
    seed-only `aggregate_specs: {K: V}` (the flavor's name says them)."""
    fl = flavor_for(vm.get("resources") or {})
    specs = [(f"trait:{t}", "required") for t in vm.get("required_traits") or []]
    specs += [(f"trait:{t}", "forbidden") for t in vm.get("forbidden_traits") or []]
    specs += [
        (f"{AGGREGATE_SPECS}:{k}", str(v)) for k, v in (vm.get("aggregate_specs") or {}).items()
    ]
    if not specs:
        return fl
    tail = "".join(f"-{k.split(':', 1)[1].lower()}-{v.lower()}" for k, v in sorted(specs))
    return FlavorSpec(
        fl.name + tail, fl.vcpus, fl.ram, fl.disk, tuple(sorted((*fl.extra_specs, *specs)))
    )


def ghost_usage(inv: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Per host, the `other_usage` of plain classes: the sandbox makes each a consumer Nova does
    not know (an allocation of its own in Placement), a drift the snapshot must report."""
    out: dict[str, dict[str, int]] = {}
    for h in computes(inv):
        usage = {str(k): int(v) for k, v in (h.get("other_usage") or {}).items() if "@" not in k}
        if usage:
            out[h["name"]] = usage
    return out


def scheduler_filters(inv: Mapping[str, Any]) -> list[str]:
    """The scheduler filters to enable beside Nova's defaults, only when the inventory asks:
    AggregateInstanceExtraSpecsFilter for VMs with `aggregate_specs`,
    AggregateMultiTenancyIsolation for aggregates with `filter_tenant_id*` metadata."""
    out = []
    if any(vm.get("aggregate_specs") for vm in inv.get("vms", [])):
        out.append("AggregateInstanceExtraSpecsFilter")
    metas = [
        a.get("metadata") or {} for a in inv.get("aggregates", []) or [] if isinstance(a, Mapping)
    ]
    if any(str(k).startswith("filter_tenant_id") for m in metas for k in m):
        out.append("AggregateMultiTenancyIsolation")
    return out
