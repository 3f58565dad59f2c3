"""The executor's fallback in the simulator: a planned force-complete that does not take
(`failures.force_complete`: `refused` or `no-effect`) is followed as planner/executor/force.py
follows it: the live migration aborted (at once on a refusal, after `force_stall_s` without
progress when it had no effect), then cold to the same host when the policy's `non_converging`
lists `cold`, else the VM stays and its host is not upgraded."""

from __future__ import annotations

import dataclasses

import pytest

from planner.errors import InputError
from planner.inventory import Inventory
from planner.plan import Plan
from planner.policy import Remedy
from sim.engine import OUTCOME_NAMES, Prepared, SimResult, prepare, simulate
from sim.migration import GIB, MIB, cold_migration, live_migration
from sim.model import SimModel, model_from_dict
from sim.prepare import forced_at, no_progress_seen
from sim.timeline import result_to_dict, summary, timeline_rows
from tests.sim_fixtures import host, plan, policy, vm

FIXED = SimModel().with_changes(
    upgrade_compute=SimModel().upgrade_compute.__class__("fixed", 900.0),
    upgrade_controller=SimModel().upgrade_controller.__class__("fixed", 900.0),
)
OVERHEAD = FIXED.orchestration_overhead_s
NIC = FIXED.nic_bytes_s(host("x"))
BUSY = 4096.0  # MiB/s dirtied: never converges on 10 GbE
AFTER = 600.0  # the plan's force_complete_after_s


def _inv(dirty: float = BUSY, disk: int | None = 20) -> Inventory:
    vms = (vm("v", "src", ram_gb=16, dirty=dirty, local_disk=disk),)
    return Inventory("pair", "t", (host("src"), host("dst")), vms)


def _plan(*non_converging: Remedy) -> Plan:
    pol = dataclasses.replace(policy(), non_converging=non_converging or ("force-complete",))
    p = plan(pol, (["src"], [("v", "src", "dst")]))
    w = p.waves[0]
    m = dataclasses.replace(w.migrations[0], force_complete_after_s=AFTER, remedy="force-complete")
    return dataclasses.replace(p, waves=(dataclasses.replace(w, migrations=(m,)),))


def _run(inv: Inventory, p: Plan, how: str) -> tuple[Prepared, SimResult]:
    prep = prepare(inv, p, FIXED.with_changes(force_complete=how), check=False)
    return prep, simulate(prep, 0, record=True)


def test_a_force_that_takes_upgrades_the_host() -> None:
    prep, res = _run(_inv(), _plan(), "takes")
    assert OUTCOME_NAMES[res.mig_state[0]] == "paused"
    assert res.host_status[0] == "upgraded"
    s = summary(prep, res)
    assert s["force_fallbacks"] == {"cold": 0, "stayed": 0}
    assert s["remedies"]["force-complete"] == 1


def test_a_refused_force_without_cold_leaves_the_vm_and_its_host() -> None:
    inv = _inv()
    prep, res = _run(inv, _plan(), "refused")
    r = res
    assert OUTCOME_NAMES[r.mig_state[0]] == "fallback-stayed"
    assert r.host_status[0] == "not-upgraded"
    assert r.mig_down[0] == 0.0
    # aborted at the force's time (the refusal comes back at once)
    disk = 20 * GIB
    at = forced_at(AFTER, BUSY * MIB, NIC, disk, FIXED)
    dur = r.mig_end[0] - r.mig_start[0]
    assert dur == pytest.approx(OVERHEAD + at)
    s = summary(prep, res)
    assert s["force_fallbacks"] == {"cold": 0, "stayed": 1}
    assert s["hosts_not_upgraded"] == 1 and s["remedies"]["force-complete"] == 0
    ends = [x for x in timeline_rows(prep, res) if x["event"] == "migration_end"]
    assert ends[0]["outcome"] == "fallback-stayed"
    assert "refused" in ends[0]["detail"] and "not upgraded" in ends[0]["detail"]


def test_a_force_without_effect_falls_back_to_cold_after_the_stall() -> None:
    inv = _inv()
    prep, res = _run(inv, _plan("force-complete", "cold"), "no-effect")
    r = res
    assert OUTCOME_NAMES[r.mig_state[0]] == "fallback-cold"
    assert r.host_status[0] == "upgraded"
    disk = 20 * GIB
    at = forced_at(AFTER, BUSY * MIB, NIC, disk, FIXED)
    seen = no_progress_seen(at, FIXED)
    assert seen == pytest.approx(at + FIXED.poll_s + FIXED.force_stall_s)
    cold = cold_migration(disk, NIC, running=True, shutdown_s=FIXED.shutdown_s, boot_s=FIXED.boot_s)
    dur = r.mig_end[0] - r.mig_start[0]
    assert dur == pytest.approx(2 * OVERHEAD + seen + cold.total_s)
    assert r.mig_down[0] == pytest.approx(cold.downtime_s)
    d = result_to_dict(prep, res)
    assert d["summary"]["force_fallbacks"] == {"cold": 1, "stayed": 0}
    assert d["vms"][0]["outcome"] == "fallback-cold"
    assert d["downtime"][0]["how"] == "fallback-cold"
    # the same cloud where the policy has no cold: the VM stays
    _, stay = _run(inv, _plan(), "no-effect")
    assert OUTCOME_NAMES[stay.mig_state[0]] == "fallback-stayed"
    # a VM that may not be migrated cold (`migration: none`) stays too
    inv_none = dataclasses.replace(inv, vms=(dataclasses.replace(inv.vms[0], migration="none"),))
    _, none = _run(inv_none, _plan("force-complete", "cold"), "no-effect")
    assert OUTCOME_NAMES[none.mig_state[0]] == "fallback-stayed"


def test_a_force_without_effect_on_a_migration_still_progressing_changes_nothing() -> None:
    # dirtying just below the bandwidth: the memory keeps falling after the force, so the
    # executor sees progress and waits; it converges by itself
    inv = _inv(dirty=NIC / MIB * 0.99, disk=None)
    p = _plan("force-complete", "cold")
    _, res = _run(inv, p, "no-effect")
    assert OUTCOME_NAMES[res.mig_state[0]] == "converged"
    free = live_migration(16 * GIB, NIC * 0.99, NIC)
    dur = res.mig_end[0] - res.mig_start[0]
    assert dur == pytest.approx(OVERHEAD + free.total_s)


def test_the_model_key_is_read_and_checked() -> None:
    m = model_from_dict({"failures": {"force_complete": "no-effect"}}, "m.yaml")
    assert m.force_complete == "no-effect"
    assert m.to_dict()["failures"]["force_complete"] == "no-effect"
    with pytest.raises(InputError, match=r"m\.yaml.*failures\.force_complete"):
        model_from_dict({"failures": {"force_complete": "sometimes"}}, "m.yaml")
