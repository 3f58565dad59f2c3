"""The event engine: executor semantics, concurrency limits, invariants, failures, stalls."""

from __future__ import annotations

import itertools
import json
from importlib import resources
from typing import Any, Literal

import pytest

from planner.checker import check_plan
from planner.formats import load_inventory, load_policy
from planner.inventory import Inventory
from planner.plan import Plan, Stop, Wave
from sim.engine import Prepared, SimResult, simulate
from sim.engine import prepare as _prepare
from sim.model import Distribution, SimModel
from sim.timeline import result_to_dict
from solver.greedy import greedy_plan
from tests.clouds import NAMED
from tests.sim_fixtures import (
    host,
    lockstep,
    pair_plan,
    plan,
    policy,
    three_hosts_ha,
    two_hosts,
    vm,
)


def prepare(inv: Inventory, plan: Plan, model: SimModel, **kw: Any) -> Prepared:
    """`sim.engine.prepare` with the plan pinned to `execution: lockstep`: these tests assert
    lock-step runs (the reference engines are lock-step)."""
    return _prepare(inv, lockstep(plan), model, **kw)


Sharing = Literal["static", "dynamic"]
FIXED = SimModel(
    upgrade_compute=Distribution("fixed", 600.0),
    upgrade_controller=Distribution("fixed", 900.0),
    max_inbound_migrations=None,
)


def run(
    inv: Inventory, p: Plan, model: SimModel = FIXED, seed: int = 0
) -> tuple[SimResult, dict[str, Any]]:
    prep = prepare(inv, p, model, check=False)
    res = simulate(prep, seed)
    return res, result_to_dict(prep, res)


def intervals(d: dict[str, Any], src: str, wave: int = 1) -> list[tuple[float, float]]:
    return sorted(
        (v["start_s"], v["end_s"]) for v in d["vms"] if v["from"] == src and v["wave"] == wave
    )


def test_k_out_1_makes_a_hosts_migrations_strictly_serial() -> None:
    inv = two_hosts(n_vms=5)
    res, d = run(inv, pair_plan(inv, k_out=1))
    iv = intervals(d, "src")
    assert len(iv) == 5 and iv[0][0] == pytest.approx(FIXED.disable_s)
    for (_, end), (start, _) in itertools.pairwise(iv):
        assert start == pytest.approx(end, abs=1e-6)  # the next starts when the last ends
    assert res.completed and not res.breached


def test_k_out_2_runs_two_at_once_sharing_the_nic() -> None:
    inv = two_hosts(n_vms=4)
    _, d1 = run(inv, pair_plan(inv, k_out=1))
    _, d2 = run(inv, pair_plan(inv, k_out=2))
    iv = intervals(d2, "src")
    assert iv[0][0] == iv[1][0]  # two start together
    nic = FIXED.nic_gbps * 1e9 / 8 * FIXED.efficiency / (1 << 20)
    bw1 = [v["bandwidth_mb_s"] for v in d1["vms"] if v["wave"] == 1]
    bw2 = [v["bandwidth_mb_s"] for v in d2["vms"] if v["wave"] == 1]
    assert bw1 == [pytest.approx(nic, rel=1e-3)] * 4
    assert bw2 == [pytest.approx(nic / 2, rel=1e-3)] * 4  # in pairs, always two at once


def test_dynamic_sharing_speeds_up_the_last_migration_of_a_drain() -> None:
    """Three equal VMs, k_out = 2: the first two share the NIC; the third starts when they end
    and has it alone, so it takes half their transfer time. Static shares keep it at half."""
    inv = two_hosts(n_vms=3, ram_gb=16, dirty=0.0)
    p = pair_plan(inv, k_out=2)
    _, dyn = run(inv, p, FIXED.with_changes(sharing="dynamic"))
    _, sta = run(inv, p, FIXED.with_changes(sharing="static"))
    first = [v for v in dyn["vms"] if v["wave"] == 1]
    xfer = [v["end_s"] - v["start_s"] - FIXED.orchestration_overhead_s for v in first]
    assert xfer[0] == pytest.approx(xfer[1], rel=1e-6)
    assert xfer[2] == pytest.approx(xfer[0] / 2, rel=1e-3)
    static_last = [v for v in sta["vms"] if v["wave"] == 1][2]
    assert static_last["end_s"] - static_last["start_s"] == pytest.approx(
        first[0]["end_s"] - first[0]["start_s"], rel=1e-6
    )


def test_dynamic_sharing_rebalances_a_running_migration() -> None:
    """A big and a small VM start together at half the NIC; when the small one ends the big one
    gets the whole NIC for the rest of its transfer."""
    inv = Inventory(
        "two-sizes",
        "t",
        (host("src", ram_gb=128), host("dst", ram_gb=128)),
        (vm("big", "src", ram_gb=32, dirty=0.0), vm("small", "src", ram_gb=8, dirty=0.0)),
    )
    p = plan(policy(k_out=2), (["src"], [("big", "src", "dst"), ("small", "src", "dst")]))
    _, d = run(inv, p, FIXED.with_changes(sharing="dynamic"))
    nic = FIXED.nic_gbps * 1e9 / 8 * FIXED.efficiency
    big = next(v for v in d["vms"] if v["vm"] == "big")
    small = next(v for v in d["vms"] if v["vm"] == "small")
    o = FIXED.orchestration_overhead_s
    t_small = small["end_s"] - small["start_s"] - o  # at nic / 2 throughout
    sent_half = t_small * nic / 2  # what big sent meanwhile
    expected = t_small + (32 * 2**30 - sent_half) / nic
    # The paused last copy is tiny at either speed; within 0.1%.
    assert big["end_s"] - big["start_s"] - o == pytest.approx(expected, rel=1e-3)
    total = big["end_s"] - big["start_s"] - o
    mean = (nic / 2 * t_small + nic * (total - t_small)) / total  # its reported mean share
    assert big["bandwidth_mb_s"] == pytest.approx(mean / 2**20, rel=1e-3)


def test_inbound_limit_serialises_a_destination() -> None:
    hosts = (host("s1"), host("s2"), host("dst"))
    vms = tuple(vm(f"v{i}", "s1" if i < 2 else "s2") for i in range(4))
    inv = Inventory("fan-in", "t", hosts, vms)
    pol = policy(k_out=2)
    p = plan(pol, (["s1", "s2"], [(v.id, v.host, "dst") for v in vms]))
    _, d = run(inv, p, FIXED.with_changes(max_inbound_migrations=1))
    iv = sorted((v["start_s"], v["end_s"]) for v in d["vms"])
    for (_, end), (start, _) in itertools.pairwise(iv):
        assert start >= end - 1e-6
    _, d_free = run(inv, p, FIXED.with_changes(max_inbound_migrations=4))
    assert max(v["end_s"] for v in d_free["vms"]) < max(v["end_s"] for v in d["vms"])


def test_hosts_upgrade_when_drained_and_waves_follow_each_other() -> None:
    inv = two_hosts(n_vms=3)
    res, d = run(inv, pair_plan(inv))
    last_mig = max(v["end_s"] for v in d["vms"] if v["wave"] == 1)
    src = next(h for h in d["hosts"] if h["host"] == "src")
    assert src["upgrade_start_s"] == pytest.approx(last_mig)
    assert src["end_s"] == pytest.approx(last_mig + 600 + FIXED.enable_s)
    assert d["waves"][1]["start_s"] == d["waves"][0]["end_s"]
    assert d["makespan_s"] == d["waves"][-1]["end_s"]
    assert res.lower_bound_s <= res.makespan_s + 1e-6
    # One host a wave, its migrations one after another: this plan's bound is met exactly.
    assert res.plan_lower_bound_s == pytest.approx(res.makespan_s, rel=1e-9)
    assert {h["status"] for h in d["hosts"]} == {"upgraded"}


def test_same_seed_same_run_other_seed_other_run() -> None:
    inv = two_hosts(n_vms=6)
    model = SimModel(migration_failure_p=0.3, upgrade_failure_p=0.0)
    p = pair_plan(inv, k_out=2)
    a = json.dumps(run(inv, p, model, seed=7)[1], sort_keys=True)
    b = json.dumps(run(inv, p, model, seed=7)[1], sort_keys=True)
    c = json.dumps(run(inv, p, model, seed=8)[1], sort_keys=True)
    assert a == b
    assert a != c


def test_capacity_breach_has_its_time() -> None:
    hosts = (host("src"), host("tiny", ram_gb=4))
    vms = (vm("v0", "src", ram_gb=3), vm("v1", "src", ram_gb=3))
    inv = Inventory("tight", "t", hosts, vms)
    p = plan(policy(k_out=1), (["src"], [("v0", "src", "tiny"), ("v1", "src", "tiny")]))
    res, d = run(inv, p)
    assert res.breach_counts["capacity"] == 1
    second_start = sorted(v["start_s"] for v in d["vms"])[1]
    assert res.breaches[0].t == pytest.approx(second_start, abs=1e-3)
    assert "tiny" in res.breaches[0].message


def test_a_valid_plan_breaches_nothing_and_agrees_with_the_checker() -> None:
    examples = resources.files("planner") / "examples"
    inv = load_inventory(str(examples / "small.json"))
    pol = load_policy(str(examples / "small-policy.yaml"))
    p = greedy_plan(inv, pol, inventory_sha256=inv.digest or "")
    assert check_plan(inv, p).ok
    prep = prepare(inv, p, SimModel())
    assert prep.check_count == 0
    for seed in range(3):
        res = simulate(prep, seed)
        assert not res.breached and res.completed
        assert res.lower_bound_s <= res.makespan_s


def test_anti_affinity_breach_while_in_flight() -> None:
    inv = three_hosts_ha()
    p = plan(policy(), (["a"], [("g1", "a", "b"), ("x1", "a", "c")]))
    res, _ = run(inv, p)
    assert res.breach_counts["anti_affinity"] == 1
    assert res.breaches[0].t == pytest.approx(FIXED.disable_s)


def test_ha_group_breach() -> None:
    inv = three_hosts_ha()
    p = plan(policy(), (["ctl-1"], []), (["ctl-2"], []))
    res, _ = run(inv, p)
    assert res.breach_counts["ha_group"] == 2  # each wave takes one of the two needed
    wave2 = FIXED.disable_s + 900 + FIXED.enable_s  # ctl-1 is back, ctl-2 goes
    assert [b.t for b in res.breaches] == [0.0, pytest.approx(wave2)]


def test_headroom_breach_only_when_the_policy_asks() -> None:
    inv = two_hosts(n_vms=2)
    strict = pair_plan(inv)
    loose = strict
    strict = Plan(strict.inventory_sha256, policy(failures=1), strict.waves)
    res, _ = run(inv, strict)
    assert res.breach_counts["headroom"] >= 1  # with one of two hosts down, N+1 cannot hold
    assert res.breaches[0].t == FIXED.disable_s  # when the first VM lands on dst
    res2, _ = run(inv, loose)
    assert not res2.breached


def test_failed_migrations_are_retried_then_left_in_place() -> None:
    inv = two_hosts(n_vms=2)
    model = FIXED.with_changes(migration_failure_p=1.0, migration_retries=2)
    _res, d = run(inv, pair_plan(inv), model)
    first = [v for v in d["vms"] if v["wave"] == 1]
    assert all(v["attempts"] == 3 and v["outcome"] == "failed" for v in first)
    assert next(h for h in d["hosts"] if h["host"] == "src")["status"] == "not-upgraded"
    kinds = [f["kind"] for f in d["failures"]]
    assert kinds.count("migration") >= 2
    assert all(f["absorbed"] for f in d["failures"])


def test_failed_upgrade_leaves_the_host_down_and_the_next_wave_stalls() -> None:
    inv = two_hosts(n_vms=2)
    model = FIXED.with_changes(upgrade_failure_p=1.0)
    res, d = run(inv, pair_plan(inv), model)
    assert d["failures"][0]["kind"] == "upgrade"
    # Wave 2 moves the VMs back to src, which stayed down: nothing can start.
    assert res.stalled and not res.completed
    assert res.stall is not None and "down after a failed upgrade" in res.stall["reason"]
    assert res.makespan_s == pytest.approx(d["waves"][1]["start_s"] + FIXED.disable_s)


def test_stall_when_a_destination_is_disabled() -> None:
    hosts = (host("src"), host("off", enabled=False))
    inv = Inventory("stuck", "t", hosts, (vm("v0", "src"),))
    res, _ = run(inv, plan(policy(), (["src"], [("v0", "src", "off")])))
    assert res.stalled and res.stall is not None
    assert res.stall["pending"][0]["why"] == "destination disabled or down in the inventory"


def test_a_crash_is_reported_with_its_headroom_verdict() -> None:
    inv = two_hosts(n_vms=2)
    model = FIXED.with_changes(crash_p=1.0, crash_window_s=(1.0, 2.0))
    _res, d = run(inv, pair_plan(inv), model, seed=3)
    crashes = [f for f in d["failures"] if f["kind"] == "crash"]
    assert len(crashes) == 1 and 1.0 <= crashes[0]["t_s"] <= 2.0
    assert isinstance(crashes[0]["absorbed"], bool)
    _res_again, d_again = run(inv, pair_plan(inv), model, seed=3)
    assert d_again["failures"] == d["failures"]


def test_non_converging_vm_holds_the_slot_until_nova_aborts_it() -> None:
    inv = Inventory(
        "busy",
        "t",
        (host("src"), host("dst")),
        (vm("hot", "src", ram_gb=2, dirty=5000.0), vm("calm", "src", ram_gb=2)),
    )
    _res, d = run(
        inv, plan(policy(k_out=1), (["src"], [("hot", "src", "dst"), ("calm", "src", "dst")]))
    )
    hot = next(v for v in d["vms"] if v["vm"] == "hot")
    calm = next(v for v in d["vms"] if v["vm"] == "calm")
    assert hot["non_converging"] and hot["outcome"] == "aborted"
    assert hot["end_s"] - hot["start_s"] == pytest.approx(FIXED.orchestration_overhead_s + 1600)
    assert calm["start_s"] == pytest.approx(hot["end_s"])
    assert d["hosts"][0]["status"] == "not-upgraded"
    assert d["failures"][0]["kind"] == "timeout"


def test_stopped_vm_is_down_until_its_host_is_back() -> None:
    inv = Inventory("stop", "t", (host("h"),), (vm("pet", "h", migration="none"),))
    p = Plan("0" * 64, policy(), (Wave(1, ("h",), (), (Stop("pet", "h"),)),))
    res, d = run(inv, p)
    expected = FIXED.shutdown_s + 600 + FIXED.enable_s + FIXED.boot_s
    assert d["stops"][0]["downtime_s"] == pytest.approx(expected)
    assert res.makespan_s == pytest.approx(
        FIXED.disable_s + FIXED.shutdown_s + 600 + FIXED.enable_s
    )


@pytest.mark.parametrize(
    ("window", "why"),
    [((10.0, 11.0), "while its VMs shut down"), ((1.0, 2.0), "while it is being disabled")],
)
@pytest.mark.parametrize("sharing", ["dynamic", "static"])
def test_a_crash_in_the_last_wave_ends_the_run(
    window: tuple[float, float], why: str, sharing: Sharing
) -> None:
    """The only host of the last wave crashes (`why`): the wave, and the upgrade, end with the
    crash. What the host would have done next (its shutdown completing, its drain starting)
    never happens and does not stretch the makespan."""
    inv = Inventory("stop", "t", (host("h"),), (vm("pet", "h", migration="none"),))
    p = Plan("0" * 64, policy(), (Wave(1, ("h",), (), (Stop("pet", "h"),)),))
    model = FIXED.with_changes(sharing=sharing, crash_p=1.0, crash_window_s=window)
    res, d = run(inv, p, model)
    (crash,) = res.failures
    assert crash.kind == "crash" and window[0] <= crash.t <= window[1]
    assert d["hosts"][0]["status"] == "crashed"
    assert res.completed and res.wave_end == [crash.t] and res.makespan_s == crash.t


def test_crash_absorbed_only_when_the_others_can_take_its_vms() -> None:
    hosts = (host("a"), host("b"), host("spare", ram_gb=8))
    vms = (vm("va", "a", ram_gb=40), vm("vb", "b", ram_gb=40))
    inv = Inventory("full", "t", hosts, vms)
    p = plan(policy(), (["spare"], []))
    model = FIXED.with_changes(crash_p=1.0)  # at a random time within the run
    verdicts = {}
    for seed in range(40):
        res, d = run(inv, p, model, seed=seed)
        (crash,) = [f for f in d["failures"] if f["kind"] == "crash"]
        assert 0.0 <= crash["t_s"] <= res.makespan_s + 1e-3
        verdicts[crash["host"]] = crash["absorbed"]
    # a's 40 GiB do not fit in b's 24 GiB free (nor the other way round); spare holds nothing.
    assert verdicts == {"a": False, "b": False, "spare": True}


@pytest.mark.parametrize("sharing", ["dynamic", "static"])
def test_checked_plans_of_generated_clouds_breach_nothing(sharing: Sharing) -> None:
    """The simulator and the checker agree: a plan the checker accepts keeps every invariant at
    every event when nothing fails, and the makespan respects its lower bounds (with dynamic
    shares too, where a migration that Nova's timeout aborts sends less the less share it gets:
    seed 7's cloud has two)."""
    from planner.errors import InfeasibleError
    from planner.generate import GenerateSpec, default_policy, generate

    simulated = 0
    for seed in range(8):
        spec = GenerateSpec(hosts=16 + seed, seed=seed, utilisation=0.45, azs=1 + seed % 2)
        inv = generate(spec)
        try:
            p = greedy_plan(inv, default_policy(spec))
        except InfeasibleError:
            continue
        if not check_plan(inv, p, digest=p.inventory_sha256).ok:
            continue
        prep = prepare(inv, p, SimModel(sharing=sharing), check=False)
        res = simulate(prep, seed)
        assert not res.breached, res.breaches[:3]
        assert res.completed
        assert res.lower_bound_s <= res.makespan_s + 1e-6
        assert res.plan_lower_bound_s <= res.makespan_s + 1e-6
        simulated += 1
    assert simulated >= 6


def test_novas_zero_means_no_outgoing_limit() -> None:
    inv = two_hosts(n_vms=4)
    _, d = run(inv, pair_plan(inv, k_out=1), FIXED.with_changes(max_concurrent_live_migrations=0))
    starts = {v["start_s"] for v in d["vms"] if v["wave"] == 1}
    assert starts == {FIXED.disable_s}  # all four at once


@pytest.mark.parametrize("name", sorted(NAMED))
def test_every_named_fixture_plan_runs_clean(name: str) -> None:
    """The project's named clouds with plans the checker accepts: the simulator agrees (no
    breach at any event), finishes, upgrades every host and respects both lower bounds."""
    fx = NAMED[name]()
    assert check_plan(fx.inventory, fx.plan, digest=fx.plan.inventory_sha256).ok
    prep = prepare(fx.inventory, fx.plan, FIXED, check=False)
    res = simulate(prep, 1)
    assert not res.breached, res.breaches[:3]
    assert res.completed
    assert set(res.host_status.values()) <= {"upgraded"}
    assert res.lower_bound_s <= res.makespan_s + 1e-6
    assert res.plan_lower_bound_s <= res.makespan_s + 1e-6
