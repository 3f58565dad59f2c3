"""The planner on tight clouds (`tests.solver_clouds.tight_cloud`): it must not lose waves there
(regression thresholds), and the greedy planner keeps to the time limit."""

from __future__ import annotations

import dataclasses
import time

import pytest

from planner.bounds import lower_bounds
from planner.checker import check_plan
from planner.errors import InfeasibleError
from planner.generate import GenerateSpec, default_policy, generate
from planner.inventory import Inventory
from planner.policy import Policy
from solver.greedy import TimeLimitReached, greedy_plan
from solver.solve import SolveOptions, solve
from tests import solver_clouds as sc


@pytest.mark.parametrize("name", ["gens-40-s11", "gens-40-s12", "quarter-200"])
def test_tight_cloud_keeps_its_waves(name: str) -> None:
    cloud = sc.tight_cloud(name)
    out = solve(cloud.inventory, cloud.policy, SolveOptions(seed=0))
    report = check_plan(cloud.inventory, out.plan)
    assert report.ok, [str(v) for v in report.violations[:3]]
    assert len(out.plan.waves) <= cloud.expect["waves"], out.notes
    assert out.lower_bounds.waves == cloud.expect["bound"]
    assert len(out.plan.waves) >= out.lower_bounds.waves


def test_tight_cloud_bound_is_met_where_the_packing_bound_applies() -> None:
    # 40 hosts of three generations: counting hosts says 20 waves, packing them says 30, and
    # the planner needs 30.
    cloud = sc.tight_cloud("gens-40-s12")
    lb = lower_bounds(cloud.inventory, cloud.policy)
    assert lb.wave_bounds["headroom"] == 20
    assert lb.wave_bounds["headroom (packing)"] == cloud.expect["bound"] == 30


def _small() -> tuple[Inventory, Policy]:
    spec = GenerateSpec(hosts=30, seed=3)
    return generate(spec), default_policy(spec)


def test_greedy_stops_at_its_deadline() -> None:
    inv, pol = _small()
    with pytest.raises(TimeLimitReached, match="time limit"):
        greedy_plan(inv, pol, deadline=time.monotonic() - 1.0)


def test_greedy_without_deadline_or_within_it_plans() -> None:
    inv, pol = _small()
    plan = greedy_plan(inv, pol, deadline=time.monotonic() + 600)
    assert check_plan(inv, plan).ok


def test_solve_with_the_greedy_keeps_to_the_time_limit() -> None:
    inv, pol = _small()
    with pytest.raises(InfeasibleError, match="time limit"):
        solve(inv, pol, SolveOptions(planner="greedy", time_limit=0.0))


def test_a_plan_the_checker_rejects_never_comes_out() -> None:
    """Four hosts, two AZs, N+1 per AZ: a VM sent into az2 in wave 1 must land on the host that
    goes down in wave 3 (the wave model plans it to leave again then), not on the other one,
    which must be empty in wave 3. The placement phase does not know that (a known limit), and
    its plan breaks headroom; solve() must say so and fall back, never return that plan."""
    spec = GenerateSpec(hosts=4, vms_per_host=2.0, azs=2, utilisation=0.3, controllers=0, seed=221)
    spec = dataclasses.replace(spec, disabled_hosts=0)
    pol = default_policy(spec).with_changes(
        max_hosts_per_wave=1, allow_stop=False, **{"headroom.failures": 1}
    )
    inv = generate(spec)
    try:
        out = solve(inv, pol, SolveOptions(effort=0.3))
    except InfeasibleError as exc:
        assert "breaks a rule" in str(exc) and "not proven" in str(exc)
        return
    assert out.check is not None and out.check.ok
    assert check_plan(inv, out.plan).ok
