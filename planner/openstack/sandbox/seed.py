"""Pure translation of an inventory (its JSON form) into what the sandbox creates in Nova.

Nova has no place for some inventory fields; they travel as documented conventions that a real
operator can use too (see docs/sandbox.md):
- a host's `version` and `rack`: metadata `rollwave_version:<host>` / `rollwave_rack:<host>` of
  an aggregate (here one with no hosts, `rollwave-labels`: one API call for the whole cloud,
  where an aggregate per label costs a membership call per host);
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
LABELS_AGGREGATE = "rollwave-labels"
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
    return FlavorSpec(
        f"rw-{vcpus}c-{ram}m-{disk}g{tail}", max(vcpus, 1), max(ram, 1), disk, tuple(sorted(extras))
    )


def label_key(key: str, host: str) -> str:
    """Aggregate metadata key holding one host's label, e.g. `rollwave_version:cmp-001`."""
    return f"{key}:{host}"


def label_metadata(inv: Mapping[str, Any]) -> dict[str, str]:
    """The labels aggregate's metadata: every compute host's version and rack."""
    meta: dict[str, str] = {}
    for h in computes(inv):
        for key, f in ((VERSION_KEY, "version"), (RACK_KEY, "rack")):
            if h.get(f):
                meta[label_key(key, h["name"])] = str(h[f])
    return meta


def host_name_ok(name: str) -> bool:
    """Nova accepts these characters in metadata keys; host names nearly always fit."""
    return re.fullmatch(r"[a-zA-Z0-9_:. -]{1,230}", name) is not None


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
