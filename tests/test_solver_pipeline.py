"""The pass that plans for pipelining (`solver.pipeline`): evacuees sent up to their
destinations' capacity when the plan keeps its hosts below it (`redirect(full=True)`), and the
waits gathered on the hosts predicted back first (`gather`); both keep every VM's source and
wave, the checker accepts the result, and the pass keeps only what lowers the prediction."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from planner.app import predict
from planner.checker import check_plan
from planner.estimates import How
from planner.generate import GenerateSpec, default_policy, generate
from planner.inventory import Inventory
from planner.pipelined import maintenance_of, replay
from planner.plan import Plan
from sim.model import DEFAULT
from solver import pipeline
from solver.durations import _Usage
from solver.solve import SolveOptions, solve

Cloud = tuple[Inventory, Plan, dict[str, How], predict.Physics]


def _cloud(spec: GenerateSpec) -> Cloud:
    inv, pol = generate(spec), default_policy(spec)
    plan = solve(inv, pol, SolveOptions(planner="greedy")).plan
    ph = predict.predict(inv, pol, DEFAULT)
    remedies = predict.choose_remedies(inv, pol, ph.est)
    how = {m.vm: predict.how_of(m, remedies) for _, m in plan.migrations()}
    return inv, plan, how, ph


@pytest.fixture(scope="module")
def loose() -> Cloud:
    """Large flavors at 0.6: the planner leaves every host below its capacity."""
    return _cloud(GenerateSpec(hosts=40, seed=7, utilisation=0.6, flavor_mix="large"))


@pytest.fixture(scope="module")
def full() -> Cloud:
    """The default mix at 0.7: the fullest host as solved is full."""
    return _cloud(GenerateSpec(hosts=60, seed=1))


def _same_moves(a: Plan, b: Plan) -> None:
    assert [w.hosts for w in a.waves] == [w.hosts for w in b.waves]
    for x, y in zip(a.waves, b.waves, strict=True):
        assert [(m.vm, m.src) for m in x.migrations] == [(m.vm, m.src) for m in y.migrations]
        assert x.stops == y.stops


def _fullest(inv: Inventory, plan: Plan) -> float:
    u = _Usage(inv, plan)
    cap = u.cap[:, None, :]
    util = np.where(cap > 0, u.used / np.maximum(cap, 1), 0.0)
    return float(util.max())


def test_full_redirect_uses_room_the_balance_as_solved_left(loose: Cloud) -> None:
    inv, plan, _, _ = loose
    n, balanced = pipeline.redirect(inv, plan, 2)
    m, filled = pipeline.redirect(inv, plan, 2, full=True)
    assert n > 0 and m > n
    for got in (balanced, filled):
        _same_moves(plan, got)
        assert check_plan(inv, got).ok
    worst = _fullest(inv, plan)
    assert worst < 1.0
    assert _fullest(inv, balanced) <= worst + 1e-9  # no host fuller than the fullest as solved
    assert _fullest(inv, filled) > worst  # some host filled past it, within its capacity


def test_full_redirect_is_the_balanced_one_when_the_fullest_host_is_full(full: Cloud) -> None:
    inv, plan, _, _ = full
    assert _fullest(inv, plan) == pytest.approx(1.0) and _Usage(inv, plan, True).balanced
    assert pipeline.redirect(inv, plan, 2, full=True) == (0, plan)
    assert pipeline.redirect(inv, plan, 2)[0] > 0


def test_gather_sends_waits_to_hosts_back_sooner(loose: Cloud) -> None:
    inv, plan, how, ph = loose
    lag = 2
    _, red = pipeline.redirect(inv, plan, lag)
    mt = maintenance_of(inv, red, ph.est, how, ph.shutdown_s)
    ordered = pipeline.longest_first(red, mt, lag)
    back = replay(inv, ordered, mt, "pipelined").end_s
    n, got = pipeline.gather(inv, ordered, lag, back)
    assert n > 0
    _same_moves(ordered, got)
    assert check_plan(inv, got).ok
    wave = {h: w.index for w in got.waves for h in w.hosts}
    changed = 0
    for a, b in zip(ordered.waves, got.waves, strict=True):
        for m0, m1 in zip(a.migrations, b.migrations, strict=True):
            if m0.dst == m1.dst:
                continue
            changed += 1
            assert 0 < a.index - wave[m0.dst] < lag and 0 < a.index - wave[m1.dst] < lag
            assert back[m1.dst] < back[m0.dst]
            h0, h1 = inv.host(m0.dst), inv.host(m1.dst)
            assert (h0.az, sorted(h0.aggregates)) == (h1.az, sorted(h1.aggregates))
    assert changed == n


def test_gather_moves_nothing_when_the_destinations_are_back_first(loose: Cloud) -> None:
    inv, plan, _, _ = loose
    _, red = pipeline.redirect(inv, plan, 2)
    dsts = {m.dst for _, m in red.migrations()}
    back = {h: 0.0 if h in dsts else 1e9 for w in red.waves for h in w.hosts}
    assert pipeline.gather(inv, red, 2, back) == (0, red)


def test_the_pass_keeps_the_least_predicted_makespan(loose: Cloud) -> None:
    inv, plan, how, ph = loose
    got = pipeline.plan_for_pipelining(inv, plan, ph.est, how, ph.shutdown_s)
    assert got.after_s < got.before_s
    _same_moves(plan, replace_hosts(got.plan, plan))
    assert check_plan(inv, got.plan).ok
    mt = maintenance_of(inv, got.plan, ph.est, how, ph.shutdown_s)
    assert replay(inv, got.plan, mt).makespan_s == pytest.approx(got.after_s)
    # no other try of the pass predicts less
    for full in (False, True):
        n, red = pipeline.redirect(inv, plan, got.lag or 2, full)
        if n:
            other = pipeline.longest_first(red, mt, got.lag or 2)
            assert replay(inv, other, mt, "pipelined").makespan_s >= got.after_s - 1e-6
    counts = Counter(m.dst for _, m in got.plan.migrations())
    assert sum(counts.values()) == sum(1 for _ in plan.migrations())


def replace_hosts(new: Plan, like: Plan) -> Plan:
    """`new` with each wave's hosts in `like`'s order (the pass reorders them)."""
    waves = tuple(replace(w, hosts=o.hosts) for w, o in zip(new.waves, like.waves, strict=True))
    return replace(new, waves=waves)
