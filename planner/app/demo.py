"""The demo: the main job on the bundled example cloud, end to end (`rollwave demo`).

Copy the example into a directory, plan and check it, simulate the plan once with the default
model and write the HTML report. A `DemoView` (the CLI's) is told each step's result as it comes.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from planner.app.planning import solve_and_check
from planner.app.report import write_html_report
from planner.checker import CheckReport, check_plan
from planner.formats import load_inventory, load_policy, save_plan
from planner.inventory import Inventory
from planner.plan import Plan
from planner.policy import Policy
from planner.report.timeline import read_timeline
from sim.engine import simulate
from sim.model import load_model
from sim.prepare import prepare
from sim.results import SimResult
from sim.timeline import summary, write_timeline


def example_path(name: str) -> Path:
    return Path(str(resources.files("planner") / "examples" / name))


@dataclass(frozen=True)
class DemoFiles:
    """The demo's directory and the files it writes there."""

    dir: Path

    @property
    def inventory(self) -> Path:
        return self.dir / "inventory.json"

    @property
    def policy(self) -> Path:
        return self.dir / "policy.yaml"

    @property
    def plan(self) -> Path:
        return self.dir / "plan.json"

    @property
    def timeline(self) -> Path:
        return self.dir / "timeline.jsonl"

    @property
    def report(self) -> Path:
        return self.dir / "report.html"


@dataclass(frozen=True)
class Planned:
    plan: Plan
    check: CheckReport  # the checker's verdict, as `rollwave check` gives it on the files
    plan_s: float


@dataclass(frozen=True)
class Simulated:
    result: SimResult
    summary: dict[str, Any]


@dataclass(frozen=True)
class DemoRun:
    files: DemoFiles
    inventory: Inventory
    policy: Policy
    planned: Planned
    simulated: Simulated


class DemoView(Protocol):
    def example(self, inv: Inventory, policy: Policy) -> None: ...
    def planned(self, step: Planned) -> None: ...
    def simulated(self, step: Simulated) -> None: ...
    def reported(self, files: DemoFiles) -> None: ...


def copy_example(out_dir: str | Path) -> DemoFiles:
    """The bundled example's inventory and policy, copied into `out_dir` (created)."""
    files = DemoFiles(Path(out_dir))
    files.dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(example_path("small.json"), files.inventory)
    shutil.copyfile(example_path("small-policy.yaml"), files.policy)
    return files


def plan_example(files: DemoFiles, inv: Inventory, policy: Policy) -> Planned:
    """Plan, write the plan, and check it as `rollwave check` would (the inventory re-read)."""
    t0 = time.perf_counter()
    plan, _, _ = solve_and_check(inv, policy)
    plan_s = time.perf_counter() - t0
    save_plan(plan, files.plan)
    return Planned(plan, check_plan(load_inventory(files.inventory), plan), plan_s)


def simulate_example(files: DemoFiles, inv: Inventory, plan: Plan) -> Simulated:
    """One recorded run with the default model (Nova's defaults, 10 GbE), its timeline written."""
    model = load_model(None)
    prep = prepare(inv, plan, model, plan_file=str(files.plan))
    res = simulate(prep, seed=0, record=True)
    write_timeline(files.timeline, prep, res)
    return Simulated(res, summary(prep, res))


def run_demo(out_dir: str | Path, view: DemoView | None = None) -> DemoRun:
    """Every step in order; `view` sees each result before the next step starts."""
    files = copy_example(out_dir)
    inv = load_inventory(files.inventory)
    policy = load_policy(files.policy)
    if view:
        view.example(inv, policy)
    planned = plan_example(files, inv, policy)
    if view:
        view.planned(planned)
    simulated = simulate_example(files, inv, planned.plan)
    if view:
        view.simulated(simulated)
    write_html_report(inv, planned.plan, files.report, timeline=read_timeline(files.timeline))
    if view:
        view.reported(files)
    return DemoRun(files, inv, policy, planned, simulated)
