"""The pass/fail pairs of the side-by-side rules (families `clouds` and `cloud_headroom`), on
the fixture `six_and_two` (tests/clouds_sbs.py). Imported by tests/test_checker.py, whose
`test_every_rule_has_a_pair` finds them there (this module is not collected on its own)."""

from __future__ import annotations

from dataclasses import replace

from planner.checker import CheckReport, Violation, check_plan
from planner.inventory import Inventory
from planner.plan import Migration, Plan, Wave
from planner.policy import Headroom
from tests.clouds import edit_host, edit_vm, mv
from tests.clouds_sbs import edit_wave, six_and_two

X = "cross-cloud"


def _check(inv: Inventory, plan: Plan) -> CheckReport:
    return check_plan(inv, plan)


def _of(report: CheckReport, rule: str) -> list[Violation]:
    return [v for v in report.violations if v.rule == rule]


def _one(report: CheckReport, rule: str) -> Violation:
    found = _of(report, rule)
    assert len(found) == 1, f"expected one {rule} violation, got {[str(v) for v in found]}"
    return found[0]


def _silent_on_fixture(rule: str) -> None:
    fx = six_and_two()
    report = _check(fx.inventory, fx.plan)
    assert _of(report, rule) == [], [str(v) for v in _of(report, rule)]
    assert report.ok


def _moves(plan: Plan, index: int) -> list[Migration]:
    return list(plan.waves[index - 1].migrations)


# -- sbs_mode ---------------------------------------------------------------------------------
def test_sbs_mode_passes() -> None:
    _silent_on_fixture("sbs_mode")


def test_sbs_mode_fails() -> None:
    fx = six_and_two()
    v = _one(_check(fx.inventory, replace(fx.plan, mode="in-place")), "sbs_mode")
    assert v.wave is None
    assert "host roles and cross-cloud moves and an AZ map" in v.message


def test_sbs_mode_fails_on_a_host_without_a_role() -> None:
    fx = six_and_two()
    plan = edit_wave(fx.plan, 2, roles={})
    v = _one(_check(fx.inventory, plan), "sbs_mode")
    assert (v.wave, v.objects) == (2, ("cmp-4",))


# -- sbs_controllers --------------------------------------------------------------------------
def test_sbs_controllers_passes() -> None:
    _silent_on_fixture("sbs_controllers")


def test_sbs_controllers_fails() -> None:
    fx = six_and_two()
    roles = {**fx.plan.waves[0].roles, "cmp-2": "new-compute"}
    v = _one(_check(fx.inventory, edit_wave(fx.plan, 1, roles=roles)), "sbs_controllers")
    assert v.numbers == {"controllers": 1, "min": 2}
    assert v.objects == ("cmp-1",)


def test_sbs_controllers_fails_when_a_compute_joins_first() -> None:
    # cmp-3 joins as a compute in wave 1, the controllers only in wave 2.
    fx = six_and_two()
    w1, w2 = fx.plan.waves[0], fx.plan.waves[1]
    plan = replace(
        fx.plan,
        waves=(
            Wave(1, ("cmp-3",), w1.migrations, roles={"cmp-3": "new-compute"}),
            Wave(
                2,
                ("cmp-1", "cmp-2", "cmp-4"),
                w2.migrations,
                roles={
                    "cmp-1": "new-controller",
                    "cmp-2": "new-controller",
                    "cmp-4": "new-compute",
                },
            ),
            *fx.plan.waves[2:],
        ),
    )
    v = _one(_check(fx.inventory, plan), "sbs_controllers")
    assert (v.wave, v.objects) == (1, ("cmp-3",))


# -- sbs_move -----------------------------------------------------------------------------------
def test_sbs_move_passes() -> None:
    _silent_on_fixture("sbs_move")


def test_sbs_move_fails() -> None:
    # a crosses in wave 3 onto cmp-5, which joins the new cloud only at that wave's end.
    fx = six_and_two()
    moves = [mv("a", "cmp-5", "cmp-6", X) if m.vm == "a" else m for m in _moves(fx.plan, 3)]
    v = _one(_check(fx.inventory, edit_wave(fx.plan, 3, migrations=tuple(moves))), "sbs_move")
    assert (v.wave, v.objects) == (3, ("a", "cmp-5", "cmp-6"))
    assert "not a compute of the new cloud" in v.message


def test_sbs_move_fails_on_a_live_migration_between_clouds() -> None:
    fx = six_and_two()
    moves = [mv("a", "cmp-5", "cmp-3") if m.vm == "a" else m for m in _moves(fx.plan, 3)]
    v = _one(_check(fx.inventory, edit_wave(fx.plan, 3, migrations=tuple(moves))), "sbs_move")
    assert "stays inside one cloud" in v.message


# -- sbs_az ---------------------------------------------------------------------------------------
def test_sbs_az_passes() -> None:
    _silent_on_fixture("sbs_az")


def test_sbs_az_fails() -> None:
    fx = six_and_two()
    v = _one(_check(fx.inventory, replace(fx.plan, az_map={"az9": "nova"})), "sbs_az")
    assert v.objects == ("az1",)


# -- sbs_empty, sbs_end ---------------------------------------------------------------------------
def _f_left_behind() -> tuple[Inventory, Plan]:
    fx = six_and_two()
    moves = [m for m in _moves(fx.plan, 3) if m.vm != "f"]
    return fx.inventory, edit_wave(fx.plan, 3, migrations=tuple(moves))


def test_sbs_empty_passes() -> None:
    _silent_on_fixture("sbs_empty")


def test_sbs_empty_fails() -> None:
    v = _one(_check(*_f_left_behind()), "sbs_empty")
    assert (v.wave, v.objects) == (3, ("cmp-6", "f"))


def test_sbs_end_passes() -> None:
    _silent_on_fixture("sbs_end")


def test_sbs_end_fails() -> None:
    v = _one(_check(*_f_left_behind()), "sbs_end")
    assert v.objects == ("f",)
    assert v.wave is None


# -- sbs_old_control ------------------------------------------------------------------------------
def test_sbs_old_control_passes() -> None:
    _silent_on_fixture("sbs_old_control")


def test_sbs_old_control_fails() -> None:
    fx = six_and_two()
    w2, w3 = fx.plan.waves[1], fx.plan.waves[2]
    plan = edit_wave(
        edit_wave(fx.plan, 2, hosts=(*w2.hosts, "ctl-1"), roles={**w2.roles, "ctl-1": "retired"}),
        3,
        hosts=("cmp-5", "cmp-6"),
        roles={h: r for h, r in w3.roles.items() if h != "ctl-1"},
    )
    v = _one(_check(fx.inventory, plan), "sbs_old_control")
    assert (v.wave, v.objects) == (2, ("ctl-1",))


# -- sbs_headroom_old, sbs_headroom_new -----------------------------------------------------------
def test_sbs_headroom_old_passes() -> None:
    _silent_on_fixture("sbs_headroom_old")


def test_sbs_headroom_old_fails() -> None:
    # Wave 2 empties cmp-4 and cmp-5 onto cmp-6: the old cloud is left one host (no N+1), while
    # the whole (the family headroom's view, counting the new cloud's hosts) would keep it.
    fx = six_and_two()
    inv = edit_vm(edit_vm(fx.inventory, "e", server_group=None), "f", server_group=None)
    inv = replace(inv, server_groups=())
    w = fx.plan.waves
    plan = replace(
        fx.plan,
        waves=(
            w[0],
            Wave(
                2,
                ("cmp-4", "cmp-5"),
                (*(mv(v, "cmp-4", "cmp-6") for v in "abcd"), mv("e", "cmp-5", "cmp-6")),
                roles={"cmp-4": "new-compute", "cmp-5": "new-compute"},
            ),
            Wave(
                3,
                ("cmp-6", "ctl-1"),
                tuple(
                    mv(v, "cmp-6", ("cmp-3", "cmp-4", "cmp-5")[i % 3], X)
                    for i, v in enumerate("abcdef")
                ),
                roles={"cmp-6": "new-compute", "ctl-1": "retired"},
            ),
            w[3],
        ),
    )
    report = _check(inv, plan)
    found = _of(report, "sbs_headroom_old")
    assert {(v.wave, v.objects) for v in found} == {
        (2, ("az1", rc)) for rc in ("VCPU", "MEMORY_MB", "DISK_GB")
    }
    assert _of(report, "headroom") == []


def test_sbs_headroom_new_passes() -> None:
    _silent_on_fixture("sbs_headroom_new")


def test_sbs_headroom_new_fails() -> None:
    # Wave 2 sends cmp-4's VMs across into cmp-3, the new cloud's only compute: no N+1 there.
    fx = six_and_two()
    moves = tuple(mv(v, "cmp-4", "cmp-3", X) for v in "abcd")
    v = _of(_check(fx.inventory, edit_wave(fx.plan, 2, migrations=moves)), "sbs_headroom_new")[0]
    assert v.wave == 2 and v.numbers["free"] < v.numbers["required"]


# -- anti-affinity counts per cloud: a host is in one cloud at a time -----------------------------
def test_anti_affinity_in_the_new_cloud_passes_on_distinct_hosts() -> None:
    fx = six_and_two()
    report = _check(fx.inventory, fx.plan)
    assert _of(report, "anti_affinity") == []


def test_anti_affinity_in_the_new_cloud_fails_on_one_host() -> None:
    fx = six_and_two()
    moves = [mv("f", "cmp-6", "cmp-3", X) if m.vm == "f" else m for m in _moves(fx.plan, 3)]
    v = _one(_check(fx.inventory, edit_wave(fx.plan, 3, migrations=tuple(moves))), "anti_affinity")
    assert (v.wave, v.objects) == (3, ("ef", "cmp-3"))


# -- source (family evacuation) side by side --------------------------------------------------
def _f_crosses_ahead(method: str) -> Plan:
    """Wave 3 takes only cmp-5; f leaves cmp-6 (not in the wave) by `method`; cmp-6 and ctl-1
    leave in wave 4, ctl-2 in wave 5."""
    fx = six_and_two()
    moves = [mv("f", "cmp-6", "cmp-4", method) if m.vm == "f" else m for m in _moves(fx.plan, 3)]
    w = fx.plan.waves
    return replace(
        fx.plan,
        waves=(
            w[0],
            w[1],
            Wave(3, ("cmp-5",), tuple(moves), roles={"cmp-5": "new-compute"}),
            Wave(4, ("cmp-6", "ctl-1"), roles={"cmp-6": "new-compute", "ctl-1": "retired"}),
            Wave(5, ("ctl-2",), roles={"ctl-2": "retired"}),
        ),
    )


def test_source_passes_a_cross_cloud_move_from_a_host_outside_the_wave() -> None:
    fx = six_and_two()
    report = _check(fx.inventory, _f_crosses_ahead(X))
    assert report.ok, [str(v) for v in report.violations]


def test_source_fails_a_live_move_from_a_host_outside_the_wave_side_by_side() -> None:
    fx = six_and_two()
    v = _one(_check(fx.inventory, _f_crosses_ahead("live")), "source")
    assert (v.wave, v.objects) == (3, ("f", "cmp-6"))


# -- az (family az) side by side: through the AZ map ------------------------------------------
def _f_crosses_into_az2(az_map: dict[str, str]) -> tuple[Inventory, Plan]:
    """six_and_two with cmp-4 in az2 and N+1 over the cloud: f, pinned to az1, crosses in wave
    3 onto cmp-4 (az2)."""
    fx = six_and_two()
    inv = edit_host(fx.inventory, "cmp-4", az="az2")
    pol = fx.policy.with_changes(headroom=Headroom(failures=1, scope="cloud"))
    return inv, replace(fx.plan, policy=pol, az_map=az_map)


def test_an_az_map_merging_two_old_azs_lets_a_pinned_vm_cross_into_either() -> None:
    inv, plan = _f_crosses_into_az2({"az1": "nova", "az2": "nova"})
    report = check_plan(inv, plan)
    assert report.ok, [str(v) for v in report.violations]


def test_an_az_map_keeping_the_azs_apart_flags_the_crossing_once() -> None:
    inv, plan = _f_crosses_into_az2({"az1": "north", "az2": "south"})
    found = [(v.rule, v.objects) for v in check_plan(inv, plan).violations]
    assert found == [("sbs_az", ("f", "cmp-4"))]
