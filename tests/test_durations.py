"""Durations shape the waves (`solver.durations`): hosts of one kind swap waves so that long
drains go together; the waves, the VMs moved and the stops stay, the checker accepts the plan,
and the sum of the waves' predicted lock-step durations does not grow."""

from __future__ import annotations

from collections import Counter

import pytest

from planner.app import predict
from planner.app.planning import plan_with_predictions
from planner.checker import check_plan
from planner.estimates import How
from planner.generate import GenerateSpec, default_policy, generate
from planner.inventory import Inventory
from planner.plan import Plan
from planner.policy import Policy
from sim.model import DEFAULT
from solver import durations
from solver.solve import SolveOptions, solve


@pytest.fixture(scope="module")
def cloud() -> tuple[Inventory, Policy, Plan]:
    spec = GenerateSpec(hosts=60, seed=1)
    inv, pol = generate(spec), default_policy(spec)
    return inv, pol, solve(inv, pol, SolveOptions(planner="greedy")).plan


def _remedies(plan: Plan) -> dict[str, How]:
    return {m.vm: m.remedy for _, m in plan.migrations() if m.remedy is not None}


def _how(plan: Plan, remedies: dict[str, How]) -> dict[str, How]:
    return {m.vm: predict.how_of(m, remedies) for _, m in plan.migrations()}


def test_shaping_keeps_waves_and_moves_and_shortens(cloud: tuple[Inventory, Policy, Plan]) -> None:
    inv, pol, plan = cloud
    ph = predict.predict(inv, pol, DEFAULT)
    remedies = predict.choose_remedies(inv, pol, ph.est)
    shaped = durations.shape(inv, plan, ph.est, _how(plan, remedies))
    new = shaped.plan
    assert shaped.swaps > 0 and shaped.after_s < shaped.before_s
    assert len(new.waves) == len(plan.waves)
    assert [len(w.hosts) for w in new.waves] == [len(w.hosts) for w in plan.waves]
    assert Counter(m.vm for _, m in new.migrations()) == Counter(m.vm for _, m in plan.migrations())
    assert sorted(s.vm for w in new.waves for s in w.stops) == sorted(
        s.vm for w in plan.waves for s in w.stops
    )
    assert sorted(new.hosts) == sorted(plan.hosts)
    assert check_plan(inv, new).ok
    # the sums are what they claim: each wave's slowest host
    dur = durations.host_durations(inv, new, ph.est, _how(plan, remedies))
    got = sum(max(dur[h] for h in w.hosts) for w in new.waves)
    assert got == pytest.approx(shaped.after_s)
    before = durations.host_durations(inv, plan, ph.est, _how(plan, remedies))
    assert sum(max(before[h] for h in w.hosts) for w in plan.waves) == pytest.approx(
        shaped.before_s
    )


def test_a_host_swaps_only_with_one_of_its_kind(cloud: tuple[Inventory, Policy, Plan]) -> None:
    inv, pol, plan = cloud
    ph = predict.predict(inv, pol, DEFAULT)
    new = durations.shape(inv, plan, ph.est, _how(plan, {})).plan
    kinds_before = [
        Counter(durations._kind(inv, pol, inv.host(h)) for h in w.hosts) for w in plan.waves
    ]
    kinds_after = [
        Counter(durations._kind(inv, pol, inv.host(h)) for h in w.hosts) for w in new.waves
    ]
    assert kinds_before == kinds_after
    assert [w.hosts for w in new.waves] != [w.hosts for w in plan.waves]


def test_the_planner_writes_the_shaped_plan(cloud: tuple[Inventory, Policy, Plan]) -> None:
    inv, pol, _ = cloud
    plan, _, outcome, ph = plan_with_predictions(inv, pol, SolveOptions(planner="greedy"))
    d = outcome.stats["durations"]
    assert d["swaps"] > 0 and d["after_s"] < d["before_s"]
    # the pass works on the hosts' median maintenance; the plan's waves last the expected
    # slowest of their hosts' (upgrade times drawn): more, never less
    lock = plan.summary["predicted_makespan_s"]["lockstep"]
    assert lock >= d["after_s"]
    how = {m.vm: predict.how_of(m, _remedies(plan)) for _, m in plan.migrations()}
    dur = durations.host_durations(inv, plan, ph.est, how, ph.shutdown_s)
    assert sum(max(dur[h] for h in w.hosts) for w in plan.waves) == pytest.approx(
        d["after_s"], abs=0.01
    )
    assert check_plan(inv, plan, estimates=ph.est).ok
