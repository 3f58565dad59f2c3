"""Side-by-side plans: the format's fields, the AZ map file, the schema, the planner (pre-checks
with proofs, plans the checker accepts, bounds) and `rollwave plan --mode side-by-side`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.app.sidebyside import plan_and_check
from planner.checker import check_plan
from planner.cli import main
from planner.errors import InfeasibleError, InputError
from planner.formats import (
    load_inventory,
    load_plan,
    plan_from_dict,
    plan_to_dict,
    save_inventory,
    save_plan,
    save_policy,
)
from planner.formats_sbs import load_az_map
from planner.generate import GenerateSpec, default_policy, generate
from planner.inventory import Inventory
from planner.policy import Policy
from sim.crosscloud import simulate_side_by_side
from sim.model import DEFAULT
from solver.sidebyside import (
    STRATEGIES,
    SideBySideOptions,
    _greedy,
    lower_bounds,
    plan_side_by_side,
    precheck,
)
from tests.clouds import Cloud, edit_vm, three_plus_spare
from tests.clouds_sbs import six_and_two
from tests.test_schemas import errors


# -- the format ---------------------------------------------------------------------------------
def test_a_side_by_side_plan_round_trips() -> None:
    fx = six_and_two()
    d = plan_to_dict(fx.plan)
    assert d["mode"] == "side-by-side" and d["az_map"] == {"az1": "nova"}
    assert d["waves"][0]["roles"]["cmp-1"] == "new-controller"
    assert d["waves"][2]["migrations"][0]["method"] == "cross-cloud"
    back = plan_from_dict(json.loads(json.dumps(d)))
    assert back.mode == "side-by-side" and back.az_map == {"az1": "nova"}
    assert [dict(w.roles) for w in back.waves] == [dict(w.roles) for w in fx.plan.waves]
    assert back.waves == fx.plan.waves


def test_an_in_place_plan_has_none_of_the_fields() -> None:
    d = plan_to_dict(three_plus_spare().plan)
    assert "mode" not in d and "az_map" not in d
    assert all("roles" not in w for w in d["waves"])
    assert plan_from_dict(d).mode == "in-place"


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("mode",), "sideways", "mode: is 'sideways', expected one of: in-place, side-by-side"),
        (("az_map",), {"az1": ""}, "az_map.az1: must be a non-empty name"),
        (("az_map",), ["az1"], "az_map: must be an object"),
        (
            ("waves", 0, "roles", "cmp-1"),
            "controller",
            "waves[0].roles.cmp-1: is 'controller', expected one of: new-controller, "
            "new-compute, retired",
        ),
        (
            ("waves", 2, "migrations", 0, "method"),
            "teleport",
            "waves[2].migrations[0].method: is 'teleport', expected one of: live, cold, "
            "shelve, evacuate, live-forced, cross-cloud",
        ),
    ],
)
def test_bad_side_by_side_fields_are_located(
    path: tuple[str | int, ...], value: object, expected: str
) -> None:
    d = json.loads(json.dumps(plan_to_dict(six_and_two().plan)))
    node = d
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(InputError) as info:
        plan_from_dict(d, "p.json")
    assert any(expected in str(p) for p in info.value.problems), info.value.problems
    assert errors("plan", d) != []  # the schema refuses it too


def test_the_schema_takes_a_side_by_side_plan() -> None:
    assert errors("plan", json.loads(json.dumps(plan_to_dict(six_and_two().plan)))) == []


def test_an_az_map_file_names_every_az(tmp_path: Path) -> None:
    inv = Cloud().host("h1", az="az1").host("h2", az="az2").build()
    good = tmp_path / "map.json"
    good.write_text(
        '{"format_version": "1.0", "kind": "az-map", "az_map": {"az1": "a", "az2": "b"}}'
    )
    assert load_az_map(good, inv) == {"az1": "a", "az2": "b"}
    bad = tmp_path / "short.yaml"
    bad.write_text("format_version: '1.0'\nkind: az-map\naz_map:\n  az1: a\n")
    with pytest.raises(InputError) as info:
        load_az_map(bad, inv)
    assert info.value.file == str(bad)
    assert [p.location for p in info.value.problems] == ["az_map.az2"]
    assert "host h2" in str(info.value.problems[0])


# -- the planner ----------------------------------------------------------------------------------
def test_the_planner_frees_two_controllers_first_and_every_vm_ends_across() -> None:
    fx = six_and_two()
    out = plan_side_by_side(fx.inventory, fx.policy, SideBySideOptions(az_map={"az1": "nova"}))
    plan = out.plan
    report = check_plan(fx.inventory, plan)
    assert report.ok, [str(v) for v in report.violations]
    first = plan.waves[0]
    assert (
        sorted(r for r in first.roles.values() if r == "new-controller") == ["new-controller"] * 2
    )
    assert all(m.method != "cross-cloud" for m in first.migrations)
    assert {plan.waves[-1].roles[h] for h in plan.waves[-1].hosts} <= {"new-compute", "retired"}
    m = out.metrics
    assert m["cross_cloud_moves"] == len(fx.inventory.vms)
    assert m["waves"] >= m["lower_bounds"]["waves"]
    assert m["vms_moved_twice"] >= m["lower_bounds"]["vms_moved_twice"]
    assert plan.az_map == {"az1": "nova"}


def test_precheck_proves_the_controllers_need_a_wave_of_two() -> None:
    fx = six_and_two()
    with pytest.raises(InfeasibleError) as info:
        precheck(fx.inventory, fx.policy.with_changes(max_hosts_per_wave=1), SideBySideOptions())
    assert info.value.proven
    assert "2 new controllers join in one wave" in info.value.reasons[0]


def test_precheck_proves_two_controllers_cannot_be_freed_while_headroom_holds() -> None:
    # Three hosts 3/4 full under N+1: freeing any two leaves one host, never N+1.
    c = Cloud().hosts_("h1", "h2", "h3")
    for i in range(9):
        c.vm(f"v{i}", f"h{i % 3 + 1}")  # 3 VMs of 4 vCPU on each 16-vCPU host
    inv = c.build()
    with pytest.raises(InfeasibleError) as info:
        precheck(inv, Policy(max_hosts_per_wave=3, target_version="2025.2"), SideBySideOptions())
    assert info.value.proven
    assert any("not enough capacity to free 2 controller nodes" in r for r in info.value.reasons)


def _uniform(hosts: int, vms: int) -> Inventory:
    """`hosts` 16-vCPU hosts, `vms` VMs of 4 vCPU round robin over them (VCPU binds)."""
    c = Cloud().hosts_(*(f"h{i:02d}" for i in range(1, hosts + 1)))
    for i in range(vms):
        c.vm(f"v{i:03d}", f"h{i % hosts + 1:02d}")
    return c.build()


def test_precheck_proves_the_old_cloud_cannot_wait_for_the_new_clouds_first_computes() -> None:
    # 16 hosts 3/4 full: 2 controllers and 2 first computes (N+1 in the new cloud needs 2 before
    # a VM can cross) out leave 12 hosts, 192 vCPU for 192 used and 16 of N+1.
    with pytest.raises(InfeasibleError) as info:
        precheck(
            _uniform(16, 48), Policy(max_hosts_per_wave=2, target_version="2025.2"),
            SideBySideOptions(),
        )  # fmt: skip
    assert info.value.proven
    assert any("the new cloud's first 2 computes" in r for r in info.value.reasons)


def test_precheck_proves_the_new_cloud_cannot_hold_every_vm() -> None:
    # 8 hosts, 18 VMs of 4 vCPU (72): the new cloud is at most 5 hosts (2 controllers and the
    # last wave's out), 80 vCPU less 16 for N+1 = 64 < 72.
    with pytest.raises(InfeasibleError) as info:
        precheck(
            _uniform(8, 18),
            Policy(max_hosts_per_wave=2, target_version="2025.2"),
            SideBySideOptions(),
        )
    assert info.value.proven
    assert any("the new cloud cannot hold every VM with N+1" in r for r in info.value.reasons)


def test_the_old_clouds_last_hosts_drain_into_the_new_cloud_ahead() -> None:
    # 20 hosts 3/4 full, waves of 2: no 2 hosts have a host's free capacity between them, so
    # an AZ's last hosts could not keep N+1 with their own VMs; they cross ahead of their
    # wave (a cross-cloud move may leave any host of the old cloud) and the plan exists.
    inv = _uniform(20, 60)
    pol = Policy(max_hosts_per_wave=2, target_version="2025.2")
    got = plan_and_check(inv, pol, SideBySideOptions())
    assert check_plan(inv, got.plan).ok
    wave_of = {h: w.index for w in got.plan.waves for h in w.hosts}
    ahead = [
        m for w in got.plan.waves for m in w.migrations
        if m.method == "cross-cloud" and wave_of[m.src] != w.index
    ]  # fmt: skip
    assert ahead


def test_the_first_last_order_is_left_out_with_a_note() -> None:
    fx = six_and_two()
    got = plan_and_check(
        fx.inventory, fx.policy.with_changes(first=("role=controller",)), SideBySideOptions()
    )
    assert got.plan.policy.first == ()
    assert got.notes and "first/last" in got.notes[0]


def _generated(seed: int, hosts: int, vms: float, util: float) -> tuple[Inventory, Policy]:
    spec = GenerateSpec(
        hosts=hosts, vms_per_host=vms, utilisation=util, seed=seed, disabled_hosts=0
    )
    pol = default_policy(spec).with_changes(first=(), last=(), max_hosts_per_wave=4)
    return generate(spec), pol


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    hosts=st.integers(6, 14),
    vms=st.floats(1.0, 6.0),
    util=st.floats(0.2, 0.6),
)
def test_every_plan_the_planner_writes_is_valid_and_within_its_bounds(
    seed: int, hosts: int, vms: float, util: float
) -> None:
    inv, pol = _generated(seed, hosts, vms, util)
    try:
        got = plan_and_check(inv, pol, SideBySideOptions())
    except InfeasibleError as exc:
        assert exc.reasons  # explained, either way
        return
    assert check_plan(inv, got.plan).ok
    lb = lower_bounds(inv, pol, 2)
    assert got.metrics["waves"] >= lb["waves"]
    assert got.metrics["vms_moved_twice"] >= lb["vms_moved_twice"]
    assert got.metrics["cross_cloud_moves"] == len(inv.vms)
    sim = simulate_side_by_side(inv, got.plan, DEFAULT)
    assert sim.makespan_s >= sim.lower_bound_s
    assert sim.per_cloud["new"]["vms_arrived"] == len(inv.vms)


# -- the command ----------------------------------------------------------------------------------
def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


def _files(tmp_path: Path, inv: Inventory, pol: Policy) -> tuple[str, str]:
    i, p = tmp_path / "cloud.json", tmp_path / "policy.json"
    save_inventory(inv, i)
    save_policy(pol, p)
    return str(i), str(p)


def test_plan_side_by_side_writes_a_valid_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fx = six_and_two()
    inv, pol = _files(tmp_path, fx.inventory, fx.policy)
    amap = tmp_path / "map.json"
    amap.write_text('{"format_version": "1.0", "kind": "az-map", "az_map": {"az1": "nova"}}')
    out = tmp_path / "plan.json"
    argv = ["plan", inv, "--policy", pol, "-o", str(out), "--mode", "side-by-side"]
    code, stdout, stderr = run([*argv, "--az-map", str(amap), "--format", "json"], capsys)
    assert code == 0, stderr
    data = json.loads(stdout)
    plan = load_plan(out)
    assert plan.mode == "side-by-side" and plan.az_map == {"az1": "nova"}
    assert data["summary"]["waves"] == len(plan.waves)
    assert check_plan(load_inventory(inv), plan).ok
    code, stdout, _ = run(argv, capsys)
    assert code == 0 and "side-by-side plan" in stdout and "VMs moved twice" in stdout


def test_an_az_map_missing_an_az_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fx = six_and_two()
    inv, pol = _files(tmp_path, fx.inventory, fx.policy)
    amap = tmp_path / "map.json"
    amap.write_text('{"format_version": "1.0", "kind": "az-map", "az_map": {"az9": "nova"}}')
    out = tmp_path / "plan.json"
    code, _, stderr = run(
        [
            "plan",
            inv,
            "--policy",
            pol,
            "-o",
            str(out),
            "--mode",
            "side-by-side",
            "--az-map",
            str(amap),
        ],
        capsys,
    )
    assert code == 2
    assert str(amap) in stderr and "az_map.az1" in stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "word"),
    [
        (["--mode", "side-by-side", "--time-limit", "5"], "--time-limit"),
        (["--mode", "side-by-side", "--planner", "greedy"], "--planner"),
        (["--controllers", "3"], "--controllers"),
    ],
)
def test_options_of_the_other_mode_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], word: str
) -> None:
    fx = six_and_two()
    inv, pol = _files(tmp_path, fx.inventory, fx.policy)
    out = tmp_path / "plan.json"
    code, _, stderr = run(["plan", inv, "--policy", pol, "-o", str(out), *extra], capsys)
    assert code == 2 and word in stderr
    assert not out.exists()


def test_an_impossible_side_by_side_plan_exits_3_with_the_proof(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fx = six_and_two()
    inv, pol = _files(tmp_path, fx.inventory, fx.policy.with_changes(max_hosts_per_wave=1))
    out = tmp_path / "plan.json"
    code, _, stderr = run(
        ["plan", inv, "--policy", pol, "-o", str(out), "--mode", "side-by-side"], capsys
    )
    assert code == 3 and "no plan exists" in stderr and "max_hosts_per_wave is 1" in stderr
    assert not out.exists()


def test_simulate_runs_a_side_by_side_plan_and_report_refuses_a_timeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fx = six_and_two()
    inv, _ = _files(tmp_path, fx.inventory, fx.policy)
    plan = tmp_path / "plan.json"
    save_plan(replace(fx.plan, inventory_sha256=""), plan)
    code, stdout, stderr = run(
        ["simulate", inv, str(plan), "--ignore-digest", "--format", "json"], capsys
    )
    assert code == 0, stderr
    data = json.loads(stdout)
    assert data["mode"] == "side-by-side"
    assert data["clouds"]["new"]["vms_arrived"] == 6
    assert data["makespan_s"] >= data["lower_bound_s"] > 0
    code, _, stderr = run(["simulate", inv, str(plan), "--ignore-digest", "--runs", "5"], capsys)
    assert code == 2 and "--runs" in stderr
    # The report draws both clouds (tests/report/test_report_sidebyside.py); what only in-place
    # reports read is refused, nothing written.
    timeline = tmp_path / "t.jsonl"
    timeline.write_text("")
    code, _, stderr = run(
        ["report", inv, str(plan), "-o", str(tmp_path / "r.html"), "--timeline", str(timeline)],
        capsys,
    )
    assert code == 2 and "side-by-side" in stderr
    assert not (tmp_path / "r.html").exists()


def test_a_vm_whose_live_migration_would_not_finish_moves_cold_inside_the_old_cloud() -> None:
    fx = six_and_two()
    calm = plan_and_check(fx.inventory, fx.policy, SideBySideOptions())
    hot_inv = edit_vm(fx.inventory, "e", dirty_rate_mb_s=20000.0)
    hot = plan_and_check(hot_inv, fx.policy, SideBySideOptions())
    inside = {m.vm: m.method for _, m in calm.plan.migrations() if m.method != "cross-cloud"}
    assert inside.get("e") == "live"
    inside = {m.vm: m.method for _, m in hot.plan.migrations() if m.method != "cross-cloud"}
    assert inside.get("e") == "cold"
    assert check_plan(hot_inv, hot.plan).ok


# -- an AZ map merging two old AZs (the checker's pair: tests/checker_sbs_pairs.py) ------------
def test_the_planner_crosses_pinned_vms_through_a_merging_az_map() -> None:
    # Two AZs merged into one new AZ: the planner may cross a VM pinned to az1 onto a host of
    # az2, and the checker (az and sbs_az through the map) accepts the plan.
    spec = GenerateSpec(hosts=24, seed=3, utilisation=0.5)
    inv = generate(spec)
    pol = default_policy(spec)
    merged = {"az1": "nova", "az2": "nova"}
    got = plan_and_check(inv, pol, SideBySideOptions(az_map=merged))
    assert check_plan(inv, got.plan).ok
    across = [
        m for _, m in got.plan.migrations()
        if m.method == "cross-cloud" and inv.vm(m.vm).az not in (None, inv.host(m.dst).az)
    ]  # fmt: skip
    assert across


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_small_default_clouds_get_a_plan(seed: int) -> None:
    # `generate --hosts 30 --seed 1..5` at the CLI's default utilisation: four of five ended "no
    # plan found" before VMs crossed ahead of their host's wave.
    spec = GenerateSpec(hosts=30, seed=seed, utilisation=0.5)
    inv = generate(spec)
    got = plan_and_check(inv, default_policy(spec), SideBySideOptions())
    assert check_plan(inv, got.plan).ok
    assert got.metrics["vms_moved_twice"] >= got.metrics["lower_bounds"]["vms_moved_twice"]


def test_the_planner_keeps_max_migrations_per_wave() -> None:
    spec = GenerateSpec(hosts=30, seed=1, utilisation=0.5)
    inv = generate(spec)
    pol = default_policy(spec).with_changes(max_migrations_per_wave=25)
    got = plan_and_check(inv, pol, SideBySideOptions())
    assert check_plan(inv, got.plan).ok
    assert max(len(w.migrations) for w in got.plan.waves) <= 25


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    hosts=st.integers(8, 20),
    util=st.floats(0.2, 0.6),
    disabled=st.integers(0, 2),
    wave=st.integers(2, 4),
)
def test_the_proofs_never_refuse_a_cloud_the_greedy_plans(
    seed: int, hosts: int, util: float, disabled: int, wave: int
) -> None:
    # Soundness: the greedy run without the pre-checks; when the checker accepts its plan, no
    # pre-check may have called the cloud impossible. (In this range about half the clouds get
    # a plan and a fifth are proven impossible.)
    spec = GenerateSpec(
        hosts=hosts, vms_per_host=4.0, utilisation=util, seed=seed, disabled_hosts=disabled
    )
    inv = generate(spec)
    pol = default_policy(spec).with_changes(first=(), last=(), max_hosts_per_wave=wave)
    for strategy in STRATEGIES:
        try:
            out = _greedy(inv, pol, SideBySideOptions(), strategy, "")
        except InfeasibleError:
            continue
        if check_plan(inv, out.plan).ok:
            precheck(inv, pol, SideBySideOptions())  # raises if a proof is unsound
            return
