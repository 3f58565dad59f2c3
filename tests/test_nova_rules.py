"""Nova's state rules (`planner.rules.method`): which way each VM may move, hosts that are down,
hard affinity groups, and what happens to a VM with no way (stop, leave, refuse). Pass/fail pairs
on the fixtures of `tests.clouds_nova`, then the planners on them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from planner.checker import CheckReport, check_plan
from planner.errors import InfeasibleError, InputError
from planner.formats import load_plan, policy_from_dict, policy_to_dict, save_plan
from planner.plan import Plan
from planner.rules.method import left_out, method_for, permitted
from solver.solve import SolveOptions, solve
from tests.clouds import affinity_pair, edit_migration, edit_vm, make_plan, mv, wave, with_policy
from tests.clouds_nova import affinity_shelved, down_host, left_down, nova_states


def violations(report: CheckReport, rule: str) -> list[str]:
    return [v.message for v in report.violations if v.rule == rule]


# -- states -----------------------------------------------------------------------------------
def test_each_state_moves_the_way_nova_accepts() -> None:
    fx = nova_states()
    inv, pol = fx.inventory, fx.policy
    assert {v.id: method_for(v, inv, pol) for v in inv.vms} == {
        "paused": "live",
        "suspended": "shelve",
        "off": "cold",
        "broken": None,
    }
    assert check_plan(inv, fx.plan).ok


@pytest.mark.parametrize(
    ("vm", "method", "why"),
    [
        ("paused", "cold", "permit only live"),  # compute/api.py:4293: cold needs ACTIVE/STOPPED
        ("suspended", "live", "permit only shelve"),  # api.py:5586: live needs ACTIVE/PAUSED
        ("suspended", "cold", "permit only shelve"),
        ("off", "live", "permit only cold"),
        ("broken", "cold", "cannot move at all"),
    ],
)
def test_a_move_nova_refuses_fails(vm: str, method: str, why: str) -> None:
    fx = nova_states()
    plan = fx.plan
    if vm == "broken":
        plan = replace(plan, waves=tuple(replace(w, stops=()) for w in plan.waves))
        waves = list(plan.waves)
        waves[1] = replace(
            waves[1], migrations=(*waves[1].migrations, mv(vm, "cmp-1", "cmp-2", method))
        )
        plan = replace(plan, waves=tuple(waves))
    else:
        plan = edit_migration(plan, vm, method=method)
    (msg,) = violations(check_plan(fx.inventory, plan), "method")
    assert why in msg, msg


def test_shelving_needs_allow_stop() -> None:
    fx = nova_states()
    plan = with_policy(fx.plan, allow_stop=False)
    report = check_plan(fx.inventory, plan)
    (msg,) = violations(report, "method")
    assert "suspended" in msg and "shelve" in msg and "allow_stop" in msg, msg


def test_a_vm_that_can_move_is_not_stopped() -> None:
    fx = nova_states()
    plan = fx.plan
    waves = list(plan.waves)
    w = waves[1]
    waves[1] = replace(
        w,
        migrations=tuple(m for m in w.migrations if m.vm != "paused"),
        stops=(*w.stops, replace(w.stops[0], vm="paused")),
    )
    (msg,) = violations(check_plan(fx.inventory, replace(plan, waves=tuple(waves))), "stop")
    assert "can migrate (live)" in msg


# -- a host that is down --------------------------------------------------------------------------
def test_a_down_host_is_evacuated_when_the_policy_allows() -> None:
    fx = down_host()
    assert check_plan(fx.inventory, fx.plan).ok
    assert left_out(fx.inventory, fx.policy) == {}


def test_live_migration_off_a_down_host_fails() -> None:
    fx = down_host()
    (msg,) = violations(
        check_plan(fx.inventory, edit_migration(fx.plan, "a", method="live")), "method"
    )
    assert "permit only evacuate" in msg


def test_evacuation_off_a_host_that_is_up_fails() -> None:
    fx = nova_states()  # Nova: 400 "Compute service of cmp-1 is still in use" (api.py:5736)
    (msg,) = violations(
        check_plan(fx.inventory, edit_migration(fx.plan, "off", method="evacuate")), "method"
    )
    assert "permit only cold" in msg


@pytest.mark.parametrize("change", ["policy", "local_disk", "state"])
def test_a_vm_that_cannot_be_evacuated_leaves_its_host_out(change: str) -> None:
    fx = down_host()
    inv, plan = fx.inventory, fx.plan
    if change == "policy":
        plan = with_policy(plan, allow_evacuate=False)
        why = "allow_evacuate"
    elif change == "local_disk":
        inv = edit_vm(inv, "a", local_disk=True)
        why = "disk is local"
    else:
        inv = edit_vm(inv, "a", status="PAUSED")
        why = "status PAUSED"
    left = left_out(inv, plan.policy)
    assert list(left) == ["cmp-1"] and why in left["cmp-1"], left
    msgs = violations(check_plan(inv, plan), "method")
    assert msgs and all("cannot move by evacuate" in m for m in msgs), msgs


# -- hard affinity ----------------------------------------------------------------------------
def test_an_affinity_group_moves_whole_by_its_remedy() -> None:
    fx = affinity_shelved()
    assert check_plan(fx.inventory, fx.plan).ok
    forced = with_policy(fx.plan, affinity_moves="forced", allow_stop=False)
    inv = edit_vm(fx.inventory, "db-2", status="ACTIVE")
    plan = edit_migration(
        edit_migration(forced, "db-1", method="live-forced"), "db-2", method="live-forced"
    )
    assert check_plan(inv, plan).ok


def test_one_member_live_migrated_fails() -> None:
    fx = affinity_shelved()  # Nova's affinity filter: "No valid host was found"
    (msg,) = violations(
        check_plan(fx.inventory, edit_migration(fx.plan, "db-1", method="live")), "method"
    )
    assert "permit only shelve" in msg


def test_members_moved_apart_fail() -> None:
    fx = affinity_shelved()
    plan = make_plan(
        fx.policy,
        wave(1, ["cmp-2"]),
        wave(
            2,
            ["cmp-1"],
            [mv("db-1", "cmp-1", "cmp-2", "shelve"), mv("db-2", "cmp-1", "cmp-3", "shelve")],
        ),
        wave(3, ["cmp-3"]),
    )
    report = check_plan(fx.inventory, plan)
    assert violations(report, "affinity"), [str(v) for v in report.violations]


def test_without_downtime_or_the_opt_in_the_group_cannot_move() -> None:
    fx = affinity_shelved()
    plan = with_policy(fx.plan, allow_stop=False)
    msgs = violations(check_plan(fx.inventory, plan), "method")
    assert len(msgs) == 2 and all("affinity filter" in m for m in msgs), msgs


def test_a_group_with_nested_allocations_is_not_forced() -> None:
    fx = affinity_shelved()
    inv = edit_vm(fx.inventory, "db-1", resources={"VCPU": 1, "MEMORY_MB": 512, "VGPU": 1})
    inv = edit_vm(inv, "db-2", status="ACTIVE")
    forced = fx.policy.with_changes(affinity_moves="forced")
    assert permitted(inv.vm("db-2"), inv, forced) == ("shelve",)  # allow_stop: shelved instead
    assert permitted(inv.vm("db-2"), inv, forced.with_changes(allow_stop=False)) == ()


# -- a VM with no way: stop, leave or refuse --------------------------------------------------
def test_unmovable_refuse_is_no_plan_and_says_why() -> None:
    fx = nova_states()
    pol = fx.policy.with_changes(allow_stop=False)
    with pytest.raises(InfeasibleError) as err:
        solve(fx.inventory, pol, SolveOptions(planner="greedy", effort=0.2))
    text = "\n".join(err.value.reasons)
    assert "SUSPENDED: Nova moves it only by shelve and unshelve" in text, text
    assert "Nova migrates no VM in status ERROR" in text, text


def test_unmovable_leave_leaves_the_host_out() -> None:
    fx = nova_states()
    pol = fx.policy.with_changes(allow_stop=False, unmovable="leave")
    assert list(left_out(fx.inventory, pol)) == ["cmp-1"]
    out = solve(fx.inventory, pol, SolveOptions(planner="greedy", effort=0.2))
    assert "cmp-1" not in out.plan.hosts
    assert out.check is not None and out.check.ok
    assert [w.objects for w in out.check.warnings if w.rule == "left_out"] == [("cmp-1",)]


# -- the planners -------------------------------------------------------------------------------
FIXTURES = [nova_states, down_host, affinity_shelved, left_down]


@pytest.mark.parametrize("planner", ["cpsat", "greedy", "exact"])
@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.__name__)
def test_every_planner_moves_each_vm_the_way_nova_accepts(planner: str, fixture: object) -> None:
    fx = fixture()  # type: ignore[operator]
    out = solve(fx.inventory, fx.policy, SolveOptions(planner=planner, effort=0.3))  # type: ignore[arg-type]
    assert out.check is not None
    assert out.check.ok, [str(v) for v in out.check.violations]
    want = {m.vm: m.method for _, m in fx.plan.migrations()}
    got = {m.vm: m.method for _, m in out.plan.migrations()}
    assert got == want
    assert {s.vm for w in out.plan.waves for s in w.stops} == {
        s.vm for w in fx.plan.waves for s in w.stops
    }


def _plan_hosts(plan: Plan) -> set[str]:
    return set(plan.hosts)


def test_a_left_out_host_is_in_no_planners_plan() -> None:
    fx = left_down()
    for planner in ("cpsat", "greedy", "exact"):
        out = solve(fx.inventory, fx.policy, SolveOptions(planner=planner, effort=0.3))  # type: ignore[arg-type]
        assert _plan_hosts(out.plan) == {"cmp-2", "cmp-3"}


# -- the policy's keys and the plan's methods in files --------------------------------------------
def test_nova_policy_keys_are_read_and_written_only_when_set(tmp_path: Path) -> None:
    base = policy_from_dict({"max_hosts_per_wave": 1})
    assert (base.unmovable, base.allow_evacuate, base.affinity_moves) == ("refuse", False, None)
    assert not {"unmovable", "allow_evacuate", "affinity_moves"} & set(policy_to_dict(base))
    doc = {"max_hosts_per_wave": 1, "unmovable": "leave", "allow_evacuate": True}
    p = policy_from_dict({**doc, "affinity_moves": "forced"})
    assert (p.unmovable, p.allow_evacuate, p.affinity_moves) == ("leave", True, "forced")
    assert policy_from_dict(policy_to_dict(p)) == p
    fx = down_host()
    path = tmp_path / "plan.json"
    save_plan(fx.plan, path)
    assert [m.method for _, m in load_plan(path).migrations()] == ["evacuate", "evacuate"]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("unmovable", "stop", "unmovable: is 'stop', expected one of: refuse, leave"),
        ("affinity_moves", "cold", "affinity_moves: is 'cold', expected one of: shelve, forced"),
        ("allow_evacuate", "yes", "allow_evacuate: must be true or false"),
    ],
)
def test_a_bad_nova_policy_key_is_located(key: str, value: str, expected: str) -> None:
    with pytest.raises(InputError) as e:
        policy_from_dict({"max_hosts_per_wave": 1, key: value}, "pol.yaml")
    assert str(e.value).count("pol.yaml") >= 1 and expected in str(e.value), str(e.value)


def test_plan_notes_each_host_left_out() -> None:
    from planner.app.planning import plan_with_predictions

    fx = left_down()
    plan, _, outcome, _ = plan_with_predictions(
        fx.inventory, fx.policy, SolveOptions(planner="greedy")
    )
    assert "cmp-1" not in plan.hosts
    assert any(n.startswith("cmp-1 is not upgraded: down") for n in outcome.notes), outcome.notes


# -- the executor's calls (the dry run; the real Nova in tests/test_nova_sandbox.py) --------------
@pytest.mark.parametrize(
    ("fixture", "calls"),
    [
        (nova_states, ['{"shelve": null}', '{"unshelve": {"host": "cmp-2"}}']),
        (down_host, ['{"evacuate": {"host": "cmp-2"}}']),
        (affinity_shelved, ['{"shelve": null}', '{"unshelve": {"host": "cmp-2"}}']),
        (affinity_pair, ['"force": true']),
    ],
    ids=lambda x: getattr(x, "__name__", "calls"),
)
def test_the_executor_makes_novas_calls_for_each_method(fixture: Any, calls: list[str]) -> None:
    from tests.test_executor_units import dry_run

    fx = fixture()
    res, lines = dry_run(fx.inventory, fx.plan)
    assert res.status == "completed", res.reason
    assert set(res.state.upgraded) == set(fx.plan.hosts)
    for call in calls:
        assert any(call in ln for ln in lines), (call, lines)


def test_plan_refuses_with_exit_3_or_leaves_the_host_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from planner.cli import main
    from planner.formats import save_inventory, save_policy

    fx = nova_states()
    inv_path, out = tmp_path / "inv.json", tmp_path / "plan.json"
    save_inventory(fx.inventory, inv_path)
    codes = []
    for name, changes in (("refuse", {}), ("leave", {"unmovable": "leave"})):
        pol = tmp_path / f"{name}.yaml"
        save_policy(fx.policy.with_changes(allow_stop=False, **changes), pol)
        with pytest.raises(SystemExit) as info:
            main(
                ["plan", str(inv_path), "--policy", str(pol), "--planner", "greedy", "-o", str(out)]
            )
        codes.append(int(info.value.code or 0))
        err = capsys.readouterr().err
        if name == "refuse":
            assert "SUSPENDED: Nova moves it only by shelve and unshelve" in err, err
            assert not out.exists()
        else:
            assert "note: cmp-1 is not upgraded" in err, err
            assert "cmp-1" not in load_plan(out).hosts
    assert codes == [3, 0]
