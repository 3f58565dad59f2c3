"""Computes added to and removed from a running sandbox (control `hosts/NAME/add|remove`).

What a side-by-side hand-over does to the two clouds: the old cloud's emptied host loses its
nova-compute and its service record (`DELETE /os-services/{id}`, which also removes its compute
node and resource provider), and the new cloud gains a nova-compute for it, which registers its
hypervisor and provider as any new compute does. Imported by the sandbox process only.
"""

from __future__ import annotations

from typing import Any

from planner.openstack.conventions import LABELS_AGGREGATE, VERSION_KEY, label_key


def add(sb: Any, host: str, body: dict[str, Any]) -> dict[str, Any]:
    """Start a nova-compute for a new fake hypervisor `host` (capacity, reserved,
    allocation_ratio, version, aggregates: existing aggregate names to join)."""
    c = sb.driver.CONTROL
    capacity = {str(k): int(v) for k, v in dict(body.get("capacity") or {}).items()}
    if not capacity or any(v < 0 for v in capacity.values()):
        raise ValueError("capacity: a map of resource class -> amount >= 0 is required")
    aggregates = [str(a) for a in body.get("aggregates") or []]
    unknown = [a for a in aggregates if a not in sb.agg_ids]
    if unknown:
        raise KeyError(unknown[0])
    version = str(body.get("version") or "unknown")
    with sb.lock:
        if host in c.hosts:
            raise PermissionError(f"host {host} is already a compute of this cloud")
        c.hosts[host] = sb.driver.HostSpec(
            capacity=capacity,
            reserved={str(k): int(v) for k, v in dict(body.get("reserved") or {}).items()},
            allocation_ratio={
                str(k): float(v) for k, v in dict(body.get("allocation_ratio") or {}).items()
            },
            version=version,
        )
        try:
            sb.computes[host] = sb.harness._start_compute(host)
        except Exception:
            del c.hosts[host]
            raise
        sb.admin.post_aggregate_action(
            sb.agg_ids[LABELS_AGGREGATE],
            {"set_metadata": {"metadata": {label_key(VERSION_KEY, host): version}}},
        )
        for name in aggregates:
            sb.admin.add_host_to_aggregate(sb.agg_ids[name], host)
        service = sb._service_id(host)
    return {"ok": True, "host": host, "service_id": service, "version": version}


def remove(sb: Any, host: str) -> dict[str, Any]:
    """Stop `host`'s nova-compute and delete its service, as an operator retires a compute
    (Nova refuses, 409, while instances are on it; so do we, before stopping anything)."""
    c = sb.driver.CONTROL
    with sb.lock:
        if host not in c.hosts:
            raise KeyError(host)
        servers = sb.admin.api_get(f"/servers?all_tenants=1&host={host}").body["servers"]
        if servers:
            raise PermissionError(f"host {host} still has {len(servers)} server(s)")
        service = sb._service_id(host)
        if host not in sb.down:
            sb.computes[host].stop()
        # Nova takes the host out of its aggregates and deletes its provider too.
        sb.admin.api_delete(f"/os-services/{service}")
        del c.hosts[host]
        sb.computes.pop(host, None)
        sb.down.discard(host)
    return {"ok": True, "host": host, "removed_service_id": service}
