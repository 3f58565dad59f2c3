"""The way operators upgrade today, as a baseline to compare plans with (benchmarks only).

Hosts in name order, `max_hosts_per_wave` at a time; every VM on them sent where Nova's default
scheduler would send it, one after the other: the filters keep compute hosts that are enabled,
up and not being upgraded (ComputeFilter), in the VM's pinned AZ (AvailabilityZoneFilter), with
room in every resource class (Placement) and below the VM's hard anti-affinity group's
max_server_per_host (ServerGroupAntiAffinityFilter); the RAM weigher then picks the host with the
most free memory. Nothing here knows about upgrades, headroom, HA groups, affinity or
aggregates; a VM no host passes stays where it is (NoValidHost). The checker judges the result.
"""

from __future__ import annotations

import numpy as np

from planner.capacity import CapacityModel
from planner.inventory import Inventory
from planner.plan import Migration, Plan, Stop, Wave
from planner.policy import Policy
from solver.context import method_for


def nova_baseline_plan(inv: Inventory, policy: Policy, *, inventory_sha256: str = "") -> Plan:
    model = CapacityModel(inv)
    names = model.host_names
    todo = sorted(h.name for h in inv.hosts_to_upgrade(policy.target_version))
    ram = model.class_index.get("MEMORY_MB")
    az_of = np.array([h.az or "" for h in inv.hosts], dtype=object)
    vms_on: list[list[int]] = [[] for _ in names]
    for j, h in enumerate(model.vm_host):
        vms_on[int(h)].append(j)
    group_count: dict[str, dict[int, int]] = {}
    for j, v in enumerate(inv.vms):
        if v.server_group is not None:
            g = group_count.setdefault(v.server_group, {})
            h = int(model.vm_host[j])
            g[h] = g.get(h, 0) + 1
    waves: list[Wave] = []
    M = policy.max_hosts_per_wave
    for start in range(0, len(todo), M):
        batch = todo[start : start + M]
        down = np.zeros(len(names), dtype=bool)
        for n in batch:
            down[model.host_index[n]] = True
        base = model.available & ~down
        migrations: list[Migration] = []
        stops: list[Stop] = []
        for n in batch:
            src = model.host_index[n]
            for j in list(vms_on[src]):
                vm = inv.vms[j]
                method = method_for(vm)
                if method is None:
                    if policy.allow_stop:
                        stops.append(Stop(vm.id, n))
                    continue
                ok = base & np.all(model.free >= model.demand[j], axis=1)
                if vm.az is not None:
                    ok &= az_of == vm.az
                group = inv.group(vm.server_group) if vm.server_group else None
                if group is not None and group.hard and group.anti:
                    for h, count in group_count.get(group.id, {}).items():
                        if count >= group.max_server_per_host:
                            ok[h] = False
                idx = np.flatnonzero(ok)
                if idx.size == 0:
                    continue  # NoValidHost: the VM stays
                free_ram = model.free[idx, ram] if ram is not None else np.zeros(idx.size)
                dst = int(idx[int(np.argmax(free_ram))])
                model.move(j, dst)
                vms_on[src].remove(j)
                vms_on[dst].append(j)
                if vm.server_group is not None:
                    g = group_count[vm.server_group]
                    g[src] -= 1
                    g[dst] = g.get(dst, 0) + 1
                migrations.append(Migration(vm.id, n, names[dst], method))
        waves.append(Wave(len(waves) + 1, tuple(batch), tuple(migrations), tuple(stops)))
    return Plan(
        inventory_sha256=inventory_sha256,
        policy=policy,
        waves=tuple(waves),
        generator={"name": "nova-baseline"},
    )
