"""Placement's view in the inventory and the plan: nested providers (a vGPU's VGPU counted on its
own provider and type), traits, allocation units, usage Placement counts that no VM accounts
for; read, written, counted by the capacity model and kept by every planner."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from planner.capacity import CapacityModel
from planner.checker import check_plan
from planner.errors import InfeasibleError, InputError
from planner.formats import (
    inventory_from_dict,
    inventory_to_dict,
    load_inventory,
    save_inventory,
    save_policy,
)
from planner.inventory import Units
from planner.placement import acceptance, vm_refusal
from solver.context import build_context
from solver.exact import decide
from solver.params import SolveParams
from solver.solve import SolveOptions, solve
from tests.clouds import GPU, Cloud, edit_host, edit_vm, gpu_cloud, policy
from tests.test_cli import clean, rollwave


def test_a_vgpu_is_counted_on_its_providers_type() -> None:
    inv = gpu_cloud()
    key = f"VGPU@{GPU}"
    assert inv.demand(inv.vm("vgpu-1"))[key] == 1 and "VGPU" not in inv.demand(inv.vm("vgpu-1"))
    m = CapacityModel(inv)
    c = m.class_index[key]
    assert [int(x) for x in m.cap[:, c]] == [4, 0, 4, 0]
    assert [int(x) for x in m.used[:, c]] == [1, 0, 0, 0]
    assert m.fits(m.vm_index["vgpu-1"]).tolist() == [True, False, True, False]


def test_traits_and_units_decide_the_hosts_placement_accepts() -> None:
    inv = gpu_cloud()
    acc = acceptance(inv)
    ssd = acc.mask(inv.vm("ssd-1"))
    assert ssd is not None and ssd.tolist() == [True, False, False, True]
    assert "lacks the required trait CUSTOM_SSD" in str(
        vm_refusal(inv, inv.vm("ssd-1"), inv.host("cmp-2"))
    )
    forbid = edit_vm(inv, "ssd-1", required_traits=(), forbidden_traits=("CUSTOM_SSD",))
    mask = acceptance(forbid).mask(forbid.vm("ssd-1"))
    assert mask is not None and mask.tolist() == [False, True, True, False]
    # max_unit 2 on cmp-3's VCPU: a 4-vCPU VM cannot be allocated there, whatever is free.
    units = edit_host(inv, "cmp-3", units={"VCPU": Units(max_unit=2)})
    assert "units" in str(vm_refusal(units, units.vm("ssd-1"), units.host("cmp-3")))
    stepped = edit_host(inv, "cmp-3", units={"VCPU": Units(step_size=8)})
    assert vm_refusal(stepped, stepped.vm("ssd-1"), stepped.host("cmp-3")) is not None
    assert Units(min_unit=2, max_unit=8, step_size=2).accepts(4)
    assert not Units(min_unit=2, max_unit=8, step_size=2).accepts(3)


def test_a_cloud_without_placement_fields_has_no_limits() -> None:
    inv = Cloud().hosts_("cmp-1", "cmp-2").vm("a", "cmp-1").build()
    assert acceptance(inv).mask(inv.vm("a")) is None
    assert inv.demand(inv.vm("a")) == inv.vm("a").resources


def test_other_usage_stays_and_counts() -> None:
    inv = edit_host(gpu_cloud(), "cmp-3", other_usage={"VCPU": 10})
    m = CapacityModel(inv)
    assert int(m.used[m.host_index["cmp-3"], m.class_index["VCPU"]]) == 10


def test_the_fields_round_trip_through_a_file(tmp_path: Path) -> None:
    inv = edit_host(
        gpu_cloud(),
        "cmp-3",
        units={"VCPU": Units(1, 8, 1)},
        other_usage={"VCPU": 2, f"VGPU@{GPU}": 1},
        drift=("usage VCPU 12, the VMs' allocations 10",),
    )
    path = tmp_path / "inv.json"
    save_inventory(inv, path)
    back = load_inventory(path)
    assert back == inv
    assert inventory_to_dict(back)["hosts"][2]["providers"]["cmp-3_pgpu0"]["traits"] == [GPU]
    # A file without the fields writes none of them.
    plain = Cloud().host("cmp-1").vm("a", "cmp-1").build()
    d = inventory_to_dict(plain)
    assert "providers" not in d["hosts"][0] and "allocations" not in d["vms"][0]


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        ("providers", {"p": {"capacity": {"VGPU": 0}}}, "providers.p.capacity.VGPU: must be"),
        ("units", {"VCPU": {"max_unit": 1, "min_unit": 2}}, "less than min_unit"),
        ("other_usage", {"vgpu": 1}, "is not a resource class"),
        ("traits", [3], "traits[0]: must be a non-empty string"),
    ],
)
def test_bad_placement_fields_are_named(where: str, value: object, message: str) -> None:
    d = inventory_to_dict(Cloud().host("cmp-1").vm("a", "cmp-1").build())
    d["hosts"][0][where] = value
    with pytest.raises(InputError) as e:
        inventory_from_dict(d, "inv.json")
    assert message in str(e.value) and "hosts[0]" in str(e.value)


@pytest.mark.parametrize("planner", ["cpsat", "greedy", "exact"])
def test_every_planner_keeps_placements_limits(planner: str) -> None:
    inv, pol = gpu_cloud(), policy(1, failures=0)
    if planner == "exact":
        dec = decide(build_context(inv, pol), SolveParams(time_limit=60))
        assert dec.outcome == "plan" and dec.plan is not None
        plan = dec.plan
    else:
        opts = SolveOptions(planner="greedy" if planner == "greedy" else "cpsat", effort=0.3)
        plan = solve(inv, pol, opts).plan
    report = check_plan(inv, plan)
    assert report.ok, [str(v) for v in report.violations]
    dst: dict[str, set[str]] = {"vgpu-1": set(), "ssd-1": set()}
    for w in plan.waves:
        for m in w.migrations:
            dst[m.vm].add(m.dst)
    # cmp-3: the only other host with a VGPU of its type; cmp-4: the other with CUSTOM_SSD (a
    # VM may move twice, back to cmp-1 once it is upgraded)
    assert "cmp-3" in dst["vgpu-1"] and dst["vgpu-1"] <= {"cmp-1", "cmp-3"}
    assert "cmp-4" in dst["ssd-1"] and dst["ssd-1"] <= {"cmp-1", "cmp-4"}


def test_no_plan_when_no_other_host_has_the_trait() -> None:
    inv = edit_host(gpu_cloud(), "cmp-4", traits=())
    with pytest.raises(InfeasibleError) as e:
        solve(inv, policy(1, failures=0), SolveOptions(effort=0.3, time_limit=30))
    text = " ".join(e.value.reasons)
    assert "ssd-1" in text and "trait CUSTOM_SSD" in text
    assert any(b["key"] == "placement:trait CUSTOM_SSD" for b in e.value.blame)


def test_drift_is_a_warning_of_the_check() -> None:
    inv = edit_host(gpu_cloud(), "cmp-2", drift=("usage VCPU 12, the VMs' allocations 0",))
    plan = solve(inv, policy(1, failures=0), SolveOptions(effort=0.3, time_limit=30)).plan
    report = check_plan(inv, plan)
    assert report.ok
    assert [w.rule for w in report.warnings] == ["inventory.placement_drift"]
    assert "cmp-2: usage VCPU 12" in report.warnings[0].message
    assert replace(inv, hosts=inv.hosts) == inv


@pytest.mark.parametrize("planner", ["cpsat", "greedy", "exact"])
def test_every_planner_keeps_vms_out_of_forbidden_aggregates(planner: str) -> None:
    """Tenant isolation keeping other projects out: b-1 may not go to cmp-2 (aggregate `iso`),
    only to cmp-3."""
    c = Cloud("isolated").host("cmp-1").host("cmp-2", aggregates=["iso"]).host("cmp-3")
    inv = edit_vm(c.vm("b-1", "cmp-1").build(), "b-1", forbidden_aggregates=("iso",))
    pol = policy(1, failures=0)
    if planner == "exact":
        dec = decide(build_context(inv, pol), SolveParams(time_limit=60))
        assert dec.plan is not None
        plan = dec.plan
    else:
        opts = SolveOptions(planner="greedy" if planner == "greedy" else "cpsat", effort=0.3)
        plan = solve(inv, pol, opts).plan
    assert check_plan(inv, plan).ok
    assert {m.dst for w in plan.waves for m in w.migrations} <= {"cmp-1", "cmp-3"}


def test_no_plan_when_every_other_host_is_forbidden() -> None:
    c = Cloud("isolated").host("cmp-1").host("cmp-2", aggregates=["iso"])
    inv = edit_vm(c.vm("b-1", "cmp-1").build(), "b-1", forbidden_aggregates=("iso",))
    with pytest.raises(InfeasibleError) as e:
        solve(inv, policy(1, failures=0), SolveOptions(effort=0.3, time_limit=30))
    assert any(b["key"] == "aggregates:not iso" for b in e.value.blame), e.value.blame


def test_plan_and_check_warn_about_drift(tmp_path: Path) -> None:
    inv = edit_host(gpu_cloud(), "cmp-2", drift=("consumer c1 holds VCPU 4 on cmp-2",))
    inv_path, pol_path, plan_path = (tmp_path / n for n in ("i.json", "p.json", "plan.json"))
    save_inventory(inv, inv_path)
    save_policy(policy(1, failures=0), pol_path)
    r = clean(rollwave("plan", inv_path, "--policy", pol_path, "-o", plan_path))
    assert r.code == 0, r
    assert "warning: Placement drift on cmp-2: consumer c1 holds VCPU 4 on cmp-2" in r.err
    r = clean(rollwave("check", inv_path, plan_path))
    assert r.code == 0 and "consumer c1 holds VCPU 4" in r.err, r
