"""The pre-checks' proofs name their rule families with the exact model's keys (pass/fail pairs).

For each family: a tiny cloud the pre-checks prove impossible names that family's key, the same
key the exact model (`solver.exact.decide`) blames for that cloud; a feasible neighbour names none.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from planner.app.whatif import SweepConfig, evaluate
from planner.bounds import lower_bounds
from planner.cli import main
from planner.errors import InfeasibleError
from planner.formats import save_inventory, save_policy
from planner.inventory import HAGroup, ServerGroup
from solver.context import build_context
from solver.exact import decide
from solver.params import SolveParams
from solver.precheck import Proof, precheck_proof
from solver.solve import SolveOptions, solve
from tests import solver_clouds as sc
from tests.solver_clouds import Cloud, _inv, fill, host, policy, vm


def _proof(cloud: Cloud) -> Proof:
    ctx = build_context(cloud.inventory, cloud.policy)
    return precheck_proof(ctx, lower_bounds(cloud.inventory, cloud.policy))


def _keys(cloud: Cloud) -> set[str]:
    return {str(b["key"]) for b in _proof(cloud).blame}


def _exact_keys(cloud: Cloud) -> set[str]:
    dec = decide(build_context(cloud.inventory, cloud.policy), SolveParams(time_limit=20))
    assert dec.outcome == "impossible", dec.outcome
    return {f.key for f in dec.core}


def _feasible(cloud: Cloud) -> None:
    """The neighbour: no proof, no family, and a plan."""
    proof = _proof(cloud)
    assert not proof and not proof.blame, proof.reasons
    solve(cloud.inventory, cloud.policy, SolveOptions(effort=0.2))


# -- clouds -----------------------------------------------------------------------------------
def affinity_too_big(roomy: bool = False) -> Cloud:
    """A hard affinity pair of 2 x 40 GiB on a 128 GiB host; the others offer 64 GiB (no plan)
    or, `roomy`, one offers 128 GiB (a plan)."""
    hosts = [host("cmp-1", mem=128), host("cmp-2", mem=128 if roomy else 64), host("cmp-3")]
    vms = [vm("w-1", "cmp-1", mem=40, group="g-w"), vm("w-2", "cmp-1", mem=40, group="g-w")]
    return Cloud(
        "affinity_too_big",
        _inv("affinity-too-big", hosts, vms, server_groups=(ServerGroup("g-w", "w", "affinity"),)),
        policy(failures=0, affinity_moves="forced"),  # Nova moves a member only with its group
    )


def pinned_alone(spare: bool = False, aggregate: bool = False) -> Cloud:
    """x on b1, pinned to az2 (or bound to aggregate ssd), the only such host: it has nowhere
    to go while b1 is upgraded. `spare`: a second such host."""
    hosts = [
        host("a1", az="az1"),
        host("a2", az="az1"),
        host("b1", az="az2", aggregates=("ssd",)),
    ]
    if spare:
        hosts.append(host("b2", az="az2", aggregates=("ssd",)))
    x = vm("x", "b1", aggregates=("ssd",)) if aggregate else vm("x", "b1", az="az2")
    return Cloud("pinned_alone", _inv("pinned-alone", hosts, [x]), policy(failures=0))


def ha_no_spare(min_available: int = 3) -> Cloud:
    """Three controllers, all of them required (no plan) or two of them (a plan)."""
    base = sc.ha_trio()
    inv = base.inventory
    groups = (HAGroup("control-plane", ("ctl-1", "ctl-2", "ctl-3"), min_available),)
    return Cloud(
        "ha_no_spare",
        _inv("ha-no-spare", list(inv.hosts), list(inv.vms), ha_groups=groups),
        base.policy,
    )


def pinned_headroom(pinned: bool = True) -> Cloud:
    """az1: three 64 GiB hosts with 24 GiB each, its VMs pinned to az1; az2: three empty hosts.
    With any az1 host down, az1 keeps 56 GiB free < 64 GiB for N+1 and the VMs may not leave
    (the lower bounds, counting both AZs together, pass). Without the pins they may."""
    hosts = [host(f"a{i}", az="az1") for i in range(1, 4)]
    hosts += [host(f"b{i}", az="az2") for i in range(1, 4)]
    vms = [v for i in range(1, 4) for v in fill(f"a{i}", 3, az="az1" if pinned else None)]
    return Cloud("pinned_headroom", _inv("pinned-headroom", hosts, vms), policy())


def first_is_last(last: bool = True) -> Cloud:
    """cmp-1 both first and last, one host a wave: the order rule needs all three in one wave."""
    base = sc.first_and_last()
    inv = base.inventory
    # an upgraded host with room for every VM: the one wave is no capacity problem
    hosts = [*inv.hosts, host("cmp-new", version=sc.NEW)]
    p = policy(failures=0, first=("cmp-1",), last=("cmp-1",) if last else ())
    return Cloud("first_is_last", _inv("first-is-last", hosts, list(inv.vms)), p)


# -- pairs ------------------------------------------------------------------------------------
def test_anti_affinity_proof_names_the_group() -> None:
    cloud = sc.anti_affinity_too_wide()
    assert _keys(cloud) == {"anti:g-db"} == _exact_keys(cloud)
    _feasible(sc.anti_affinity_fits())


def test_affinity_proof_names_the_group() -> None:
    cloud = affinity_too_big()
    assert _keys(cloud) == {"affinity:g-w"} == _exact_keys(cloud)
    _feasible(affinity_too_big(roomy=True))


def test_az_pin_proof_names_the_az() -> None:
    cloud = pinned_alone()
    assert _keys(cloud) == {"az:az2"} == _exact_keys(cloud)
    _feasible(pinned_alone(spare=True))


def test_aggregate_pin_proof_names_the_aggregates() -> None:
    cloud = pinned_alone(aggregate=True)
    assert _keys(cloud) == {"aggregates:ssd"} == _exact_keys(cloud)
    _feasible(pinned_alone(spare=True, aggregate=True))


def test_a_vm_larger_than_every_host_names_no_family() -> None:
    # physics, not policy: the exact model blames no family either
    hosts = [host("cmp-1", mem=128), host("cmp-2"), host("cmp-3")]
    cloud = Cloud("big", _inv("big", hosts, [vm("big", "cmp-1", mem=100)]), policy(failures=0))
    proof = _proof(cloud)
    assert proof and not proof.blame
    assert _exact_keys(cloud) == set()


def test_ha_proof_names_the_group() -> None:
    cloud = ha_no_spare()
    assert _keys(cloud) == {"ha:control-plane"} == _exact_keys(cloud)
    _feasible(ha_no_spare(min_available=2))


def test_stop_proof_names_allow_stop() -> None:
    cloud = sc.cannot_migrate()
    assert _keys(cloud) == {"stop"} == _exact_keys(cloud)
    _feasible(sc.cold_and_stop())


def test_headroom_proof_names_the_group_and_class() -> None:
    cloud = sc.headroom_impossible()
    assert _keys(cloud) == {"headroom:az1:MEMORY_MB"} == _exact_keys(cloud)
    # N+2 fails the same way with N+1: the one step is known not to be enough
    n2 = Cloud("n2", cloud.inventory, cloud.policy.with_changes(**{"headroom.failures": 2}))
    (b,) = [b for b in _proof(n2).blame if b["key"] == "headroom:az1:MEMORY_MB"]
    assert b["one_step"] == "N+1 everywhere (headroom.failures 1) is not enough"
    assert b["relaxing_alone"] is None
    _feasible(sc.three_plus_spare())
    # three_plus_spare with N+2 fails, with N+1 plans: no step is claimed
    spare = sc.three_plus_spare()
    n2 = Cloud("n2", spare.inventory, spare.policy.with_changes(**{"headroom.failures": 2}))
    blame = _proof(n2).blame
    assert [b["key"] for b in blame] == ["headroom:az1:MEMORY_MB"]
    assert blame[0]["one_step"] is None


def test_headroom_of_one_az_names_the_pins_that_keep_its_vms() -> None:
    cloud = pinned_headroom()
    assert not lower_bounds(cloud.inventory, cloud.policy).infeasible  # the per-group check
    keys = _keys(cloud)
    assert keys == {"headroom:az1:MEMORY_MB", "az:az1"} == _exact_keys(cloud)
    _feasible(pinned_headroom(pinned=False))


def test_first_and_last_overlap_names_the_order_and_the_wave_size() -> None:
    cloud = first_is_last()
    proof = _proof(cloud)
    assert {str(b["key"]) for b in proof.blame} == {"order_first", "order_last", "size"}
    assert _exact_keys(cloud) == {"order_first", "order_last", "size"}
    (size,) = [b for b in proof.blame if b["key"] == "size"]
    assert size["one_step"] == "max_hosts_per_wave 2 is not enough"  # 4 hosts in one wave
    _feasible(first_is_last(last=False))


def test_an_inventory_already_broken_names_the_family() -> None:
    base = sc.anti_affinity_too_wide()
    inv = base.inventory
    vms = [vm("db-1", "cmp-1", group="g-db"), vm("db-2", "cmp-1", group="g-db")]
    broken = Cloud(
        "broken", _inv("broken", list(inv.hosts), vms, server_groups=inv.server_groups), base.policy
    )
    assert any("already breaks" in r for r in _proof(broken).reasons)
    assert _keys(broken) == {"anti:g-db"}
    assert not any("already breaks" in r for r in _proof(sc.anti_affinity_fits()).reasons)


# -- through solve(), the plan command and what-if -----------------------------------------
def test_solve_raises_the_proof_with_its_families() -> None:
    with pytest.raises(InfeasibleError) as info:
        cloud = sc.anti_affinity_too_wide()
        solve(cloud.inventory, cloud.policy, SolveOptions(effort=0.2))
    exc = info.value
    assert exc.proven and [b["key"] for b in exc.blame] == ["anti:g-db"]
    assert exc.blame[0]["relaxing_alone"] is None
    assert any(r.startswith("to relax the anti-affinity of server group db") for r in exc.reasons)
    assert exc.render().startswith("no plan exists:")


def test_plan_json_and_whatif_name_the_families(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud = sc.cannot_migrate()
    inv, pol, out = tmp_path / "inv.json", tmp_path / "pol.json", tmp_path / "plan.json"
    save_inventory(cloud.inventory, inv)
    save_policy(cloud.policy, pol)
    with pytest.raises(SystemExit) as info:
        main(["plan", str(inv), "--policy", str(pol), "-o", str(out), "--format", "json"])
    cap = capsys.readouterr()
    assert info.value.code == 3 and not out.exists()
    assert "to relax allow_stop false" in cap.err
    doc = json.loads(cap.out)
    assert doc["proven"] is True and [b["key"] for b in doc["blame"]] == ["stop"]
    row = evaluate(cloud.inventory, cloud.policy, {}, SweepConfig())
    assert row.verdict == "impossible" and [b["key"] for b in row.blame] == ["stop"]
    assert row.blamed().startswith("allow_stop false") and row.relaxations() == []


def test_affinity_with_a_member_that_cannot_migrate_stays_whole() -> None:
    # The group moves whole or not at all (planner.rules.method): a member that cannot migrate
    # keeps its mates in place too, so with allow_stop both are stopped there (before Nova's
    # rules, the mate was planned to move alone and no plan existed).
    base = sc.affinity_pair()
    inv = base.inventory
    vms = [replace(v, migration="none") if v.id == "web-1" else v for v in inv.vms]
    stuck = Cloud(
        "stuck",
        _inv("stuck", list(inv.hosts), vms, server_groups=inv.server_groups),
        base.policy.with_changes(allow_stop=True),
    )
    assert _keys(stuck) == set()
    out = solve(stuck.inventory, stuck.policy, SolveOptions(planner="greedy", effort=0.3))
    assert out.check is not None and out.check.ok
    assert {s.vm for w in out.plan.waves for s in w.stops} == {"web-1", "web-2"}
    _feasible(base)
