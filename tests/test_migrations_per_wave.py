"""The cap on a wave's migrations (`max_migrations_per_wave`), end to end: its lower bounds and
findings, every planner honouring it, the exact model's proof and relaxation step, the what-if
key and the command line's bad input. (The checker's pass/fail pair is in test_checker.py, the
reader's messages in test_formats.py.)"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from planner.bounds import lower_bounds
from planner.checker import check_plan
from planner.errors import InfeasibleError
from planner.formats import save_inventory, save_policy
from planner.generate import GenerateSpec, default_policy, generate
from planner.plan import Plan
from planner.report.whatif import Vary, apply_policy, parse_vary
from planner.rules import migrations_per_wave as rule
from planner.rules.packing import packing_waves
from solver.context import build_context
from solver.cpsat import cpsat_plan
from solver.exact import decide
from solver.greedy import greedy_plan
from solver.params import SolveParams
from solver.precheck import precheck_proof
from solver.solve import SolveOptions, solve
from tests.solver_clouds import Cloud, _inv, fill, host, policy
from tests.test_cli import clean, rollwave


def pair(cap: int, spare: bool = False) -> Cloud:
    """Two hosts with two VMs each, one host a wave: without an empty host, the first wave's two
    VMs land on the other host and move again with its own two, four in its wave."""
    hosts = [host("a"), host("b")] + ([host("c")] if spare else [])
    vms = fill("a", 2) + fill("b", 2)
    return Cloud("pair", _inv("pair", hosts, vms), policy(failures=0, max_migrations_per_wave=cap))


def most_per_wave(plan: Plan) -> int:
    return max(len(w.migrations) for w in plan.waves)


@pytest.fixture(scope="module")
def cloud() -> Cloud:
    spec = GenerateSpec(hosts=100, vms_per_host=20, seed=7, disabled_hosts=2, upgraded_hosts=3)
    return Cloud("g100", generate(spec), default_policy(spec))


# -- lower bounds ---------------------------------------------------------------------------------
def test_the_bound_is_the_forced_migrations_packed_into_waves(cloud: Cloud) -> None:
    inv, pol = cloud.inventory, cloud.policy.with_changes(max_migrations_per_wave=60)
    lb = lower_bounds(inv, pol)
    todo = inv.hosts_to_upgrade(pol.target_version)
    forced = [rule.forced(inv, pol, h.name) for h in todo]
    assert lb.wave_bounds["max_migrations_per_wave"] >= math.ceil(sum(forced) / 60)
    assert lb.wave_bounds["max_migrations_per_wave"] == max(
        math.ceil(sum(forced) / 60), packing_waves(forced, 60, pol.max_hosts_per_wave)
    )
    assert lb.waves >= lb.wave_bounds["max_migrations_per_wave"]
    assert "max_migrations_per_wave" not in lower_bounds(inv, cloud.policy).wave_bounds


def test_a_host_with_more_vms_to_move_than_the_cap_has_no_plan(cloud: Cloud) -> None:
    pol = cloud.policy.with_changes(max_migrations_per_wave=12)
    lb = lower_bounds(cloud.inventory, pol)
    found = [what for kind, what in lb.obstacles if kind == "migrations_per_wave"]
    assert found and all(rule.forced(cloud.inventory, pol, h) > 12 for h in found)
    proof = precheck_proof(build_context(cloud.inventory, pol), lb)
    (blame,) = [b for b in proof.blame if b["key"] == "migrations_per_wave"]
    assert blame["rule"] == "max_migrations_per_wave 12"
    assert blame["one_step"] == "max_migrations_per_wave 13 is not enough"
    with pytest.raises(InfeasibleError) as exc:
        solve(cloud.inventory, pol, SolveOptions(effort=0.3))
    assert exc.value.proven and "more than max_migrations_per_wave 12" in exc.value.reasons[0]


def test_with_plenty_of_room_the_bound_says_what_the_others_say(cloud: Cloud) -> None:
    base = lower_bounds(cloud.inventory, cloud.policy)
    roomy = lower_bounds(cloud.inventory, cloud.policy.with_changes(max_migrations_per_wave=10**5))
    assert roomy.waves == base.waves and roomy.infeasible == ()


# -- every planner keeps it -----------------------------------------------------------------------
@pytest.mark.parametrize("cap", [100, 60])
def test_cpsat_and_the_greedy_keep_the_cap(cloud: Cloud, cap: int) -> None:
    inv, pol = cloud.inventory, cloud.policy.with_changes(max_migrations_per_wave=cap)
    free = cpsat_plan(inv, cloud.policy, SolveParams(effort=0.5)).plan
    assert most_per_wave(free) > cap  # the cap binds
    res = cpsat_plan(inv, pol, SolveParams(effort=0.5))
    assert check_plan(inv, res.plan, digest="").ok and most_per_wave(res.plan) <= cap
    g = greedy_plan(inv, pol)
    assert check_plan(inv, g, digest="").ok and most_per_wave(g) <= cap
    assert len(res.plan.waves) >= lower_bounds(inv, pol).waves


def test_the_exact_model_proves_a_cap_too_small_and_tries_one_more() -> None:
    dec = decide(build_context(pair(2).inventory, pair(2).policy), SolveParams(time_limit=60))
    assert dec.outcome == "impossible"
    assert [f.key for f in dec.core] == ["migrations_per_wave"]
    assert dec.alone["migrations_per_wave"] is True
    assert dec.steps["migrations_per_wave"] == "max_migrations_per_wave 3 is not enough"
    three = decide(build_context(pair(3).inventory, pair(3).policy), SolveParams(time_limit=60))
    assert three.steps["migrations_per_wave"] == "max_migrations_per_wave 4 is enough"


def test_its_feasible_neighbours_are_planned() -> None:
    for cloud in (pair(4), pair(2, spare=True)):
        dec = decide(build_context(cloud.inventory, cloud.policy), SolveParams(time_limit=60))
        assert dec.outcome == "plan" and dec.plan is not None
        assert check_plan(cloud.inventory, dec.plan, digest="").ok
        out = solve(cloud.inventory, cloud.policy, SolveOptions(effort=0.3))
        assert out.check is not None and out.check.ok
        assert most_per_wave(out.plan) <= (cloud.policy.max_migrations_per_wave or 0)


def test_solve_says_proven_and_names_the_family() -> None:
    cloud = pair(2)
    with pytest.raises(InfeasibleError) as exc:
        solve(cloud.inventory, cloud.policy, SolveOptions(effort=0.3))
    assert exc.value.proven
    (blame,) = exc.value.blame
    assert (blame["key"], blame["relaxing_alone"]) == ("migrations_per_wave", True)
    assert blame["relax"] == "a larger max_migrations_per_wave (or none)"


# -- what-if and command line ---------------------------------------------------------------------
def test_whatif_varies_it() -> None:
    v = parse_vary("max_migrations_per_wave=none,40")
    assert v == Vary("max_migrations_per_wave", (None, 40))
    cloud = pair(2)
    assert apply_policy(cloud.policy, {"max_migrations_per_wave": 40}).max_migrations_per_wave == 40
    assert (
        apply_policy(cloud.policy, {"max_migrations_per_wave": None}).max_migrations_per_wave
        is None
    )


def test_a_bad_cap_is_bad_input(tmp_path: Path) -> None:
    cloud = pair(2)
    inv = tmp_path / "inventory.json"
    save_inventory(cloud.inventory, inv)
    pol = tmp_path / "policy.yaml"
    pol.write_text(
        "kind: policy\nformat_version: '1.0'\nmax_hosts_per_wave: 1\nmax_migrations_per_wave: 0\n"
    )
    r = clean(rollwave("plan", inv, "--policy", pol, "-o", tmp_path / "plan.json"))
    assert r.code == 2 and "max_migrations_per_wave: must be positive, got 0" in r.err, r
    assert not (tmp_path / "plan.json").exists()
    good = tmp_path / "good.json"
    save_policy(cloud.policy.with_changes(max_migrations_per_wave=4), good)
    r = clean(rollwave("plan", inv, "--policy", good, "-o", tmp_path / "plan.json"))
    assert r.code == 0, r
