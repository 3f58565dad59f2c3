"""Simulator speed: `python -m benchmarks.sim_bench [--quick] [--runs N] [--jobs J]`.

Prints one table: events per second, one run of a ~100,000-migration plan (dynamic NIC shares, the
default, in the loop the engine runs (compiled when the install compiled it, see setup.py) and in
the Python loop, then static shares, the fast approximation), and N Monte Carlo runs of a
~10,000-migration plan (default model), against the issue's targets, in wall and CPU time. Plans
come from the greedy planner on generated clouds (cached under $TMPDIR/rollwave-bench, keyed by
the planner's source, since planning is not what is measured).

`--callgrind` makes only one run of the big plan in the engine's loop (its caches filled by a run
in the Python loop first), for counting its machine instructions, which the machine's load does
not change (docs/architecture.md):

    valgrind --tool=callgrind --toggle-collect='CPyDef_*run_loop' \
        .venv/bin/python -m benchmarks.sim_bench --callgrind
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

from benchmarks.cache import cached
from planner.generate import GenerateSpec, default_policy, generate
from planner.inventory import Inventory
from planner.plan import Plan
from sim import engine
from sim import loop as python_loop
from sim.engine import prepare, simulate
from sim.model import DEFAULT
from sim.montecarlo import run_many
from solver.greedy import greedy_plan

T = TypeVar("T")


def cloud_and_plan(hosts: int, vms_per_host: float) -> tuple[Inventory, Plan]:
    """A generated cloud and its greedy plan (cached: planning is not what is measured)."""

    def make() -> tuple[Inventory, Plan]:
        spec = GenerateSpec(hosts=hosts, vms_per_host=vms_per_host, utilisation=0.5, seed=0)
        inv = generate(spec)
        t0 = time.perf_counter()
        plan = greedy_plan(inv, default_policy(spec))
        print(f"  (planned {hosts} hosts in {time.perf_counter() - t0:.1f} s, cached)")
        return inv, plan

    return cached(f"sim-{hosts}-{vms_per_host:g}", make)


def timed(fn: Callable[[], T], repeat: int) -> tuple[float, float, T]:
    """(median wall seconds, median CPU seconds, last result): CPU time is what the machine's
    other load disturbs least."""
    walls, cpus = [], []
    out: T | None = None
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    assert out is not None
    return statistics.median(walls), statistics.median(cpus), out


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def one_run() -> None:
    """One run of the big plan in the engine's loop, the per-share cache filled beforehand by a
    run in the Python loop (outside the compiled run_loop that callgrind is told to count)."""
    inv, plan = cloud_and_plan(3200, 31.0)
    prep = prepare(inv, plan, DEFAULT, check=False)
    python_loop.run_loop(prep, 1, False, None)
    res = simulate(prep, 1, record=False)
    print(
        f"one run: {len(prep.m_vm):,} migrations, {res.events:,} events, makespan "
        f"{res.makespan_s:.3f} s; loop: {engine.IMPLEMENTATION}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller plans, 100 runs")
    ap.add_argument("--runs", type=int, default=None, help="Monte Carlo runs (default 1000)")
    ap.add_argument("--jobs", type=int, default=None, help="processes (default: CPUs)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats of the single run (median)")
    ap.add_argument(
        "--callgrind", action="store_true", help="only one run of the big plan (see the docstring)"
    )
    args = ap.parse_args()
    if args.callgrind:
        one_run()
        return
    big = (700, 10.0) if args.quick else (3200, 31.0)
    mc = (200, 10.0) if args.quick else (700, 10.0)
    runs = args.runs or (100 if args.quick else 1000)

    print("preparing plans ...")
    inv_b, plan_b = cloud_and_plan(*big)
    inv_m, plan_m = cloud_and_plan(*mc)
    rows: list[tuple[str, str, str]] = []

    t_prep, c_prep, prep_b = timed(lambda: prepare(inv_b, plan_b, DEFAULT, check=False), 1)
    n_b = len(prep_b.m_vm)
    simulate(prep_b, 1, record=False)  # fills the per-share cache, as Monte Carlo runs would
    t_run, c_run, res = timed(lambda: simulate(prep_b, 1, record=False), args.repeat)
    t_rec, c_rec, _ = timed(lambda: simulate(prep_b, 1, record=True), args.repeat)
    events = res.events
    rows += [
        (
            "plan size",
            f"{len(inv_b.hosts):,} hosts, {n_b:,} migrations, {len(plan_b.waves)} waves",
            "",
        ),
        (
            f"events per second (one run, network.sharing: {DEFAULT.sharing}, the default)",
            f"{events / t_run:,.0f} wall, {events / c_run:,.0f} CPU ({events:,} events)",
            ">= 250,000",
        ),
        (
            "  heap events only (no starts)",
            f"{res.heap_events / t_run:,.0f} wall, {res.heap_events / c_run:,.0f} CPU "
            f"({res.heap_events:,})",
            "",
        ),
        (
            f"one run of {n_b:,} migrations",
            f"{t_run:.3f} s wall, {c_run:.3f} s CPU (medians of {args.repeat})",
            "<= 1 s for 100,000",
        ),
        ("  the same, recording the timeline", f"{t_rec:.3f} s wall, {c_rec:.3f} s CPU", ""),
        ("  migrations per second", f"{n_b / t_run:,.0f} wall, {n_b / c_run:,.0f} CPU", ""),
    ]
    if engine.IMPLEMENTATION.startswith("compiled"):
        # The same run in the Python loop, for the ratio (the compiled loop is its copy).
        compiled, engine._run_loop = engine._run_loop, python_loop.run_loop
        try:
            t_py, c_py, res_py = timed(lambda: simulate(prep_b, 1, record=False), args.repeat)
        finally:
            engine._run_loop = compiled
        assert res_py.events == events and res_py.makespan_s == res.makespan_s
        rows.append(
            (
                "  the same in the Python loop",
                f"{t_py:.3f} s wall, {c_py:.3f} s CPU ({events / c_py:,.0f} events/s CPU; "
                f"compiled: {c_py / c_run:.2f}x faster)",
                "",
            )
        )
    other = "static" if DEFAULT.sharing == "dynamic" else "dynamic"
    prep_o = prepare(inv_b, plan_b, DEFAULT.with_changes(sharing=other), check=False)
    simulate(prep_o, 1, record=False)
    t_o, c_o, res_o = timed(lambda: simulate(prep_o, 1, record=False), args.repeat)
    rows += [
        (
            f"  the same with network.sharing: {other}",
            f"{t_o:.3f} s wall, {c_o:.3f} s CPU ({res_o.events / c_o:,.0f} events/s CPU)",
            "",
        ),
        (
            "prepare (migration model, once per plan)",
            f"{t_prep:.3f} s wall, {c_prep:.3f} s CPU",
            "",
        ),
    ]

    prep_m = prepare(inv_m, plan_m, DEFAULT.with_changes(migration_failure_p=0.01), check=False)
    n_m = len(prep_m.m_vm)
    jobs = args.jobs or os.cpu_count() or 1
    c0, k0, w0 = time.process_time(), children_cpu(), time.perf_counter()
    results = run_many(prep_m, runs, 0, jobs=jobs)
    t_mc = time.perf_counter() - w0
    c_mc = time.process_time() - c0 + children_cpu() - k0
    target = f"<= {60 * runs / 1000:g} s" + (" (60 s per 1,000)" if runs != 1000 else "")
    rows += [
        (
            f"Monte Carlo: {runs:,} runs of {n_m:,} migrations",
            f"{t_mc:.1f} s wall on {jobs} process(es); {c_mc:.1f} s CPU = {c_mc / jobs:.1f} s "
            f"on {jobs} idle cores",
            target,
        ),
        ("  runs per second", f"{runs / t_mc:,.1f} wall", ""),
        ("  completed runs", f"{sum(r.completed for r in results)}", ""),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"\n{'measure':<{w0}}  {'result':<{w1}}  target")
    print(f"{'-' * w0}  {'-' * w1}  {'-' * 20}")
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:<{w1}}  {c}")
    print(f"\nsimulator loop: {engine.IMPLEMENTATION}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
