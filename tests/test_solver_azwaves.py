"""Waves per AZ (`solver.azwaves`): run lock-step with per-AZ windows that are never open together
long enough for a wave, each such wave is split into one wave per AZ, the same VMs moving to the
same places; otherwise the plan is left as it is."""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections import Counter

import pytest

from planner.app import predict
from planner.app import schedule as calendar
from planner.app.planning import plan_with_predictions
from planner.app.simulation import in_calendar, prepare_run
from planner.checker import check_plan
from planner.generate import GenerateSpec, default_policy, generate
from planner.inventory import Inventory
from planner.plan import Plan, Wave
from planner.policy import Policy, selector_matches
from planner.windows import Window
from sim.model import DEFAULT
from solver import azwaves
from solver.solve import SolveOptions, solve

START = _dt.datetime.fromisoformat("2026-12-14T22:00+01:00")
BERLIN = Window(tuple(range(7)), 22 * 60, 6 * 60, "Europe/Berlin", ("az1",))
TOKYO = Window(tuple(range(7)), 22 * 60, 6 * 60, "Asia/Tokyo", ("az2",))  # Berlin's closed hours
LATER = Window(tuple(range(7)), 23 * 60, 7 * 60, "Europe/Berlin", ("az2",))  # 7 h together


def _cloud(windows: tuple[Window, ...], execution: str = "lockstep") -> tuple[Inventory, Plan]:
    spec = GenerateSpec(hosts=40, seed=3)
    inv = generate(spec)
    pol: Policy = dataclasses.replace(
        default_policy(spec),
        windows=windows,
        execution=execution,  # type: ignore[arg-type]
    )
    return inv, solve(inv, pol, SolveOptions(planner="greedy")).plan


def _need(inv: Inventory, plan: Plan):  # type: ignore[no-untyped-def]
    ph = predict.predict(inv, plan.policy, DEFAULT)
    how = {m.vm: predict.how_of(m, {}) for _, m in plan.migrations()}
    return lambda w: calendar.wave_p95_s(ph.est, w, how)


def _azs(inv: Inventory, w: Wave) -> set[str | None]:
    return {inv.host(h).az for h in w.hosts}


def test_waves_whose_azs_are_never_open_together_are_split_per_az() -> None:
    inv, plan = _cloud((BERLIN, TOKYO))
    assert any(len(_azs(inv, w)) > 1 for w in plan.waves)
    split = azwaves.per_az(inv, plan, _need(inv, plan), START)
    assert len(split.waves) > len(plan.waves)
    assert all(len(_azs(inv, w)) == 1 for w in split.waves)
    assert [w.index for w in split.waves] == list(range(1, len(split.waves) + 1))
    # the same hosts, each wave's parts in its place
    assert Counter(h for w in split.waves for h in w.hosts) == Counter(plan.hosts)
    was = {h: w.index for w in plan.waves for h in w.hosts}
    order = [was[w.hosts[0]] for w in split.waves]
    assert order == sorted(order) and all(len({was[h] for h in w.hosts}) == 1 for w in split.waves)
    assert Counter((m.vm, m.src, m.dst) for _, m in split.migrations()) == Counter(
        (m.vm, m.src, m.dst) for _, m in plan.migrations()
    )
    for w in split.waves:  # each part moves its own hosts' VMs
        assert {m.src for m in w.migrations} <= set(w.hosts)
    # the part with hosts policy.first selects goes first
    first = [
        i
        for i, w in enumerate(split.waves)
        if any(selector_matches(s, inv.host(h)) for s in plan.policy.first for h in w.hosts)
    ]
    others = [i for i in range(len(split.waves)) if i not in first]
    assert first and max(first) < min(others)
    assert check_plan(inv, split).ok


@pytest.mark.parametrize(
    ("windows", "execution"),
    [
        ((BERLIN, LATER), "lockstep"),  # open together 7 h: every wave fits
        ((BERLIN, TOKYO), "pipelined"),  # hosts are admitted one by one in their own windows
        ((dataclasses.replace(BERLIN, azs=()),), "lockstep"),  # one window for every AZ
    ],
)
def test_other_plans_are_left_as_they_are(windows: tuple[Window, ...], execution: str) -> None:
    inv, plan = _cloud(windows, execution)
    assert azwaves.per_az(inv, plan, _need(inv, plan), START) is plan


def test_the_planner_splits_a_lockstep_plan_that_the_simulator_then_runs() -> None:
    spec = GenerateSpec(hosts=40, seed=3)
    inv = generate(spec)
    pol = dataclasses.replace(default_policy(spec), windows=(BERLIN, TOKYO), execution="lockstep")
    plan, _, outcome, _ = plan_with_predictions(inv, pol, start=START)
    assert (
        outcome.stats["per_az"]["waves"]
        == len(plan.waves)
        > outcome.stats["per_az"]["waves_before"]
    )
    assert all(len(_azs(inv, w)) == 1 for w in plan.waves)
    prep = in_calendar(prepare_run(inv, plan, DEFAULT))  # no wave refused
    assert prep.calendar is not None
