"""The plan's remedies in the simulator, as the executor carries them out: a live migration with
`force_complete_after_s` force-completed then or when its progress stalls between polls, `remedy:
cold` migrations cold, `remedy: stop` VMs down for their host's maintenance; per-VM downtime."""

from __future__ import annotations

import dataclasses
import math
from importlib import resources

import pytest

from planner.checker import check_plan
from planner.formats import load_inventory, load_policy
from planner.inventory import Inventory
from planner.plan import Plan, Stop, Wave
from sim.engine import OUTCOME_NAMES, prepare, simulate
from sim.migration import GIB, MIB, live_migration
from sim.model import SimModel
from sim.prepare import forced_at
from sim.timeline import result_to_dict, summary
from solver.greedy import greedy_plan
from tests.sim_fixtures import host, plan, policy, vm

FIXED = SimModel().with_changes(
    upgrade_compute=SimModel().upgrade_compute.__class__("fixed", 900.0),
    upgrade_controller=SimModel().upgrade_controller.__class__("fixed", 900.0),
)
OVERHEAD = FIXED.orchestration_overhead_s
NIC = FIXED.nic_bytes_s(host("x"))  # one migration alone: the whole NIC


def _with(p: Plan, **fields: object) -> Plan:
    """Every live migration of p given `fields` (force_complete_after_s, remedy)."""
    waves = tuple(
        dataclasses.replace(
            w,
            migrations=tuple(
                dataclasses.replace(m, **fields) if m.method == "live" else m  # type: ignore[arg-type]
                for m in w.migrations
            ),
        )
        for w in p.waves
    )
    return dataclasses.replace(p, waves=waves)


def _one(inv: Inventory, p: Plan, model: SimModel = FIXED) -> tuple[float, str, float]:
    """The only migration's duration, outcome and downtime."""
    prep = prepare(inv, p, model, check=False)
    res = simulate(prep, 0)
    assert res.completed
    return res.mig_end[0] - res.mig_start[0], OUTCOME_NAMES[res.mig_state[0]], res.mig_down[0]


def _pair(dirty: float, ram_gb: float = 16, disk: int | None = None) -> Inventory:
    vms = (vm("v", "src", ram_gb=ram_gb, dirty=dirty, local_disk=disk),)
    return Inventory("pair", "t", (host("src"), host("dst")), vms)


def _stalled_at(poll: float, stall: float, t0: float = 0.0) -> float:
    """The executor's read that sees `stall` seconds without a new low after the first read of
    the memory phase (planner/executor/force.py)."""
    return max(1, math.ceil(t0 / poll - 1e-9)) * poll + math.ceil(stall / poll - 1e-9) * poll


def test_a_stalled_migration_is_forced_once_its_memory_makes_no_progress() -> None:
    inv = _pair(dirty=4096.0)  # 4 GiB/s dirtied: never converges on 10 GbE
    p = plan(policy(), (["src"], [("v", "src", "dst")]))
    dur, outcome, _ = _one(inv, p)
    assert outcome == "aborted"  # Nova's completion timeout: the VM stays, the host is left
    dur, outcome, down = _one(inv, _with(p, force_complete_after_s=3600.0))
    assert outcome == "paused" and down > 0
    poll, stall = FIXED.poll_s, FIXED.force_stall_s
    # No disk: memory from the start; no new low after the first read for force_stall_s.
    at = _stalled_at(poll, stall)
    assert poll + stall <= at < 2 * poll + stall
    forced = live_migration(16 * GIB, 4096 * MIB, NIC, force_after_s=at)
    assert dur == pytest.approx(OVERHEAD + forced.total_s)
    # a shorter stall setting forces sooner, by as much
    quick, _, _ = _one(
        inv, _with(p, force_complete_after_s=3600.0), FIXED.with_changes(force_stall_s=10.0)
    )
    assert dur - quick == pytest.approx(at - _stalled_at(poll, 10.0), abs=1e-6)


def test_the_poll_interval_is_the_models() -> None:
    inv = _pair(dirty=4096.0)
    p = _with(plan(policy(), (["src"], [("v", "src", "dst")])), force_complete_after_s=3600.0)
    fast, _, _ = _one(inv, p)
    slow, _, _ = _one(inv, p, FIXED.with_changes(poll_s=60.0))
    stall = FIXED.force_stall_s
    expected = _stalled_at(60.0, stall) - _stalled_at(FIXED.poll_s, stall)
    assert expected > 0 and slow - fast == pytest.approx(expected, abs=1e-6)


def test_a_disk_is_copied_before_the_memory_reads_count() -> None:
    # block migration: 100 GiB of disk first, then memory that never converges
    inv = _pair(dirty=4096.0, disk=100)
    t0 = 100 * GIB / NIC
    assert forced_at(3600.0, 4096 * MIB, NIC, 100 * GIB, FIXED) == pytest.approx(
        _stalled_at(FIXED.poll_s, FIXED.force_stall_s, t0)
    )
    p = _with(plan(policy(), (["src"], [("v", "src", "dst")])), force_complete_after_s=3600.0)
    dur, outcome, _ = _one(inv, p)
    assert outcome == "paused" and dur > t0


def test_a_slow_but_progressing_migration_is_forced_at_the_planned_time() -> None:
    # dirtying just below the bandwidth: the remaining memory falls, slowly; the plan's time wins
    inv = _pair(dirty=NIC / MIB * 0.99, ram_gb=64)
    p = plan(policy(), (["src"], [("v", "src", "dst")]))
    free, _, _ = _one(inv, p)
    assert free > 400
    dur, outcome, _ = _one(inv, _with(p, force_complete_after_s=300.0))
    forced = live_migration(64 * GIB, NIC * 0.99, NIC, force_after_s=300.0)
    assert outcome == "paused" and dur == pytest.approx(OVERHEAD + forced.total_s)
    assert 300 < dur - OVERHEAD < free - OVERHEAD


def test_a_migration_that_converges_first_is_not_forced() -> None:
    inv = _pair(dirty=10.0)
    p = plan(policy(), (["src"], [("v", "src", "dst")]))
    plain = _one(inv, p)
    assert _one(inv, _with(p, force_complete_after_s=3600.0)) == plain
    assert plain[1] == "converged"


def test_post_copy_where_permitted() -> None:
    inv = _pair(dirty=4096.0)
    p = _with(plan(policy(), (["src"], [("v", "src", "dst")])), force_complete_after_s=600.0)
    model = FIXED.with_changes(nova=dataclasses.replace(FIXED.nova, permit_post_copy=True))
    _, outcome, down = _one(inv, p, model)
    assert outcome == "post-copy" and down == pytest.approx(model.qemu.postcopy_switch_s)


def test_cold_remedy_is_a_cold_migration_down_for_its_copy() -> None:
    inv = _pair(dirty=4096.0, disk=20)
    p = plan(policy(), (["src"], [("v", "src", "dst")]))
    w = p.waves[0]
    m = dataclasses.replace(w.migrations[0], method="cold", remedy="cold")
    cold = dataclasses.replace(p, waves=(dataclasses.replace(w, migrations=(m,)),))
    prep = prepare(inv, cold, FIXED, check=False)
    res = simulate(prep, 0)
    copy = 20 * GIB / NIC
    assert OUTCOME_NAMES[res.mig_state[0]] == "cold"
    assert res.mig_down[0] == pytest.approx(FIXED.shutdown_s + copy + FIXED.boot_s)
    d = result_to_dict(prep, res)
    assert d["vms"][0]["remedy"] == "cold"
    assert d["downtime"] == [{"vm": "v", "downtime_s": pytest.approx(res.mig_down[0], abs=1e-3),
                              "how": "cold"}]  # fmt: skip
    assert summary(prep, res)["remedies"] == {"force-complete": 0, "cold": 1, "stop": 0}


def test_stop_remedy_is_down_for_its_hosts_maintenance() -> None:
    inv = _pair(dirty=4096.0)
    pol = policy()
    p = Plan("0" * 64, pol, (Wave(1, ("src",), (), (Stop("v", "src", remedy="stop"),)),))
    prep = prepare(inv, p, FIXED, check=False)
    res = simulate(prep, 0)
    assert res.completed and res.host_status[0] == "upgraded"
    maint = FIXED.disable_s + FIXED.shutdown_s + 900.0 + FIXED.enable_s
    assert res.stop_down[0] == pytest.approx(maint - FIXED.disable_s + FIXED.boot_s)
    d = result_to_dict(prep, res)
    assert d["stops"] == [
        {"vm": "v", "downtime_s": pytest.approx(res.stop_down[0]), "remedy": "stop"}
    ]
    assert d["downtime"][0]["how"] == "stop-remedy"
    assert summary(prep, res)["remedies"]["stop"] == 1


def _example() -> tuple[Inventory, Plan]:
    examples = resources.files("planner") / "examples"
    inv = load_inventory(str(examples / "small.json"))
    pol = load_policy(str(examples / "small-policy.yaml"))
    return inv, greedy_plan(inv, pol, inventory_sha256=inv.digest or "")


def _remedied(p: Plan, flagged: set[tuple[str, str]], after: float) -> Plan:
    """p with force_complete_after_s on the migrations of `flagged` (VM, source)."""
    waves = []
    for w in p.waves:
        ms = tuple(
            dataclasses.replace(m, force_complete_after_s=after, remedy="force-complete")
            if (m.vm, m.src) in flagged
            else m
            for m in w.migrations
        )
        waves.append(dataclasses.replace(w, migrations=ms))
    return dataclasses.replace(p, waves=tuple(waves))


def test_the_example_with_force_complete_upgrades_every_host() -> None:
    inv, p = _example()
    prep = prepare(inv, p, SimModel())
    res = simulate(prep, 0)
    before = summary(prep, res)
    assert before["hosts_not_upgraded"] > 0  # busy VMs abort at Nova's timeout, hosts left
    flagged = {
        (inv.vms[prep.m_vm[mi]].id, prep.hosts[prep.m_src[mi]])
        for mi in range(len(prep.m_vm))
        if OUTCOME_NAMES[res.mig_state[mi]] == "aborted"
    }
    assert len(flagged) == before["hosts_not_upgraded"]
    fixed = _remedied(p, flagged, 900.0)
    assert check_plan(inv, fixed).ok
    prep2 = prepare(inv, fixed, SimModel())
    assert prep2.check_count == 0
    for seed in range(3):
        res2 = simulate(prep2, seed)
        s = summary(prep2, res2)
        assert res2.completed and not res2.breached
        assert s["hosts_not_upgraded"] == 0 and s["hosts_upgraded"] == len(res2.host_status)
        assert s["remedies"]["force-complete"] == len(flagged)
        assert res2.makespan_s < res.makespan_s
    d = result_to_dict(prep2, res2)
    forced = [r for r in d["downtime"] if r["how"] == "force-complete"]
    assert {r["vm"] for r in forced} == {v for v, _ in flagged}
    assert all(r["downtime_s"] > 0 for r in forced)
    assert sum(1 for r in d["vms"] if r.get("remedy") == "force-complete") == len(flagged)
