"""The exact model (`solver.exact`): on small clouds it finds a plan or proves that none exists,
naming a minimal set of rule families to blame. One impossible cloud per family (the proof names
it) and a feasible neighbour (one change away) that it plans, the checker accepting the plan;
then `solve()` and `rollwave plan` on a cloud no pre-check proves impossible; then the property:
"proven impossible" never meets a valid plan found by another planner."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from planner.bounds import lower_bounds
from planner.checker import check_plan
from planner.cli import main
from planner.errors import InfeasibleError
from planner.formats import save_inventory, save_policy
from planner.inventory import VM, HAGroup, Host, Inventory, ServerGroup
from planner.policy import Headroom, Policy
from solver.aggregate import build_aggregates
from solver.context import build_context
from solver.cpsat import NoPlanFound, cpsat_plan
from solver.exact import Decision, decide
from solver.explain import explain
from solver.greedy import greedy_plan
from solver.params import SolveParams
from solver.precheck import precheck
from solver.solve import SolveOptions, solve
from solver.waves import WavePlan, _units, plan_waves, shift_units
from tests import solver_clouds as sc
from tests.solver_clouds import Cloud, _inv, fill, host, policy, vm
from tests.strategies import clouds_and_policies
from tests.tiny_planner import tiny_plan


def _decide(cloud: Cloud) -> Decision:
    return decide(build_context(cloud.inventory, cloud.policy), SolveParams(time_limit=60))


def _planned(cloud: Cloud) -> None:
    dec = _decide(cloud)
    assert dec.outcome == "plan" and dec.plan is not None, dec.reasons()
    report = check_plan(cloud.inventory, dec.plan, digest="")
    assert report.ok, [str(v) for v in report.violations[:3]]


# ---------------------------------------------------------------------------------------------
# Named clouds: one impossible per family, and its feasible neighbour
# ---------------------------------------------------------------------------------------------
def pinned_alone(az_pin: bool = True, spare: bool = False) -> Cloud:
    """x on a1 is pinned to az1 (or bound to aggregate ssd), the only host of az1 (of ssd):
    it cannot leave a1 when a1 goes down. With `spare`, a2 joins az1 and ssd."""
    hosts = [host("a1", az="az1", aggregates=["ssd"]), host("b1", az="az2"), host("b2", az="az2")]
    if spare:
        hosts.append(host("a2", az="az1", aggregates=["ssd"]))
    pin = {"az": "az1"} if az_pin else {"aggregates": ["ssd"]}
    vms = [vm("x", "a1", **pin)]
    return Cloud("pinned_alone", _inv("pinned-alone", hosts, vms), policy(failures=0))


def anti_pair(spare: bool = False) -> Cloud:
    """x on h1 and y on h2, one a host: with h1 down x has only h2, which holds y."""
    hosts = [host("h1"), host("h2")] + ([host("h3")] if spare else [])
    vms = [vm("x", "h1", group="web"), vm("y", "h2", group="web")]
    groups = (ServerGroup("web", "web", "anti-affinity", 1),)
    return Cloud(
        "anti_pair", _inv("anti-pair", hosts, vms, server_groups=groups), policy(failures=0)
    )


def affinity_too_big(big_host: bool = False) -> Cloud:
    """x and y (8 GiB each, affinity) on h1: no other host has 16 GiB for both together (h2 and
    h3 offer 8 each); with `big_host`, h2 offers 16."""
    hosts = [host("h1", mem=16), host("h2", mem=16 if big_host else 8), host("h3", mem=8)]
    vms = [vm("x", "h1", group="db"), vm("y", "h1", group="db")]
    groups = (ServerGroup("db", "db", "affinity", 1),)
    return Cloud(
        "affinity_too_big",
        _inv("affinity", hosts, vms, server_groups=groups),
        policy(failures=0, affinity_moves="forced"),  # Nova moves a member only with its group
    )


def cannot_move(allow_stop: bool = False) -> Cloud:
    """A VM that cannot migrate on a host to upgrade, stops not allowed (or allowed)."""
    hosts = [host("h1"), host("h2")]
    vms = [vm("pet", "h1", migration="none"), vm("x", "h1")]
    return Cloud(
        "cannot_move", _inv("cannot-move", hosts, vms), policy(failures=0, allow_stop=allow_stop)
    )


def headroom_short(reserve: float | None = None, mem: int = 24) -> Cloud:
    """Three 64 GiB hosts with `mem` GiB each: with one down, 128 - 3 * mem GiB stays free,
    against 64 GiB for N+1 (or `reserve` % of 128 GiB)."""
    hosts = [host(f"h{i}") for i in (1, 2, 3)]
    vms = [v for i in (1, 2, 3) for v in fill(f"h{i}", mem // 8)]
    pol = policy() if reserve is None else policy(failures=0, reserve_percent=reserve)
    return Cloud("headroom_short", _inv("headroom-short", hosts, vms), pol)


def ha_together(min_available: int = 1) -> Cloud:
    """policy.first and policy.last both select a and b: the order rule puts every host in one
    wave, and the HA group {a, b} keeps min_available of them up."""
    hosts = [host("a"), host("b"), host("c")]
    ha = (HAGroup("pair", ("a", "b"), min_available),)
    return Cloud(
        "ha_together",
        _inv("ha-together", hosts, [], ha_groups=ha),
        policy(failures=0, max_hosts_per_wave=3, first=("a", "b"), last=("a", "b")),
    )


def per_az_together(limit: int = 1) -> Cloud:
    """As `ha_together`, with max_hosts_per_wave_per_az instead of the HA group."""
    hosts = [host("a"), host("b"), host("c")]
    return Cloud(
        "per_az_together",
        _inv("per-az-together", hosts, []),
        policy(
            failures=0,
            max_hosts_per_wave=3,
            max_hosts_per_wave_per_az=limit,
            first=("a", "b"),
            last=("a", "b"),
        ),
    )


def through_az_first(first: str) -> Cloud:
    """`through_az` with policy.first: only a2 or b2 can go first (a1 first leaves a2, holding
    x, as az1's only host up, with less free than its own capacity)."""
    base = sc.through_az()
    return Cloud("through_az_first", base.inventory, base.policy.with_changes(first=(first,)))


IMPOSSIBLE: list[tuple[Callable[[], Cloud], str, str]] = [
    (lambda: pinned_alone(az_pin=True), "az:az1", "AZ pin of the VMs pinned to az1"),
    (lambda: pinned_alone(az_pin=False), "aggregates:ssd", "bound to aggregates ssd"),
    (anti_pair, "anti:web", "anti-affinity of server group web"),
    (affinity_too_big, "affinity:db", "affinity of server group db"),
    (cannot_move, "stop", "allow_stop false"),
    (headroom_short, "headroom:az1:MEMORY_MB", "N+1 headroom of MEMORY_MB in az1"),
    (lambda: headroom_short(reserve=50), "headroom:az1:MEMORY_MB", "50% reserve headroom"),
    (ha_together, "ha:pair", "HA group pair"),
    (per_az_together, "size_az", "max_hosts_per_wave_per_az"),
    (lambda: through_az_first("a1"), "order_first", "policy.first (a1)"),
    (sc.disabled_host_before_last, "order_last", "policy.last (cmp-a)"),
    (lambda: sc.through_az(anti=True), "anti:anti", "max_hosts_per_wave"),
]
FEASIBLE: list[Callable[[], Cloud]] = [
    lambda: pinned_alone(az_pin=True, spare=True),
    lambda: pinned_alone(az_pin=False, spare=True),
    lambda: anti_pair(spare=True),
    lambda: affinity_too_big(big_host=True),
    lambda: cannot_move(allow_stop=True),
    lambda: headroom_short(mem=16),
    lambda: headroom_short(reserve=40),
    lambda: ha_together(min_available=0),
    lambda: per_az_together(limit=3),
    lambda: through_az_first("a2"),
    sc.disabled_host_last,
    sc.through_az,
]
IDS = [
    "az_pin",
    "aggregates",
    "anti_affinity",
    "affinity",
    "stop",
    "headroom_n1",
    "headroom_reserve",
    "ha_group",
    "per_az",
    "order_first",
    "order_last",
    "through_az",
]


@pytest.mark.parametrize(("make", "key", "words"), IMPOSSIBLE, ids=IDS)
def test_an_impossible_cloud_is_proven_so_and_the_family_named(
    make: Callable[[], Cloud], key: str, words: str
) -> None:
    dec = _decide(make())
    assert dec.outcome == "impossible", dec.outcome
    assert key in [f.key for f in dec.core]
    assert dec.minimal
    text = "\n".join(dec.reasons())
    assert text.startswith("proven impossible") and words in text, text


@pytest.mark.parametrize("make", FEASIBLE, ids=IDS)
def test_its_feasible_neighbour_is_planned(make: Callable[[], Cloud]) -> None:
    _planned(make())


def test_relaxing_a_family_alone_is_tried_with_every_other_rule_kept() -> None:
    # The two-AZ conflict: dropping the anti-affinity alone gives a plan, as does a second host
    # a wave; dropping one AZ's headroom alone does not (the other AZ's still conflicts).
    dec = _decide(sc.through_az(anti=True))
    assert dec.alone["anti:anti"] is True and dec.alone["size"] is True
    assert dec.alone["headroom:az1:VCPU"] is False or "headroom:az1:VCPU" not in dec.alone
    relaxed = sc.through_az(anti=True)
    relaxed = Cloud("r", relaxed.inventory, relaxed.policy.with_changes(max_hosts_per_wave=2))
    _planned(relaxed)


def test_one_step_of_a_numeric_family_is_tried() -> None:
    # One more host a wave is enough for the two-AZ conflict; one more host of the AZ a wave is
    # not enough where all three must go together; N+1 instead of N+2 is enough with 80 GiB free.
    assert _decide(sc.through_az(anti=True)).steps["size"] == "max_hosts_per_wave 2 is enough"
    per_az = _decide(per_az_together()).steps["size_az"]
    assert per_az == "max_hosts_per_wave_per_az 2 is not enough"
    n2 = headroom_short(mem=16)
    n2 = Cloud("n2", n2.inventory, n2.policy.with_changes(**{"headroom.failures": 2}))
    dec = _decide(n2)
    assert dec.outcome == "impossible"
    assert "N+1 everywhere (headroom.failures 1) is enough" in "\n".join(dec.reasons())


def test_the_exact_model_declines_a_cloud_too_large() -> None:
    cloud = sc.through_az(anti=True)
    dec = decide(build_context(cloud.inventory, cloud.policy), SolveParams(), max_cells=10)
    assert dec.outcome == "too_large" and dec.solves == 0 and not dec.reasons()


def test_no_time_no_claim() -> None:
    # A budget too small to decide: "unknown", never "impossible".
    cloud = sc.small_two_az(35)
    dec = decide(build_context(cloud.inventory, cloud.policy), SolveParams(), first_dtime=1e-4)
    assert dec.outcome in ("unknown", "plan") and not dec.reasons()


# ---------------------------------------------------------------------------------------------
# solve() and the CLI on a cloud that passes every pre-check
# ---------------------------------------------------------------------------------------------
def test_solve_proves_the_two_az_cloud_impossible() -> None:
    cloud = sc.through_az(anti=True)
    ctx = build_context(cloud.inventory, cloud.policy)
    assert not precheck(ctx, lower_bounds(cloud.inventory, cloud.policy))
    with pytest.raises(InfeasibleError) as info:
        solve(cloud.inventory, cloud.policy, SolveOptions(effort=0.3))
    exc = info.value
    assert exc.proven and exc.reasons[0].startswith("proven impossible")
    assert "anti-affinity of server group anti" in exc.reasons[0]
    assert {b["key"] for b in exc.blame} >= {"anti:anti", "size"}
    assert exc.render().startswith("no plan exists:")


def test_plan_command_says_proven_impossible(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud = sc.through_az(anti=True)
    inv, pol, out = tmp_path / "inv.json", tmp_path / "pol.json", tmp_path / "plan.json"
    save_inventory(cloud.inventory, inv)
    save_policy(cloud.policy, pol)
    with pytest.raises(SystemExit) as info:
        main(["plan", str(inv), "--policy", str(pol), "-o", str(out), "--format", "json"])
    cap = capsys.readouterr()
    assert info.value.code == 3 and not out.exists()
    assert "no plan exists:" in cap.err and "proven impossible" in cap.err
    assert "relaxing" in cap.err and "Traceback" not in cap.err
    doc = json.loads(cap.out)
    assert doc["outcome"] == "impossible" and doc["proven"] is True
    assert any(b["key"] == "anti:anti" and b["relaxing_alone"] for b in doc["blame"])


def stranded_vm(pinned: bool = False) -> Cloud:
    """x sits on b1, disabled and the only host of az2: it must leave for az1 (found by the
    property test below: the pre-checks once counted x as staying in az2 and claimed a proof).
    With `pinned`, x is pinned to az2 and cannot leave: no plan exists."""
    hosts = [host("a1", az="az1"), host("a2", az="az1"), host("b1", az="az2", enabled=False)]
    vms = [vm("x", "b1", az="az2" if pinned else None), vm("y", "a1")]
    return Cloud(
        "stranded_vm", _inv("stranded", hosts, vms), policy(failures=0, reserve_percent=10)
    )


def test_a_vm_that_must_leave_its_az_is_no_proof_of_impossible() -> None:
    cloud = stranded_vm()
    assert not precheck(
        build_context(cloud.inventory, cloud.policy), lower_bounds(cloud.inventory, cloud.policy)
    )
    _planned(cloud)
    out = solve(cloud.inventory, cloud.policy, SolveOptions(effort=0.3))
    assert check_plan(cloud.inventory, out.plan).ok


def _wave_model(cloud: Cloud) -> tuple[WavePlan, list[str]]:
    """The wave model's waves (phase 1 of CP-SAT) and, from the same model with every family
    under an assumption, the rules it finds in conflict."""
    inv, pol = cloud.inventory, cloud.policy
    ctx = build_context(inv, pol)
    params = SolveParams(effort=0.5)
    waves = plan_waves(ctx, build_aggregates(ctx), params, lower_bounds(inv, pol).waves)
    return waves, explain(ctx, params)


def test_the_wave_model_lets_a_vm_leave_an_az_with_no_host_up() -> None:
    """The wave model once allowed demand to move between headroom groups only when two of them
    had a host up; x (on b1, alone and disabled in az2) then stayed in az2 and its headroom
    failed: "infeasible with 3 waves" on a cloud the checker accepts a plan for."""
    cloud = stranded_vm()
    waves, conflict = _wave_model(cloud)
    assert waves.status != "failed" and waves.waves, waves.notes
    assert sorted(h for w in waves.waves for h in w) == [0, 1, 2]
    assert conflict == []
    res = cpsat_plan(cloud.inventory, cloud.policy, SolveParams(effort=0.5))
    assert check_plan(cloud.inventory, res.plan, digest=res.plan.inventory_sha256).ok
    assert [m.dst for w in res.plan.waves for m in w.migrations if m.vm == "x"] in (["a1"], ["a2"])


def test_the_wave_model_keeps_a_vm_pinned_to_an_az_with_no_host_up() -> None:
    """x pinned to az2 cannot leave b1: the wave model, the exact model and the checker agree
    that no plan exists."""
    cloud = stranded_vm(pinned=True)
    waves, conflict = _wave_model(cloud)
    assert waves.status == "failed" and not waves.waves
    assert any("infeasible" in n for n in waves.notes)
    assert len(conflict) == 1 and "headroom of az2" in conflict[0]  # x stays in az2
    assert _decide(cloud).outcome == "impossible"
    with pytest.raises(NoPlanFound):
        cpsat_plan(cloud.inventory, cloud.policy, SolveParams(effort=0.5))


def odd_flavors(pinned: bool = False) -> Cloud:
    """b1, alone in az2, holds x (1 GiB) and y (16 GiB); z (1 GiB) is on a1. The wave model moves
    demand between AZs in units of a quarter of the mean VM (1,536 MiB: the flavors share no
    divisor that coarse), so 17 GiB is 11.3 units: az2 once kept a third of a unit when b1 went
    down, and the model called the cloud infeasible. With `pinned`, x must stay in az2."""
    hosts = [host("a1", az="az1"), host("a2", az="az1"), host("b1", az="az2", mem=32)]
    vms = [
        vm("x", "b1", mem=1, az="az2" if pinned else None),
        vm("y", "b1", mem=16),
        vm("z", "a1", mem=1),
    ]
    return Cloud("odd_flavors", _inv("odd-flavors", hosts, vms), policy(failures=0))


def test_the_wave_model_empties_an_az_whatever_the_unit_of_its_shifts() -> None:
    cloud = odd_flavors()
    ctx = build_context(cloud.inventory, cloud.policy)
    assert shift_units(ctx, _units(ctx))[1] == 1536  # the unit does not divide 17 GiB
    waves, conflict = _wave_model(cloud)
    assert waves.status != "failed" and len(waves.waves) == 3, waves.notes
    assert conflict == []
    b1 = ctx.model.host_index["b1"]
    w = next(i for i, hs in enumerate(waves.waves) if b1 in hs)
    assert -int(waves.shift[w, ctx.group_of[b1], 1]) == 17 * 1024  # all of az2's VMs leave
    res = cpsat_plan(cloud.inventory, cloud.policy, SolveParams(effort=0.5))
    assert check_plan(cloud.inventory, res.plan, digest=res.plan.inventory_sha256).ok


def test_the_wave_model_keeps_a_pinned_vm_in_an_az_that_must_empty() -> None:
    cloud = odd_flavors(pinned=True)
    waves, conflict = _wave_model(cloud)
    assert waves.status == "failed" and any("infeasible" in n for n in waves.notes)
    assert len(conflict) == 1 and "headroom of az2" in conflict[0]
    assert _decide(cloud).outcome == "impossible"


# ---------------------------------------------------------------------------------------------
# The property: a proof never meets a valid plan
# ---------------------------------------------------------------------------------------------
def _valid_plan_found(inv: object, pol: object) -> bool:
    from planner.inventory import Inventory
    from planner.policy import Policy

    assert isinstance(inv, Inventory) and isinstance(pol, Policy)
    try:
        plan = greedy_plan(inv, pol)
        if check_plan(inv, plan, digest=plan.inventory_sha256).ok:
            return True
    except InfeasibleError:
        pass
    if tiny_plan(inv, pol, budget=200) is not None:
        return True
    try:
        res = cpsat_plan(
            inv, pol, SolveParams(effort=0.5), lower_bound=lower_bounds(inv, pol).waves
        )
    except NoPlanFound:
        return False
    return check_plan(inv, res.plan, digest=res.plan.inventory_sha256).ok


def _agrees(inv: object, pol: object) -> None:
    from planner.inventory import Inventory
    from planner.policy import Policy

    assert isinstance(inv, Inventory) and isinstance(pol, Policy)
    ctx = build_context(inv, pol)
    pre = precheck(ctx, lower_bounds(inv, pol))
    assume(not any("already breaks" in r for r in pre))  # the checker rejects every plan then
    _consistent(inv, pol, pre)


def _consistent(inv: Inventory, pol: Policy, pre: list[str]) -> None:
    """The exact model's plan passes the checker and meets no pre-check's proof; its proof
    meets no plan of another planner."""
    ctx = build_context(inv, pol)
    # Where a pre-check has a proof, only a plan would contradict it: a short look suffices.
    dec = decide(
        ctx,
        SolveParams(time_limit=20),
        first_dtime=1.0 if pre else 2.0,
        later_dtime=0.5,
        total_dtime=4.0,
    )
    if dec.plan is not None:
        report = check_plan(inv, dec.plan, digest="")
        assert report.ok, [str(v) for v in report.violations[:3]]
        assert not pre, pre  # a pre-check's proof never meets a plan either
    if dec.outcome == "impossible":
        assert not _valid_plan_found(inv, pol)


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(cp=clouds_and_policies())
def test_proven_impossible_never_meets_a_valid_plan(cp: tuple[object, object]) -> None:
    _agrees(*cp)


def stopped_beside() -> tuple[Inventory, Policy]:
    """Found by the property above (hypothesis, `dev` profile): az1 has two hosts up, cmp-0
    (holding a 1-vCPU VM that cannot migrate, stopped in place) and cmp-4; cmp-2 is disabled.
    With cmp-4 down alone, az1 has 15 vCPU free against the 16 N+1 needs; but cmp-0 and cmp-4
    may go down together (different racks, two hosts a wave), and then nothing in az1 is up:
    no headroom is required. The pre-check once took "alone" for the best case and claimed a
    proof."""
    cap = {"VCPU": 16, "MEMORY_MB": 32768, "DISK_GB": 500}

    def h(name: str, az: str, rack: str, enabled: bool = True) -> Host:
        return Host(
            name=name,
            role="compute",
            az=az,
            rack=rack,
            aggregates=(),
            version="2025.1",
            enabled=enabled,
            up=True,
            capacity=cap,
            reserved={"MEMORY_MB": 0},
            allocation_ratio={"VCPU": 1.0, "MEMORY_MB": 1.0},
        )

    def ctl(name: str, az: str) -> Host:
        return Host(name, "controller", az, None, (), "2025.1", True, True, capacity={})

    hosts = (
        h("cmp-0", "az1", "az1-r0"),
        h("cmp-1", "az2", "az2-r0"),
        h("cmp-2", "az1", "az1-r0", enabled=False),
        h("cmp-3", "az2", "az2-r0"),
        h("cmp-4", "az1", "az1-r1"),
        ctl("ctl-1", "az1"),
        ctl("ctl-2", "az2"),
        ctl("ctl-3", "az1"),
    )
    vm0 = VM(
        id="vm-0",
        name="vm-0",
        project="p",
        host="cmp-0",
        status="ACTIVE",
        resources={"VCPU": 1, "MEMORY_MB": 1024, "DISK_GB": 10},
        az="az1",
        migration="none",
    )
    inv = Inventory(
        cloud="random",
        taken_at="2026-01-01T00:00:00Z",
        hosts=hosts,
        vms=(vm0,),
        ha_groups=(HAGroup("control-plane", ("ctl-1", "ctl-2", "ctl-3"), 2),),
    )
    pol = Policy(
        max_hosts_per_wave=2,
        target_version="2025.2",
        max_hosts_per_wave_per_rack=1,
        headroom=Headroom(failures=1, scope="az", reserve_percent=0.0),
        max_concurrent_live_migrations=1,
        allow_stop=True,
        last=("cmp-0",),
    )
    return inv, pol


def test_hosts_down_together_can_keep_headroom_where_one_alone_cannot() -> None:
    inv, pol = stopped_beside()
    pre = precheck(build_context(inv, pol), lower_bounds(inv, pol))
    assert pre == []
    _consistent(inv, pol, pre)
    plan = solve(inv, pol, SolveOptions(time_limit=60)).plan
    assert check_plan(inv, plan, digest="").ok
    assert any({"cmp-0", "cmp-4"} <= set(w.hosts) for w in plan.waves)


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 100_000))
def test_proven_impossible_never_meets_a_valid_plan_on_tight_two_az_clouds(seed: int) -> None:
    cloud = sc.small_two_az(seed)
    _agrees(cloud.inventory, cloud.policy)


def test_greedy_alone_failing_where_a_plan_exists_says_so_without_a_proof() -> None:
    cloud = sc.small_two_az(10)  # the greedy finds no plan; the exact model (and CP-SAT) do
    with pytest.raises(InfeasibleError) as info:
        solve(cloud.inventory, cloud.policy, SolveOptions(planner="greedy"))
    exc = info.value
    assert not exc.proven and "a plan exists" in exc.reasons[0]
    assert "--planner cpsat" in exc.reasons[0]
    assert exc.render().startswith("no plan found (not proven impossible):")
