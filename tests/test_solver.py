"""The CP-SAT planner on named clouds with known answers, on random clouds (every plan passes the
checker and no plan beats a lower bound), and its determinism."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.bounds import lower_bounds
from planner.checker import check_plan
from planner.errors import InfeasibleError
from planner.formats import plan_to_dict
from planner.generate import GenerateSpec, default_policy, generate
from planner.plan import Plan
from planner.policy import Policy
from solver.greedy import greedy_plan
from solver.solve import SolveOptions, SolveOutcome, solve
from tests import solver_clouds as sc

FAST = SolveOptions(effort=0.5, time_limit=60)


def plan_of(cloud: sc.Cloud, options: SolveOptions = FAST) -> SolveOutcome:
    out = solve(cloud.inventory, cloud.policy, options)
    report = check_plan(cloud.inventory, out.plan)
    assert report.ok, [str(v) for v in report.violations]
    return out


def wave_of(plan: Plan) -> dict[str, int]:
    return plan.wave_of()


def moves(plan: Plan) -> Counter[str]:
    return Counter(m.vm for _, m in plan.migrations())


# ---------------------------------------------------------------------------------------------
# Named clouds
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", sc.FEASIBLE, ids=lambda f: f.__name__)
def test_feasible_cloud_gets_a_valid_plan_by_cpsat(make: object) -> None:
    cloud = make()  # type: ignore[operator]
    out = plan_of(cloud)
    assert out.planner == "cpsat"
    lb = lower_bounds(cloud.inventory, cloud.policy)
    assert len(out.plan.waves) >= lb.waves


def test_three_hosts_and_a_spare_move_every_vm_once() -> None:
    cloud = sc.three_plus_spare()
    plan = plan_of(cloud).plan
    assert len(plan.waves) == cloud.expect["waves"]
    assert plan.waves[0].hosts == cloud.expect["first_wave"]
    assert sum(moves(plan).values()) == cloud.expect["migrations"]
    assert set(moves(plan).values()) == {1}


def test_ha_trio_goes_down_one_controller_a_wave() -> None:
    cloud = sc.ha_trio()
    where = wave_of(plan_of(cloud).plan)
    waves = [where[h] for h in cloud.expect["distinct_waves"]]
    assert len(set(waves)) == 3


def test_controllers_first_come_no_later_than_any_compute_host() -> None:
    cloud = sc.controllers_first()
    plan = plan_of(cloud).plan
    where = wave_of(plan)
    last_ctl = max(where[h] for h in cloud.expect["first"])
    assert all(w >= last_ctl for h, w in where.items() if h.startswith("cmp"))
    assert len(plan.waves) == cloud.expect["waves"]
    assert lower_bounds(cloud.inventory, cloud.policy).waves == cloud.expect["waves"]


def test_affinity_pair_moves_together() -> None:
    cloud = sc.affinity_pair()
    plan = plan_of(cloud).plan
    a, b = cloud.expect["together"]
    hops = {m.vm: (w, m.dst) for w, m in plan.migrations()}
    assert hops[a] == hops[b]


def test_cold_shutoff_and_unmovable_vms() -> None:
    cloud = sc.cold_and_stop()
    plan = plan_of(cloud).plan
    method = {m.vm: m.method for _, m in plan.migrations()}
    for v, kind in cloud.expect["method"].items():
        assert method[v] == kind
    stopped = {s.vm for w in plan.waves for s in w.stops}
    assert stopped == set(cloud.expect["stopped"])


def test_pinned_and_bound_vms_stay_in_their_az_and_aggregate() -> None:
    cloud = sc.pinned_and_bound()
    plan = plan_of(cloud).plan
    for _, m in plan.migrations():
        if m.vm in cloud.expect["stays"]:
            assert m.dst in cloud.expect["stays"][m.vm]


def test_disabled_host_is_never_a_destination_and_upgraded_host_is_in_no_wave() -> None:
    cloud = sc.disabled_and_upgraded()
    plan = plan_of(cloud).plan
    assert not set(cloud.expect["not_in_waves"]) & set(plan.hosts)
    assert not {m.dst for _, m in plan.migrations()} & set(cloud.expect["never_destination"])
    assert max(moves(plan).values()) == 1


def test_first_and_last_are_kept() -> None:
    cloud = sc.first_and_last()
    plan = plan_of(cloud).plan
    assert plan.waves[0].hosts == cloud.expect["first_wave"]
    assert plan.waves[-1].hosts == cloud.expect["last_wave"]


def test_disabled_host_goes_last_alone() -> None:
    # The pair of test_infeasible_cloud_says_why_in_operator_terms[disabled_host_before_last].
    cloud = sc.disabled_host_last()
    plan = plan_of(cloud).plan
    assert plan.waves[-1].hosts == cloud.expect["last_wave"]


@pytest.mark.parametrize("make", sc.INFEASIBLE, ids=lambda f: f.__name__)
def test_infeasible_cloud_says_why_in_operator_terms(make: object) -> None:
    cloud = make()  # type: ignore[operator]
    with pytest.raises(InfeasibleError) as info:
        solve(cloud.inventory, cloud.policy, FAST)
    text = " | ".join(info.value.reasons)
    for needle in cloud.expect["infeasible"]:
        assert needle in text, text


def test_anti_affinity_group_with_one_more_host_is_feasible() -> None:
    # The pair of test_infeasible_cloud_says_why_in_operator_terms[anti_affinity_too_wide].
    cloud = sc.anti_affinity_fits()
    plan = plan_of(cloud).plan
    assert len(plan.waves) == cloud.expect["waves"]


def test_greedy_deadlock_is_solved_by_cpsat() -> None:
    """The greedy fills one AZ's upgraded hosts and deadlocks on its last big hosts when VMs
    must first leave that AZ; CP-SAT plans the demand moving across AZs and meets the bound."""
    spec = GenerateSpec(hosts=12, vms_per_host=10, utilisation=0.5, seed=2)
    inv, policy = generate(spec), default_policy(spec)
    out = solve(inv, policy, FAST)
    assert check_plan(inv, out.plan).ok
    assert out.planner == "cpsat"
    assert len(out.plan.waves) == lower_bounds(inv, policy).waves


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------
def test_same_input_and_seed_give_the_same_plan() -> None:
    spec = GenerateSpec(hosts=16, vms_per_host=8, utilisation=0.6, seed=5)
    inv, policy = generate(spec), default_policy(spec)
    a = plan_to_dict(solve(inv, policy, SolveOptions(effort=0.5, seed=3)).plan)
    b = plan_to_dict(solve(inv, policy, SolveOptions(effort=0.5, seed=3)).plan)
    assert a == b
    assert a["generator"]["seed"] == 3


def test_two_workers_are_deterministic_too() -> None:
    cloud = sc.three_plus_spare()
    opts = SolveOptions(effort=0.3, workers=2)
    a = plan_to_dict(solve(cloud.inventory, cloud.policy, opts).plan)
    b = plan_to_dict(solve(cloud.inventory, cloud.policy, opts).plan)
    assert a == b


# ---------------------------------------------------------------------------------------------
# Random clouds
# ---------------------------------------------------------------------------------------------
clouds = st.builds(
    GenerateSpec,
    hosts=st.integers(3, 14),
    vms_per_host=st.sampled_from([2.0, 4.0, 8.0]),
    azs=st.integers(1, 2),
    utilisation=st.sampled_from([0.3, 0.5, 0.65]),
    controllers=st.sampled_from([0, 3]),
    disabled_hosts=st.integers(0, 1),
    upgraded_hosts=st.integers(0, 2),
    seed=st.integers(0, 10_000),
)
policies = st.fixed_dictionaries(
    {
        "max_hosts_per_wave": st.integers(1, 4),
        "failures": st.integers(0, 1),
        "scope": st.sampled_from(["az", "cloud"]),
        "allow_stop": st.booleans(),
        "per_az": st.sampled_from([None, 1]),
        "first": st.sampled_from([(), ("role=controller",)]),
    }
)


def _policy(spec: GenerateSpec, p: dict[str, Any]) -> Policy:
    return default_policy(spec).with_changes(
        max_hosts_per_wave=p["max_hosts_per_wave"],
        max_hosts_per_wave_per_az=p["per_az"],
        allow_stop=p["allow_stop"],
        first=p["first"],
        **{"headroom.failures": p["failures"], "headroom.scope": p["scope"]},
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=clouds, p=policies)
def test_every_plan_passes_the_checker_and_no_plan_beats_a_bound(
    spec: GenerateSpec, p: dict[str, object]
) -> None:
    inv = generate(spec)
    policy = _policy(spec, p)
    lb = lower_bounds(inv, policy)
    try:
        out = solve(inv, policy, SolveOptions(effort=0.3))
    except InfeasibleError as exc:
        assert exc.reasons and all(isinstance(r, str) and r for r in exc.reasons)
        return
    report = check_plan(inv, out.plan)
    assert report.ok, [str(v) for v in report.violations[:5]]
    assert len(out.plan.waves) >= lb.waves
    assert report.metrics["migrations"] >= lb.migrations
    if not lb.infeasible:
        return
    raise AssertionError(f"a plan exists although the bounds say: {lb.infeasible}")


@settings(max_examples=25, deadline=None)
@given(spec=clouds, p=policies)
def test_greedy_plans_never_beat_a_bound_either(spec: GenerateSpec, p: dict[str, object]) -> None:
    inv = generate(spec)
    policy = _policy(spec, p)
    lb = lower_bounds(inv, policy)
    try:
        plan = greedy_plan(inv, policy)
    except InfeasibleError:
        return
    report = check_plan(inv, plan)
    if report.ok:
        assert len(plan.waves) >= lb.waves
        assert report.metrics["migrations"] >= lb.migrations
