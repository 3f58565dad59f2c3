"""Side-by-side planning of 40-host generated clouds: `python -m benchmarks.sidebyside_bench
[--hosts N] [--utilisation 0.5,0.6] [--seeds 1,2,3] [--vms-per-host V]
[--max-hosts-per-wave 2,4] [--repeat K]`.

For each cloud (`generate --hosts N --vms-per-host V --utilisation U --seed S`, its default
policy with
max_hosts_per_wave M and without its in-place first/last order), plans side by side
(`planner.app.sidebyside.plan_and_check`: the greedy, then the checker) and simulates the plan
with the default model (`sim.crosscloud`). Prints waves against their lower bound, VMs moved
twice against theirs, cross-cloud moves, total and worst downtime, the simulated makespan
against its lower bound, and the planning time (wall and CPU, median of K, with the load
average: on a shared machine read the CPU seconds).

Lower bounds (docs/solver.md, docs/simulation.md): waves = every host in some wave, at most M a
wave, two when there are VMs; VMs moved twice = the VMs on one AZ's k + 1 emptiest available
hosts and the controllers' emptiest others (emptied before any VM can cross); makespan = the new
control plane's deployment, the crossings' total over the parallel lanes (or the longest
crossing), and the joins that follow one another (ceil((computes - M) / M) waves end with one).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from planner.app.sidebyside import plan_and_check
from planner.errors import InfeasibleError
from planner.generate import GenerateSpec, default_policy, generate
from sim.crosscloud import simulate_side_by_side
from sim.model import DEFAULT
from sim.timeline import hms
from solver.sidebyside import SideBySideOptions


def one(hosts: int, vms: float, util: float, seed: int, m: int, repeat: int) -> list[str]:
    spec = GenerateSpec(hosts=hosts, vms_per_host=vms, seed=seed, utilisation=util)
    inv = generate(spec)
    pol = default_policy(spec).with_changes(first=(), last=(), max_hosts_per_wave=m)
    walls, cpus = [], []
    got = None
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        try:
            got = plan_and_check(inv, pol, SideBySideOptions())
        except InfeasibleError as exc:
            return [f"{util:g}", str(seed), str(m), f"{len(inv.vms)}", f"no plan: {exc.reasons[0]}"]
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    assert got is not None
    s = got.metrics
    lb = s["lower_bounds"]
    r = simulate_side_by_side(inv, got.plan, DEFAULT)
    return [
        f"{util:g}",
        str(seed),
        str(m),
        f"{len(inv.vms)}",
        f"{s['waves']} / {lb['waves']}",
        f"{s['vms_moved_twice']} / {lb['vms_moved_twice']}",
        f"{s['cross_cloud_moves']}",
        f"{r.total_downtime_s / 3600:,.1f} h",
        f"{r.worst_downtime_s:,.0f} s",
        f"{hms(r.makespan_s)} / {hms(r.lower_bound_s)} ({r.makespan_s / r.lower_bound_s:.2f} x)",
        f"{statistics.median(walls):.2f} s / {statistics.median(cpus):.2f} s",
        f"{os.getloadavg()[0]:.1f}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--hosts", type=int, default=40)
    ap.add_argument("--vms-per-host", type=float, default=10.0)
    ap.add_argument("--utilisation", default="0.5,0.6", help="memory, as `generate`")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--max-hosts-per-wave", default="2,4")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    head = [
        "util",
        "seed",
        "M",
        "VMs",
        "waves / LB",
        "moved twice / LB",
        "crossings",
        "downtime total",
        "worst",
        "makespan / LB",
        "plan wall / CPU",
        "load",
    ]
    rows = [
        one(args.hosts, args.vms_per_host, float(u), int(seed), int(m), args.repeat)
        for u in args.utilisation.split(",")
        for seed in args.seeds.split(",")
        for m in args.max_hosts_per_wave.split(",")
    ]
    print(
        f"side by side, {args.hosts}-host generated clouds, {args.vms_per_host:g} VMs a host, "
        f"default model (crosscloud: {DEFAULT.crosscloud})"
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
