"""One pass/fail pair for every rule in `checker.RULES`, on the named fixture clouds.

Each failing twin breaks one thing in a valid plan (or cloud) and asserts the violation's rule,
wave and objects; each passing twin asserts that the rule stays silent. `test_every_rule_has_a_pair`
keeps it that way when a rule is added.
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import replace

import pytest

from planner.checker import RULES, CheckReport, Violation, check_inventory, check_plan
from planner.inventory import Inventory
from planner.plan import Plan, Schedule, ScheduledWindow, Stop, Wave
from planner.windows import Window
from tests.checker_pwin_pairs import *  # noqa: F403  (per-project windows side by side)
from tests.checker_sbs_pairs import *  # noqa: F403  (the side-by-side rules' pairs)
from tests.clouds import (
    NAMED,
    NEW,
    Cloud,
    Fixture,
    add_migration,
    add_stop,
    affinity_pair,
    anti_affinity_tight,
    drop_migration,
    edit_host,
    edit_migration,
    edit_vm,
    estimates,
    gpu_cloud,
    ha_trio,
    make_plan,
    migration_to_stop,
    mixed_methods,
    move_host,
    mv,
    pinned_and_bound,
    policy,
    remove_host,
    three_plus_spare,
    two_azs_two_racks,
    unavailable_hosts,
    wave,
    with_policy,
)
from tests.clouds_nova import down_host, left_down

DIGEST = "a" * 64


def check(inv: Inventory, plan: Plan, digest: str | None = None) -> CheckReport:
    return check_plan(inv, plan, digest=digest)


def of(report: CheckReport, rule: str) -> list[Violation]:
    return [v for v in report.violations if v.rule == rule]


def one(report: CheckReport, rule: str) -> Violation:
    found = of(report, rule)
    assert len(found) == 1, f"expected one {rule} violation, got {[str(v) for v in found]}"
    return found[0]


def silent(report: CheckReport, rule: str) -> None:
    assert of(report, rule) == [], [str(v) for v in of(report, rule)]


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_fixture_plans_are_valid(name: str) -> None:
    fx: Fixture = NAMED[name]()
    report = check(fx.inventory, fx.plan)
    assert report.ok, [str(v) for v in report.violations]
    assert report.warnings == ()
    assert fx.plan.policy == fx.policy


def test_every_rule_has_a_pair() -> None:
    here = vars(sys.modules[__name__])
    for rule in RULES:
        stem = "test_" + rule.replace(".", "_")
        assert f"{stem}_passes" in here and f"{stem}_fails" in here, rule


# -- digest ---------------------------------------------------------------------------------------
def test_digest_passes() -> None:
    fx = three_plus_spare()
    plan = replace(fx.plan, inventory_sha256=DIGEST)
    silent(check(fx.inventory, plan, digest=DIGEST), "digest")


def test_digest_fails() -> None:
    fx = three_plus_spare()
    plan = replace(fx.plan, inventory_sha256=DIGEST)
    v = one(check(fx.inventory, plan, digest="b" * 64), "digest")
    assert v.wave is None
    assert v.objects == (DIGEST, "b" * 64)


# -- wave_index -----------------------------------------------------------------------------------
def test_wave_index_passes() -> None:
    fx = three_plus_spare()
    silent(check(fx.inventory, fx.plan), "wave_index")


def test_wave_index_fails() -> None:
    fx = three_plus_spare()
    waves = list(fx.plan.waves)
    waves[2] = replace(waves[2], index=5)
    v = one(check(fx.inventory, replace(fx.plan, waves=tuple(waves))), "wave_index")
    assert v.wave == 5
    assert v.numbers == {"position": 3, "index": 5}


def test_wave_index_fails_on_an_empty_wave() -> None:
    fx = three_plus_spare()
    plan = replace(fx.plan, waves=(*fx.plan.waves, Wave(5, ())))
    v = one(check(fx.inventory, plan), "wave_index")
    assert v.wave == 5
    assert "no hosts" in v.message


# -- unknown --------------------------------------------------------------------------------------
def test_unknown_passes() -> None:
    fx = three_plus_spare()
    silent(check(fx.inventory, fx.plan), "unknown")


def test_unknown_fails() -> None:
    fx = three_plus_spare()
    plan = move_host(fx.plan, "ghost", 1)
    plan = add_migration(plan, 2, mv("no-such-vm", "cmp-1", "cmp-4"))
    plan = add_migration(plan, 3, mv("vm-2a", "cmp-2", "nowhere"))
    plan = add_stop(plan, 4, "phantom", "cmp-3")
    found = {(v.wave, v.objects) for v in of(check(fx.inventory, plan), "unknown")}
    assert found == {
        (1, ("ghost",)),
        (2, ("no-such-vm",)),
        (3, ("nowhere",)),
        (4, ("phantom",)),
    }


# -- coverage -------------------------------------------------------------------------------------
def test_coverage_passes() -> None:
    fx = unavailable_hosts()  # cmp-4 already runs NEW and is rightly in no wave
    silent(check(fx.inventory, fx.plan), "coverage")


def test_coverage_fails() -> None:
    fx = three_plus_spare()
    v = one(check(fx.inventory, remove_host(fx.plan, "cmp-3")), "coverage")
    assert v.wave is None
    assert v.objects == ("cmp-3",)
    assert v.numbers == {"missing": 1}


def test_coverage_fails_on_a_host_in_two_waves() -> None:
    fx = three_plus_spare()
    plan = move_host(fx.plan, "cmp-4", 3)
    plan = replace(plan, waves=(replace(plan.waves[0], hosts=("cmp-4",)), *plan.waves[1:]))
    v = one(check(fx.inventory, plan), "coverage")
    assert (v.wave, v.objects) == (3, ("cmp-4",))
    assert "twice" in v.message


def test_coverage_fails_on_a_host_already_at_target() -> None:
    fx = unavailable_hosts()
    plan = replace(fx.plan, waves=(*fx.plan.waves, wave(5, ["cmp-4"])))
    v = one(check(fx.inventory, plan), "coverage")
    assert (v.wave, v.objects) == (5, ("cmp-4",))
    assert NEW in v.message


def test_coverage_without_target_version_means_every_host() -> None:
    fx = unavailable_hosts()
    plan = with_policy(fx.plan, target_version=None)
    v = one(check(fx.inventory, plan), "coverage")
    assert v.objects == ("cmp-4",)


# -- order ----------------------------------------------------------------------------------------
def test_order_passes() -> None:
    fx = ha_trio()
    silent(check(fx.inventory, fx.plan), "order")
    # A host of policy.first may share its wave with other hosts: "not after" is the rule.
    shared = make_plan(
        fx.policy,
        wave(1, ["ctl-1"]),
        wave(2, ["ctl-2"]),
        wave(3, ["ctl-3", "cmp-2"]),
        wave(4, ["cmp-1"], [mv("vm-1", "cmp-1", "cmp-2")]),
    )
    assert check(fx.inventory, shared).ok


def test_order_fails() -> None:
    fx = ha_trio()
    plan = make_plan(
        fx.policy,
        wave(1, ["ctl-1", "cmp-2"]),
        wave(2, ["ctl-2"]),
        wave(3, ["ctl-3"]),
        wave(4, ["cmp-1"], [mv("vm-1", "cmp-1", "cmp-2")]),
    )
    v = one(check(fx.inventory, plan), "order")
    assert (v.wave, v.objects) == (1, ("cmp-2", "ctl-3"))


def test_order_fails_for_policy_last() -> None:
    fx = three_plus_spare()
    plan = with_policy(fx.plan, last=("cmp-2",))
    v = one(check(fx.inventory, plan), "order")
    assert (v.wave, v.objects) == (4, ("cmp-3", "cmp-2"))
    # ... and cmp-3 last is exactly what the plan does.
    silent(check(fx.inventory, with_policy(fx.plan, last=("cmp-3",))), "order")


# -- wave_size ------------------------------------------------------------------------------------
def test_wave_size_passes() -> None:
    fx = two_azs_two_racks()  # 4 hosts a wave, 2 per AZ, 1 per rack: exactly at every limit
    silent(check(fx.inventory, fx.plan), "wave_size")


def test_wave_size_fails() -> None:
    fx = two_azs_two_racks()
    v = [
        v for v in of(check(fx.inventory, with_policy(fx.plan, max_hosts_per_wave=3)), "wave_size")
    ]
    assert [(x.wave, x.objects, dict(x.numbers)) for x in v] == [
        (1, (), {"hosts": 4, "max": 3}),
        (2, (), {"hosts": 4, "max": 3}),
    ]


def test_wave_size_fails_per_az_and_per_rack() -> None:
    fx = two_azs_two_racks()
    plan = move_host(fx.plan, "az1-r1-h2", 1)
    found = {(v.wave, v.objects) for v in of(check(fx.inventory, plan), "wave_size")}
    assert found == {(1, ()), (1, ("az1",)), (1, ("az1-r1",))}


# -- migrations_per_wave --------------------------------------------------------------------------
def test_migrations_per_wave_passes() -> None:
    fx = three_plus_spare()  # two migrations in each of waves 2-4: exactly at the cap
    silent(
        check(fx.inventory, with_policy(fx.plan, max_migrations_per_wave=2)), "migrations_per_wave"
    )
    silent(check(fx.inventory, fx.plan), "migrations_per_wave")  # no cap


def test_migrations_per_wave_fails() -> None:
    fx = three_plus_spare()
    report = check(fx.inventory, with_policy(fx.plan, max_migrations_per_wave=1))
    found = of(report, "migrations_per_wave")
    assert [(v.wave, v.objects, dict(v.numbers)) for v in found] == [
        (w, (), {"migrations": 2, "max": 1}) for w in (2, 3, 4)
    ]
    assert "2 migrations, max_migrations_per_wave is 1" in found[0].message
    # The lower bound: each cmp-i needs a wave of its own anyway; two VMs cannot move in one.
    assert report.metrics["lower_bounds"]["infeasible"]


# -- ha_group -------------------------------------------------------------------------------------
def test_ha_group_passes() -> None:
    fx = ha_trio()
    silent(check(fx.inventory, fx.plan), "ha_group")


def test_ha_group_fails() -> None:
    fx = ha_trio()
    plan = make_plan(
        fx.policy,
        wave(1, ["ctl-1", "ctl-2"]),
        wave(2, ["ctl-3"]),
        wave(3, ["cmp-2"]),
        wave(4, ["cmp-1"], [mv("vm-1", "cmp-1", "cmp-2")]),
    )
    v = one(check(fx.inventory, plan), "ha_group")
    assert (v.wave, v.objects) == (1, ("control-plane", "ctl-1", "ctl-2"))
    assert v.numbers == {"available": 1, "min_available": 2}


def test_ha_group_counts_a_host_already_down() -> None:
    fx = ha_trio()
    inv = edit_host(fx.inventory, "ctl-3", up=False)
    assert check_inventory(inv, fx.policy) == []  # two of three up: fine before any wave
    found = [(v.wave, v.objects) for v in of(check(inv, fx.plan), "ha_group")]
    assert found == [
        (1, ("control-plane", "ctl-1", "ctl-3")),
        (2, ("control-plane", "ctl-2", "ctl-3")),
    ]


# -- evacuation -----------------------------------------------------------------------------------
def test_evacuation_passes() -> None:
    fx = three_plus_spare()
    silent(check(fx.inventory, fx.plan), "evacuation")


def test_evacuation_fails() -> None:
    fx = three_plus_spare()
    v = one(check(fx.inventory, drop_migration(fx.plan, "vm-2a")), "evacuation")
    assert (v.wave, v.objects) == (3, ("cmp-2", "vm-2a"))


def test_evacuation_fails_on_a_vm_handled_twice() -> None:
    fx = three_plus_spare()
    plan = add_stop(fx.plan, 3, "vm-2a", "cmp-2")
    v = [v for v in of(check(fx.inventory, plan), "evacuation")]
    assert [(x.wave, x.objects) for x in v] == [(3, ("vm-2a",))]


# -- source ---------------------------------------------------------------------------------------
def test_source_passes() -> None:
    fx = three_plus_spare()
    silent(check(fx.inventory, fx.plan), "source")


def test_source_fails() -> None:
    fx = three_plus_spare()
    report = check(fx.inventory, edit_migration(fx.plan, "vm-2a", src="cmp-3"))
    v = one(report, "source")
    assert (v.wave, v.objects) == (3, ("vm-2a", "cmp-2", "cmp-3"))
    assert {x.rule for x in report.violations} == {"source"}


def test_source_fails_when_a_vm_leaves_a_host_outside_the_wave() -> None:
    fx = three_plus_spare()
    plan = add_migration(fx.plan, 2, mv("vm-3a", "cmp-3", "cmp-4"))
    found = [(v.wave, v.objects) for v in of(check(fx.inventory, plan), "source")]
    assert found[0] == (2, ("vm-3a", "cmp-3"))
    # vm-3a is then on cmp-4, so its planned migration from cmp-3 in wave 4 is wrong too.
    assert found[1:] == [(4, ("vm-3a", "cmp-4", "cmp-3")), (4, ("vm-3a", "cmp-4"))]


# -- destination ----------------------------------------------------------------------------------
def test_destination_passes() -> None:
    fx = unavailable_hosts()  # to the already-upgraded cmp-4, past the disabled and down hosts
    silent(check(fx.inventory, fx.plan), "destination")


@pytest.mark.parametrize(
    ("dst", "why"), [("cmp-2", "disabled"), ("cmp-3", "down"), ("cmp-1", "in this wave")]
)
def test_destination_fails(dst: str, why: str) -> None:
    fx = unavailable_hosts()
    v = one(check(fx.inventory, edit_migration(fx.plan, "vm-1", dst=dst)), "destination")
    assert (v.wave, v.objects) == (1, ("vm-1", dst))
    assert why in v.message


def test_destination_fails_on_a_controller() -> None:
    fx = ha_trio()
    v = one(check(fx.inventory, edit_migration(fx.plan, "vm-1", dst="ctl-1")), "destination")
    assert (v.wave, v.objects) == (5, ("vm-1", "ctl-1"))
    assert "controller" in v.message


def test_destination_fails_on_another_host_of_the_wave() -> None:
    fx = three_plus_spare()
    plan = make_plan(
        policy(2, failures=0),
        wave(1, ["cmp-4"]),
        wave(
            2,
            ["cmp-1", "cmp-2"],
            [
                mv("vm-1a", "cmp-1", "cmp-4"),
                mv("vm-1b", "cmp-1", "cmp-4"),
                mv("vm-2a", "cmp-2", "cmp-1"),
                mv("vm-2b", "cmp-2", "cmp-3"),
            ],
        ),
        wave(3, ["cmp-3"], [mv(v, "cmp-3", "cmp-2") for v in ("vm-3a", "vm-3b", "vm-2b")]),
    )
    report = check(fx.inventory, plan)
    v = one(report, "destination")
    assert (v.wave, v.objects) == (2, ("vm-2a", "cmp-1"))
    assert {x.rule for x in report.violations} == {"destination"}


# -- method ---------------------------------------------------------------------------------------
def test_method_passes() -> None:
    fx = mixed_methods()  # live for the live VM, cold for SHUTOFF and cold-only VMs
    silent(check(fx.inventory, fx.plan), "method")


@pytest.mark.parametrize("vm", ["off", "coldonly"])
def test_method_fails(vm: str) -> None:
    fx = mixed_methods()
    report = check(fx.inventory, edit_migration(fx.plan, vm, method="live"))
    v = one(report, "method")
    assert (v.wave, v.objects) == (2, (vm,))
    assert {x.rule for x in report.violations} == {"method"}


def test_method_fails_on_migrating_a_vm_that_cannot_move() -> None:
    fx = mixed_methods()
    plan = fx.plan
    plan = replace(plan, waves=tuple(replace(w, stops=()) for w in plan.waves))
    plan = add_migration(plan, 2, mv("pinned-pci", "cmp-1", "cmp-2", "cold"))
    report = check(fx.inventory, plan)
    v = one(report, "method")
    assert (v.wave, v.objects) == (2, ("pinned-pci",))
    assert {x.rule for x in report.violations} == {"method"}


# -- stop -----------------------------------------------------------------------------------------
def test_stop_passes() -> None:
    fx = mixed_methods()
    silent(check(fx.inventory, fx.plan), "stop")


def test_stop_fails() -> None:
    fx = mixed_methods()
    v = one(check(fx.inventory, migration_to_stop(fx.plan, "live")), "stop")
    assert (v.wave, v.objects) == (2, ("live",))


def test_stop_fails_without_allow_stop() -> None:
    fx = mixed_methods()
    report = check(fx.inventory, with_policy(fx.plan, allow_stop=False))
    v = one(report, "stop")
    assert (v.wave, v.objects) == (2, ("pinned-pci",))
    assert {x.rule for x in report.violations} == {"stop"}


def test_stop_fails_outside_the_wave() -> None:
    fx = mixed_methods()
    plan = add_stop(fx.plan, 1, "pinned-pci", "cmp-1")
    found = [(v.wave, v.objects) for v in of(check(fx.inventory, plan), "stop")]
    assert (1, ("pinned-pci", "cmp-1")) in found


# -- remedies (planner.rules.remedy) --------------------------------------------------------------
ALL_REMEDIES = ("force-complete", "cold", "stop")


def warned(report: CheckReport, rule: str) -> list[Violation]:
    return [v for v in report.warnings if v.rule == rule]


# -- left_out (planner.rules.method; more in tests/test_nova_rules.py) ---------------------------
def test_left_out_passes() -> None:
    fx = down_host()  # the down host's VMs are evacuated: it is upgraded
    report = check(fx.inventory, fx.plan)
    assert report.ok and warned(report, "left_out") == [], [str(v) for v in report.violations]


def test_left_out_fails() -> None:
    fx = left_down()  # down, and no evacuation: left out, not upgraded, and no coverage gap
    report = check(fx.inventory, fx.plan)
    assert report.ok, [str(v) for v in report.violations]
    (w,) = warned(report, "left_out")
    assert w.objects == ("cmp-1",) and "down" in w.message and "allow_evacuate" in w.message


def stop_as_remedy(plan: Plan, vm: str) -> Plan:
    """The migration of `vm` replaced by a stop in place with `remedy: stop`."""
    plan = migration_to_stop(plan, vm)
    waves = tuple(
        replace(w, stops=tuple(Stop(s.vm, s.host, "stop") if s.vm == vm else s for s in w.stops))
        for w in plan.waves
    )
    return replace(plan, waves=waves)


def test_force_complete_passes() -> None:
    fx = mixed_methods()
    plan = edit_migration(fx.plan, "live", force_complete_after_s=600.0, remedy="force-complete")
    report = check(fx.inventory, plan)
    assert report.ok, [str(v) for v in report.violations]


def test_force_complete_fails() -> None:
    fx = mixed_methods()
    v = one(
        check(fx.inventory, edit_migration(fx.plan, "off", force_complete_after_s=60.0)),
        "force_complete",
    )
    assert (v.wave, v.objects, v.numbers) == (2, ("off",), {"force_complete_after_s": 60.0})
    assert "cold migration" in v.message


def test_remedy_passes() -> None:
    fx = mixed_methods()
    plan = with_policy(fx.plan, non_converging=ALL_REMEDIES)
    plan = edit_migration(plan, "off", remedy="cold")
    plan = stop_as_remedy(plan, "live")  # a VM that could live-migrate, stopped as a remedy
    report = check(fx.inventory, plan)
    assert report.ok, [str(v) for v in report.violations]


def test_remedy_fails() -> None:
    fx = mixed_methods()
    plan = with_policy(fx.plan, non_converging=ALL_REMEDIES)
    v = one(check(fx.inventory, edit_migration(plan, "live", remedy="cold")), "remedy")
    assert (v.wave, v.objects) == (2, ("live",))
    assert "needs method cold, not live" in v.message


def test_remedy_fails_when_the_policy_does_not_allow_it() -> None:
    fx = mixed_methods()  # non_converging: the default, force-complete only
    plan = stop_as_remedy(edit_migration(fx.plan, "off", remedy="cold"), "live")
    found = [(v.objects, v.message) for v in of(check(fx.inventory, plan), "remedy")]
    assert [o for o, _ in found] == [("off",), ("live",)]
    assert all("non_converging (force-complete) does not allow" in m for _, m in found)


def test_a_stop_as_remedy_still_needs_allow_stop() -> None:
    fx = mixed_methods()
    plan = with_policy(fx.plan, non_converging=ALL_REMEDIES, allow_stop=False)
    report = check(fx.inventory, stop_as_remedy(plan, "live"))
    assert {v.objects for v in of(report, "stop")} == {("live",), ("pinned-pci",)}
    silent(report, "remedy")


def test_non_converging_passes() -> None:
    fx = mixed_methods()
    busy = {"live": {"live_outcome": "aborted", "converges": False, "live_s": 6400.0}}
    report = check_plan(fx.inventory, fx.plan, estimates=estimates(fx.inventory))
    assert warned(report, "non_converging") == [] and report.ok
    # a VM that would not finish, with a remedy: no warning
    plan = edit_migration(fx.plan, "live", remedy="force-complete", force_complete_after_s=600.0)
    report = check_plan(fx.inventory, plan, estimates=estimates(fx.inventory, busy))
    assert warned(report, "non_converging") == [] and report.ok


def test_non_converging_fails() -> None:
    fx = mixed_methods()
    busy = {
        "live": {
            "live_outcome": "aborted",
            "converges": False,
            "live_s": 6400.0,
            "dirty_B_s": 1.5e9,
        }
    }
    report = check_plan(fx.inventory, fx.plan, estimates=estimates(fx.inventory, busy))
    assert report.ok  # a warning, not a violation
    [w] = warned(report, "non_converging")
    assert (w.wave, w.objects) == (2, ("live",))
    assert "aborted after 6400 s; dirty rate 1500 MB/s against 1150 MB/s" in w.message
    # without estimates nothing is known
    assert warned(check(fx.inventory, fx.plan), "non_converging") == []


def test_max_migration_passes() -> None:
    fx = mixed_methods()
    plan = with_policy(fx.plan, max_migration_s=600.0)
    silent(check_plan(fx.inventory, plan, estimates=estimates(fx.inventory)), "max_migration")
    slow = estimates(fx.inventory, {"live": {"live_s": 900.0}})
    remedied = edit_migration(plan, "live", remedy="force-complete", force_complete_after_s=500.0)
    silent(check_plan(fx.inventory, remedied, estimates=slow), "max_migration")


def test_max_migration_fails() -> None:
    fx = mixed_methods()
    plan = with_policy(fx.plan, max_migration_s=600.0)
    slow = estimates(fx.inventory, {"live": {"live_s": 900.0}})
    v = one(check_plan(fx.inventory, plan, estimates=slow), "max_migration")
    assert (v.wave, v.objects, v.numbers) == (2, ("live",), {"live_s": 900.0, "max": 600.0})
    silent(check(fx.inventory, plan), "max_migration")  # no estimates, no judgement


def test_max_downtime_passes() -> None:
    fx = mixed_methods()
    plan = with_policy(fx.plan, max_downtime_s=30.0)
    plan = edit_migration(plan, "live", remedy="force-complete", force_complete_after_s=600.0)
    est = estimates(fx.inventory, {"live": {"forced_downtime_s": 2.0}})
    report = check_plan(fx.inventory, plan, estimates=est)
    silent(report, "max_downtime")
    assert report.ok


def test_max_downtime_fails() -> None:
    fx = mixed_methods()
    plan = with_policy(fx.plan, max_downtime_s=30.0)
    plan = edit_migration(plan, "live", remedy="force-complete", force_complete_after_s=600.0)
    est = estimates(fx.inventory, {"live": {"forced_downtime_s": 45.0}})
    v = one(check_plan(fx.inventory, plan, estimates=est), "max_downtime")
    assert (v.wave, v.objects, v.numbers) == (2, ("live",), {"downtime_s": 45.0, "max": 30.0})


def test_max_downtime_fails_for_a_stop_and_a_cold_remedy() -> None:
    fx = mixed_methods()
    plan = with_policy(fx.plan, max_downtime_s=100.0, non_converging=ALL_REMEDIES)
    plan = stop_as_remedy(edit_migration(plan, "off", remedy="cold"), "live")
    report = check_plan(fx.inventory, plan, estimates=estimates(fx.inventory))
    assert [(v.objects, v.numbers["downtime_s"]) for v in of(report, "max_downtime")] == [
        (("off",), 120.0),
        (("live",), 1210.0),
    ]


# -- schedule (planner.rules.schedule) -------------------------------------------------------------
T0 = dt.datetime(2026, 12, 14, 21, tzinfo=dt.UTC)  # Monday 22:00 in Berlin
HOUR = dt.timedelta(hours=1)
NIGHTS = (Window(tuple(range(7)), 22 * 60, 6 * 60, "Europe/Berlin"),)  # 22:00-06:00 daily


def nightly(plan: Plan, *groups: tuple[str, ...], start: dt.datetime = T0) -> Plan:
    """The plan with a schedule: one night (22:00-06:00 Berlin) per group of hosts."""
    wins = tuple(
        ScheduledWindow(i, start + 24 * HOUR * (i - 1), start + 24 * HOUR * (i - 1) + 8 * HOUR, g)
        for i, g in enumerate(groups, start=1)
    )
    return replace(plan, schedule=Schedule(start, wins, wins[-1].end - HOUR))


def test_schedule_passes() -> None:
    fx = three_plus_spare()
    report = check(fx.inventory, nightly(fx.plan, ("cmp-4", "cmp-1"), ("cmp-2", "cmp-3")))
    assert report.ok, [str(v) for v in report.violations]


def test_schedule_fails() -> None:
    fx = three_plus_spare()
    plan = nightly(fx.plan, ("cmp-4", "cmp-1"), ("cmp-2", "cmp-1", "ghost"))
    found = [(v.objects, v.message) for v in of(check(fx.inventory, plan), "schedule")]
    assert found == [
        (("cmp-1",), "cmp-1 is scheduled twice (windows 1 and 2)"),
        (("ghost",), "ghost is scheduled but in no wave of the plan"),
        (("cmp-3",), "1 host(s) of the plan's waves are in no scheduled window: cmp-3"),
    ]


def test_schedule_fails_on_times() -> None:
    fx = three_plus_spare()
    plan = nightly(fx.plan, ("cmp-4", "cmp-1"), ("cmp-2", "cmp-3"))
    assert plan.schedule is not None
    w1, w2 = plan.schedule.windows
    bad = Schedule(
        T0 + HOUR,  # after window 1 starts
        (replace(w1, end=T0 - HOUR), replace(w2, index=3, start=T0 - 2 * HOUR)),
        T0,
    )
    found = [v.message for v in of(check(fx.inventory, replace(plan, schedule=bad)), "schedule")]
    assert found == [
        "window 1 ends (2026-12-14T20:00:00+00:00) before it starts (2026-12-14T21:00:00+00:00)",
        "window 1 starts (2026-12-14T21:00:00+00:00) before the schedule "
        "(2026-12-14T22:00:00+00:00)",
        "scheduled window at position 2 has index 3; they are numbered 1, 2, 3, ...",
        "window 3 starts (2026-12-14T19:00:00+00:00) before the schedule "
        "(2026-12-14T22:00:00+00:00)",
        "window 3 starts (2026-12-14T19:00:00+00:00) before window 1 ends "
        "(2026-12-14T20:00:00+00:00); windows are in time order, apart",
        "last_done (2026-12-14T21:00:00+00:00) is before the schedule's start "
        "(2026-12-14T22:00:00+00:00)",
    ]


def test_schedule_window_passes() -> None:
    fx = three_plus_spare()
    plan = with_policy(fx.plan, windows=NIGHTS)
    report = check(fx.inventory, nightly(plan, ("cmp-4", "cmp-1"), ("cmp-2", "cmp-3")))
    assert report.ok, [str(v) for v in report.violations]
    # a window inside an opening is fine too (it need not be all of it)
    inside = nightly(plan, ("cmp-4", "cmp-1", "cmp-2", "cmp-3"), start=T0 + HOUR)
    assert inside.schedule is not None
    short = replace(inside.schedule.windows[0], end=T0 + 3 * HOUR)
    inside = replace(inside, schedule=replace(inside.schedule, windows=(short,)))
    silent(check(fx.inventory, inside), "schedule_window")


def test_schedule_window_fails() -> None:
    fx = three_plus_spare()
    plan = with_policy(fx.plan, windows=NIGHTS)
    noon = nightly(plan, ("cmp-4", "cmp-1", "cmp-2", "cmp-3"), start=T0 - 10 * HOUR)
    found = of(check(fx.inventory, noon), "schedule_window")
    assert [v.objects for v in found] == [(h, "1") for h in ("cmp-4", "cmp-1", "cmp-2", "cmp-3")]
    assert "closed then (next open 2026-12-14T21:00:00+00:00 to 2026-12-15T05:00:00+00:00)" in (
        found[0].message
    )
    long = nightly(plan, ("cmp-4", "cmp-1", "cmp-2", "cmp-3"))
    assert long.schedule is not None
    w = replace(long.schedule.windows[0], end=T0 + 9 * HOUR)  # an hour past 06:00
    long = replace(long, schedule=replace(long.schedule, windows=(w,)))
    found = of(check(fx.inventory, long), "schedule_window")
    assert len(found) == 4 and "close at 2026-12-15T05:00:00+00:00" in found[0].message


def test_schedule_window_fails_where_no_window_applies() -> None:
    fx = three_plus_spare()
    az9 = (replace(NIGHTS[0], azs=("az9",)),)
    plan = nightly(with_policy(fx.plan, windows=az9), ("cmp-4", "cmp-1", "cmp-2", "cmp-3"))
    found = of(check(fx.inventory, plan), "schedule_window")
    assert len(found) == 4 and "no window of the policy applies to its AZ" in found[0].message


def test_window_azs_passes() -> None:
    fx = three_plus_spare()
    plan = with_policy(fx.plan, windows=(replace(NIGHTS[0], azs=("az1",)),))
    assert warned(check(fx.inventory, plan), "window_azs") == []


def test_window_azs_fails() -> None:
    fx = three_plus_spare()
    plan = with_policy(fx.plan, windows=(*NIGHTS, replace(NIGHTS[0], azs=("az1", "az9"))))
    report = check(fx.inventory, plan)
    assert report.ok  # a warning: policies are reused across clouds
    [w] = warned(report, "window_azs")
    assert w.objects == ("az9",) and "windows[1] names AZ 'az9'" in w.message


# -- version --------------------------------------------------------------------------------------
def test_version_passes() -> None:
    fx = three_plus_spare()
    silent(check(fx.inventory, fx.plan), "version")
    # Old to old is allowed too: the VM simply moves again later.
    plan = make_plan(
        fx.policy,
        wave(1, ["cmp-1"], [mv("vm-1a", "cmp-1", "cmp-4"), mv("vm-1b", "cmp-1", "cmp-4")]),
        wave(2, ["cmp-4"], [mv("vm-1a", "cmp-4", "cmp-1"), mv("vm-1b", "cmp-4", "cmp-1")]),
        wave(3, ["cmp-2"], [mv("vm-2a", "cmp-2", "cmp-4"), mv("vm-2b", "cmp-2", "cmp-4")]),
        wave(4, ["cmp-3"], [mv("vm-3a", "cmp-3", "cmp-2"), mv("vm-3b", "cmp-3", "cmp-2")]),
    )
    report = check(fx.inventory, plan)
    assert report.ok, [str(v) for v in report.violations]
    assert report.metrics["vms_moved_more_than_once"] == 2


def test_version_fails() -> None:
    fx = three_plus_spare()
    plan = add_migration(fx.plan, 3, mv("vm-1a", "cmp-4", "cmp-3"))  # cmp-4 upgraded in wave 1
    v = one(check(fx.inventory, plan), "version")
    assert (v.wave, v.objects) == (3, ("vm-1a", "cmp-4", "cmp-3"))


# -- az -------------------------------------------------------------------------------------------
def test_az_passes() -> None:
    fx = pinned_and_bound()
    silent(check(fx.inventory, fx.plan), "az")


def test_az_fails() -> None:
    fx = pinned_and_bound()
    report = check(fx.inventory, edit_migration(fx.plan, "pinned", dst="cmp-3"))
    v = one(report, "az")
    assert (v.wave, v.objects) == (2, ("pinned", "cmp-3"))
    # cmp-3 itself is upgraded in wave 3: the VM now on it must move again.
    assert [(x.rule, x.wave) for x in report.violations if x.rule != "az"] == [("evacuation", 3)]


# -- aggregates -----------------------------------------------------------------------------------
def test_aggregates_passes() -> None:
    fx = pinned_and_bound()
    silent(check(fx.inventory, fx.plan), "aggregates")


def test_aggregates_fails() -> None:
    fx = pinned_and_bound()
    report = check(fx.inventory, edit_migration(fx.plan, "bound", dst="cmp-3"))
    v = one(report, "aggregates")
    assert (v.wave, v.objects) == (2, ("bound", "cmp-3"))
    # cmp-3 itself is upgraded in wave 3: the VM now on it must move again.
    assert [(x.rule, x.wave) for x in report.violations if x.rule != "aggregates"] == [
        ("evacuation", 3)
    ]


# -- capacity -------------------------------------------------------------------------------------
def _small_spare(fx: Fixture) -> Inventory:
    # 12 effective VCPU, by Placement's rule: floor((10 - 2) * 1.5).
    return edit_host(
        fx.inventory,
        "cmp-4",
        capacity={"VCPU": 10, "MEMORY_MB": 65536, "DISK_GB": 1000},
        reserved={"VCPU": 2},
        allocation_ratio={"VCPU": 1.5},
    )


def test_capacity_passes() -> None:
    fx = three_plus_spare()
    inv = _small_spare(fx)
    plan = edit_migration(fx.plan, "vm-2a", dst="cmp-4")  # cmp-4: 3 x 4 VCPU = 12, exactly full
    report = check(inv, plan)
    silent(report, "capacity")
    assert report.ok, [str(v) for v in report.violations]


def test_capacity_fails() -> None:
    fx = three_plus_spare()
    inv = _small_spare(fx)
    plan = edit_migration(edit_migration(fx.plan, "vm-2a", dst="cmp-4"), "vm-2b", dst="cmp-4")
    v = one(check(inv, plan), "capacity")
    assert (v.wave, v.objects) == (3, ("cmp-4",))
    assert v.numbers == {"used": 16, "capacity": 12}
    assert "VCPU" in v.message


# -- anti_affinity --------------------------------------------------------------------------------
def test_anti_affinity_passes() -> None:
    fx = anti_affinity_tight()
    silent(check(fx.inventory, fx.plan), "anti_affinity")
    # Two per host allowed: web-2 may join web-1 on cmp-4.
    c = Cloud()
    c.hosts_("cmp-1", "cmp-2", "cmp-3", "cmp-4")
    for i in (1, 2, 3):
        c.vm(f"web-{i}", f"cmp-{i}")
    c.group("web", "anti-affinity", members=["web-1", "web-2", "web-3"], max_per_host=2)
    plan = edit_migration(fx.plan, "web-2", dst="cmp-4")
    assert check(c.build(), plan).ok


def test_anti_affinity_fails() -> None:
    fx = anti_affinity_tight()
    report = check(fx.inventory, edit_migration(fx.plan, "web-2", dst="cmp-4"))
    v = one(report, "anti_affinity")
    assert (v.wave, v.objects) == (3, ("web", "cmp-4"))
    assert v.numbers == {"members": 2, "max": 1}
    assert {x.rule for x in report.violations} == {"anti_affinity"}


def test_soft_anti_affinity_is_a_warning_not_a_violation() -> None:
    fx = anti_affinity_tight()
    groups = (replace(fx.inventory.server_groups[0], policy="soft-anti-affinity"),)
    inv = replace(fx.inventory, server_groups=groups)
    report = check(inv, edit_migration(fx.plan, "web-2", dst="cmp-4"))
    assert report.ok
    assert [w.rule for w in report.warnings] == ["soft_anti_affinity"]


# -- affinity -------------------------------------------------------------------------------------
def test_affinity_passes() -> None:
    fx = affinity_pair()
    silent(check(fx.inventory, fx.plan), "affinity")


def test_affinity_fails() -> None:
    fx = affinity_pair()
    plan = edit_migration(fx.plan, "db-2", dst="cmp-3")
    v = one(check(fx.inventory, plan), "affinity")
    assert (v.wave, v.objects) == (2, ("db", "cmp-2", "cmp-3"))


def test_soft_affinity_is_a_warning_not_a_violation() -> None:
    fx = affinity_pair()
    groups = (replace(fx.inventory.server_groups[0], policy="soft-affinity"),)
    inv = replace(fx.inventory, server_groups=groups)
    plan = make_plan(
        fx.policy,
        wave(1, ["cmp-2"]),
        wave(2, ["cmp-1"], [mv("db-1", "cmp-1", "cmp-2"), mv("db-2", "cmp-1", "cmp-3")]),
        wave(3, ["cmp-3"], [mv("db-2", "cmp-3", "cmp-1")]),
    )
    report = check(inv, plan)
    assert report.ok, [str(v) for v in report.violations]
    assert [w.rule for w in report.warnings] == ["soft_affinity"]


# -- headroom -------------------------------------------------------------------------------------
def test_headroom_passes() -> None:
    fx = three_plus_spare()
    report = check(fx.inventory, fx.plan)
    silent(report, "headroom")
    # Wave 1 (cmp-4 down): 3 x 8 VCPU free against the largest host's 16.
    assert report.metrics["min_headroom_ratio"]["az1/VCPU"] == 1.5


def test_headroom_fails() -> None:
    fx = three_plus_spare()
    report = check(fx.inventory, with_policy(fx.plan, **{"headroom.failures": 2}))
    # With any one host down, 24 VCPU are free against the two largest hosts' 32: every wave.
    found = of(report, "headroom")
    assert [(v.wave, v.objects) for v in found] == [(w, ("az1", "VCPU")) for w in (1, 2, 3, 4)]
    assert found[0].numbers == {"free": 24, "required": 32}
    assert {x.rule for x in report.violations} == {"headroom"}


def test_headroom_fails_on_reserve_percent() -> None:
    fx = three_plus_spare()
    # Before any wave 40 of 64 VCPU (62.5%) are free; with cmp-4 down 24 of 48 (50%).
    plan = with_policy(fx.plan, **{"headroom.failures": 0, "headroom.reserve_percent": 55})
    report = check(fx.inventory, plan)
    found = of(report, "headroom")
    assert [(v.wave, v.objects) for v in found] == [(w, ("az1", "VCPU")) for w in (1, 2, 3, 4)]
    assert found[0].numbers == {"free": 24, "required": 27}  # ceil(0.55 * 48)
    silent(report, "inventory.headroom")


def test_headroom_per_az_is_separate_per_az() -> None:
    # az2's spare capacity cannot cover az1 with scope az, but can with scope cloud.
    c = Cloud().hosts_("a1", "a2", az="az1").hosts_("b1", "b2", az="az2")
    c.vm("v1", "a1", vcpu=8).vm("v2", "a2", vcpu=8)
    plan = make_plan(
        policy(1),
        wave(1, ["b1"]),
        wave(2, ["b2"]),
        wave(3, ["a1"], [mv("v1", "a1", "b1")]),
        wave(4, ["a2"], [mv("v2", "a2", "b2")]),
    )
    inv = c.build()
    per_az = check(inv, plan)
    # Wave 3: a1 down, a2 alone in az1 has 8 VCPU free, not the 16 of a1 (and so for memory
    # and disk). Wave 4: a2 down, a1 is empty again: exactly enough.
    assert {(v.wave, v.objects) for v in of(per_az, "headroom")} == {
        (3, ("az1", "VCPU")),
        (3, ("az1", "MEMORY_MB")),
        (3, ("az1", "DISK_GB")),
    }
    assert check(inv, with_policy(plan, **{"headroom.scope": "cloud"})).ok


# -- inventory rules ------------------------------------------------------------------------------
def test_inventory_capacity_passes() -> None:
    fx = three_plus_spare()
    silent(check(fx.inventory, fx.plan), "inventory.capacity")


def test_inventory_capacity_fails() -> None:
    fx = three_plus_spare()
    inv = edit_host(
        fx.inventory, "cmp-1", capacity={"VCPU": 6, "MEMORY_MB": 65536, "DISK_GB": 1000}
    )
    v = one(check(inv, fx.plan), "inventory.capacity")
    assert (v.wave, v.objects) == (None, ("cmp-1",))
    assert v.numbers == {"used": 8, "capacity": 6}
    assert str(v).startswith("inventory: [inventory.capacity]")


def test_inventory_headroom_passes() -> None:
    fx = three_plus_spare()
    assert (
        check_inventory(fx.inventory, with_policy(fx.plan, **{"headroom.failures": 2}).policy) == []
    )


def test_inventory_headroom_fails() -> None:
    fx = three_plus_spare()
    v = one(
        check(fx.inventory, with_policy(fx.plan, **{"headroom.failures": 3})), "inventory.headroom"
    )
    assert (v.wave, v.objects) == (None, ("az1", "VCPU"))
    assert v.numbers == {"free": 40, "required": 48}


def test_inventory_ha_group_passes() -> None:
    fx = ha_trio()
    silent(check(edit_host(fx.inventory, "ctl-3", up=False), fx.plan), "inventory.ha_group")


def test_inventory_ha_group_fails() -> None:
    fx = ha_trio()
    inv = edit_host(edit_host(fx.inventory, "ctl-2", up=False), "ctl-3", enabled=False)
    v = one(check(inv, fx.plan), "inventory.ha_group")
    assert (v.wave, v.objects) == (None, ("control-plane", "ctl-2", "ctl-3"))


def test_inventory_anti_affinity_passes() -> None:
    fx = anti_affinity_tight()
    silent(check(fx.inventory, fx.plan), "inventory.anti_affinity")


def test_inventory_anti_affinity_fails() -> None:
    fx = anti_affinity_tight()
    inv = edit_vm(fx.inventory, "web-3", host="cmp-2")
    report = check(inv, fx.plan)
    v = one(report, "inventory.anti_affinity")
    assert (v.wave, v.objects) == (None, ("web", "cmp-2"))
    # Reported once, as an inventory problem, not again for every wave.
    silent(report, "anti_affinity")


def test_inventory_affinity_passes() -> None:
    fx = affinity_pair()
    silent(check(fx.inventory, fx.plan), "inventory.affinity")


def test_inventory_affinity_fails() -> None:
    fx = affinity_pair()
    inv = edit_vm(fx.inventory, "db-2", host="cmp-3")
    report = check(inv, fx.plan)
    v = one(report, "inventory.affinity")
    assert (v.wave, v.objects) == (None, ("db", "cmp-1", "cmp-3"))
    # The plan keeps the group on no more hosts than before: no new affinity violation.
    silent(report, "affinity")


# -- the report -----------------------------------------------------------------------------------
def test_report_metrics_count_what_the_plan_does() -> None:
    fx = mixed_methods()
    m = check(fx.inventory, fx.plan).metrics
    assert (m["waves"], m["hosts_upgraded"], m["migrations"]) == (3, 3, 3)
    assert (m["live_migrations"], m["cold_migrations"], m["stops"]) == (1, 2, 1)
    assert m["vms_moved"] == 3
    assert m["lower_bounds"]["migrations"] == 3
    assert [w["migrations"] for w in m["per_wave"]] == [0, 3, 0]


def test_report_to_dict_is_json_ready() -> None:
    import json

    fx = three_plus_spare()
    report = check(fx.inventory, drop_migration(fx.plan, "vm-2a"))
    d = json.loads(json.dumps(report.to_dict()))
    assert d["valid"] is False
    assert d["violations"][0]["rule"] == "evacuation"
    assert d["violations"][0]["wave"] == 3
    assert d["violations"][0]["objects"] == ["cmp-2", "vm-2a"]


def test_summary_that_disagrees_with_the_plan_is_a_warning() -> None:
    fx = three_plus_spare()
    report = check(fx.inventory, replace(fx.plan, summary={"waves": 3, "migrations": 6}))
    assert report.ok
    assert [w.rule for w in report.warnings] == ["summary"]


def test_digest_fails_for_a_plan_that_records_no_inventory() -> None:
    fx = three_plus_spare()  # built in memory: its plan records an empty inventory_sha256
    v = one(check(fx.inventory, fx.plan, digest=DIGEST), "digest")
    assert "no recorded inventory" in v.message


# -- placement (traits, units, provider type) -----------------------------------------------------
def _gpu_plan(vgpu_dst: str, ssd_dst: str) -> Plan:
    # N+0: two providers of a VGPU type cannot keep N+1 of it (docs/concepts.md).
    return make_plan(
        policy(1, failures=0),
        wave(1, ["cmp-3"]),
        wave(2, ["cmp-4"]),
        wave(3, ["cmp-1"], [mv("vgpu-1", "cmp-1", vgpu_dst), mv("ssd-1", "cmp-1", ssd_dst)]),
        wave(4, ["cmp-2"]),
    )


def test_placement_passes() -> None:
    report = check(gpu_cloud(), _gpu_plan("cmp-3", "cmp-4"))
    silent(report, "placement")
    assert report.ok, [str(v) for v in report.violations]


def test_placement_fails() -> None:
    report = check(gpu_cloud(), _gpu_plan("cmp-3", "cmp-2"))
    v = one(report, "placement")
    assert (v.wave, v.objects) == (3, ("ssd-1", "cmp-2"))
    assert "lacks the required trait CUSTOM_SSD" in v.message
    # A VGPU of another type is capacity's: cmp-2 has no VGPU of vgpu-1's type.
    report = check(gpu_cloud(), _gpu_plan("cmp-2", "cmp-4"))
    # (cmp-2 itself is upgraded in wave 4: the VM now on it must move again.)
    assert [x.rule for x in report.violations] == ["capacity", "evacuation"]
    assert "VGPU@CUSTOM_NVIDIA_11" in report.violations[0].message


def test_inventory_placement_drift_passes() -> None:
    report = check(gpu_cloud(), _gpu_plan("cmp-3", "cmp-4"))
    assert report.warnings == ()


def test_inventory_placement_drift_fails() -> None:
    inv = edit_host(gpu_cloud(), "cmp-2", drift=("Placement's usage VCPU 8, its VMs' 0",))
    report = check(inv, _gpu_plan("cmp-3", "cmp-4"))
    assert report.ok
    assert [(w.rule, w.objects) for w in report.warnings] == [
        ("inventory.placement_drift", ("cmp-2",))
    ]


def test_aggregates_fails_in_a_forbidden_aggregate() -> None:
    fx = pinned_and_bound()
    inv = edit_vm(fx.inventory, "pinned", forbidden_aggregates=("ssd",))
    report = check(inv, fx.plan)
    v = one(report, "aggregates")
    assert (v.wave, v.objects) == (2, ("pinned", "cmp-2"))
    assert "may not run in aggregates ssd" in v.message
    silent(
        check(edit_vm(fx.inventory, "pinned", forbidden_aggregates=("hdd",)), fx.plan), "aggregates"
    )
