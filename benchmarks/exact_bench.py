"""The exact model (`solver.exact.decide`) on small, very tight clouds: how often it decides, how
fast, and what it finds where the pre-checks prove nothing.

    python -m benchmarks.exact_bench                  # small_two_az seeds 0-199
    python -m benchmarks.exact_bench --seeds 0-49 --hosts 8,10,12

Clouds: `tests.solver_clouds.small_two_az(seed)` (4-6 hosts, two AZs, N+1 per AZ, one host a
wave), those whose pre-checks pass (the planner consults the exact model only then); with
`--hosts`, the same recipe with more hosts (seed 0 to 9 each) to see how the time grows.
Columns: outcome, clouds, model cells (median, max), decide time (median, max) and CP-SAT solves
(median) per outcome; "greedy finds none" counts the clouds where the greedy planner fails too
(the ones `rollwave plan` answered "not proven impossible" unless CP-SAT found a plan).

Then "fewest migrations" (`solver.exact_opt.optimise`, the step `rollwave plan` takes on small
clouds), from the greedy planner's plan on every cloud where it finds one (pre-checks passing or
not): clouds, how many it improves, how many it proves minimal, the migrations before and after
(sums), the gap left (sum of migrations - bound where not proven) and its time (median, max).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections import defaultdict
from typing import Any


def _cloud(seed: int, hosts: int | None) -> Any:
    from tests.solver_clouds import small_two_az

    cloud = small_two_az(seed)
    if hosts is None:
        return cloud
    from planner.generate import GenerateSpec, default_policy, generate

    spec = GenerateSpec(
        hosts=hosts, vms_per_host=2.5, azs=2, utilisation=0.35, controllers=0, seed=seed
    )
    spec = dataclasses.replace(spec, disabled_hosts=0)
    pol = default_policy(spec).with_changes(
        max_hosts_per_wave=1, allow_stop=False, **{"headroom.failures": 1}
    )
    return dataclasses.replace(cloud, inventory=generate(spec), policy=pol)


def run(seeds: range, hosts: int | None) -> list[dict[str, Any]]:
    from planner.bounds import lower_bounds
    from planner.checker import check_plan
    from planner.errors import InfeasibleError
    from solver.context import build_context
    from solver.exact import decide
    from solver.greedy import greedy_plan
    from solver.params import SolveParams
    from solver.precheck import precheck

    rows = []
    for seed in seeds:
        cloud = _cloud(seed, hosts)
        inv, pol = cloud.inventory, cloud.policy
        ctx = build_context(inv, pol)
        if precheck(ctx, lower_bounds(inv, pol)):
            continue
        t0 = time.perf_counter()
        dec = decide(ctx, SolveParams(time_limit=120))
        dt = time.perf_counter() - t0
        if dec.plan is not None and not check_plan(inv, dec.plan, digest="").ok:
            raise SystemExit(f"seed {seed}: the exact model's plan breaks a rule (a bug)")
        try:
            greedy_plan(inv, pol)
            greedy_fails = False
        except InfeasibleError:
            greedy_fails = True
        rows.append(
            {
                "seed": seed,
                "outcome": dec.outcome,
                "cells": dec.cells,
                "time": dt,
                "solves": dec.solves,
                "greedy_fails": greedy_fails,
            }
        )
    return rows


def optimise_rows(seeds: range, hosts: int | None) -> list[dict[str, Any]]:
    from planner.bounds import lower_bounds
    from planner.checker import check_plan
    from planner.errors import InfeasibleError
    from solver.context import build_context
    from solver.exact_opt import optimise
    from solver.greedy import greedy_plan
    from solver.params import SolveParams

    rows = []
    for seed in seeds:
        cloud = _cloud(seed, hosts)
        inv, pol = cloud.inventory, cloud.policy
        try:
            plan = greedy_plan(inv, pol)
        except InfeasibleError:
            continue
        before = sum(len(w.migrations) for w in plan.waves)
        ctx = build_context(inv, pol)
        t0 = time.perf_counter()
        got = optimise(
            ctx, SolveParams(time_limit=60), plan, wave_bound=lower_bounds(inv, pol).waves
        )
        dt = time.perf_counter() - t0
        if got is None:
            continue
        if got.plan is not None and not check_plan(inv, got.plan, digest="").ok:
            raise SystemExit(f"seed {seed}: the exact model's plan breaks a rule (a bug)")
        rows.append(
            {
                "before": before,
                "after": got.migrations,
                "improved": got.plan is not None,
                "optimal": got.status == "optimal",
                "gap": got.gap,
                "time": dt,
            }
        )
    return rows


def optimise_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}, fewest migrations from the greedy's plan: {len(rows)} clouds")
    print(
        f"{'clouds':>7}{'improved':>10}{'optimal':>9}{'migr. before':>14}{'after':>7}"
        f"{'gap left':>10}{'time med':>10}{'time max':>10}"
    )
    if not rows:
        return
    print(
        f"{len(rows):>7}{sum(r['improved'] for r in rows):>10}{sum(r['optimal'] for r in rows):>9}"
        f"{sum(r['before'] for r in rows):>14}{sum(r['after'] for r in rows):>7}"
        f"{sum(r['gap'] for r in rows):>10}"
        f"{statistics.median(r['time'] for r in rows):>9.2f}s{max(r['time'] for r in rows):>9.2f}s"
    )


def table(title: str, rows: list[dict[str, Any]]) -> None:
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[r["outcome"]].append(r)
    print(f"\n{title}: {len(rows)} clouds whose pre-checks pass")
    head = (
        f"{'outcome':<11}{'clouds':>7}{'cells med':>11}{'cells max':>11}{'time med':>10}"
        f"{'time max':>10}{'solves':>8}{'greedy finds none':>19}"
    )
    print(head)
    for outcome in ("plan", "impossible", "unknown", "too_large"):
        rs = by.get(outcome, [])
        if not rs:
            continue
        print(
            f"{outcome:<11}{len(rs):>7}"
            f"{statistics.median(r['cells'] for r in rs):>11,.0f}"
            f"{max(r['cells'] for r in rs):>11,}"
            f"{statistics.median(r['time'] for r in rs):>9.2f}s"
            f"{max(r['time'] for r in rs):>9.2f}s"
            f"{statistics.median(r['solves'] for r in rs):>8.0f}"
            f"{sum(r['greedy_fails'] for r in rs):>19}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-199", help="small_two_az seeds, e.g. 0-199")
    ap.add_argument("--hosts", default="", help="also clouds of these host counts, e.g. 8,10")
    ap.add_argument("--no-optimise", action="store_true", help="only the decide table")
    args = ap.parse_args()
    lo, _, hi = args.seeds.partition("-")
    seeds = range(int(lo), int(hi or lo) + 1)
    table("small_two_az", run(seeds, None))
    if not args.no_optimise:
        optimise_table("small_two_az", optimise_rows(seeds, None))
    for n in [int(x) for x in args.hosts.split(",") if x.strip()]:
        table(f"{n} hosts, two AZs", run(range(10), n))
        if not args.no_optimise:
            optimise_table(f"{n} hosts, two AZs", optimise_rows(range(10), n))


if __name__ == "__main__":
    main()
