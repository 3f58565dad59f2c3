"""Placement's view against the real Nova: nested VGPU providers, traits, a flavor that requires
one, a flavor with aggregate extra specs, an aggregate isolated to one project, and a consumer Nova
does not know. Snapshot, plan, execute: every move the plan makes Nova accepts; the moves the
planner avoids Nova refuses. One small sandbox for the module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from planner import formats
from planner.checker import check_plan
from planner.errors import CloudError
from planner.openstack import invio, mapping, snapshot
from planner.openstack.connect import Api, connect
from planner.openstack.sandbox import manager
from planner.policy import Headroom, Policy
from solver.solve import SolveOptions, solve
from tests.executor_support import FAST, upgrade_hook
from tests.test_cli import rollwave
from tests.test_sandbox import _host, _vm, env  # noqa: F401 - the module's isolated environment

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

GPU, OTHER = "CUSTOM_NVIDIA_11", "CUSTOM_NVIDIA_12"
NEW = "2025.2"


def _gpu(host: str, trait: str) -> dict[str, Any]:
    return {f"{host}_pgpu0": {"capacity": {"VGPU": 4}, "traits": [trait]}}


def _plain(name: str, **kw: Any) -> dict[str, Any]:
    return _host(name, "az1", reserved={}, allocation_ratio={}, **kw)


# cmp-1: a pGPU of type 11 and CUSTOM_SSD; cmp-2: a pGPU of type 12; cmp-3: one of type 11;
# cmp-4: CUSTOM_SSD and no GPU, with 4 VCPU held by a consumer Nova does not know. cmp-1 and cmp-3
# are in aggregate `fast` (fast=true); cmp-4 in `iso`, isolated to project proj-b. server-1
# (VGPU) and server-5 are proj-a's, server-2 (needs CUSTOM_SSD) proj-b's; server-3's flavor asks
# for fast=true (a seed-only field: the sandbox makes the flavor's extra spec).
Y: dict[str, Any] = {
    "format_version": "1.0",
    "kind": "inventory",
    "cloud": "rollwave-sandbox",
    "taken_at": "2025-01-01T00:00:00Z",
    "hosts": [
        _plain("cmp-1", traits=["CUSTOM_SSD"], providers=_gpu("cmp-1", GPU), aggregates=["fast"]),
        _plain("cmp-2", providers=_gpu("cmp-2", OTHER)),
        _plain("cmp-3", providers=_gpu("cmp-3", GPU), aggregates=["fast"]),
        _plain("cmp-4", traits=["CUSTOM_SSD"], other_usage={"VCPU": 4}, aggregates=["iso"]),
    ],
    "vms": [
        _vm(1, "cmp-1", resources={"VCPU": 2, "MEMORY_MB": 4096, "DISK_GB": 20, "VGPU": 1}),
        _vm(2, "cmp-1", required_traits=["CUSTOM_SSD"]),
        _vm(3, "cmp-1", aggregate_specs={"fast": "true"}),
        _vm(5, "cmp-2"),
    ],
    "aggregates": [
        {"name": "fast", "metadata": {"fast": "true"}},
        {"name": "iso", "metadata": {"filter_tenant_id": "proj-b"}},
    ],
}


@pytest.fixture(scope="module")
def sb(env: dict[str, str]) -> Iterator[manager.Running]:  # noqa: F811
    formats.inventory_from_dict(Y)
    running = manager.start(Y, migration_seconds=0.3, exit_with_parent=True)
    try:
        yield running
    finally:
        manager.stop()


def _snapshot(sb: manager.Running) -> tuple[dict[str, Any], snapshot.Stats]:
    return snapshot.collect(Api(connect(manager.CLOUD_NAME)), "sb", mapping.load(sb.mapping_file))


def _server(sb: manager.Running, vm: str) -> str:
    return str(json.loads(sb.ids_file.read_text())["vms"][vm])


def test_the_snapshot_reads_trees_traits_and_drift(sb: manager.Running) -> None:
    inv, stats = _snapshot(sb)
    hosts = {h["name"]: h for h in inv["hosts"]}
    vms = {v["name"]: v for v in inv["vms"]}
    assert hosts["cmp-1"]["providers"]["cmp-1_pgpu0"]["capacity"] == {"VGPU": 4}
    assert hosts["cmp-1"]["providers"]["cmp-1_pgpu0"]["traits"] == [GPU]
    assert hosts["cmp-2"]["providers"]["cmp-2_pgpu0"]["traits"] == [OTHER]
    assert "providers" not in hosts["cmp-4"]
    # traits some VM asks about, not the dozens of capability traits Nova puts on a node
    assert hosts["cmp-1"]["traits"] == ["CUSTOM_SSD"] and "traits" not in hosts["cmp-2"]
    assert vms["server-1"]["allocations"]["cmp-1_pgpu0"] == {"VGPU": 1}
    assert vms["server-2"]["required_traits"] == ["CUSTOM_SSD"]
    # the consumer Nova does not know: counted, and reported
    assert hosts["cmp-4"]["other_usage"] == {"VCPU": 4}
    assert list(stats.drift) == ["cmp-4"] and "is no VM on this host" in stats.drift["cmp-4"][0]
    assert hosts["cmp-4"]["drift"] == stats.drift["cmp-4"]
    # the aggregate filters, derived from the flavor and the aggregates' metadata
    assert vms["server-3"]["allowed_aggregates"] == ["fast"]
    assert vms["server-3"]["forbidden_aggregates"] == ["iso"]
    assert vms["server-5"]["forbidden_aggregates"] == ["iso"]
    assert "forbidden_aggregates" not in vms["server-2"]  # proj-b's own aggregate


def test_nova_refuses_the_moves_the_planner_avoids(sb: manager.Running) -> None:
    api = Api(connect(manager.CLOUD_NAME))
    # no VGPU; no CUSTOM_SSD; not in `fast`; isolated to another project
    for vm, dst in (("vm-1", "cmp-4"), ("vm-2", "cmp-2"), ("vm-3", "cmp-4"), ("vm-5", "cmp-4")):
        body = {"os-migrateLive": {"host": dst, "block_migration": "auto"}}
        with pytest.raises(CloudError) as e:
            path = f"/servers/{_server(sb, vm)}/action"
            api.request("compute", "POST", path, microversion="2.30", json=body)
        assert e.value.status == 400 and "No valid host" in str(e.value), str(e.value)
    inv, _ = _snapshot(sb)
    assert {v["name"]: v["host"] for v in inv["vms"]}["server-1"] == "cmp-1"


def test_the_plan_executes_and_nova_accepts_every_move(sb: manager.Running, tmp_path: Path) -> None:
    data, _ = _snapshot(sb)
    inv_path, plan_path = tmp_path / "inventory.json", tmp_path / "plan.json"
    invio.write(inv_path, data)
    inv = formats.load_inventory(inv_path)
    # N+0: two pGPUs of a type cannot keep N+1 of it
    pol = Policy(max_hosts_per_wave=1, target_version=NEW, headroom=Headroom(0, "cloud", 0.0))
    plan = solve(inv, pol, SolveOptions(effort=0.3, time_limit=30)).plan
    assert check_plan(inv, plan).ok
    formats.save_plan(plan, plan_path)
    planned = {v.id: v.host for v in inv.vms}
    for _, m in plan.migrations():
        planned[m.vm] = m.dst
    by_name = {v.name: v.id for v in inv.vms}
    assert planned[by_name["server-1"]] in ("cmp-1", "cmp-3")  # a VGPU of its type
    assert planned[by_name["server-2"]] in ("cmp-1", "cmp-4")  # CUSTOM_SSD
    assert planned[by_name["server-3"]] in ("cmp-1", "cmp-3")  # fast
    assert planned[by_name["server-5"]] != "cmp-4"  # isolated to proj-b
    r = rollwave(
        "execute",
        plan_path,
        "--os-cloud",
        manager.CLOUD_NAME,
        "--mapping",
        sb.mapping_file,
        "--inventory",
        inv_path,
        *FAST,
        "--upgrade-command",
        upgrade_hook(NEW),
    )
    assert r.code == 0, r
    assert "done: every host upgraded" in r.out
    after, _ = _snapshot(sb)
    vms = {v["id"]: v for v in after["vms"]}
    assert {v: vms[v]["host"] for v in planned} == planned
    gpu = vms[by_name["server-1"]]
    assert gpu["allocations"] == {
        f"{gpu['host']}_pgpu0": {"VGPU": 1},
        gpu["host"]: {"VCPU": 2, "MEMORY_MB": 4096, "DISK_GB": 20},
    }
    assert all(h["version"] == NEW for h in after["hosts"])
