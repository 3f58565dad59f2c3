"""Pipelined execution in the simulator: hosts admitted one by one (planner/admission.py) as soon
as admission control allows, refusals in the timeline, the same runs in both loops, and plans the
checker accepts keep every invariant at every event."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.checker import check_plan
from planner.errors import InfeasibleError
from planner.formats import load_inventory, load_policy
from planner.generate import GenerateSpec, default_policy, generate
from planner.inventory import Inventory
from planner.plan import Plan
from sim import engine
from sim import loop as python_loop
from sim.engine import prepare, simulate
from sim.model import Distribution, SimModel
from sim.timeline import summary, timeline_rows, write_timeline
from solver.greedy import greedy_plan
from tests.clouds import NAMED
from tests.sim_fixtures import lockstep
from tests.strategies import clouds_and_policies

FIXED = SimModel(
    upgrade_compute=Distribution("fixed", 600.0),
    upgrade_controller=Distribution("fixed", 900.0),
)


def _example() -> tuple[Inventory, Plan]:
    examples = resources.files("planner") / "examples"
    inv = load_inventory(str(examples / "small.json"))
    pol = load_policy(str(examples / "small-policy.yaml"))
    return inv, greedy_plan(inv, pol, inventory_sha256=inv.digest or "")


def test_the_policy_chooses_pipelined_by_default_and_lockstep_when_pinned() -> None:
    inv, p = _example()
    assert p.policy.execution == "pipelined"
    pipe = simulate(prepare(inv, p, FIXED), 0)
    lock = simulate(prepare(inv, lockstep(p), FIXED), 0)
    assert (pipe.execution, lock.execution) == ("pipelined", "lockstep")
    for res in (pipe, lock):
        assert res.completed and not res.breached
    assert pipe.makespan_s < lock.makespan_s
    assert lock.refusals == {} and sum(pipe.refusals.values()) > 0
    # a later wave's host starts before the earlier wave is over
    ends = lock.wave_end
    assert any(pipe.wave_start[w + 1] < pipe.wave_end[w] for w in range(len(ends) - 1)), (
        "no overlap of waves"
    )


def test_a_canary_keeps_the_run_lockstep() -> None:
    inv, p = _example()
    res = simulate(prepare(inv, p, FIXED.with_changes(canary_hosts=1, soak_s=60.0)), 0)
    assert res.execution == "lockstep" and res.completed


def test_refusals_are_in_the_timeline_with_their_reason(tmp_path: Path) -> None:
    inv, p = _example()
    prep = prepare(inv, p, FIXED)
    res = simulate(prep, 0)
    rows = [r for r in timeline_rows(prep, res) if r["event"] == "admission_refused"]
    assert rows and all(r["host"] and r["wave"] and ": " in r["detail"] for r in rows)
    assert {r["detail"].split(": ")[0] for r in rows} == set(res.refusals)
    assert len(rows) == sum(res.refusals.values())
    assert summary(prep, res)["admission_refusals"] == dict(sorted(res.refusals.items()))
    out = tmp_path / "tl.jsonl"
    write_timeline(out, prep, res)
    events = [json.loads(x) for x in out.read_text().splitlines()[1:]]
    assert any(e["event"] == "admission_refused" for e in events)
    # each host is disabled once, after its last refusal
    disabled = {e["host"]: e["t_s"] for e in events if e["event"] == "host_disable"}
    for r in rows:
        assert r["t_s"] <= disabled[r["host"]]


@pytest.mark.parametrize("sharing", ["dynamic", "static"])
def test_checked_plans_of_generated_clouds_breach_nothing_pipelined(sharing: str) -> None:
    simulated = 0
    faster = 0
    for seed in range(8):
        spec = GenerateSpec(hosts=16 + seed, seed=seed, utilisation=0.45, azs=1 + seed % 2)
        inv = generate(spec)
        try:
            p = greedy_plan(inv, default_policy(spec))
        except InfeasibleError:
            continue
        if not check_plan(inv, p, digest=p.inventory_sha256).ok:
            continue
        model = SimModel(sharing=sharing)  # type: ignore[arg-type]
        res = simulate(prepare(inv, p, model, check=False), seed)
        assert res.execution == "pipelined"
        assert not res.breached, res.breaches[:3]
        assert res.completed
        assert res.lower_bound_s <= res.makespan_s + 1e-6
        lock = simulate(prepare(inv, lockstep(p), model, check=False), seed)
        faster += res.makespan_s < lock.makespan_s
        simulated += 1
    assert simulated >= 6 and faster >= simulated // 2


@pytest.mark.parametrize("name", sorted(NAMED))
def test_every_named_fixture_plan_runs_clean_pipelined(name: str) -> None:
    fx = NAMED[name]()
    res = simulate(prepare(fx.inventory, fx.plan, FIXED, check=False), 1)
    assert not res.breached, res.breaches[:3]
    assert res.completed
    assert set(res.host_status.values()) <= {"upgraded"}
    assert res.lower_bound_s <= res.makespan_s + 1e-6


def test_a_host_never_admitted_stalls_the_run_and_says_why() -> None:
    fx = NAMED["three_plus_spare"]()
    # cmp-1's VMs go to cmp-4, which is upgraded first; with cmp-4's upgrade failing, it stays
    # down and cmp-1 is never admitted.
    model = FIXED.with_changes(upgrade_failure_p=1.0)
    res = simulate(prepare(fx.inventory, fx.plan, model, check=False), 0)
    assert res.stalled and res.stall is not None
    assert "not admitted" in res.stall["reason"]
    assert any("order" in item["why"] for item in res.stall["pending"] if "host" in item)


def test_failures_and_crashes_run_pipelined() -> None:
    inv, p = _example()
    model = FIXED.with_changes(
        migration_failure_p=0.3, upgrade_failure_p=0.2, rollback=True, crash_p=1.0
    )
    prep = prepare(inv, p, model)
    for seed in range(6):
        res = simulate(prep, seed)
        assert res.execution == "pipelined"
        assert res.completed or res.stall is not None


@pytest.mark.skipif(
    not engine.IMPLEMENTATION.startswith("compiled"), reason="no compiled loop in this install"
)
def test_both_loops_give_the_same_pipelined_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_sim_engine_equivalence import same

    inv, p = _example()
    cases = [(inv, p, FIXED), (inv, p, FIXED.with_changes(migration_failure_p=0.2, crash_p=1.0))]
    for name in sorted(NAMED):
        fx = NAMED[name]()
        cases.append((fx.inventory, fx.plan, FIXED))
    compiled = engine._run_loop
    for inv_, plan, model in cases:
        prep = prepare(inv_, plan, model, check=False)
        for seed in (0, 3):
            a = simulate(prep, seed)
            monkeypatch.setattr(engine, "_run_loop", python_loop.run_loop)
            b = simulate(prep, seed)
            monkeypatch.setattr(engine, "_run_loop", compiled)
            same(a, b)
    assert dataclasses.is_dataclass(a)


def _lookahead() -> tuple[Inventory, Plan]:
    """Waves [a], [b -> a], [c], two hosts at once: b waits for a to come back, c (a later wave)
    has nothing to wait for."""
    from tests.clouds import Cloud, make_plan, mv, policy, wave

    c = Cloud("lookahead").hosts_("a", "b", "c", "d")
    c.vm("vm-b", "b").vm("vm-c", "c")
    pol = policy(2, failures=0)
    plan = make_plan(
        pol,
        wave(1, ["a"]),
        wave(2, ["b"], [mv("vm-b", "b", "a")]),
        wave(3, ["c"], [mv("vm-c", "c", "d")]),
        wave(4, ["d"], [mv("vm-c", "d", "c")]),
    )
    inv = c.build()
    assert check_plan(inv, plan).ok
    return inv, plan


def test_a_later_waves_host_enters_before_an_earlier_wave_starts() -> None:
    inv, plan = _lookahead()
    prep = prepare(inv, plan, FIXED)
    res = simulate(prep, 0)
    assert res.completed and not res.breached
    assert set(res.host_status.values()) == {"upgraded"}
    at = {prep.hosts[h]: times for h, times in res.host_times.items()}
    # c (wave 3) goes with a at once; b (wave 2) only once a is back
    assert at["c"][0] == at["a"][0] == 0.0
    assert at["b"][0] >= at["a"][2]
    # d (wave 4) still keeps the plan's order: c's evacuee lands on it first, and its own goes
    # to c once c is back
    assert at["d"][0] >= at["c"][2]
    lock = simulate(prepare(inv, lockstep(plan), FIXED), 0)
    assert res.makespan_s < lock.makespan_s


def test_the_lower_bound_counts_the_first_hosts_one_after_another() -> None:
    """policy.first (the controllers, an HA group of 3 needing 2: one at a time): no other host
    starts before the third controller does, so two controllers' maintenance comes before any
    compute host's; the bound with that chain is higher than without and still a bound."""
    inv, p = _example()
    prep = prepare(inv, p, FIXED)
    assert [prep.hosts[h] for h in prep.lb_first] == ["ctl-1", "ctl-2", "ctl-3"]
    assert prep.lb_first_chain == 2
    m = prep.model
    ctl = m.disable_s + 900.0 + m.enable_s  # no VMs on a controller: nothing to drain
    compute = m.disable_s + 600.0 + m.enable_s  # at least, with its drain
    res = simulate(prep, 0)
    assert res.lower_bound_s >= 2 * ctl + compute
    assert res.lower_bound_s <= res.makespan_s
    free = dataclasses.replace(p, policy=dataclasses.replace(p.policy, first=()))
    prep_free = prepare(inv, free, FIXED, check=False)
    assert prep_free.lb_first == () and prep_free.lb_first_chain == 0
    assert simulate(prep_free, 0).lower_bound_s < res.lower_bound_s


timings = st.builds(
    SimModel,
    sharing=st.sampled_from(["dynamic", "static"]),
    max_inbound_migrations=st.sampled_from([None, 1, 2]),
    max_concurrent_live_migrations=st.sampled_from([None, 1, 3]),
    upgrade_compute=st.sampled_from(
        [Distribution("fixed", 300.0), Distribution("uniform", 30.0, 3000.0)]
    ),
    upgrade_controller=st.sampled_from(
        [Distribution("fixed", 900.0), Distribution("uniform", 60.0, 2000.0)]
    ),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=clouds_and_policies(min_wave=1, max_hosts=9), model=timings, seed=st.integers(0, 2**32))
def test_random_plans_and_timings_never_breach_an_invariant_pipelined(
    case: tuple[Inventory, object], model: SimModel, seed: int
) -> None:
    """Hosts of any wave admitted as admission allows: on checked plans of random clouds and
    policies, with random timings, no invariant breaks at any event (the simulator checks
    capacity, anti-affinity, HA groups and headroom at each) and every host gets its turn."""
    inv, pol = case
    try:
        plan = greedy_plan(inv, pol, inventory_sha256=inv.digest or "")  # type: ignore[arg-type]
    except InfeasibleError:
        return
    if not check_plan(inv, plan).ok:
        return
    assert plan.policy.execution == "pipelined"
    res = simulate(prepare(inv, plan, model, check=False), seed)
    assert not res.breached, res.breaches[:3]
    assert res.completed, res.stall
    assert set(res.host_status.values()) <= {"upgraded", "down"}
    assert res.lower_bound_s <= res.makespan_s + 1e-6
