"""The Nova-like baseline the benchmark compares with: name order, RAM weigher, filters."""

from __future__ import annotations

from planner.checker import check_plan
from planner.inventory import Inventory, ServerGroup
from solver.baseline import nova_baseline_plan
from tests import solver_clouds as sc


def _cloud() -> Inventory:
    hosts = [
        sc.host("cmp-1"),
        sc.host("cmp-2"),
        sc.host("cmp-3", mem=256),
        sc.host("cmp-4", az="az2", mem=256),
    ]
    vms = [
        *sc.fill("cmp-1", 3),
        sc.vm("pinned", "cmp-1", az="az1"),
        sc.vm("anti-a", "cmp-2", group="g"),
        sc.vm("anti-b", "cmp-3", group="g"),
        *sc.fill("cmp-3", 8),
    ]
    return Inventory(
        cloud="baseline",
        taken_at="2026-01-01T00:00:00Z",
        hosts=tuple(hosts),
        vms=tuple(vms),
        server_groups=(ServerGroup("g", "g", "anti-affinity"),),
    )


def test_hosts_go_in_name_order_max_hosts_per_wave_at_a_time() -> None:
    plan = nova_baseline_plan(_cloud(), sc.policy(max_hosts_per_wave=3, failures=0))
    assert [w.hosts for w in plan.waves] == [("cmp-1", "cmp-2", "cmp-3"), ("cmp-4",)]


def test_ram_weigher_az_and_anti_affinity_filters() -> None:
    inv = _cloud()
    plan = nova_baseline_plan(inv, sc.policy(failures=0))
    first = {m.vm: m.dst for m in plan.waves[0].migrations}
    # most free RAM is cmp-4 (256 GiB, empty), but the pinned VM must stay in az1: cmp-3
    assert first["cmp-1-vm0"] == "cmp-4"
    assert first["pinned"] == "cmp-3"
    second = {m.vm: m.dst for m in plan.waves[1].migrations}
    assert second["anti-a"] != "cmp-3"  # anti-b is there


def test_the_baseline_is_upgrade_unaware_so_vms_move_twice() -> None:
    inv = _cloud()
    plan = nova_baseline_plan(inv, sc.policy(failures=0))
    report = check_plan(inv, plan)
    assert report.metrics["vms_moved_more_than_once"] > 0
