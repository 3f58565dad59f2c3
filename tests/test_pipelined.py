"""The predicted pipelined makespan (`planner.pipelined`: admission replayed over predicted
durations) and the solver's pass that plans for pipelining (`solver.pipeline`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from planner.app import predict
from planner.app.planning import plan_with_predictions
from planner.checker import check_plan
from planner.estimates import How
from planner.generate import GenerateSpec, default_policy, generate
from planner.inventory import Inventory
from planner.pipelined import Maintenance, maintenance_of, replay
from planner.plan import Plan
from planner.policy import Policy
from sim.model import DEFAULT
from solver import durations, pipeline
from solver.solve import SolveOptions, solve


@pytest.fixture(scope="module")
def cloud() -> tuple[Inventory, Policy, Plan, dict[str, How], predict.Physics, dict[str, How]]:
    spec = GenerateSpec(hosts=60, seed=1)
    inv, pol = generate(spec), default_policy(spec)
    plan = solve(inv, pol, SolveOptions(planner="greedy")).plan
    ph = predict.predict(inv, pol, DEFAULT)
    remedies = predict.choose_remedies(inv, pol, ph.est)
    how = {m.vm: predict.how_of(m, remedies) for _, m in plan.migrations()}
    return inv, pol, plan, how, ph, remedies


def _wave_of(plan: Plan) -> dict[str, int]:
    return {h: w.index for w in plan.waves for h in w.hosts}


def test_lockstep_replay_is_the_waves_one_after_another(cloud):  # type: ignore[no-untyped-def]
    inv, _, plan, how, ph, _ = cloud
    mt = maintenance_of(inv, plan, ph.est, how, ph.shutdown_s)
    got = replay(inv, plan, mt, "lockstep")
    assert not got.stalled
    want = sum(max(mt[h].total_s for h in w.hosts) for w in plan.waves)
    assert got.makespan_s == pytest.approx(want)
    # and the totals are durations.host_durations' (one prediction of a host's maintenance)
    per = durations.host_durations(inv, plan, ph.est, how, ph.shutdown_s)
    assert {h: m.total_s for h, m in mt.items()} == pytest.approx(per)


def test_pipelined_replay_keeps_admission_rules(cloud):  # type: ignore[no-untyped-def]
    inv, pol, plan, how, ph, remedies = cloud
    mt = maintenance_of(inv, plan, ph.est, how, ph.shutdown_s)
    got = replay(inv, plan, mt, "pipelined")
    lock = replay(inv, plan, mt, "lockstep")
    assert not got.stalled and set(got.start_s) == set(plan.hosts)
    assert got.makespan_s < lock.makespan_s
    # never more hosts in maintenance than max_hosts_per_wave
    edges = sorted(
        [(t, 1) for t in got.start_s.values()] + [(t, -1) for t in got.end_s.values()],
        key=lambda e: (e[0], e[1]),
    )
    n = peak = 0
    for _, d in edges:
        n += d
        peak = max(peak, n)
    assert peak <= pol.max_hosts_per_wave
    # a host never enters before its evacuees' destinations of earlier waves are back
    wave = _wave_of(plan)
    for w in plan.waves:
        for m in w.migrations:
            if wave.get(m.dst, w.index) < w.index:
                assert got.start_s[m.src] >= got.end_s[m.dst]
    # the plan's predicted maintenance is never shorter than the bound's p_h: the bound holds
    lb = predict.pipelined_lower_bound(inv, pol, ph, remedies)
    assert got.makespan_s >= lb - 1e-6


def test_replay_fails_when_durations_say_so() -> None:
    """A pass/fail pair on the durations: a longer host makes the makespan longer."""
    spec = GenerateSpec(hosts=12, seed=2, utilisation=0.5)
    inv, pol = generate(spec), default_policy(spec)
    plan = solve(inv, pol, SolveOptions(planner="greedy")).plan
    base = {h: Maintenance(100.0, 1000.0) for h in plan.hosts}
    short = replay(inv, plan, base).makespan_s
    last = plan.waves[-1].hosts[0]
    longer = replay(inv, plan, {**base, last: Maintenance(100.0, 5000.0)}).makespan_s
    assert longer >= short + 4000.0 - 1e-6


def test_planning_for_pipelining_keeps_waves_and_moves(cloud):  # type: ignore[no-untyped-def]
    inv, _, plan, how, ph, _ = cloud
    got = pipeline.plan_for_pipelining(inv, plan, ph.est, how, ph.shutdown_s)
    new = got.plan
    assert got.after_s < got.before_s and got.lag in pipeline.LAGS and got.moved > 0
    assert [sorted(w.hosts) for w in new.waves] == [sorted(w.hosts) for w in plan.waves]
    # each wave moves the same VMs from the same hosts; only destinations change
    for a, b in zip(plan.waves, new.waves, strict=True):
        assert Counter((m.vm, m.src) for m in a.migrations) == Counter(
            (m.vm, m.src) for m in b.migrations
        )
        assert a.stops == b.stops
    assert check_plan(inv, new).ok
    # what it claims: the replay of the plan it returns
    mt = maintenance_of(inv, new, ph.est, how, ph.shutdown_s)
    assert replay(inv, new, mt).makespan_s == pytest.approx(got.after_s)
    # in each wave, the hosts the next waves' evacuees still go to first, then the longest first
    wave = _wave_of(new)
    near = max(got.lag, 2)
    soon = {
        m.dst for w in new.waves for m in w.migrations if 0 < w.index - wave.get(m.dst, -99) < near
    }
    for w in new.waves:
        keys = [(h not in soon, -mt[h].total_s) for h in w.hosts]
        assert keys == sorted(keys)


def test_redirect_sends_evacuees_to_hosts_upgraded_long_before(cloud):  # type: ignore[no-untyped-def]
    inv, _, plan, _, _, _ = cloud
    lag = 3
    moved, new = pipeline.redirect(inv, plan, lag)
    assert moved > 0
    wave = _wave_of(plan)
    changed = 0
    for a, b in zip(plan.waves, new.waves, strict=True):
        for m0, m1 in zip(a.migrations, b.migrations, strict=True):
            assert (m0.vm, m0.src) == (m1.vm, m1.src)
            if m0.dst != m1.dst:
                changed += 1
                assert 0 < a.index - wave[m0.dst] < lag  # it was a recent one
                assert m1.dst not in wave or a.index - wave[m1.dst] >= lag
                assert inv.host(m1.dst).az == inv.host(m0.dst).az
                # members of affinity groups and of soft groups stay where they were sent
                g = inv.vm(m0.vm).server_group
                assert g is None or (inv.group(g).hard and inv.group(g).anti)
    assert changed == moved
    assert check_plan(inv, new).ok


def test_plan_summary_has_both_makespans() -> None:
    spec = GenerateSpec(hosts=20, seed=3, utilisation=0.5)
    inv, pol = generate(spec), default_policy(spec)
    plan, _, outcome, ph = plan_with_predictions(inv, pol, SolveOptions(planner="greedy"))
    s = plan.summary
    pipe, lock = s["predicted_makespan_s"]["pipelined"], s["predicted_makespan_s"]["lockstep"]
    assert 0 < s["pipelined_lower_bound_s"] <= pipe < lock
    assert s["pipelined_lower_bound_s"] == s["lockstep_lower_bound_s"]
    assert "pipelining" in outcome.stats
    # deterministic: the same plan, the same figure
    remedies = {m.vm: m.remedy for _, m in plan.migrations() if m.remedy}
    again = predict.pipelined_makespan(inv, plan, ph, remedies)
    assert round(again, 3) == pipe
    # lock-step execution: the pass does not run (the waves' destinations as shaped)
    lock_pol = replace(pol, execution="lockstep")
    _, _, outcome2, _ = plan_with_predictions(inv, lock_pol, SolveOptions(planner="greedy"))
    assert "pipelining" not in outcome2.stats


def test_planner_keeps_the_shaped_plan_when_the_checker_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The checker has the last word: a pass that broke a rule is dropped, with a note."""
    spec = GenerateSpec(hosts=20, seed=3, utilisation=0.5)
    inv, pol = generate(spec), default_policy(spec)
    real = pipeline.plan_for_pipelining

    def broken(*args: Any, **kwargs: Any) -> pipeline.Piped:
        got = real(*args, **kwargs)
        w = next(w for w in got.plan.waves if w.migrations)
        m = w.migrations[0]
        bad = replace(m, dst=m.src)  # to the host it leaves, in maintenance: a violation
        waves = tuple(
            replace(x, migrations=(bad, *x.migrations[1:])) if x is w else x for x in got.plan.waves
        )
        return replace(got, plan=replace(got.plan, waves=waves))

    monkeypatch.setattr(pipeline, "plan_for_pipelining", broken)
    plan, _, outcome, _ = plan_with_predictions(inv, pol, SolveOptions(planner="greedy"))
    assert outcome.check is not None and outcome.check.ok and check_plan(inv, plan).ok
    assert any("planned for pipelining, the plan broke a rule" in n for n in outcome.notes)
    assert "pipelining" not in outcome.stats


def test_replay_admits_a_later_waves_host_before_an_earlier_wave() -> None:
    """Hosts of any wave are asked, earliest wave first: c (wave 3) goes with a (wave 1) while
    b (wave 2) waits for a to come back; lock-step still runs the waves one after another."""
    from tests.test_sim_pipelined import _lookahead

    inv, plan = _lookahead()
    mt = {h: Maintenance(100.0, 1000.0) for h in plan.hosts}
    got = replay(inv, plan, mt, "pipelined")
    assert not got.stalled
    assert got.start_s["a"] == got.start_s["c"] == 0.0
    assert got.start_s["b"] >= got.end_s["a"] and got.start_s["d"] >= got.end_s["c"]
    assert got.makespan_s == 2000.0
    lock = replay(inv, plan, mt, "lockstep")
    assert lock.makespan_s == 4000.0 and not lock.stalled
    assert all(lock.start_s[h] == 1000.0 * i for i, h in enumerate("abcd"))


class _HoldUntil:
    """A gate that keeps the named hosts out until `at` seconds."""

    def __init__(self, hosts: set[str], at: float) -> None:
        self.hosts, self.at = hosts, at
        self.entered_at: dict[str, float] = {}

    def earliest(self, h: str, t: float) -> float:
        return max(t, self.at) if h in self.hosts else t

    def entered(self, h: str, t: float) -> None:
        self.entered_at[h] = t


def test_a_gate_holds_hosts_admission_would_take(cloud):  # type: ignore[no-untyped-def]
    """Windows in the replay: a held host enters at the gate's time, not before; the others go
    on meanwhile; the refusal is counted as `window`; without a hold nothing changes."""
    inv, _, plan, how, ph, _ = cloud
    mt = maintenance_of(inv, plan, ph.est, how, ph.shutdown_s)
    free = replay(inv, plan, mt, "pipelined")
    first = plan.waves[0].hosts[0]
    held = {first}
    at = 3600.0
    gate = _HoldUntil(held, at)
    got = replay(inv, plan, mt, "pipelined", gate=gate)
    assert not got.stalled and set(got.start_s) == set(plan.hosts)
    assert got.start_s[first] >= at > free.start_s[first]
    assert gate.entered_at == dict(got.start_s)
    assert got.refusals["window"] >= 1
    assert any(t < at for h, t in got.start_s.items() if h != first)  # others went on
    same = replay(inv, plan, mt, "pipelined", gate=_HoldUntil(set(), at))
    assert same.start_s == free.start_s and same.makespan_s == free.makespan_s
