"""Lower bounds: hand-computed cases for each bound, and validity against every valid plan the
greedy or the tiny search planner finds (no valid plan does better than a bound; a cloud the
bounds call infeasible has no valid plan)."""

from __future__ import annotations

from hypothesis import assume, given, settings

from planner.bounds import lower_bounds
from planner.checker import check_plan
from planner.errors import InfeasibleError
from planner.inventory import Inventory
from planner.plan import Plan
from planner.policy import Policy
from solver.greedy import greedy_plan
from tests.clouds import NAMED, Cloud, ha_trio, mixed_methods, policy, three_plus_spare
from tests.strategies import clouds_and_policies
from tests.tiny_planner import tiny_plan


def test_bounds_of_the_named_fixtures_hold_for_their_plans() -> None:
    for name, make in NAMED.items():
        fx = make()
        lb = lower_bounds(fx.inventory, fx.policy)
        moves = sum(len(w.migrations) for w in fx.plan.waves)
        assert lb.infeasible == (), name
        assert len(fx.plan.waves) >= lb.waves, name
        assert moves >= lb.migrations, name


def test_max_hosts_per_wave_bound() -> None:
    c = Cloud()
    for i in range(7):
        c.host(f"h{i}", az=f"az{i % 2 + 1}", rack=f"r{i % 3}")
    inv = c.build()
    lb = lower_bounds(inv, policy(3, failures=0))
    assert lb.wave_bounds["max_hosts_per_wave"] == 3
    assert lb.waves == 3
    lb = lower_bounds(inv, policy(3, failures=0, max_hosts_per_wave_per_az=1))
    assert lb.wave_bounds["max_hosts_per_wave_per_az (az1)"] == 4  # 4 hosts in az1
    assert lb.waves == 4
    lb = lower_bounds(inv, policy(7, failures=0, max_hosts_per_wave_per_rack=1))
    assert lb.wave_bounds["max_hosts_per_wave_per_rack (r0)"] == 3
    assert lb.waves == 3


def test_ha_group_bound() -> None:
    fx = ha_trio()  # 3 controllers, 2 must stay up: one a wave
    lb = lower_bounds(fx.inventory, fx.policy)
    assert lb.wave_bounds["ha_group control-plane"] == 3
    # Controllers first take waves 1-3; the last of them shares wave 3 with at most one of the
    # two computes (max_hosts_per_wave 2), so the tiers need 4 waves together.
    assert lb.wave_bounds["order (first/last)"] == 4
    assert lb.waves == 4 <= len(fx.plan.waves)
    stuck = Cloud().controller("c1").controller("c2").host("h").ha("q", ["c1", "c2"], 2).build()
    lb = lower_bounds(stuck, policy(2, failures=0))
    assert lb.infeasible and "HA group q" in lb.infeasible[0]


def test_migration_bound_counts_vms_that_must_move() -> None:
    fx = mixed_methods()  # 4 VMs on cmp-1; the `none` one may be stopped
    assert lower_bounds(fx.inventory, fx.policy).migrations == 3
    strict = fx.policy.with_changes(allow_stop=False)
    lb = lower_bounds(fx.inventory, strict)
    assert lb.migrations == 4
    assert any("pinned-pci" in r and "allow_stop" in r for r in lb.infeasible)


def test_headroom_bound_by_hand() -> None:
    # Four 16-VCPU hosts holding 24 VCPU, N+1: with m hosts down the rest has 16 (4 - m) - 24
    # free against 16 needed: m <= 1.5, so one host at a time and four waves.
    c = Cloud().hosts_("a", "b", "c", "d", vcpu=16, ram_mb=1 << 20, disk_gb=10**6)
    for i, h in enumerate("abc"):
        c.vm(f"v{i}", h, vcpu=8, ram_mb=1024, disk_gb=10)
    inv = c.build()
    lb = lower_bounds(inv, policy(4, failures=1))
    assert lb.max_compute_hosts_down == 1
    assert lb.wave_bounds["headroom"] == 4
    assert lower_bounds(inv, policy(4, failures=0)).max_compute_hosts_down == 2
    full = c.vm("v9", "d", vcpu=16, ram_mb=1024, disk_gb=10).build()
    lb = lower_bounds(full, policy(4, failures=1))
    assert lb.max_compute_hosts_down == 0
    assert lb.infeasible and lb.infeasible[0].startswith("headroom:")


def test_no_work_no_bounds() -> None:
    fx = three_plus_spare()
    lb = lower_bounds(fx.inventory, fx.policy.with_changes(target_version="2025.1"))
    assert (lb.waves, lb.migrations, lb.infeasible) == (0, 0, ())


def _valid_plan(inv: Inventory, pol: Policy) -> Plan | None:
    plan: Plan | None
    try:
        plan = greedy_plan(inv, pol)
    except InfeasibleError:
        plan = tiny_plan(inv, pol, budget=150)
    if plan is None or not check_plan(inv, plan).ok:
        return None
    return plan


@settings(max_examples=120)
@given(clouds_and_policies())
def test_lower_bounds_are_valid(case: tuple[Inventory, Policy]) -> None:
    inv, pol = case
    lb = lower_bounds(inv, pol)
    plan = _valid_plan(inv, pol)
    assume(plan is not None)
    assert plan is not None
    assert lb.infeasible == (), "the bounds call a cloud infeasible that has a valid plan"
    assert len(plan.waves) >= lb.waves, lb.wave_bounds
    assert sum(len(w.migrations) for w in plan.waves) >= lb.migrations
    if lb.max_compute_hosts_down is not None:
        down = max(
            sum(1 for h in w.hosts if inv.host(h).is_compute and inv.host(h).available)
            for w in plan.waves
        )
        assert down <= lb.max_compute_hosts_down
