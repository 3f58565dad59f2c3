"""The planner on tight clouds (`tests.solver_clouds.tight_cloud`): it must not lose waves there
(regression thresholds), and the greedy planner keeps to the time limit."""

from __future__ import annotations

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
