"""One time limit for the whole `plan` (`planner.app.budget`): the search leaves a reserve for the
steps that must follow, the optional passes are skipped when their estimated cost does not fit
(decided by the instance's size and the solved plan, never by the clock), and the output says
which; the plan is checked all the same."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from planner.app.budget import Budget, mandatory_s, pass_s
from planner.app.planning import plan_with_predictions
from planner.checker import check_plan
from planner.cli import main
from planner.formats import load_plan, plan_to_dict, save_inventory, save_policy
from planner.generate import GenerateSpec, default_policy, generate
from solver.params import SolveParams, slowdown
from solver.solve import SolveOptions
from tests.solver_clouds import small_two_az

# 200 hosts, 4,000 VMs: the steps after the search are estimated at about half of a 5 s limit,
# so no optional pass fits; the greedy planner finds a plan well within the rest.
MID = GenerateSpec(hosts=200, vms_per_host=20, azs=2, utilisation=0.5, seed=4)
LIMIT = 5.0


def test_a_tiny_limit_skips_the_optional_passes_says_so_and_the_plan_is_checked() -> None:
    inv, pol = generate(MID), default_policy(MID)
    runs = []
    for _ in range(2):
        t0 = time.monotonic()
        plan, metrics, out, _ = plan_with_predictions(
            inv, pol, SolveOptions(planner="greedy", time_limit=LIMIT, seed=0)
        )
        assert time.monotonic() - t0 <= LIMIT + 5.0
        runs.append((plan, out))
    (plan, out), (plan2, _) = runs
    assert plan.summary["skipped_for_time"] == ["durations", "pipelining"]
    assert metrics["skipped_for_time"] == ["durations", "pipelining"]
    skipped = [n for n in out.notes if "skipped for time" in n]
    assert len(skipped) == 2 and "pipelined execution" in skipped[1], out.notes
    assert "pipelining" not in out.stats and "durations" not in out.stats
    assert out.check is not None and out.check.ok
    assert check_plan(inv, plan).ok
    assert json.dumps(plan_to_dict(plan), sort_keys=True) == json.dumps(
        plan_to_dict(plan2), sort_keys=True
    )


def test_a_roomy_limit_skips_nothing() -> None:
    cloud = small_two_az(20)
    plan, _m, out, _ = plan_with_predictions(
        cloud.inventory, cloud.policy, SolveOptions(time_limit=60, seed=0)
    )
    assert "skipped_for_time" not in plan.summary
    assert not any("skipped for time" in n for n in out.notes)


def test_the_budget_is_a_function_of_size_and_limit() -> None:
    inv = generate(MID)
    a = Budget.for_run(inv, LIMIT, started=0.0)
    b = Budget.for_run(inv, LIMIT, started=1e9)
    assert (a.reserve, a.optional_s, a.mandatory) == (b.reserve, b.optional_s, b.mandatory)
    assert a.reserve == pytest.approx(0.5 * LIMIT)  # at most half the limit kept from the search
    big = Budget.for_run(inv, 600.0)
    assert big.mandatory == pytest.approx(mandatory_s(inv))
    # every pass on 1.1 migrations a VM fits a roomy limit, and is kept back from the search
    moves, hosts = int(1.1 * len(inv.vms)), len(inv.hosts)
    every = sum(pass_s(p, moves, hosts) for p in ("per_az", "durations", "pipelining"))
    assert big.optional_s == pytest.approx(every)
    assert big.allows("durations", 4000) and big.allows("pipelining", 4000)
    assert not big.skipped


def test_the_cli_names_the_skipped_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inv, pol = generate(MID), default_policy(MID)
    save_inventory(inv, tmp_path / "inv.json")
    save_policy(pol, tmp_path / "pol.json")
    argv = [
        "plan", str(tmp_path / "inv.json"), "--policy", str(tmp_path / "pol.json"),
        "-o", str(tmp_path / "plan.json"), "--planner", "greedy", "--time-limit", str(LIMIT),
        "--format", "json",
    ]  # fmt: skip
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["skipped_for_time"] == ["durations", "pipelining"]
    assert sum("skipped for time" in n for n in out["notes"]) == 2
    assert check_plan(inv, load_plan(tmp_path / "plan.json")).ok


def test_the_wall_clock_safety_scales_with_the_runs_slowdown() -> None:
    """A run that got a CPU second in 10 s of wall clock is 4 x slower than the estimates' 2.5;
    in its first second nothing can be told; never faster than estimated."""
    now, cpu = time.monotonic(), time.process_time()
    assert slowdown(now - 10.0, cpu - 1.0, 2.5) == pytest.approx(4.0, rel=0.05)
    assert slowdown(now, cpu, 2.5) == 1.0
    assert slowdown(now - 10.0, cpu - 10.0, 2.5) == 1.0
    p = SolveParams(time_limit=60.0, reserve=10.0, reserve_load=2.5, started=now)
    p.wall0, p.cpu0 = now - 10.0, cpu - 1.0
    assert p.deadline == pytest.approx(now + 60.0 - 40.0, abs=0.5)
