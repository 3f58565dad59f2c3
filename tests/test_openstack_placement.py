"""The snapshot's Placement reading, on the shapes Placement returns: provider trees, traits,
units, allocations and usages into the inventory, and the drift between them and Nova."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from planner.errors import InputError
from planner.formats import inventory_from_dict
from planner.openstack import filters, mapping, placement
from planner.openstack.snapshot import anonymize


def _tree() -> placement.Tree:
    t = placement.Tree("rp-1")
    t.names = {"rp-1": "cmp-1", "rp-1g": "cmp-1_pgpu0"}
    t.children = ["rp-1g"]
    inv = {"total": 4, "reserved": 0, "min_unit": 1, "max_unit": 4, "step_size": 1}
    t.inventories = {
        "rp-1": {
            "VCPU": {"total": 16, "reserved": 0, "allocation_ratio": 2.0, "max_unit": 8},
            "MEMORY_MB": {"total": 65536, "max_unit": 65536},
        },
        "rp-1g": {"VGPU": {**inv, "allocation_ratio": 1.0}},
    }
    t.traits = {
        "rp-1": ["COMPUTE_NET_ATTACH_INTERFACE", "CUSTOM_SSD"],
        "rp-1g": ["CUSTOM_NVIDIA_11", "HW_GPU_API_VULKAN"],
    }
    t.allocations = {
        "rp-1": {"vm-a": {"VCPU": 2, "MEMORY_MB": 4096}, "ghost": {"VCPU": 3}},
        "rp-1g": {"vm-a": {"VGPU": 1}},
    }
    t.usages = {"rp-1": {"VCPU": 5, "MEMORY_MB": 4096}, "rp-1g": {"VGPU": 1}}
    return t


def _cloud() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    host = {
        "name": "cmp-1",
        "role": "compute",
        "az": "nova",
        "version": "2025.1",
        "enabled": True,
        "up": True,
        "capacity": {"VCPU": 16, "MEMORY_MB": 65536},
    }
    vm = {
        "id": "vm-a",
        "name": "a",
        "project": "p",
        "host": "cmp-1",
        "status": "ACTIVE",
        "resources": {"VCPU": 2, "MEMORY_MB": 2048, "VGPU": 1},  # the flavor says 2048
        "required_traits": ["CUSTOM_SSD"],
    }
    return [host], [vm]


def test_reconcile_puts_placements_truth_into_the_inventory() -> None:
    hosts, vms = _cloud()
    notes = placement.reconcile(hosts, vms, {"cmp-1": _tree()})
    h, v = hosts[0], vms[0]
    assert h["traits"] == ["CUSTOM_SSD"]  # asked by a VM; capability traits left out
    assert h["units"] == {"VCPU": {"min_unit": 1, "max_unit": 8, "step_size": 1}}
    assert h["providers"]["cmp-1_pgpu0"]["traits"] == ["CUSTOM_NVIDIA_11"]
    assert h["providers"]["cmp-1_pgpu0"]["units"] == {}
    assert v["resources"] == {"VCPU": 2, "MEMORY_MB": 4096, "VGPU": 1}  # Placement's
    assert v["allocations"] == {
        "cmp-1": {"VCPU": 2, "MEMORY_MB": 4096},
        "cmp-1_pgpu0": {"VGPU": 1},
    }
    assert h["other_usage"] == {"VCPU": 3}
    assert len(notes["cmp-1"]) == 2 and h["drift"] == notes["cmp-1"]
    assert "Placement holds MEMORY_MB 4096, VCPU 2, VGPU 1" in notes["cmp-1"][0]
    assert "consumer ghost holds VCPU 3 on cmp-1" in notes["cmp-1"][1]
    head = {"format_version": "1.0", "kind": "inventory", "cloud": "c", "taken_at": "2026-01-01"}
    inv = inventory_from_dict({**head, "hosts": hosts, "vms": vms})
    want = {"VCPU": 2, "MEMORY_MB": 4096, "VGPU@CUSTOM_NVIDIA_11": 1}
    assert inv.demand(inv.vm("vm-a")) == want
    assert "drift" in placement.drift_report(notes)


def test_a_cloud_where_placement_agrees_has_no_drift() -> None:
    hosts, vms = _cloud()
    vms[0]["resources"] = {"VCPU": 2, "MEMORY_MB": 4096, "VGPU": 1}
    t = _tree()
    del t.allocations["rp-1"]["ghost"]
    t.usages["rp-1"]["VCPU"] = 2
    assert placement.reconcile(hosts, vms, {"cmp-1": t}) == {}
    assert "drift" not in hosts[0] and "other_usage" not in hosts[0]
    assert placement.drift_report({}) == ""


def test_flavor_traits() -> None:
    flavor = {"extra_specs": {"trait:CUSTOM_SSD": "required", "trait:HW_X": "forbidden"}}
    assert placement.flavor_traits(flavor) == {
        "required_traits": ["CUSTOM_SSD"],
        "forbidden_traits": ["HW_X"],
    }
    assert placement.flavor_traits({"extra_specs": {"hw:cpu_policy": "dedicated"}}) == {}


def test_anonymize_renames_providers_and_drops_drift_text() -> None:
    hosts, vms = _cloud()
    placement.reconcile(hosts, vms, {"cmp-1": _tree()})
    inv = {"hosts": copy.deepcopy(hosts), "vms": copy.deepcopy(vms), "server_groups": []}
    out = anonymize(inv)
    h, v = out["hosts"][0], out["vms"][0]
    assert list(h["providers"]) == ["host-0001-rp1"]
    assert h["drift"] == ["(anonymized)", "(anonymized)"]
    assert v["allocations"] == {
        "host-0001": {"VCPU": 2, "MEMORY_MB": 4096},
        "host-0001-rp1": {"VGPU": 1},
    }
    assert "cmp-1" not in repr(out)


AGGS: list[dict[str, Any]] = [
    {"name": "fast", "hosts": ["cmp-2"], "metadata": {"fast": "true", "gen": "3"}},
    {"name": "slow", "hosts": ["cmp-3"], "metadata": {"fast": "false", "gen": "1"}},
    {"name": "demo-only", "hosts": ["cmp-4"], "metadata": {"filter_tenant_id": "demo,ops"}},
    {"name": "x-only", "hosts": ["cmp-5"], "metadata": {"filter_tenant_id_2": "x"}},
]


def test_novas_extra_specs_matching() -> None:
    assert filters.match("true", "true") and not filters.match("false", "true")
    assert filters.match("b", "<or> a <or> b") and not filters.match("c", "<or> a <or> b")
    assert (
        filters.match("3", ">= 2") and filters.match("3", "= 2") and not filters.match("1", ">= 2")
    )
    assert filters.match("avx2 sse", "<in> avx2") and filters.match("abc", "s== abc")
    assert not filters.match(None, ">= 1") and not filters.match("x", ">= 1")


def test_derive_allowed_and_forbidden_aggregates() -> None:
    fast = {"extra_specs": {"aggregate_instance_extra_specs:fast": "true", "hw:x": "1"}}
    on = filters.settings({})
    got, note = filters.derive(fast, "proj", AGGS, on)
    # the filter keeps other projects out of demo-only and x-only
    assert got == {"allowed_aggregates": ["fast"], "forbidden_aggregates": ["demo-only", "x-only"]}
    assert note is None
    got, _ = filters.derive({}, "demo", AGGS, on)
    assert got == {"forbidden_aggregates": ["x-only"]}
    # the request filter keeps demo in its aggregates
    limit = filters.settings({"limit_tenants_to_placement_aggregate": True})
    got, _ = filters.derive({}, "demo", AGGS, limit)
    assert got == {"allowed_aggregates": ["demo-only"], "forbidden_aggregates": ["x-only"]}
    off = filters.settings(
        {"aggregate_instance_extra_specs": False, "aggregate_tenant_isolation": False}
    )
    assert filters.derive(fast, "proj", AGGS, off) == ({}, None)
    nowhere = {"extra_specs": {"aggregate_instance_extra_specs:gpu": "true"}}
    got, note = filters.derive(nowhere, "demo", AGGS, on)
    assert "allowed_aggregates" not in got and note is not None and "gpu=true" in note


def test_the_mapping_says_which_filters_the_cloud_enables() -> None:
    m = mapping.parse({"scheduler": {"limit_tenants_to_placement_aggregate": True}})
    assert filters.settings(m.scheduler)["limit_tenants_to_placement_aggregate"] is True
    with pytest.raises(InputError) as e:
        mapping.parse({"scheduler": {"tenant_filter": True, "aggregate_tenant_isolation": "yes"}})
    text = str(e.value)
    assert "scheduler.tenant_filter: unknown key" in text
    assert "scheduler.aggregate_tenant_isolation: must be true or false" in text
