"""Collect an inventory from any OpenStack cloud (Nova + Placement), with list calls.

Where each field comes from (docs/cli.md has the operator's version):
- hosts: nova-compute services (name, zone -> az, enabled, up, disabled_reason);
  hypervisors (node -> host); Placement inventories of the node's resource provider
  (capacity = total, reserved, allocation_ratio); aggregates (host membership, metadata).
- host version / rack: the mapping file, else aggregate metadata `rollwave_version:<host>` /
  `rollwave_rack:<host>` (any aggregate), else membership of an aggregate with metadata
  `rollwave_version` / `rollwave_rack`, else the mapping's default_version ("unknown") / none.
- vms: servers of all projects (paginated): flavor resources, host, status, project,
  pinned AZ (microversion 2.96), server group (from the groups' member lists); migration,
  dirty_rate_mb_s, local_disk, allowed_aggregates from the mapping file, else server metadata
  `rollwave_<field>`, else migration by status (ACTIVE/PAUSED: live, SHUTOFF/SUSPENDED: cold,
  other: none).
- controllers and HA groups: the mapping file only.
- Placement's view (`planner.openstack.placement`): nested providers, traits, units; VM
  resources are Placement's allocations; usage no VM accounts for, and drift notes. Aggregates
  a VM may or may not use by Nova's aggregate filters (`planner.openstack.filters`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from planner.openstack import filters, placement
from planner.openstack.connect import Api, pick_microversion
from planner.openstack.conventions import (
    DEFAULT_AZ,
    LABELS_AGGREGATE,
    RACK_KEY,
    VERSION_KEY,
    label_key,
    vm_fields,
)
from planner.openstack.mapping import Mapping

Progress = Callable[[str], None]

# 2.96 adds pinned_availability_zone; 2.87 is the newest hypervisor view that does not ask each
# compute for its uptime (one RPC per host since 2.88); 2.64 gives server group policy + rules.
COMPUTE_WANTED = (2, 96)
HYPERVISOR_WANTED = (2, 87)
PLACEMENT_MV = "1.14"


@dataclass(frozen=True)
class Stats:
    seconds: float
    calls: int
    skipped: int = 0  # servers on no compute host (never scheduled, shelved-offloaded)
    drift: dict[str, list[str]] = field(default_factory=dict)  # host -> Placement drift notes
    filter_notes: list[str] = field(default_factory=list)  # VMs the aggregate filters cannot place


def _default_migration(status: str) -> str:
    if status in ("ACTIVE", "PAUSED", "MIGRATING"):
        return "live"
    if status in ("SHUTOFF", "SUSPENDED", "SHELVED"):
        return "cold"
    return "none"


def flavor_resources(flavor: dict[str, Any], volume_backed: bool) -> dict[str, int]:
    """The Placement resources a flavor asks for, by Nova's rules (resources:* override)."""
    extra = {str(k): str(v) for k, v in (flavor.get("extra_specs") or {}).items()}
    res: dict[str, int] = {}
    vcpu_class = "PCPU" if extra.get("hw:cpu_policy") == "dedicated" else "VCPU"
    res[vcpu_class] = int(flavor.get("vcpus") or 0)
    res["MEMORY_MB"] = int(flavor.get("ram") or 0)
    disk = int(flavor.get("ephemeral") or 0) + math.ceil(int(flavor.get("swap") or 0) / 1024)
    if not volume_backed:
        disk += int(flavor.get("disk") or 0)
    res["DISK_GB"] = disk
    for k, v in extra.items():
        if k.startswith("resources:") or (k.startswith("resources") and ":" in k):
            rc = k.split(":", 1)[1]
            try:
                res[rc] = int(v)
            except ValueError:
                continue
    return {k: v for k, v in res.items() if v > 0}


def collect(
    api: Api, cloud: str, mapping: Mapping, progress: Progress = lambda s: None
) -> tuple[dict[str, Any], Stats]:
    t0 = time.monotonic()
    cmax = api.max_microversion("compute")
    cmv = pick_microversion(cmax, COMPUTE_WANTED)
    hmv = pick_microversion(cmax, HYPERVISOR_WANTED)

    progress("compute services ...")
    services = [
        s
        for s in api.get("compute", "/os-services?binary=nova-compute", cmv)["services"]
        if s.get("binary") == "nova-compute"
    ]
    progress(f"compute services: {len(services)}; hypervisors ...")
    node_host: dict[str, str] = {}
    node_ids: dict[str, str] = {}
    for page in api.paginate("compute", "/os-hypervisors/detail", "hypervisors", microversion=hmv):
        for h in page:
            node = str(h["hypervisor_hostname"])
            node_host[node] = str((h.get("service") or {}).get("host") or node)
            node_ids[h["hypervisor_hostname"]] = str(h["id"])
    progress(f"hypervisors: {len(node_host)}; resource providers ...")
    rps = api.get("placement", "/resource_providers", PLACEMENT_MV)["resource_providers"]
    rp_by_name = {rp["name"]: rp["uuid"] for rp in rps}
    rp_by_uuid = {rp["uuid"] for rp in rps}
    host_rps: dict[str, list[str]] = {}
    for node, host in node_host.items():
        rp = node_ids[node] if node_ids[node] in rp_by_uuid else rp_by_name.get(node)
        if rp:
            host_rps.setdefault(host, []).append(rp)

    def inventory(rp: str) -> dict[str, Any]:
        out: dict[str, Any] = api.get(
            "placement", f"/resource_providers/{rp}/inventories", PLACEMENT_MV
        )["inventories"]
        return out

    all_rps = [rp for rps_ in host_rps.values() for rp in rps_]
    with ThreadPoolExecutor(max_workers=8) as pool:
        invs = dict(zip(all_rps, pool.map(inventory, all_rps), strict=True))
    trees = placement.read_trees(api, rps, host_rps, invs)
    progress(f"placement inventories: {len(invs)}; aggregates ...")
    aggregates = api.get("compute", "/os-aggregates", cmv)["aggregates"]

    hosts = _hosts(services, host_rps, invs, aggregates, mapping)
    progress(f"hosts: {len(hosts)}; server groups ...")
    groups: list[dict[str, Any]] = []
    member_of: dict[str, str] = {}
    gmv = pick_microversion(cmax, (2, 64))
    for page in api.paginate(
        "compute",
        "/os-server-groups?all_projects=True",
        "server_groups",
        microversion=gmv,
        by_offset=True,
    ):
        for g in page:
            policy = g.get("policy") or (g.get("policies") or ["anti-affinity"])[0]
            rules = g.get("rules") or {}
            groups.append(
                {
                    "id": g["id"],
                    "name": g.get("name") or g["id"],
                    "policy": policy,
                    "max_server_per_host": int(rules.get("max_server_per_host", 1)),
                }
            )
            for m in g.get("members") or []:
                member_of[m] = g["id"]
    progress(f"server groups: {len(groups)}; servers ...")
    flavors = _flavors_by_id(api, cmv) if cmax < (2, 47) else {}
    vms: list[dict[str, Any]] = []
    filter_notes: list[str] = []
    known = {h["name"] for h in hosts}
    skipped = 0
    for page in api.paginate(
        "compute", "/servers/detail?all_tenants=True", "servers", microversion=cmv
    ):
        for s in page:
            if s.get("OS-EXT-SRV-ATTR:host") in known:
                vms.append(_vm(s, flavors, member_of, mapping, (aggregates, filter_notes)))
            else:  # holds no capacity anywhere: nothing to plan for it
                skipped += 1
        progress(f"servers: {len(vms) + skipped} ...")
    drift = placement.reconcile(hosts, vms, trees)
    inv = {
        "format_version": "1.0",
        "kind": "inventory",
        "cloud": cloud,
        "taken_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "hosts": sorted(hosts + _controllers(mapping), key=lambda h: h["name"]),
        "vms": sorted(vms, key=lambda v: v["id"]),
        "server_groups": sorted(groups, key=lambda g: g["id"]),
        "ha_groups": [dict(g) for g in mapping.ha_groups],
        "aggregates": sorted(
            (
                {
                    "name": a["name"],
                    "hosts": sorted(a.get("hosts") or []),
                    "metadata": dict(a.get("metadata") or {}),
                }
                for a in aggregates
            ),
            key=lambda a: a["name"],
        ),
    }
    return inv, Stats(time.monotonic() - t0, api.calls, skipped, drift, filter_notes)


def _label_aggregates(aggregates: list[dict[str, Any]]) -> set[str]:
    """Aggregates that only carry rollwave labels, or that are an AZ itself (named after it)."""
    out = set()
    for a in aggregates:
        meta = a.get("metadata") or {}
        if a["name"] == LABELS_AGGREGATE:
            out.add(a["name"])
        is_az = a.get("availability_zone") and a["availability_zone"] == a["name"]
        if VERSION_KEY in meta or RACK_KEY in meta or is_az:
            out.add(a["name"])
    return out


def _per_host_labels(aggregates: list[dict[str, Any]]) -> dict[str, str]:
    """ "rollwave_version:cmp-1" -> label (and rollwave_rack:...), from any aggregate."""
    per_host: dict[str, str] = {}
    for a in aggregates:
        for k, v in (a.get("metadata") or {}).items():
            if k.startswith((VERSION_KEY + ":", RACK_KEY + ":")):
                per_host[k] = str(v)
    return per_host


def _by_host(aggregates: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_host: dict[str, list[dict[str, Any]]] = {}
    for a in aggregates:
        for h in a.get("hosts") or []:
            by_host.setdefault(h, []).append(a)
    return by_host


def _label_version(name: str, per_host: dict[str, str], aggs: list[dict[str, Any]]) -> str | None:
    """The version label the cloud publishes for a host (per-host key, else membership)."""
    return per_host.get(label_key(VERSION_KEY, name)) or next(
        (a["metadata"][VERSION_KEY] for a in aggs if VERSION_KEY in (a.get("metadata") or {})),
        None,
    )


def observed_version(name: str, aggregates: list[dict[str, Any]], mapping: Mapping) -> str | None:
    """The version the cloud itself reports for a host (aggregate metadata), or None when the
    mapping file decides it or nothing is published: what an executor can watch change."""
    if mapping.host_version(name):
        return None
    return _label_version(name, _per_host_labels(aggregates), _by_host(aggregates).get(name, []))


def _hosts(
    services: list[dict[str, Any]],
    host_rps: dict[str, list[str]],
    invs: dict[str, Any],
    aggregates: list[dict[str, Any]],
    mapping: Mapping,
) -> list[dict[str, Any]]:
    labels = _label_aggregates(aggregates)
    per_host = _per_host_labels(aggregates)
    by_host = _by_host(aggregates)
    out: dict[str, dict[str, Any]] = {}
    for s in services:
        name = s["host"]
        capacity: dict[str, int] = {}
        reserved: dict[str, int] = {}
        ratio: dict[str, float] = {}
        for rp in host_rps.get(name, []):
            for rc, inv in invs.get(rp, {}).items():
                capacity[rc] = capacity.get(rc, 0) + int(inv["total"])
                reserved[rc] = reserved.get(rc, 0) + int(inv.get("reserved", 0))
                ratio[rc] = float(inv.get("allocation_ratio", 1.0))
        aggs = by_host.get(name, [])
        meta_rack = next(
            (a["metadata"][RACK_KEY] for a in aggs if RACK_KEY in (a.get("metadata") or {})), None
        )
        enabled = s.get("status") == "enabled"
        host: dict[str, Any] = {
            "name": name,
            "role": "compute",
            "az": s.get("zone") or DEFAULT_AZ,
            "rack": mapping.host_rack(name) or per_host.get(label_key(RACK_KEY, name)) or meta_rack,
            "aggregates": sorted(a["name"] for a in aggs if a["name"] not in labels),
            "version": mapping.host_version(name)
            or _label_version(name, per_host, aggs)
            or mapping.default_version,
            "enabled": enabled,
            "up": s.get("state") == "up" and not s.get("forced_down", False),
            "disabled_reason": None if enabled else s.get("disabled_reason"),
            "capacity": capacity,
            "reserved": reserved,
            "allocation_ratio": ratio,
        }
        if name in out:  # several nova-compute services on one host: keep the first
            continue
        out[name] = host
    return list(out.values())


def _controllers(mapping: Mapping) -> list[dict[str, Any]]:
    out = []
    for c in mapping.controllers:
        out.append(
            {
                "name": c["name"],
                "role": "controller",
                "az": c.get("az"),
                "rack": c.get("rack"),
                "aggregates": list(c.get("aggregates") or []),
                "version": c.get("version")
                or mapping.host_version(c["name"])
                or mapping.default_version,
                "enabled": bool(c.get("enabled", True)),
                "up": bool(c.get("up", True)),
                "disabled_reason": c.get("disabled_reason"),
                "capacity": {},
                "reserved": {},
                "allocation_ratio": {},
            }
        )
    return out


def _flavors_by_id(api: Api, mv: str | None) -> dict[str, dict[str, Any]]:
    """Before 2.47 servers name their flavor only by id: fetch flavors (and specs) once."""
    out = {}
    for page in api.paginate(
        "compute", "/flavors/detail?is_public=None", "flavors", microversion=mv
    ):
        for f in page:
            specs = api.get("compute", f"/flavors/{f['id']}/os-extra_specs", mv)
            out[str(f["id"])] = {**f, "extra_specs": specs.get("extra_specs", {})}
    return out


def _vm(
    s: dict[str, Any],
    flavors: dict[str, dict[str, Any]],
    member_of: dict[str, str],
    mapping: Mapping,
    cloud_aggregates: tuple[list[dict[str, Any]], list[str]] = ([], []),
) -> dict[str, Any]:
    flavor = s.get("flavor") or {}
    if "vcpus" not in flavor and str(flavor.get("id")) in flavors:
        flavor = flavors[str(flavor["id"])]
    volume_backed = not s.get("image")
    status = str(s.get("status", "UNKNOWN"))
    meta = vm_fields(s.get("metadata") or {})
    project = s.get("tenant_id") or s.get("project_id") or ""
    over = mapping.vm_overrides(s["id"], s.get("name", ""), project)
    vm: dict[str, Any] = {
        "id": s["id"],
        "name": s.get("name", ""),
        "project": project,
        "host": s.get("OS-EXT-SRV-ATTR:host"),
        "status": status,
        "resources": flavor_resources(flavor, volume_backed),
        "az": over.get("az", s.get("pinned_availability_zone")),
        "allowed_aggregates": list(
            over.get("allowed_aggregates", meta.get("allowed_aggregates") or [])
        ),
        "server_group": member_of.get(s["id"]),
        "migration": over.get("migration", meta.get("migration") or _default_migration(status)),
    }
    vm.update(placement.flavor_traits(flavor))
    aggs, notes = cloud_aggregates
    derived, note = filters.derive(flavor, project, aggs, filters.settings(mapping.scheduler))
    if vm["allowed_aggregates"]:  # the mapping or the server's metadata says it: that wins
        derived.pop("allowed_aggregates", None)
    vm.update(derived)
    if note:
        notes.append(f"VM {s['id']}: {note} (not restricted)")
    for f in ("dirty_rate_mb_s", "local_disk"):
        v = over.get(f, meta.get(f))
        if v is not None:
            vm[f] = v
    return vm


# -- anonymisation ----------------------------------------------------------------------------


class _Renamer:
    def __init__(self, prefix: str, width: int) -> None:
        self.prefix, self.width, self.seen = prefix, width, {}  # type: ignore[var-annotated]

    def __call__(self, value: Any) -> Any:
        if value is None or value == "":
            return value
        if value not in self.seen:
            self.seen[value] = f"{self.prefix}{len(self.seen) + 1:0{self.width}d}"
        return self.seen[value]


def anonymize(inv: dict[str, Any]) -> dict[str, Any]:
    """Replace names and ids consistently (same input, same output; in sorted order).

    Kept: resources, capacities, statuses, policies, versions, migration settings.
    """
    host = _Renamer("host-", 4)
    vm_id = _Renamer("vm-", 6)
    vm_name = _Renamer("server-", 6)
    project = _Renamer("project-", 3)
    group = _Renamer("sg-", 4)
    group_name = _Renamer("group-", 4)
    agg = _Renamer("agg-", 3)
    az = _Renamer("az-", 2)
    rack = _Renamer("rack-", 3)
    ha = _Renamer("ha-", 2)
    for h in sorted(inv["hosts"], key=lambda h: h["name"]):
        host(h["name"])
    for v in sorted(inv["vms"], key=lambda v: v["id"]):
        vm_id(v["id"])
    # New names come from sorted order, not from hashes of the originals: nothing to reverse.
    hosts = [
        {
            **h,
            "name": host(h["name"]),
            "az": az(h.get("az")),
            "rack": rack(h.get("rack")),
            "aggregates": [agg(a) for a in h.get("aggregates") or []],
            "disabled_reason": "(anonymized)" if h.get("disabled_reason") else None,
        }
        for h in inv["hosts"]
    ]
    vms = [
        {
            **v,
            "id": vm_id(v["id"]),
            "name": vm_name(v.get("name") or v["id"]),
            "project": project(v.get("project")),
            "host": host(v.get("host")),
            "az": az(v.get("az")),
            "allowed_aggregates": [agg(a) for a in v.get("allowed_aggregates") or []],
            "server_group": group(v.get("server_group")),
        }
        for v in inv["vms"]
    ]
    groups = [
        {**g, "id": group(g["id"]), "name": group_name(g.get("name") or g["id"])}
        for g in inv["server_groups"]
    ]
    has = [
        {**g, "name": ha(g["name"]), "hosts": [host(h) for h in g.get("hosts", [])]}
        for g in inv.get("ha_groups", [])
    ]

    def meta(k: str, v: Any) -> tuple[str, Any] | None:
        key, _, name = k.partition(":")
        if k == "availability_zone":
            return k, az(v)
        if k == VERSION_KEY:
            return k, v
        if name and key in (VERSION_KEY, RACK_KEY):
            return f"{key}:{host(name)}", v if key == VERSION_KEY else rack(v)
        return None  # anything else may name the operator's world

    aggs = [
        {
            "name": agg(a["name"]) if a["name"] != LABELS_AGGREGATE else a["name"],
            "hosts": [host(h) for h in a.get("hosts", [])],
            "metadata": dict(
                m for k, v in a.get("metadata", {}).items() if (m := meta(k, v)) is not None
            ),
        }
        for a in inv.get("aggregates", [])
    ]
    for v in vms:
        if v.get("forbidden_aggregates"):
            v["forbidden_aggregates"] = [agg(a) for a in v["forbidden_aggregates"]]
    placement.anonymize(hosts, vms)
    return {
        **inv,
        "cloud": "anonymized",
        "hosts": sorted(hosts, key=lambda h: h["name"]),
        "vms": sorted(vms, key=lambda v: v["id"]),
        "server_groups": sorted(groups, key=lambda g: g["id"]),
        "ha_groups": has,
        "aggregates": sorted(aggs, key=lambda a: a["name"]),
    }


def summary(inv: dict[str, Any], stats: Stats) -> str:
    computes = [h for h in inv["hosts"] if h["role"] == "compute"]
    ctl = [h for h in inv["hosts"] if h["role"] == "controller"]
    versions: dict[str, int] = {}
    for h in computes:
        versions[h["version"]] = versions.get(h["version"], 0) + 1
    azs = sorted({str(h["az"]) for h in computes})
    by_status: dict[str, int] = {}
    for v in inv["vms"]:
        by_status[v["status"]] = by_status.get(v["status"], 0) + 1
    return (
        f"cloud {inv['cloud']}: {len(computes)} compute hosts "
        f"({sum(not h['enabled'] for h in computes)} disabled, "
        f"{sum(not h['up'] for h in computes)} down), {len(ctl)} controllers, "
        f"{len(inv['vms'])} VMs ("
        + ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
        + f") in {len({v['project'] for v in inv['vms']})} projects, "
        f"{len(inv['server_groups'])} server groups, {len(inv['ha_groups'])} HA groups\n"
        f"AZs: {', '.join(azs) or '-'}; versions: "
        + ", ".join(f"{v} x{n}" for v, n in sorted(versions.items()))
        + f"\ncollected in {stats.seconds:.1f} s with {stats.calls} API calls"
        + (f"; skipped {stats.skipped} servers on no compute host" if stats.skipped else "")
    )
