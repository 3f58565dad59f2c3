"""Issue 8 in the simulator: rollback time and the canary's soak are in the makespan."""

from __future__ import annotations

from typing import Any

import pytest

from planner.errors import InputError
from planner.inventory import Inventory
from planner.plan import Plan
from sim.engine import SimResult, prepare, simulate
from sim.model import Distribution, SimModel, model_from_dict
from sim.timeline import result_to_dict, timeline_rows
from tests.clouds import NAMED
from tests.sim_fixtures import pair_plan, two_hosts

FIXED = SimModel(
    upgrade_compute=Distribution("fixed", 600.0),
    upgrade_rollback=Distribution("fixed", 200.0),
    max_inbound_migrations=None,
)


def run(inv: Inventory, p: Plan, model: SimModel) -> tuple[SimResult, dict[str, Any]]:
    prep = prepare(inv, p, model, check=False)
    res = simulate(prep, 0)
    return res, result_to_dict(prep, res)


def events(inv: Inventory, p: Plan, model: SimModel) -> list[dict[str, Any]]:
    prep = prepare(inv, p, model, check=False)
    return timeline_rows(prep, simulate(prep, 0))


def test_a_failed_upgrade_is_rolled_back_and_the_run_goes_on() -> None:
    inv = two_hosts(2)
    p = pair_plan(inv)
    res, d = run(inv, p, FIXED.with_changes(upgrade_failure_p=1.0, rollback=True))
    assert res.completed and not res.stalled
    assert set(res.host_status.values()) == {"rolled-back"}
    assert d["summary"]["hosts_rolled_back"] == 2 and d["summary"]["rollback_s"] == 400.0
    # the upgrade fails at its end (600 s), then the rollback (200 s) before the enable
    ok, _ = run(inv, p, FIXED)
    assert res.makespan_s == pytest.approx(ok.makespan_s + 2 * 200)
    kinds = [
        e["event"] for e in events(inv, p, FIXED.with_changes(upgrade_failure_p=1.0, rollback=True))
    ]
    assert kinds.count("rollback_start") == 2 and kinds.count("rollback_end") == 2


def test_without_rollback_a_failed_upgrade_stays_down_and_stalls() -> None:
    inv = two_hosts(2)
    res, _ = run(inv, pair_plan(inv), FIXED.with_changes(upgrade_failure_p=1.0))
    assert res.stalled and "upgrade-failed" in res.host_status.values()
    assert res.rollback_s == 0.0


def test_the_soak_adds_exactly_its_time_and_to_both_bounds() -> None:
    inv = two_hosts(2)
    p = pair_plan(inv)
    base, _ = run(inv, p, FIXED)
    soaked, d = run(inv, p, FIXED.with_changes(canary_hosts=1, soak_s=1800.0))
    assert soaked.makespan_s == pytest.approx(base.makespan_s + 1800.0)
    assert soaked.lower_bound_s == pytest.approx(base.lower_bound_s + 1800.0)
    assert soaked.plan_lower_bound_s == pytest.approx(base.plan_lower_bound_s + 1800.0)
    assert soaked.makespan_s >= soaked.plan_lower_bound_s >= soaked.lower_bound_s - 1e-6
    assert d["summary"]["soak_s"] == 1800.0
    assert d["summary"]["canary"] == {"hosts": ["src"], "failed": False}
    # the soak sits between wave 1's end and wave 2's start
    assert d["waves"][1]["start_s"] == pytest.approx(d["waves"][0]["end_s"] + 1800.0)
    rows = events(inv, p, FIXED.with_changes(canary_hosts=1, soak_s=1800.0))
    soak = [r for r in rows if r["event"] in ("soak_start", "soak_end")]
    assert [r["event"] for r in soak] == ["soak_start", "soak_end"]
    assert soak[1]["t_s"] - soak[0]["t_s"] == pytest.approx(1800.0)


def test_no_canary_no_soak() -> None:
    inv = two_hosts(2)
    res, d = run(inv, pair_plan(inv), FIXED.with_changes(soak_s=1800.0))
    assert res.soak_s == 0.0 and d["summary"]["canary"] is None


def test_a_failed_canary_rolls_its_hosts_back_before_the_next_wave() -> None:
    inv = two_hosts(2)
    p = pair_plan(inv)
    m = FIXED.with_changes(canary_hosts=1, soak_s=300.0, canary_failure_p=1.0)
    res, d = run(inv, p, m)
    assert res.completed and res.canary_failed
    assert res.host_status == {0: "rolled-back", 1: "upgraded"}
    assert any(f.kind == "canary" for f in res.failures)
    # wave 2 waits for the soak, then the rollback: disable 5 + rollback 200 + enable 5
    assert d["waves"][1]["start_s"] == pytest.approx(d["waves"][0]["end_s"] + 300 + 210)
    passed, _ = run(inv, p, m.with_changes(canary_failure_p=0.0))
    assert passed.makespan_s == pytest.approx(res.makespan_s - 210)
    assert not passed.canary_failed


def test_model_file_keys_for_rollback_and_canary() -> None:
    m = model_from_dict(
        {
            "format_version": "1.0",
            "kind": "sim-model",
            "executor": {"rollback": True, "canary_hosts": 3, "soak_s": 900},
            "upgrade": {"rollback": {"uniform": [100, 300]}},
            "failures": {"canary": {"probability": 0.1}},
        }
    )
    assert (m.rollback, m.canary_hosts, m.soak_s, m.canary_failure_p) == (True, 3, 900.0, 0.1)
    assert m.upgrade_rollback == Distribution("uniform", 100.0, 300.0)
    assert m.to_dict()["executor"]["canary_hosts"] == 3
    with pytest.raises(InputError) as e:
        model_from_dict(
            {
                "format_version": "1.0",
                "kind": "sim-model",
                "executor": {"canary_hosts": -1},
                "failures": {"canary": {"probabilty": 0.1}},
            },
            "m.yaml",
        )
    text = str(e.value)
    assert "executor.canary_hosts" in text and "failures.canary.probabilty" in text


def test_the_canary_waits_for_a_compute_host_in_service() -> None:
    """Controllers (first in ha_trio) and a host disabled before the run take no VMs: the
    canary's hosts are the first upgraded compute hosts in service, as the executor picks them."""
    for name, first in (("ha_trio", "cmp-2"), ("unavailable_hosts", "cmp-1")):
        fx = NAMED[name]()
        _, d = run(fx.inventory, fx.plan, FIXED.with_changes(canary_hosts=1, soak_s=600.0))
        assert d["summary"]["canary"]["hosts"] == [first], name
