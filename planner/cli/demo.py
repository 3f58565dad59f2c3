"""`rollwave demo`: the main job on the bundled example cloud, end to end."""

from __future__ import annotations

import shutil
import time
from importlib import resources
from pathlib import Path

import click

from planner.checker import check_plan
from planner.cli.check import print_metrics
from planner.cli.common import err, kv_table, out
from planner.cli.plan import solve_and_check
from planner.formats import load_inventory, load_policy, save_plan
from planner.report.build import build_report
from planner.report.html import write_report
from planner.report.timeline import read_timeline
from sim.engine import simulate
from sim.model import load_model
from sim.prepare import prepare
from sim.timeline import summary, write_timeline


def example_path(name: str) -> Path:
    return Path(str(resources.files("planner") / "examples" / name))


@click.command("demo")
@click.option(
    "--out",
    "out_dir",
    default="rollwave-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Directory for the demo's files.",
)
def demo_cmd(out_dir: str) -> None:
    """Plan, check, simulate and report on the bundled example cloud (12 hosts, 3 controllers)."""
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    inv_file = target / "inventory.json"
    pol_file = target / "policy.yaml"
    shutil.copyfile(example_path("small.json"), inv_file)
    shutil.copyfile(example_path("small-policy.yaml"), pol_file)
    inv = load_inventory(inv_file)
    policy = load_policy(pol_file)
    out.print(
        kv_table(
            f"example cloud {inv.cloud}",
            [
                ("compute hosts", f"{len(inv.compute_hosts)} in AZs {', '.join(inv.azs)}"),
                ("controllers", len(inv.hosts) - len(inv.compute_hosts)),
                ("VMs", len(inv.vms)),
                ("server groups", len(inv.server_groups)),
                (
                    "policy",
                    f"N+{policy.headroom.failures} per {policy.headroom.scope}, "
                    f"{policy.max_hosts_per_wave} hosts a wave, "
                    f"upgrade to {policy.target_version}",
                ),
            ],
        )
    )
    t0 = time.perf_counter()
    plan, _, _ = solve_and_check(inv, policy)
    err.print(f"planned in {time.perf_counter() - t0:.2f} s")
    plan_file = target / "plan.json"
    save_plan(plan, plan_file)
    report = check_plan(load_inventory(inv_file), plan)  # the checker, as `rollwave check` runs it
    print_metrics(report.metrics)
    for w in plan.waves:
        out.print(
            f"  wave {w.index:>2}: {', '.join(w.hosts):<28} "
            f"{len(w.migrations):>3} migrations, {len(w.stops)} stops",
            markup=False,
        )
    verdict = "[bold green]valid[/]" if report.ok else "[bold red]INVALID[/]"
    out.print(f"plan {verdict}")

    # Simulate the plan with the default model (Nova's defaults, 10 GbE).
    model = load_model(None)
    prep = prepare(inv, plan, model, plan_file=str(plan_file))
    res = simulate(prep, seed=0, record=True)
    timeline_file = target / "timeline.jsonl"
    write_timeline(timeline_file, prep, res)
    s = summary(prep, res)
    out.print(
        kv_table(
            "simulation (Nova's defaults, 10 GbE)",
            [
                ("makespan", f"{_hms(res.makespan_s)} (lower bound {_hms(res.lower_bound_s)})"),
                (
                    "downtime",
                    f"total {s['downtime_total_s']:,.1f} s, worst migration "
                    f"{s['downtime_max_s']:.3f} s",
                ),
                ("non-converging VMs", s["non_converging"]),
                (
                    "hosts not upgraded",
                    f"{s['hosts_not_upgraded']} (a VM left behind: see rollwave simulate)",
                ),
                ("invariant breaches", sum(res.breach_counts.values())),
            ],
        )
    )
    report_file = target / "report.html"
    rep = build_report(inv, plan, timeline=read_timeline(timeline_file))
    write_report(rep, report_file, None)
    out.print(
        f"files in {target}/: inventory.json, policy.yaml, plan.json, timeline.jsonl, "
        f"report.html (open it in a browser)\n"
        f"next: rollwave check {inv_file} {plan_file}\n"
        f"      rollwave simulate {inv_file} {plan_file} --runs 100"
    )


def _hms(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"
