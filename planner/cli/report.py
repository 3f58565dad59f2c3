"""`rollwave report INVENTORY PLAN -o report.html`: one self-contained HTML report of a plan."""

from __future__ import annotations

import click

from planner.app.report import check_output_paths, write_html_report, write_side_by_side_report
from planner.cli.common import OutputPath, emit_json, err, format_option, out, path_arg
from planner.formats import load_inventory, load_plan
from planner.inventory import Inventory
from planner.plan import Plan
from planner.report.schedule import EstimateModel
from planner.report.timeline import read_montecarlo, read_timeline
from sim.model import load_model

_DEFAULT = EstimateModel()


@click.command("report")
@path_arg("inventory")
@path_arg("plan")
@click.option(
    "-o",
    "--output",
    required=True,
    type=OutputPath(),
    help="HTML file to write (self-contained: plots embedded, opens offline).",
)
@click.option(
    "--timeline",
    "timeline_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="A simulated run's timeline (`rollwave simulate -o TIMELINE`, JSON lines or CSV): "
    "the schedule and headroom over time come from it instead of the estimate.",
)
@click.option(
    "--montecarlo",
    "montecarlo_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Monte Carlo results (`rollwave simulate --runs N --format json > FILE`): makespan "
    "distribution and probability of a headroom breach.",
)
@click.option(
    "--png",
    "png_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Also write every plot as a PNG file into this directory (created if missing).",
)
@click.option(
    "--ignore-digest",
    is_flag=True,
    help="Accept a plan made for another inventory file (as `rollwave check --ignore-digest`).",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Without a timeline, estimate with this simulation model (as `rollwave simulate "
    "--model`; default: Nova's defaults on 10 GbE).",
)
@click.option(
    "--bandwidth",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help=f"Simple estimate instead: MiB/s one migration achieves [{_DEFAULT.bandwidth_mib_s:g}].",
)
@click.option(
    "--overhead",
    type=click.FloatRange(min=0),
    default=None,
    help=f"Simple estimate: seconds of Nova orchestration per migration [{_DEFAULT.overhead_s:g}].",
)
@click.option(
    "--upgrade-minutes",
    type=click.FloatRange(min=0),
    default=None,
    help=f"Simple estimate: minutes to upgrade a drained host [{_DEFAULT.upgrade_s / 60:g}].",
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=1),
    default=60,
    show_default=True,
    help="Hosts drawn one row each; beyond, per-host plots are aggregated.",
)
@format_option
def report_cmd(
    inventory: str,
    plan: str,
    output: str,
    timeline_path: str | None,
    montecarlo_path: str | None,
    png_dir: str | None,
    ignore_digest: bool,
    model_path: str | None,
    bandwidth: float | None,
    overhead: float | None,
    upgrade_minutes: float | None,
    max_rows: int,
    fmt: str,
) -> None:
    """Write an HTML report of PLAN for INVENTORY: summary, policy, schedule (Gantt), headroom,
    utilisation, migrations per wave, lower bounds, VMs moved twice and stopped VMs.

    With --timeline the schedule and headroom over time are the simulated run's; without, the
    schedule is estimated with the simulator's migration model (--model), or with the simple
    model of --bandwidth, --overhead and --upgrade-minutes. --montecarlo adds the
    makespan distribution and the probability of a headroom breach. An invalid plan still gets
    a report, marked INVALID with its violations.
    """
    check_output_paths(output, png_dir)
    inv = load_inventory(inventory)
    p = load_plan(plan)
    if p.side_by_side:
        given = {
            "--timeline": timeline_path,
            "--montecarlo": montecarlo_path,
            "--bandwidth": bandwidth,
            "--overhead": overhead,
            "--upgrade-minutes": upgrade_minutes,
        }
        _side_by_side(
            inv, p, output, png_dir, model_path, ignore_digest, max_rows, fmt,
            tuple(k for k, v in given.items() if v is not None),
        )  # fmt: skip
        return
    timeline = read_timeline(timeline_path) if timeline_path else None
    montecarlo = read_montecarlo(montecarlo_path) if montecarlo_path else None
    sim_model = load_model(model_path)
    done = write_html_report(
        inv,
        p,
        output,
        png_dir,
        timeline=timeline,
        montecarlo=montecarlo,
        estimate=_simple_estimate(bandwidth, overhead, upgrade_minutes),
        sim_model=sim_model,
        ignore_digest=ignore_digest,
        max_rows=max_rows,
    )
    rep, files = done.report, done.files
    err.print(f"checked and replayed {len(p.waves)} waves in {done.build_s:.1f} s")
    if not rep.check.ok:
        err.print(
            f"[yellow]warning[/]: the plan is INVALID ({len(rep.check.violations)} violations); "
            "the report shows them"
        )
    if fmt == "json":
        emit_json(
            {
                "report": str(files[0]),
                "png": [str(f) for f in files[1:]],
                "valid": rep.check.ok,
                "makespan_s": round(rep.schedule.makespan_s, 3),
                "schedule": rep.schedule.source,
                "time_s": round(done.total_s, 3),
            }
        )
        return
    out.print(
        f"wrote {files[0]}" + (f" and {len(files) - 1} PNG files in {png_dir}" if png_dir else "")
    )
    err.print(f"done in {done.total_s:.1f} s")


def _side_by_side(
    inv: Inventory,
    p: Plan,
    output: str,
    png_dir: str | None,
    model_path: str | None,
    ignore_digest: bool,
    max_rows: int,
    fmt: str,
    other: tuple[str, ...],
) -> None:
    """Both clouds' report of a side-by-side plan."""
    if other:
        write_side_by_side_report(inv, p, output, other_sources=other)  # refuses: exit 2
    done = write_side_by_side_report(
        inv, p, output, png_dir, sim_model=load_model(model_path), ignore_digest=ignore_digest,
        max_rows=max_rows,
    )  # fmt: skip
    rep, files = done.report, done.files
    if not rep.check.ok:
        err.print(
            f"[yellow]warning[/]: the plan is INVALID ({len(rep.check.violations)} violations); "
            "the report shows them"
        )
    if fmt == "json":
        emit_json(
            {
                "report": str(files[0]),
                "png": [str(f) for f in files[1:]],
                "valid": rep.check.ok,
                "makespan_s": round(rep.run.makespan_s, 3),
                "schedule": "side-by-side simulation",
                "time_s": round(done.total_s, 3),
            }
        )
        return
    out.print(
        f"wrote {files[0]}" + (f" and {len(files) - 1} PNG files in {png_dir}" if png_dir else "")
    )
    err.print(f"done in {done.total_s:.1f} s")


def _simple_estimate(
    bandwidth: float | None, overhead: float | None, upgrade_minutes: float | None
) -> EstimateModel | None:
    """The simple estimate's parameters, the options not given at their defaults; None when no
    option is given (the simulator's migration model estimates)."""
    if bandwidth is None and overhead is None and upgrade_minutes is None:
        return None
    return EstimateModel(
        bandwidth_mib_s=bandwidth if bandwidth is not None else _DEFAULT.bandwidth_mib_s,
        overhead_s=overhead if overhead is not None else _DEFAULT.overhead_s,
        upgrade_s=upgrade_minutes * 60 if upgrade_minutes is not None else _DEFAULT.upgrade_s,
    )
