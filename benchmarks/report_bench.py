"""How long a plan report and a what-if sweep take: `python -m benchmarks.report_bench`.

Clouds: the bundled example (12 hosts) and `planner.generate` clouds; plans from the greedy
planner (not timed). Prints two tables; every time is the median of --repeat runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from planner.app.whatif import SweepConfig, sweep
from planner.errors import InfeasibleError
from planner.formats import load_inventory, load_policy
from planner.generate import GenerateSpec, default_policy, generate
from planner.inventory import Inventory
from planner.plan import Plan
from planner.report import build_report
from planner.report.build import figures
from planner.report.html import render_figures, render_html, write_report
from planner.report.whatif import combinations, parse_vary
from solver.greedy import greedy_plan


def median_time(fn: Callable[[], object], repeat: int, clock: str = "cpu") -> float:
    """Median over `repeat` runs, in CPU seconds of this process (stable on a shared machine)
    or wall seconds (`clock="wall"`, for parallel work)."""
    tick = time.process_time if clock == "cpu" else time.perf_counter
    times = []
    for _ in range(repeat):
        t0 = tick()
        fn()
        times.append(tick() - t0)
    return statistics.median(times)


def cloud(n: int, vms_per_host: float) -> tuple[Inventory, Plan]:
    """12: the bundled example; else the first generated cloud (seed 1, 2, ...) the greedy
    planner finds a plan for."""
    if n == 12:
        root = Path(str(resources.files("planner") / "examples"))
        inv = load_inventory(root / "small.json")
        return inv, greedy_plan(inv, load_policy(root / "small-policy.yaml"))
    for seed in range(1, 20):
        spec = GenerateSpec(hosts=n, vms_per_host=vms_per_host, seed=seed)
        inv = generate(spec)
        try:
            return inv, greedy_plan(inv, default_policy(spec))
        except InfeasibleError:
            continue
    raise SystemExit(f"no plannable {n}-host cloud in 19 seeds")


def report_row(n: int, vms_per_host: float, repeat: int) -> None:
    inv, plan = cloud(n, vms_per_host)
    t_build = median_time(lambda: build_report(inv, plan, ignore_digest=True), repeat)
    rep = build_report(inv, plan, ignore_digest=True)
    t_fig = median_time(lambda: figures(rep), repeat)
    t_html = median_time(lambda: render_html(rep, render_figures(rep)), repeat)
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "r.html"
        t_total = median_time(
            lambda: write_report(build_report(inv, plan, ignore_digest=True), out), repeat
        )
        size = out.stat().st_size
    migrations = sum(len(w.migrations) for w in plan.waves)
    print(
        f"{n:>6} {len(inv.vms):>7} {len(plan.waves):>5} {migrations:>7} {t_build:>12.2f}s "
        f"{t_fig:>7.2f}s {t_html - t_fig:>8.2f}s {t_total:>6.2f}s {size / 1e6:>8.2f}MB"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hosts", default="12,500,2000", help="cloud sizes (compute hosts)")
    ap.add_argument("--vms-per-host", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--whatif-hosts", type=int, default=200)
    ap.add_argument("--whatif-runs", type=int, default=20, help="simulated runs per combination")
    args = ap.parse_args()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"report: median CPU seconds of {args.repeat} runs, {args.vms_per_host:g} VMs per host "
        f"(load average {load:.1f} on {os.cpu_count()} CPUs)"
    )
    print(
        f"{'hosts':>6} {'VMs':>7} {'waves':>5} {'migr.':>7} {'check+replay':>13} "
        f"{'figures':>8} {'PNG+HTML':>9} {'total':>7} {'HTML size':>10}"
    )
    for n in (int(x) for x in args.hosts.split(",")):
        report_row(n, args.vms_per_host, args.repeat)

    n = args.whatif_hosts
    spec = GenerateSpec(hosts=n, vms_per_host=args.vms_per_host, seed=1)
    inv = generate(spec)
    policy = default_policy(spec)
    combos = combinations(
        [parse_vary("max_hosts_per_wave=4,8,16"), parse_vary("headroom.failures=0,1")]
    )
    cpus = os.cpu_count() or 1
    print()
    print(f"whatif: {len(combos)} combinations on {n} hosts ({len(inv.vms)} VMs)")
    print(f"{'runs':>5} {'processes':>9} {'wall':>7} {'CPU (all processes)':>20} {'speed-up':>9}")
    for runs in (0, args.whatif_runs):
        cfg = SweepConfig(runs=runs)
        base = 0.0
        for jobs in (1, cpus):
            wall, cpu = wall_and_cpu(
                lambda cfg=cfg, jobs=jobs: sweep(inv, policy, combos, cfg, jobs=jobs)
            )
            base = base or wall
            print(f"{runs:>5} {jobs:>9} {wall:>6.2f}s {cpu:>19.2f}s {base / wall:>8.2f}x")


def wall_and_cpu(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds, and CPU seconds of this process and its worker processes."""

    def cpu() -> float:
        me, kids = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    c0, t0 = cpu(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, cpu() - c0


if __name__ == "__main__":
    main()
