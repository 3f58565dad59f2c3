"""The HTML report of a plan, built and written (`rollwave report`, the demo, the notebooks).

What the report shows is `planner.report` (its data, figures and HTML); this is the job: check
where it goes, build it, write it atomically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from planner.app.sidebyside import refuse_side_by_side
from planner.checker import check_plan
from planner.errors import InputError, UsageError
from planner.inventory import Inventory
from planner.plan import Plan
from planner.report.build import Report, build_report
from planner.report.html import write_report
from planner.report.schedule import EstimateModel, MonteCarlo
from planner.report.sidebyside import HandOver, SideBySideReport, write_sbs_report
from planner.report.timeline import Timeline
from sim.crosscloud import simulate_side_by_side
from sim.model import DEFAULT, SimModel


def check_output_paths(output: str, png_dir: str | None) -> None:
    """Fail before the work, not after it: the output's directory must exist and --png must not
    name a file."""
    parent = Path(output).parent
    if not parent.is_dir():
        raise InputError(output, f"cannot write: directory {str(parent)!r} does not exist")
    if Path(output).is_dir():
        raise InputError(output, "is a directory; give the HTML file to write")
    if png_dir is not None and Path(png_dir).exists() and not Path(png_dir).is_dir():
        raise InputError(png_dir, "--png needs a directory, this is a file")


@dataclass(frozen=True, eq=False)
class WrittenReport:
    report: Report
    files: list[Path]  # the HTML file, then the PNG files (with a PNG directory)
    build_s: float  # checking, replaying and scheduling
    total_s: float  # and drawing and writing


def write_html_report(
    inv: Inventory,
    plan: Plan,
    output: str | Path,
    png_dir: str | Path | None = None,
    *,
    timeline: Timeline | None = None,
    montecarlo: MonteCarlo | None = None,
    estimate: EstimateModel | None = None,
    sim_model: SimModel | None = None,
    ignore_digest: bool = False,
    max_rows: int = 60,
) -> WrittenReport:
    """Build the report of `plan` (see `build_report` for the schedule's sources) and write it
    to `output`, with every figure also as PNG into `png_dir` when given."""
    refuse_side_by_side(plan, "report")
    t0 = time.perf_counter()
    rep = build_report(
        inv,
        plan,
        timeline=timeline,
        montecarlo=montecarlo,
        estimate=estimate,
        sim_model=sim_model,
        ignore_digest=ignore_digest,
        max_rows=max_rows,
    )
    build_s = time.perf_counter() - t0
    files = write_report(rep, output, png_dir)
    return WrittenReport(rep, files, build_s, time.perf_counter() - t0)


@dataclass(frozen=True, eq=False)
class WrittenSideBySideReport:
    report: SideBySideReport
    files: list[Path]
    total_s: float


def write_side_by_side_report(
    inv: Inventory,
    plan: Plan,
    output: str | Path,
    png_dir: str | Path | None = None,
    *,
    sim_model: SimModel | None = None,
    ignore_digest: bool = False,
    max_rows: int = 60,
    other_sources: tuple[str, ...] = (),
) -> WrittenSideBySideReport:
    """The report of a side-by-side plan: checked, simulated (`sim.crosscloud` under
    `sim_model`), both clouds drawn (`planner.report.sidebyside`). `other_sources`: options
    given that only in-place reports read (a timeline, Monte Carlo, the simple estimate): bad
    usage, said before any work."""
    if other_sources:
        raise UsageError(
            f"{', '.join(other_sources)}: not for a side-by-side plan (its report simulates it "
            "with `sim.crosscloud` under --model)"
        )
    t0 = time.perf_counter()
    model = sim_model or DEFAULT
    chk = check_plan(inv, plan, digest=plan.inventory_sha256 if ignore_digest else None)
    # from the plan's schedule's start, if it has one (project windows need one)
    start = plan.schedule.start if plan.schedule is not None else None
    run = simulate_side_by_side(inv, plan, model, start)
    cc = model.crosscloud
    rep = SideBySideReport(
        inv, plan, chk, run, HandOver(cc.control_plane_s, cc.join_s), max_rows=max_rows
    )
    files = write_sbs_report(rep, output, png_dir)
    return WrittenSideBySideReport(rep, files, time.perf_counter() - t0)
