"""The optimised engine, with its Python loop and with the copy mypyc compiled from it, gives the
same runs as the reference (`tests/sim_reference_engine.py`, the engine before dynamic NIC sharing
was made fast; for rollbacks and the canary, which that reference lacks,
`tests/sim_reference_loop.py`, the loop before it had a handler per event kind): makespan,
per-migration start, end, bytes, downtime, mean share, outcome and attempts, hosts, waves,
failures, breaches, headroom samples, events and the timeline, equal up to float rounding. On the
named clouds, on greedy plans of generated clouds, and on random (often invalid) plans under
random models, in both sharing modes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.generate import GenerateSpec, default_policy, generate
from planner.inventory import Inventory
from planner.plan import Migration, Plan, Stop, Wave
from planner.policy import Headroom, Policy
from sim import engine
from sim import loop as python_loop
from sim.engine import Prepared, SimResult, simulate
from sim.engine import prepare as _prepare
from sim.migration import NovaSettings
from sim.model import Distribution, SimModel
from solver.greedy import greedy_plan
from tests import sim_reference_engine as reference
from tests import sim_reference_loop as reference_loop
from tests.clouds import NAMED
from tests.sim_fixtures import lockstep
from tests.strategies import clouds


def prepare(inv: Inventory, plan: Plan, model: SimModel, **kw: Any) -> Prepared:
    """`sim.engine.prepare` with the plan pinned to `execution: lockstep`: these tests assert
    lock-step runs (the reference engines are lock-step)."""
    return _prepare(inv, lockstep(plan), model, **kw)


# Both loops the engine can run: the Python one, and the copy mypyc compiled from it at install
# (when there is one; tests/test_sim_loop_build.py checks that it is there when it should be).
LOOPS: dict[str, engine.RunLoop] = {"python": python_loop.run_loop}
if engine.IMPLEMENTATION.startswith("compiled"):
    LOOPS["compiled"] = engine._run_loop


@pytest.fixture(autouse=True, params=sorted(LOOPS))
def loop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(engine, "_run_loop", LOOPS[request.param])
    return str(request.param)


FIXED = SimModel(
    upgrade_compute=Distribution("fixed", 600.0),
    upgrade_controller=Distribution("fixed", 900.0),
)


def same(a: Any, b: Any, where: str = "result") -> None:
    """Equal, floats up to rounding (NaN equals NaN), recursively through containers and
    dataclasses."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, int | float) and isinstance(b, int | float), f"{where}: {a!r} {b!r}"
        if math.isnan(a) or math.isnan(b):
            assert math.isnan(a) and math.isnan(b), f"{where}: {a!r} != {b!r}"
        else:
            assert a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6), (
                f"{where}: {a!r} != {b!r}"
            )
    elif dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert dataclasses.is_dataclass(b), where
        for f in dataclasses.fields(a):
            same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a, key=repr) == sorted(b, key=repr), (
            f"{where}: keys {sorted(a, key=repr)} != {sorted(b, key=repr)}"
        )
        for k in a:
            same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# Issue 8's rollback and canary came after the oracle was frozen: it has neither. With both off
# (every model here) the engine must give its runs exactly, and these fields their neutral
# values; tests/test_sim_rollback_canary.py covers them switched on.
# Pipelined execution came later still: lock-step runs (these) have no refusals; windows later
# again: these runs have no calendar.
ISSUE_8 = {
    "rollback_s": 0.0,
    "soak_s": 0.0,
    "canary_hosts": (),
    "canary_failed": False,
    "execution": "lockstep",
    "refusals": Counter(),
    "calendar": None,  # maintenance windows came later again: no calendar, none
}


def compare(prep: Prepared, seed: int, record: bool = True) -> SimResult:
    assert not prep.model.rollback and not prep.model.canary_hosts
    new = simulate(prep, seed, record=record)
    old = reference.simulate(prep, seed, record=record)
    new_fields = [f.name for f in dataclasses.fields(new)]
    assert [f for f in new_fields if f not in ISSUE_8] == [f.name for f in dataclasses.fields(old)]
    for f, neutral in ISSUE_8.items():
        assert getattr(new, f) == neutral, f
    for fld in dataclasses.fields(old):
        same(getattr(new, fld.name), getattr(old, fld.name), f"result.{fld.name}")
    return new


def test_the_comparison_can_fail() -> None:
    """`same` tells a different run apart (so the tests below test something)."""
    fx = NAMED["three_plus_spare"]()
    prep = prepare(fx.inventory, fx.plan, FIXED.with_changes(sharing="dynamic"), check=False)
    a = simulate(prep, 1)
    b = dataclasses.replace(a, mig_end=[*a.mig_end[:-1], a.mig_end[-1] * (1 + 1e-6)])
    with pytest.raises(AssertionError, match="mig_end"):
        same(a, b)
    with pytest.raises(AssertionError, match="events"):
        same(a, dataclasses.replace(a, events=a.events + 1))


MODELS = {
    "default": FIXED,
    "k_out_3_k_in_1": FIXED.with_changes(
        max_concurrent_live_migrations=3, max_inbound_migrations=1
    ),
    "unlimited": FIXED.with_changes(max_concurrent_live_migrations=0, max_inbound_migrations=None),
    "failures": FIXED.with_changes(
        migration_failure_p=0.3, upgrade_failure_p=0.1, crash_p=1.0, migration_retries=1
    ),
    "slow_nics_busy_guests": FIXED.with_changes(
        nic_gbps=1.0,
        nic_by_host=(("cmp-1", 10.0), ("cmp-2", 0.5)),
        default_dirty_rate_mib_s=40.0,
        nova=NovaSettings(completion_timeout_s=20, timeout_action="force_complete"),
    ),
}


@pytest.mark.parametrize("sharing", ["dynamic", "static"])
@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_clouds(name: str, model: str, sharing: str) -> None:
    fx = NAMED[name]()
    prep = prepare(fx.inventory, fx.plan, MODELS[model].with_changes(sharing=sharing), check=False)
    for seed in (0, 1, 2):
        compare(prep, seed)


@functools.cache
def generated(hosts: int, seed: int) -> tuple[Inventory, Plan]:
    spec = GenerateSpec(hosts=hosts, vms_per_host=8.0, utilisation=0.5, seed=seed, azs=2)
    inv = generate(spec)
    return inv, greedy_plan(inv, default_policy(spec))


@pytest.mark.parametrize("model", sorted(MODELS))
def test_greedy_plans_of_generated_clouds(model: str) -> None:
    inv, plan = generated(60, 3)
    for sharing in ("dynamic", "static"):
        m = MODELS[model].with_changes(sharing=sharing)
        if sharing == "dynamic":
            m = m.with_changes(upgrade_compute=Distribution("uniform", 300.0, 900.0))
        prep = prepare(inv, plan, m, check=False)
        for seed in (0, 7):
            res = compare(prep, seed, record=seed == 0)
            if model != "failures":
                assert res.completed and res.events > 2 * len(prep.m_vm)  # they did migrate
    # The comparison covers rebalancing: some migration ran at more than one share.
    prep = prepare(inv, plan, MODELS[model].with_changes(sharing="dynamic"), check=False)
    res = simulate(prep, 0, record=False)
    nic = set(prep.nic)
    shares = {bw for bw, st in zip(res.mig_bw, res.mig_state, strict=True) if st >= 0}
    assert any(all(not math.isclose(bw * k, n) for k in (1, 2, 3) for n in nic) for bw in shares)


# ---------------------------------------------------------------------------------------------
# Random plans under random models
# ---------------------------------------------------------------------------------------------
@st.composite
def random_plans(draw: st.DrawFn) -> tuple[Inventory, Plan]:
    """A random cloud and a random plan for it: hosts in random waves, each host's VMs (as the
    plan has moved them so far) migrated anywhere, stopped or left; now and then a VM that is not
    on the planned source. Such plans break invariants and stall: the engines must agree anyway."""
    inv = draw(clouds(min_hosts=3, max_hosts=7, max_vms_per_host=6, max_fill=0.9))
    computes = [h.name for h in inv.hosts if h.role == "compute"]
    names = [h.name for h in inv.hosts]
    order = draw(st.permutations(names))
    cuts = sorted(draw(st.sets(st.integers(1, len(order) - 1), max_size=4)))
    chunks = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True)]
    where = {v.id: v.host for v in inv.vms}
    all_vms = [v.id for v in inv.vms]
    waves = []
    for i, hosts in enumerate(chunks, start=1):
        moves: list[Migration] = []
        stops: list[Stop] = []
        for h in hosts:
            on = [v for v in all_vms if where[v] == h]
            for v in draw(st.permutations(on)):
                what = draw(st.sampled_from(("live",) * 6 + ("cold", "stop", "stay")))
                others = [c for c in computes if c != h]
                if what == "stop":
                    stops.append(Stop(v, h))
                elif what != "stay" and others:
                    dst = draw(st.sampled_from(others))
                    moves.append(Migration(v, h, dst, what))
                    where[v] = dst
            if all_vms and draw(st.integers(0, 7)) == 0:  # a VM that is elsewhere by then
                v = draw(st.sampled_from(all_vms))
                dst = draw(st.sampled_from(computes))
                if dst != h:
                    moves.append(Migration(v, h, dst, "live"))
        waves.append(Wave(i, tuple(hosts), tuple(moves), tuple(stops)))
    pol = Policy(
        max_hosts_per_wave=max(len(c) for c in chunks),
        target_version="2",
        headroom=Headroom(
            failures=draw(st.integers(0, 1)), scope=draw(st.sampled_from(("az", "cloud")))
        ),
        max_concurrent_live_migrations=draw(st.integers(1, 3)),
        allow_stop=True,
    )
    return inv, Plan("0" * 64, pol, tuple(waves))


models = st.builds(
    SimModel,
    sharing=st.sampled_from(["dynamic", "dynamic", "static"]),
    nic_gbps=st.sampled_from([1.0, 10.0, 25.0]),
    nic_by_host=st.sampled_from([(), (("cmp-1", 1.0), ("cmp-[23]", 25.0))]),
    switchover_gbps=st.sampled_from([None, None, 10.0]),
    default_dirty_rate_mib_s=st.sampled_from([20.0, 60.0, 300.0, 600.0, 1200.0]),
    nova=st.builds(
        NovaSettings,
        completion_timeout_s=st.sampled_from([800, 5, 0]),
        timeout_action=st.sampled_from(["abort", "force_complete"]),
        permit_auto_converge=st.booleans(),
        permit_post_copy=st.booleans(),
        bandwidth_mib_s=st.sampled_from([0, 0, 200]),
    ),
    max_concurrent_live_migrations=st.sampled_from([None, 0, 1, 3]),
    max_inbound_migrations=st.sampled_from([None, 1, 2]),
    orchestration_overhead_s=st.sampled_from([10.0, 0.0]),
    migration_failure_p=st.sampled_from([0.0, 0.0, 0.2, 1.0]),
    migration_retries=st.integers(0, 2),
    upgrade_failure_p=st.sampled_from([0.0, 0.0, 0.3]),
    crash_p=st.sampled_from([0.0, 0.0, 1.0]),
    crash_window_s=st.sampled_from([None, (0.0, 400.0)]),
    upgrade_compute=st.sampled_from(
        [Distribution("fixed", 300.0), Distribution("uniform", 100.0, 900.0)]
    ),
)


@settings(
    max_examples=150,
    deadline=None,
    # the fixture only picks the loop: nothing to reset between examples
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=random_plans(), model=models, seed=st.integers(0, 2**32))
def test_random_plans_under_random_models(
    case: tuple[Inventory, Plan], model: SimModel, seed: int
) -> None:
    inv, plan = case
    prep = prepare(inv, plan, model, check=False)
    compare(prep, seed)


# ---------------------------------------------------------------------------------------------
# Rollbacks and the canary: against the loop as it was before its handlers (frozen copy)
# ---------------------------------------------------------------------------------------------
def compare_with_old_loop(prep: Prepared, seed: int, record: bool = True) -> SimResult:
    """The engine's run and the frozen loop's (tests/sim_reference_loop.py), field by field."""
    new = simulate(prep, seed, record=record)
    loop = engine._run_loop
    engine._run_loop = reference_loop.run_loop
    try:
        old = simulate(prep, seed, record=record)
    finally:
        engine._run_loop = loop
    same(new, old)
    return new


ISSUE_8_MODELS = {
    "rollback": FIXED.with_changes(
        upgrade_failure_p=0.5, rollback=True, upgrade_rollback=Distribution("fixed", 120.0)
    ),
    "canary_passes": FIXED.with_changes(canary_hosts=2, soak_s=600.0),
    "canary_fails": FIXED.with_changes(canary_hosts=1, soak_s=300.0, canary_failure_p=1.0),
    "everything": FIXED.with_changes(
        canary_hosts=2,
        soak_s=600.0,
        canary_failure_p=1.0,
        rollback=True,
        upgrade_failure_p=0.3,
        migration_failure_p=0.2,
        crash_p=1.0,
    ),
}


@pytest.mark.parametrize("sharing", ["dynamic", "static"])
@pytest.mark.parametrize("model", sorted(ISSUE_8_MODELS))
@pytest.mark.parametrize("name", sorted(NAMED))
def test_rollbacks_and_the_canary_as_the_loop_was(name: str, model: str, sharing: str) -> None:
    fx = NAMED[name]()
    m = ISSUE_8_MODELS[model].with_changes(sharing=sharing)
    prep = prepare(fx.inventory, fx.plan, m, check=False)
    for seed in (0, 1, 2):
        compare_with_old_loop(prep, seed)


def test_the_old_loop_comparison_covers_rollbacks_and_a_failed_canary() -> None:
    inv, plan = generated(60, 3)
    prep = prepare(inv, plan, ISSUE_8_MODELS["everything"], check=False)
    res = compare_with_old_loop(prep, 0)
    assert res.canary_failed and res.rollback_s > 0 and res.soak_s > 0
    assert "rolled-back" in res.host_status.values()


issue_8_models = st.builds(
    SimModel,
    sharing=st.sampled_from(["dynamic", "static"]),
    max_inbound_migrations=st.sampled_from([None, 1, 2]),
    migration_failure_p=st.sampled_from([0.0, 0.2]),
    upgrade_failure_p=st.sampled_from([0.0, 0.3, 1.0]),
    rollback=st.booleans(),
    canary_hosts=st.integers(0, 3),
    soak_s=st.sampled_from([0.0, 500.0]),
    canary_failure_p=st.sampled_from([0.0, 1.0]),
    crash_p=st.sampled_from([0.0, 1.0]),
    upgrade_compute=st.sampled_from(
        [Distribution("fixed", 300.0), Distribution("uniform", 100.0, 900.0)]
    ),
    upgrade_rollback=st.sampled_from([Distribution("fixed", 60.0), Distribution("fixed", 0.0)]),
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=random_plans(), model=issue_8_models, seed=st.integers(0, 2**32))
def test_random_plans_with_rollbacks_and_canaries_as_the_loop_was(
    case: tuple[Inventory, Plan], model: SimModel, seed: int
) -> None:
    inv, plan = case
    prep = prepare(inv, plan, model, check=False)
    compare_with_old_loop(prep, seed)
