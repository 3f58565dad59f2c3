"""Planner benchmark: rollwave's CP-SAT planner beside the way operators upgrade today.

    python -m benchmarks.solver_bench                 # 100, 1,000 and 5,000 hosts
    python -m benchmarks.solver_bench --sizes 100,1000 --repeat 3
    python -m benchmarks.solver_bench --tight         # the tight clouds only
    python -m benchmarks.solver_bench --small-tight 300-450   # tiny two-AZ clouds, CP-SAT alone

Clouds come from `planner.generate` (20 VMs a host on average, 70% memory utilisation, seed 0 by
default) with `generate.default_policy`: N+1 per AZ, max_hosts_per_wave = hosts / 20, controllers
first, stops allowed. Each planner runs in a fresh process (spawned), so its peak memory (max RSS,
which includes the generated cloud) is its own; generating the cloud is not timed, the checker is
timed apart. The baseline (`solver.baseline`): hosts in name order, max_hosts_per_wave at a time,
each VM where Nova's default scheduler would send it (capacity, AZ and anti-affinity filters, RAM
weigher), upgrade- and headroom-unaware.

Columns: plan time (median of --repeat runs) and its CPU seconds (this process: compare these on
a shared machine), peak memory, waves against the lower bound (`planner.bounds`), migrations per
moved VM, and the checker's verdict (violations by rule).

`--tight`: the tight clouds of `tests.solver_clouds.TIGHT_SPECS` instead (40 hosts of three
hardware generations at 75% memory with a 20% reserve; 200, 500 and 1,000 hosts at 80% memory
with a quarter of the hosts a wave), rollwave only, with the waves its regression tests expect.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import time
from collections import Counter
from queue import Empty
from typing import Any

TARGETS = {100: 5.0, 1000: 20.0, 5000: 120.0}  # seconds, from the issue


def _run(kind: str, hosts: int, seed: int, queue: Any, tight: str | None = None) -> None:
    from planner.bounds import lower_bounds
    from planner.checker import check_plan
    from planner.generate import GenerateSpec, default_policy, generate

    if tight is not None:
        from tests.solver_clouds import tight_cloud

        cloud = tight_cloud(tight)
        inv, policy = cloud.inventory, cloud.policy
    else:
        spec = GenerateSpec(hosts=hosts, vms_per_host=20, utilisation=0.7, seed=seed)
        inv = generate(spec)
        policy = default_policy(spec)
    t0 = time.perf_counter()
    c0 = time.process_time()
    extra: dict[str, Any] = {}
    if kind == "rollwave":
        from solver.solve import solve

        outcome = solve(inv, policy)
        plan = outcome.plan
        extra = {"planner": outcome.planner, "status": outcome.status}
    elif kind == "greedy":
        from solver.greedy import greedy_plan

        plan = greedy_plan(inv, policy)
    else:
        from solver.baseline import nova_baseline_plan

        plan = nova_baseline_plan(inv, policy)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    t1 = time.perf_counter()
    report = check_plan(inv, plan)
    m = report.metrics
    queue.put(
        {
            "kind": kind,
            "hosts": hosts,
            "tight": tight,
            "hosts_total": sum(1 for h in inv.hosts if h.is_compute),
            "vms": len(inv.vms),
            "time": elapsed,
            "cpu": cpu,
            "check_time": time.perf_counter() - t1,
            "rss": rss,
            "waves": m["waves"],
            "bound": lower_bounds(inv, policy).waves,
            "per_vm": m["migrations_per_moved_vm"],
            "moved_twice": m["vms_moved_more_than_once"],
            "max_util": m["max_utilisation"],
            "violations": dict(report.by_rule()),
            "max_per_wave": policy.max_hosts_per_wave,
            **extra,
        }
    )


def run_one(kind: str, hosts: int, seed: int, tight: str | None = None) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=_run, args=(kind, hosts, seed, queue, tight))
    p.start()
    while True:
        try:
            result: dict[str, Any] = queue.get(timeout=5)
            break
        except Empty:
            if not p.is_alive():  # it died before answering: say so instead of waiting forever
                raise SystemExit(f"{kind} {hosts} hosts seed {seed}: exit {p.exitcode}") from None
    p.join()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="100,1000,5000", help="compute hosts, comma-separated")
    ap.add_argument("--repeat", type=int, default=1, help="runs per size (median time)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--greedy", action="store_true", help="also run the greedy planner")
    ap.add_argument("--tight", action="store_true", help="the tight clouds instead")
    ap.add_argument(
        "--small-tight",
        metavar="FROM-TO",
        help="CP-SAT alone on tests.solver_clouds.small_two_az(seed), seeds FROM..TO-1, instead",
    )
    args = ap.parse_args(argv)
    if args.tight:
        return _tight(args.repeat)
    if args.small_tight:
        lo, hi = (int(x) for x in args.small_tight.split("-"))
        return _small_tight(range(lo, hi))
    sizes = [int(s) for s in args.sizes.split(",") if s]
    kinds = ["rollwave", *(["greedy"] if args.greedy else []), "baseline"]
    rows = []
    for hosts in sizes:
        for kind in kinds:
            runs = [run_one(kind, hosts, args.seed) for _ in range(max(1, args.repeat))]
            r = dict(runs[0])
            r["time"] = statistics.median(x["time"] for x in runs)
            r["cpu"] = statistics.median(x["cpu"] for x in runs)
            r["rss"] = max(x["rss"] for x in runs)
            rows.append(r)
            print(_line(r), file=sys.stderr, flush=True)
    print()
    print(
        f"clouds: generate(vms_per_host=20, utilisation=0.7, seed={args.seed}); policy: "
        "default_policy (N+1 per AZ, max_hosts_per_wave = hosts/20, controllers first); "
        f"{args.repeat} run(s) each, median time"
    )
    header = (
        "hosts / VMs",
        "planner",
        "plan time",
        "CPU",
        "target",
        "peak RSS",
        "waves (bound)",
        "migr./moved VM",
        "moved twice",
        "fullest host",
        "checker",
    )
    table = [header]
    for r in rows:
        target = TARGETS.get(r["hosts"]) if r["kind"] == "rollwave" else None
        v = r["violations"]
        verdict = "valid" if not v else ", ".join(f"{k} {n}" for k, n in Counter(v).most_common())
        table.append(
            (
                f"{r['hosts']:,} / {r['vms']:,}",
                r["kind"],
                f"{r['time']:.1f} s",
                f"{r['cpu']:.1f} s",
                f"<= {target:.0f} s" if target else "",
                f"{r['rss']:,.0f} MiB",
                f"{r['waves']} ({r['bound']})",
                f"{r['per_vm']:.3f}",
                f"{r['moved_twice']:,}",
                f"{100 * r['max_util']:.1f}%",
                verdict,
            )
        )
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for k, row in enumerate(table):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
        if k == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def _small_tight(seeds: range) -> int:
    """Per seed that passes the pre-checks: does CP-SAT alone (no greedy fallback, effort 0.3)
    return a plan the checker accepts, one it rejects, or none; and is a plan known to exist
    (the greedy, or the tiny search planner within 3,000 checker calls, finds one)?"""
    from planner.bounds import lower_bounds
    from planner.checker import check_plan
    from planner.errors import InfeasibleError
    from solver.context import build_context
    from solver.cpsat import NoPlanFound, cpsat_plan
    from solver.greedy import greedy_plan
    from solver.params import SolveParams
    from solver.precheck import precheck
    from tests.solver_clouds import small_two_az
    from tests.tiny_planner import tiny_plan

    count: Counter[str] = Counter()
    missed: list[int] = []
    c0 = time.process_time()
    for seed in seeds:
        cloud = small_two_az(seed)
        inv, pol = cloud.inventory, cloud.policy
        lb = lower_bounds(inv, pol)
        if precheck(build_context(inv, pol), lb):
            continue
        count["clouds"] += 1
        try:
            greedy_plan(inv, pol)
            known = True
        except InfeasibleError:
            known = tiny_plan(inv, pol, budget=3000) is not None
        count["known"] += known
        try:
            res = cpsat_plan(inv, pol, SolveParams(effort=0.3), lower_bound=lb.waves)
            verdict = "accepted" if check_plan(inv, res.plan).ok else "rejected"
        except NoPlanFound:
            verdict = "none"
        count[verdict] += 1
        count["only cpsat"] += known is False and verdict == "accepted"
        if known and verdict != "accepted":
            missed.append(seed)
        print(f"seed {seed}: {verdict}, plan known: {known}", file=sys.stderr, flush=True)
    print()
    print(f"small_two_az, seeds {seeds.start}-{seeds.stop - 1}: CP-SAT alone, effort 0.3")
    keys = ("clouds", "known", "accepted", "rejected", "none", "only cpsat")
    print("  ".join(f"{k}: {count[k]}" for k in keys))
    print(f"a plan is known, CP-SAT has none or a rejected one: {missed or 'none'}")
    print(f"CPU {time.process_time() - c0:.0f} s")
    return 0


def _tight(repeat: int) -> int:
    from tests.solver_clouds import TIGHT_SPECS, TIGHT_WAVES

    table = [("cloud", "hosts / VMs", "plan time", "CPU", "waves (bound)", "expected", "planner")]
    for name in TIGHT_SPECS:
        runs = [run_one("rollwave", 0, 0, name) for _ in range(max(1, repeat))]
        r = dict(runs[0])
        r["time"] = statistics.median(x["time"] for x in runs)
        r["cpu"] = statistics.median(x["cpu"] for x in runs)
        r["hosts"] = r["hosts_total"]
        print(f"{name}: " + _line(r), file=sys.stderr, flush=True)
        v = r["violations"]
        verdict = "" if not v else " INVALID " + ", ".join(f"{k} {n}" for k, n in v.items())
        table.append(
            (
                name,
                f"{r['hosts_total']:,} / {r['vms']:,}",
                f"{r['time']:.1f} s",
                f"{r['cpu']:.1f} s",
                f"{r['waves']} ({r['bound']})",
                f"<= {TIGHT_WAVES[name][0]}",
                f"{r.get('planner', '?')}{verdict}",
            )
        )
    print(f"\ntight clouds (tests.solver_clouds), seed 0, {repeat} run(s) each, median time")
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
    for k, row in enumerate(table):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
        if k == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['hosts']} hosts {r['kind']}: {r['time']:.1f} s (CPU {r['cpu']:.1f} s), "
        f"{r['rss']:.0f} MiB, "
        f"waves {r['waves']} (bound {r['bound']}), {r['per_vm']:.3f} per moved VM, "
        f"violations {r['violations'] or 'none'} (check {r['check_time']:.1f} s)"
    )


if __name__ == "__main__":
    sys.exit(main())
