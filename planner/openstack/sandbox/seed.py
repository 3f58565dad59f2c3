"""Pure translation of an inventory (its JSON form) into what the sandbox creates in Nova.

Nova has no place for some inventory fields; they travel as documented conventions that a real
operator can use too (see docs/sandbox.md):
- a host's `version` and `rack`: membership of an aggregate carrying metadata `rollwave_version`
  or `rollwave_rack` (named `rollwave-version-<label>`, `rollwave-rack-<rack>` here);
- a host's `az`: an aggregate named after the zone with `availability_zone` metadata;
- a VM's `migration`, `dirty_rate_mb_s`, `local_disk`, `allowed_aggregates`: server metadata
  `rollwave_<field>` (JSON values);
- controllers and HA groups: the mapping file (Nova has no notion of them).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_AZ = "nova"  # Nova's default_availability_zone: hosts in no AZ aggregate are here
VERSION_KEY = "rollwave_version"
RACK_KEY = "rollwave_rack"
VM_META_FIELDS = ("migration", "dirty_rate_mb_s", "local_disk", "allowed_aggregates")
META_PREFIX = "rollwave_"
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
    return FlavorSpec(f"rw-{vcpus}c-{ram}m-{disk}g{tail}", max(vcpus, 1), max(ram, 1), disk,
                      tuple(sorted(extras)))


def label_slug(label: str) -> str:
    """A readable aggregate-name part for a label (the exact label lives in the metadata)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") or "x"


def version_aggregate(label: str) -> str:
    return f"rollwave-version-{label_slug(label)}"


def rack_aggregate(rack: str) -> str:
    return f"rollwave-rack-{label_slug(rack)}"


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
    """Every aggregate the sandbox creates: AZs, the inventory's aggregates, label aggregates."""
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
    out = [
        AggregateSpec(name, zone[name], tuple(sorted(meta.get(name, {}).items())),
                      tuple(members[name]))
        for name in members
    ]
    for key, field, namer in ((VERSION_KEY, "version", version_aggregate),
                              (RACK_KEY, "rack", rack_aggregate)):
        groups: dict[str, list[str]] = {}
        for h in hosts:
            if h.get(field):
                groups.setdefault(str(h[field]), []).append(h["name"])
        out += [AggregateSpec(namer(label), None, ((key, label),), tuple(names))
                for label, names in groups.items()]
    return out


def vm_metadata(vm: Mapping[str, Any]) -> dict[str, str]:
    """Server metadata carrying the VM fields Nova has no place for."""
    meta: dict[str, str] = {}
    for f in VM_META_FIELDS:
        v = vm.get(f)
        if v is None or v == []:
            continue
        meta[META_PREFIX + f] = v if isinstance(v, str) else json.dumps(v)
    return meta


def check_seedable(inv: Mapping[str, Any]) -> list[str]:
    """Problems that would stop the sandbox from reproducing the inventory, in plain words."""
    problems: list[str] = []
    names = {h["name"] for h in computes(inv)}
    ctl = {h["name"] for h in controllers(inv)}
    for vm in inv.get("vms", []):
        where = f"vm {vm.get('id')}"
        if vm.get("host") in ctl:
            problems.append(f"{where}: on controller {vm['host']} (controllers host no VMs)")
        elif vm.get("host") not in names:
            problems.append(f"{where}: host {vm.get('host')!r} is not a compute host")
        if str(vm.get("status", "ACTIVE")).upper() not in SUPPORTED_STATUS:
            problems.append(f"{where}: status {vm.get('status')!r} cannot be reproduced "
                            f"(supported: {', '.join(SUPPORTED_STATUS)})")
    return problems
