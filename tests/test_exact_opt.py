"""Fewest migrations on small clouds (`solver.exact_opt`): the exact model with an objective,
started from a plan. A cloud whose optimum is known by hand (the model finds it from a worse
plan and proves it), a plan already minimal (proven, nothing better), the first-wave bound by
hand, `solve()` and `rollwave plan` saying so, and the property: on small random clouds the
exact plan is valid, and never moves more VMs than the greedy's with as many waves (it may
with fewer: fewest waves first)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from planner.bounds import lower_bounds
from planner.checker import check_plan
from planner.cli import main
from planner.errors import InfeasibleError
from planner.formats import save_inventory, save_policy
from planner.inventory import Inventory
from planner.plan import Plan
from planner.policy import Policy
from solver.context import build_context
from solver.exact_opt import Optimum, first_wave_bound, optimise
from solver.greedy import greedy_plan
from solver.params import SolveParams
from solver.solve import SolveOptions, solve
from tests import solver_clouds as sc
from tests.clouds import Cloud, make_plan, mv, policy, three_plus_spare, wave
from tests.strategies import clouds_and_policies


def _migrations(plan: Plan) -> int:
    return sum(len(w.migrations) for w in plan.waves)


def _optimise(inv: Inventory, pol: Policy, plan: Plan, dtime: float = 3.0) -> Optimum:
    ctx = build_context(inv, pol)
    lb = lower_bounds(inv, pol)
    got = optimise(
        ctx,
        SolveParams(time_limit=120),
        plan,
        wave_bound=lb.waves,
        dtime=dtime,
    )
    assert got is not None
    return got


def detour_plan() -> tuple[Inventory, Policy, Plan]:
    """three_plus_spare with a plan that sends cmp-1's VMs to the spare before it is upgraded:
    they move twice (8 migrations); upgrading the spare first moves every VM once (6)."""
    f = three_plus_spare()
    plan = make_plan(
        f.policy,
        wave(1, ["cmp-1"], [mv("vm-1a", "cmp-1", "cmp-4"), mv("vm-1b", "cmp-1", "cmp-4")]),
        wave(2, ["cmp-4"], [mv("vm-1a", "cmp-4", "cmp-1"), mv("vm-1b", "cmp-4", "cmp-1")]),
        wave(3, ["cmp-2"], [mv("vm-2a", "cmp-2", "cmp-4"), mv("vm-2b", "cmp-2", "cmp-4")]),
        wave(4, ["cmp-3"], [mv("vm-3a", "cmp-3", "cmp-2"), mv("vm-3b", "cmp-3", "cmp-2")]),
    )
    return f.inventory, f.policy, plan


def test_finds_and_proves_the_hand_optimum_from_a_worse_plan() -> None:
    inv, pol, plan = detour_plan()
    assert check_plan(inv, plan, digest="").ok
    assert _migrations(plan) == 8
    got = _optimise(inv, pol, plan)
    assert got.plan is not None
    assert check_plan(inv, got.plan, digest="").ok
    assert (got.waves, got.migrations) == (4, 6) == (len(got.plan.waves), _migrations(got.plan))
    assert got.status == "optimal" and got.bound == 6 and got.gap == 0
    assert got.plan.waves[0].hosts == ("cmp-4",)  # the empty spare first


def test_a_minimal_plan_is_proven_and_kept() -> None:
    f = three_plus_spare()
    got = _optimise(f.inventory, f.policy, f.plan)
    assert got.plan is None  # nothing better exists
    assert got.status == "optimal" and (got.migrations, got.bound) == (6, 6)


def test_proves_no_fewer_than_the_plan_when_every_host_carries_vms() -> None:
    """Two hosts, one VM each, room for both: whichever goes first sends its VM to the other,
    not yet upgraded, so it moves again: 3 migrations at least, and 3 is what the plan does."""
    inv = Cloud().host("cmp-1").host("cmp-2").vm("a", "cmp-1").vm("b", "cmp-2").build()
    pol = policy(1, failures=0)
    plan = make_plan(
        pol,
        wave(1, ["cmp-1"], [mv("a", "cmp-1", "cmp-2")]),
        wave(2, ["cmp-2"], [mv("a", "cmp-2", "cmp-1"), mv("b", "cmp-2", "cmp-1")]),
    )
    assert check_plan(inv, plan, digest="").ok
    assert first_wave_bound(build_context(inv, pol)) == 3
    got = _optimise(inv, pol, plan)
    assert got.plan is None and got.status == "optimal" and got.bound == 3


def test_a_gap_is_not_called_optimal() -> None:
    """Without budget the model decides nothing: the plan's 8 stays, against the bound 6."""
    inv, pol, plan = detour_plan()
    got = _optimise(inv, pol, plan, dtime=0.0)
    assert got.plan is None and got.status == "gap" and (got.migrations, got.bound) == (8, 6)


def _two_az(pinned: bool) -> tuple[Inventory, Policy]:
    c = Cloud()
    for az in ("az1", "az2"):
        for i in (1, 2):
            c.host(f"{az}-{i}", az=az)
            c.vm(f"{az}-{i}-vm", f"{az}-{i}", az=az if pinned else None)
    return c.build(), policy(1, failures=0)


def test_first_wave_bound_by_hand() -> None:
    # 4 VMs, each host carries one: the first wave's VM moves twice; pinned to their AZ, each
    # AZ has its own first wave
    inv, pol = _two_az(pinned=False)
    assert first_wave_bound(build_context(inv, pol)) == 4 + 1
    inv, pol = _two_az(pinned=True)
    assert first_wave_bound(build_context(inv, pol)) == 4 + 2
    # an empty host takes the first wave's VMs: every VM once
    f = three_plus_spare()
    assert first_wave_bound(build_context(f.inventory, f.policy)) == 6


def test_solve_says_the_migrations_are_minimal() -> None:
    f = three_plus_spare()
    out = solve(f.inventory, f.policy, SolveOptions(time_limit=60))
    assert out.check is not None and out.check.ok
    assert out.stats["exact"]["status"] == "optimal"
    assert _migrations(out.plan) == out.stats["exact"]["migrations"] == 6


def test_cli_plan_shows_the_proof(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = three_plus_spare()
    inv_p, pol_p, out_p = tmp_path / "inv.json", tmp_path / "pol.json", tmp_path / "plan.json"
    save_inventory(f.inventory, inv_p)
    save_policy(f.policy, pol_p)
    with pytest.raises(SystemExit) as info:
        main(["plan", str(inv_p), "--policy", str(pol_p), "-o", str(out_p)])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "fewest migrations (exact)" in text and "proven minimal" in text
    summary = json.loads(out_p.read_text())["summary"]
    assert summary["migrations_minimal"]["status"] == "optimal"
    assert summary["migrations_minimal"]["bound"] == summary["migrations"] == 6


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 400))
@example(seed=245)
def test_exact_plan_is_valid_and_never_worse_than_the_greedy(seed: int) -> None:
    cloud = sc.small_two_az(seed)
    inv, pol = cloud.inventory, cloud.policy
    try:
        greedy = greedy_plan(inv, pol)
    except InfeasibleError:
        assume(False)
        return
    assume(check_plan(inv, greedy, digest="").ok)
    # the first-wave bound holds for every valid plan
    assert first_wave_bound(build_context(inv, pol)) <= _migrations(greedy)
    got = _optimise(inv, pol, greedy, dtime=1.0)
    assert got.bound <= got.migrations
    # fewest waves first (seed 245: 5 waves and 22 migrations against the greedy's 6 and 21),
    # then never more migrations than the greedy's
    assert (got.waves, got.migrations) <= (len(greedy.waves), _migrations(greedy))
    if got.waves == len(greedy.waves):
        assert got.migrations <= _migrations(greedy)
    if got.plan is not None:
        assert check_plan(inv, got.plan, digest="").ok
        assert (len(got.plan.waves), _migrations(got.plan)) == (got.waves, got.migrations)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(cp=clouds_and_policies())
def test_on_random_clouds_the_bound_holds_and_the_exact_plan_is_valid(
    cp: tuple[Inventory, Policy],
) -> None:
    inv, pol = cp
    try:
        greedy = greedy_plan(inv, pol)
    except InfeasibleError:
        assume(False)
        return
    assume(check_plan(inv, greedy, digest="").ok)
    assert first_wave_bound(build_context(inv, pol)) <= _migrations(greedy)
    got = optimise(
        build_context(inv, pol),
        SolveParams(time_limit=60),
        greedy,
        wave_bound=lower_bounds(inv, pol).waves,
        dtime=0.5,
    )
    if got is None:  # too large for the model
        return
    assert got.bound <= got.migrations
    assert (got.waves, got.migrations) <= (len(greedy.waves), _migrations(greedy))
    if got.plan is not None:
        assert check_plan(inv, got.plan, digest="").ok
