"""The use cases in planner/app called directly, as the notebooks call them (the commands that
present them are tested through the CLI in test_cli.py, test_sim_cli.py and tests/report/)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from planner.app.demo import DemoFiles, Planned, Simulated, run_demo
from planner.app.planning import solve, solve_and_check
from planner.app.report import check_output_paths, write_html_report
from planner.app.simulation import monte_carlo, prepare_run, simulate_once
from planner.checker import check_plan
from planner.errors import InputError
from planner.formats import load_inventory, load_plan, load_policy
from planner.inventory import Inventory
from planner.policy import Policy
from planner.report.build import figures
from planner.report.timeline import read_timeline
from sim.model import DEFAULT
from tests.report.support import bundled, example


def test_solve_and_check_returns_the_checked_plan_with_its_summary() -> None:
    inv = load_inventory(example("small.json"))
    plan, metrics, outcome = solve_and_check(inv, load_policy(example("small-policy.yaml")))
    assert check_plan(inv, plan).ok
    assert metrics["waves"] == len(plan.waves) == plan.summary["waves"]
    assert outcome.plan.waves == plan.waves
    assert plan.inventory_sha256 == inv.digest


def test_solve_is_the_plan_alone() -> None:
    inv = load_inventory(example("small.json"))
    policy = load_policy(example("small-policy.yaml"))
    plan = solve(inv, policy, planner="greedy")
    assert check_plan(inv, plan).ok
    assert plan.generator["name"] != ""


class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def example(self, inv: Inventory, policy: Policy) -> None:
        self.seen.append(f"example {inv.cloud}")

    def planned(self, step: Planned) -> None:
        self.seen.append(f"planned {len(step.plan.waves)}")

    def simulated(self, step: Simulated) -> None:
        self.seen.append(f"simulated {step.result.seed}")

    def reported(self, files: DemoFiles) -> None:
        assert files.report.exists()  # written before the view hears of it
        self.seen.append("reported")


def test_the_demo_writes_every_file_and_shows_each_step_in_order(tmp_path: Path) -> None:
    view = Recorder()
    run = run_demo(tmp_path / "d", view)
    waves = len(run.planned.plan.waves)
    assert view.seen == ["example example-small", f"planned {waves}", "simulated 0", "reported"]
    files = run.files
    for f in (files.inventory, files.policy, files.plan, files.timeline, files.report):
        assert f.is_file(), f
    assert run.planned.check.ok
    assert json.loads(files.inventory.read_text()) == json.loads(example("small.json").read_text())
    assert load_plan(files.plan).waves == run.planned.plan.waves
    assert read_timeline(files.timeline).header.get("seed") == 0
    assert run.simulated.summary["hosts_upgraded"] + run.simulated.summary[
        "hosts_not_upgraded"
    ] == len(run.inventory.hosts)


def test_one_run_writes_its_timeline_and_says_whether_it_went_wrong(tmp_path: Path) -> None:
    case = bundled()
    prep = prepare_run(case.inventory, case.plan, DEFAULT)
    one = simulate_once(prep, 3, tmp_path / "t.jsonl")
    res = one.result
    assert res.seed == 3 and res.completed
    assert read_timeline(tmp_path / "t.jsonl").header.get("seed") == 3
    not_upgraded = any(s != "upgraded" for s in res.host_status.values())
    assert one.bad == (res.breached or res.stalled or not_upgraded)


def test_monte_carlo_replays_its_median_run_into_the_timeline(tmp_path: Path) -> None:
    case = bundled()
    prep = prepare_run(case.inventory, case.plan, DEFAULT)
    many = monte_carlo(prep, 5, 11, jobs=1, timeline=tmp_path / "m.jsonl")
    assert len(many.results) == many.stats["runs"] == 5
    done = sorted((r.makespan_s, r.seed) for r in many.results if r.completed)
    assert many.median_run == done[(len(done) - 1) // 2][1]
    assert read_timeline(tmp_path / "m.jsonl").header.get("seed") == many.median_run
    assert many.bad == any(r.any_breach or r.stalled or r.hosts_not_upgraded for r in many.results)


def test_a_plan_for_another_inventory_needs_ignore_digest() -> None:
    case = bundled()
    other = replace(case.plan, inventory_sha256="0" * 64)
    assert prepare_run(case.inventory, other, DEFAULT).check_count > 0
    assert prepare_run(case.inventory, other, DEFAULT, ignore_digest=True).check_count == 0


def test_the_report_is_written_with_a_png_per_figure(tmp_path: Path) -> None:
    case = bundled()
    done = write_html_report(case.inventory, case.plan, tmp_path / "r.html", tmp_path / "png")
    assert done.files[0] == tmp_path / "r.html"
    assert sorted(f.name for f in done.files[1:]) == sorted(
        f"{spec.key}.png" for spec in figures(done.report)
    )
    assert done.report.check.ok and 0 < done.build_s <= done.total_s
    assert "<html" in (tmp_path / "r.html").read_text()


def test_report_outputs_are_judged_before_the_work(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        check_output_paths(str(tmp_path / "nowhere" / "r.html"), None)
    with pytest.raises(InputError, match="is a directory"):
        check_output_paths(str(tmp_path), None)
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="needs a directory"):
        check_output_paths(str(tmp_path / "r.html"), str(tmp_path / "f"))
    check_output_paths(str(tmp_path / "r.html"), str(tmp_path / "png"))  # fine: created later
