"""The report's replay: the same numbers as the checker, step by step."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from planner.capacity import headroom
from planner.checker import State, check_plan
from planner.plan import Migration, Wave
from planner.report.replay import replay
from tests.report.support import Case, tiny_cloud, tiny_plan, tiny_policy


def test_steps_are_before_each_wave_and_after(small: Case) -> None:
    rp = replay(small.inventory, small.plan)
    assert [s.label for s in rp.steps] == (
        ["before"] + [f"wave {w.index}" for w in small.plan.waves] + ["after"]
    )
    assert not rp.before.down.any() and not rp.after.down.any()
    for step, wave in zip(rp.wave_steps, small.plan.waves, strict=True):
        down = {rp.host_names[i] for i in np.flatnonzero(step.down)}
        assert down == set(wave.hosts)


def test_min_headroom_per_group_and_class_is_the_checkers(small: Case) -> None:
    """The report draws exactly the headroom the checker judges (metrics.min_headroom_ratio)."""
    rp = replay(small.inventory, small.plan)
    metrics = check_plan(small.inventory, small.plan).metrics
    mins: dict[str, float] = {}
    for s in rp.wave_steps:
        for r in s.headroom:
            if r.required > 0:
                key = f"{r.group}/{r.rc}"
                mins[key] = min(mins.get(key, float("inf")), r.free / r.required)
    assert {k: round(v, 4) for k, v in mins.items()} == metrics["min_headroom_ratio"]


def test_before_is_the_inventory_and_after_is_the_final_state(small: Case) -> None:
    inv = small.inventory
    rp = replay(inv, small.plan)
    state = State(inv, small.policy)
    assert rp.before.headroom == tuple(headroom(state.model, small.policy.headroom))
    np.testing.assert_allclose(rp.before.utilisation, state.model.utilisation())
    # after: every VM where its last migration put it
    for wave in small.plan.waves:
        for m in wave.migrations:
            state.move(m.vm, m.dst)
    np.testing.assert_allclose(rp.after.utilisation, state.model.utilisation())


def test_moves_twice_and_stops_match_the_checker() -> None:
    inv, plan = tiny_cloud(), tiny_plan()
    rp = replay(inv, plan)
    metrics = check_plan(inv, plan).metrics
    twice = rp.moved_more_than_once()
    assert len(twice) == metrics["vms_moved_more_than_once"] == 3
    assert [(m.wave, m.src, m.dst) for m in twice["v6"]] == [(1, "b", "a"), (2, "a", "b")]
    assert [(s.wave, s.vm, s.host) for s in rp.stops] == [(2, "v3", "a")]
    assert set(rp.moves) == {"v1", "v2", "v4", "v5", "v6"}


def test_worst_wave_is_the_tightest_headroom() -> None:
    inv = tiny_cloud()
    plan = tiny_plan(tiny_policy(**{"headroom.failures": 1, "headroom.scope": "cloud"}))
    assert check_plan(inv, plan).ok
    rp = replay(inv, plan)
    ratios = {s.wave: s.min_ratio() for s in rp.wave_steps}
    worst = rp.worst_wave()
    assert worst is not None and worst.wave == min(ratios, key=lambda w: (ratios[w], w))
    assert all(worst.min_ratio() <= r for r in ratios.values() if r is not None)  # type: ignore[operator]


def test_worst_wave_without_requirement_is_the_fullest_host() -> None:
    """failures 0, reserve 0: nothing is required, so the fullest available host decides."""
    inv, plan = tiny_cloud(), tiny_plan()
    rp = replay(inv, plan)
    assert all(s.min_ratio() is None for s in rp.wave_steps)
    worst = rp.worst_wave()
    assert worst is not None
    full = {s.wave: float(s.utilisation[rp.compute & ~s.down].max()) for s in rp.wave_steps}
    assert full[worst.wave] == max(full.values())


def test_an_invalid_plan_still_replays_and_skips_what_the_checker_calls_unknown(
    small: Case,
) -> None:
    bad = Migration("no-such-vm", "cmp-001", "cmp-002")
    w0 = small.plan.waves[-1]
    plan = replace(
        small.plan,
        waves=(*small.plan.waves[:-1], replace(w0, migrations=(*w0.migrations, bad))),
    )
    assert not check_plan(small.inventory, plan).ok
    rp = replay(small.inventory, plan)
    assert len(rp.wave_steps) == len(plan.waves)
    assert "no-such-vm" not in rp.moves


def test_a_plan_without_waves_has_no_worst_wave(small: Case) -> None:
    rp = replay(small.inventory, replace(small.plan, waves=()))
    assert [s.label for s in rp.steps] == ["before", "after"]
    assert rp.worst_wave() is None


@pytest.mark.parametrize("scope", ["az", "cloud"])
def test_groups_follow_the_headroom_scope(small: Case, scope: str) -> None:
    policy = small.policy.with_changes(**{"headroom.scope": scope})
    plan = replace(small.plan, policy=policy, waves=(Wave(1, ("ctl-1",)),))
    rp = replay(small.inventory, plan)
    assert rp.groups == (("cloud",) if scope == "cloud" else small.inventory.azs)
