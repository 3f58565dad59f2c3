"""The packing bound on waves (`planner.bounds.packing_waves`, `headroom_knapsacks`): the bin
packing argument against brute force, the knapsacks against every wave of valid plans, and the
bound on the tight clouds where it matters (hardware generations of different sizes)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from planner.bounds import headroom_knapsacks, lower_bounds, packing_waves
from planner.checker import check_plan
from planner.errors import InfeasibleError
from planner.generate import GenerateSpec, default_policy, generate
from planner.inventory import Inventory
from planner.plan import Plan, Stop, Wave
from planner.policy import Headroom, Policy
from solver.greedy import greedy_plan
from solver.solve import SolveOptions, solve
from tests.solver_clouds import fill, host, policy
from tests.strategies import clouds_and_policies


def _partitions(items: list[int]) -> Iterator[list[list[int]]]:
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _partitions(rest):
        yield [[first], *part]
        for i in range(len(part)):
            yield [*part[:i], [first, *part[i]], *part[i + 1 :]]


def _fewest_bins(weights: list[float], budget: float, per_wave: int) -> int | None:
    best: int | None = None
    for part in _partitions(list(range(len(weights)))):
        if all(len(b) <= per_wave and sum(weights[i] for i in b) <= budget for b in part):
            best = len(part) if best is None else min(best, len(part))
    return best


@settings(max_examples=300, deadline=None)
@given(
    weights=st.lists(st.integers(-20, 100), min_size=1, max_size=7),
    budget=st.integers(1, 160),
    per_wave=st.integers(1, 4),
)
def test_packing_bound_never_exceeds_the_fewest_bins(
    weights: list[int], budget: int, per_wave: int
) -> None:
    exact = _fewest_bins([float(w) for w in weights], float(budget), per_wave)
    bound = packing_waves([float(w) for w in weights], float(budget), per_wave)
    if exact is None:
        return  # some item fits in no bin: the bound may say anything (other checks speak)
    assert bound <= exact


def test_packing_bound_by_hand() -> None:
    # Budget 10, two a wave: the 7s conflict with each other and with the 4s; a 3 joins a 7.
    assert packing_waves([7, 7, 7, 3, 3, 4, 4], 10, 2) == 4  # 7+3, 7+3, 7, 4+4
    assert packing_waves([7, 7, 7, 3, 4, 4, 4], 10, 2) == 5  # 7+3, 7, 7, 4+4, 4
    assert packing_waves([6, 6, 6, 6], 10, 4) == 4  # heavy items, a bin each
    assert packing_waves([2, 2, 2, 2, 2, 2], 10, 4) == 2  # the count: 6 / 4
    assert packing_waves([5, 5, 5, 5], 10, 4) == 2  # the weight: 20 / 10
    # A negative item lets two heavy ones share a bin (three a wave).
    assert packing_waves([6, 6, -3], 10, 3) == 1
    assert packing_waves([11, 1], 10, 2) == 0  # an item that fits nowhere: no claim


def _down_sets(inv: Inventory, plan: Plan) -> list[set[str]]:
    return [set(w.hosts) for w in plan.waves]


def _knapsacks_hold(inv: Inventory, pol: Policy, plan: Plan) -> None:
    for ks in headroom_knapsacks(inv, pol):
        tol = 1e-6 * (abs(ks.budget) + 1)
        for w, down in enumerate(_down_sets(inv, plan)):
            load = sum(ks.weight.get(h, 0.0) for h in down)
            assert load <= ks.budget + tol, (ks.rc, ks.part, w + 1, load, ks.budget)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clouds_and_policies(min_wave=2, max_fill=0.9))
def test_every_wave_of_a_valid_plan_fits_every_knapsack(case: tuple[Inventory, Policy]) -> None:
    inv, pol = case
    try:
        plan = solve(inv, pol, SolveOptions(effort=0.2)).plan
    except InfeasibleError:
        assume(False)
        return
    assume(check_plan(inv, plan).ok)
    _knapsacks_hold(inv, pol, plan)
    assert len(plan.waves) >= lower_bounds(inv, pol).waves


tight_specs = st.builds(
    GenerateSpec,
    hosts=st.integers(6, 16),
    vms_per_host=st.sampled_from([3.0, 6.0]),
    azs=st.integers(1, 2),
    utilisation=st.sampled_from([0.6, 0.7, 0.75]),
    controllers=st.sampled_from([0, 3]),
    upgraded_hosts=st.integers(0, 2),
    seed=st.integers(0, 10_000),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=tight_specs,
    reserve=st.sampled_from([0.0, 10.0, 20.0]),
    per_wave=st.integers(2, 5),
    scope=st.sampled_from(["az", "cloud"]),
)
def test_no_plan_beats_the_packing_bound_on_tight_generated_clouds(
    spec: GenerateSpec, reserve: float, per_wave: int, scope: str
) -> None:
    inv = generate(spec)
    pol = dataclasses.replace(
        default_policy(spec),
        max_hosts_per_wave=per_wave,
        headroom=Headroom(1, scope, reserve),  # type: ignore[arg-type]
    )
    lb = lower_bounds(inv, pol)
    plans = []
    with contextlib.suppress(InfeasibleError):
        plans.append(solve(inv, pol, SolveOptions(effort=0.2)).plan)
    with contextlib.suppress(InfeasibleError):
        plans.append(greedy_plan(inv, pol))
    for plan in plans:
        if check_plan(inv, plan).ok:
            _knapsacks_hold(inv, pol, plan)
            assert len(plan.waves) >= lb.waves, lb.wave_bounds


def test_big_hosts_cannot_go_down_together() -> None:
    """40 hosts of three generations at 75% memory with a 20% reserve: two hosts of the middle
    generation, or a large one with any other, leave too little free; the packing bound finds
    the 30 waves the planner achieves where counting hosts (m_cap) finds 20."""
    spec = GenerateSpec(hosts=40, azs=1, utilisation=0.75, vms_per_host=12, seed=12, controllers=0)
    inv = generate(spec)
    pol = dataclasses.replace(default_policy(spec), headroom=Headroom(1, "az", 20.0))
    lb = lower_bounds(inv, pol)
    assert lb.wave_bounds["headroom"] == 20
    assert lb.wave_bounds["headroom (packing)"] == 30
    assert lb.waves == 30


def test_tier_bound_ignores_knapsacks_a_later_tier_can_loosen() -> None:
    """Two empty hosts and, in policy.last, a host full of VMs that are stopped in place, with a
    50% reserve: in the reserve knapsack the empty hosts weigh 32 GiB each against a budget of
    32 GiB, the full one -32 GiB. All three down together keep the rule (nothing is left that
    needs a reserve), so one wave is optimal: the tiers' bound must not count the empty hosts'
    two waves, since the last tier's host shares their wave and makes room."""
    hosts = [host(n, mem=64) for n in ("cmp-a", "cmp-b", "cmp-l")]
    vms = fill("cmp-l", 8, mem=8, migration="none")
    inv = Inventory(cloud="t", taken_at="2026-01-01T00:00:00Z", hosts=tuple(hosts), vms=tuple(vms))
    pol = policy(
        max_hosts_per_wave=3,
        scope="cloud",
        reserve_percent=50.0,
        allow_stop=True,
        last=("cmp-l",),
    )
    reserve = next(
        ks for ks in headroom_knapsacks(inv, pol) if ks.rc == "MEMORY_MB" and ks.part == "reserve"
    )
    expect = {"cmp-a": 32 * 1024, "cmp-b": 32 * 1024, "cmp-l": -32 * 1024}
    assert reserve.weight == pytest.approx(expect)
    assert reserve.budget == pytest.approx(32 * 1024)
    one_wave = Plan(
        inventory_sha256="",
        policy=pol,
        waves=(
            Wave(
                1,
                ("cmp-a", "cmp-b", "cmp-l"),
                (),
                tuple(Stop(v.id, "cmp-l") for v in vms),
            ),
        ),
    )
    assert check_plan(inv, one_wave).ok, check_plan(inv, one_wave).violations
    assert lower_bounds(inv, pol).waves == 1
