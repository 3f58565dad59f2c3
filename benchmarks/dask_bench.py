"""Monte Carlo on Dask against local processes: `python -m benchmarks.dask_bench [--quick]
[--runs N] [--repeat K] [--workers W]`.

1,000 runs (default) of a ~10,000-migration plan (a generated 1,000-host cloud, its greedy plan,
as in sim_bench) on W local processes (`run_many`, today's default) and on a local Dask cluster
of W workers (`--cluster local:W`), interleaved K times, medians. Prints the wall times, the
engine's overhead against the target (Dask within 10% of local processes), what the batching
measured (per-task overhead, per-run work, batch size) and, from those measures, a projection of
the same work on 10 and 100 workers. The machine's load average is printed with every
measurement: on a shared machine, read the ratios of neighbouring runs.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import time
from dataclasses import dataclass

from benchmarks.sim_bench import cloud_and_plan
from planner.app import distributed
from planner.app.distributed import OVERHEAD_TARGET, BatchStats, Cluster, connect
from sim import engine
from sim.engine import Prepared, prepare
from sim.model import DEFAULT
from sim.montecarlo import RunSummary, run_many

TARGET = 1.10  # Dask's wall time at most 10% above local processes'


@dataclass
class Sample:
    wall_s: float
    cpu_s: float  # every process of the run: this one, the pool's or the cluster's workers
    load: float  # 1-minute load average when it ended
    stats: BatchStats | None = None
    runs_cpu_s: float = 0.0  # the runs' own: the pool's processes, or the workers' task threads
    here_cpu_s: float = 0.0  # this process: the scheduler, the client, a local cluster's nannies


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def local_runs(prep: Prepared, runs: int, workers: int) -> tuple[Sample, list[RunSummary]]:
    c0, k0, t0 = time.process_time(), children_cpu(), time.perf_counter()
    results = run_many(prep, runs, 0, jobs=workers)
    wall = time.perf_counter() - t0
    here, pool = time.process_time() - c0, children_cpu() - k0  # the pool's are reaped
    return Sample(wall, here + pool, os.getloadavg()[0], None, pool, here), results


def workers_cpu(c: Cluster) -> float:
    return float(sum(c.client.run(time.process_time).values()))


def dask_runs(c: Cluster, prep: Prepared, runs: int) -> tuple[Sample, list[RunSummary]]:
    c0, w0, t0 = time.process_time(), workers_cpu(c), time.perf_counter()
    results, stats = distributed.run_many(c, prep, runs, 0)
    wall = time.perf_counter() - t0
    here, workers = time.process_time() - c0, workers_cpu(c) - w0
    return Sample(wall, here + workers, os.getloadavg()[0], stats, stats.work_cpu_s, here), results


def med(samples: list[Sample], field: str) -> float:
    return float(statistics.median(getattr(s, field) for s in samples))


def projection(runs: int, t: float, o: float, fixed: float, w: int) -> tuple[int, int, float]:
    """(batch size, tasks, seconds) of `runs` runs on `w` one-thread workers: batches sized as
    `distributed.batch_size` does, ceil(tasks / w) rounds of (b t + o) each, plus the fixed cost
    (scatter, first round trip)."""
    b = max(1, min(math.ceil(o / (OVERHEAD_TARGET * t)), math.ceil(runs / w)))
    tasks = math.ceil(runs / b)
    return b, tasks, fixed + math.ceil(tasks / w) * (b * t + o)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a ~2,000-migration plan, 200 runs")
    ap.add_argument("--runs", type=int, default=None, help="Monte Carlo runs (default 1000)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved repeats (medians)")
    ap.add_argument("--workers", type=int, default=2, help="local processes = Dask workers")
    args = ap.parse_args()
    hosts = 200 if args.quick else 1000
    runs = args.runs or (200 if args.quick else 1000)
    w = args.workers

    print("preparing the plan ...")
    inv, plan = cloud_and_plan(hosts, 10.0)
    prep = prepare(inv, plan, DEFAULT.with_changes(migration_failure_p=0.01), check=False)
    n_mig = len(prep.m_vm)
    print(f"  {len(inv.hosts):,} hosts, {n_mig:,} migrations; load {os.getloadavg()[0]:.2f}")

    local: list[Sample] = []
    remote: list[Sample] = []
    t0 = time.perf_counter()
    with connect(f"local:{w}") as c:
        start_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        c.scatter(prep).release()
        scatter_s = time.perf_counter() - t1
        for k in range(args.repeat):
            # alternate which goes first, so that a change of load hits both alike
            order = ("local", "dask") if k % 2 == 0 else ("dask", "local")
            for kind in order:
                if kind == "local":
                    s, res_l = local_runs(prep, runs, w)
                    local.append(s)
                else:
                    s, res_d = dask_runs(c, prep, runs)
                    remote.append(s)
                print(
                    f"  {kind:<5} {s.wall_s:7.2f} s wall, {s.cpu_s:7.2f} s CPU (load {s.load:.2f})",
                    flush=True,
                )
            assert res_d == res_l, "the cluster's runs differ from the local ones"
        t2 = time.perf_counter()
    stop_s = time.perf_counter() - t2
    # `--cluster local:W` as a command runs it: start, run, stop
    t3 = time.perf_counter()
    with connect(f"local:{w}") as c2:
        dask_runs(c2, prep, runs)
    e2e = Sample(time.perf_counter() - t3, 0.0, os.getloadavg()[0])
    print(f"  dask, with the cluster's start and stop: {e2e.wall_s:.2f} s (load {e2e.load:.2f})")

    lw = statistics.median(s.wall_s for s in local)
    dw = statistics.median(s.wall_s for s in remote)
    lc = statistics.median(s.cpu_s for s in local)
    dc = statistics.median(s.cpu_s for s in remote)
    pairs = [d.wall_s / x.wall_s for x, d in zip(local, remote, strict=True)]
    st = [s.stats for s in remote if s.stats is not None]
    t = statistics.median(s.item_s for s in st)
    o = statistics.median(s.overhead_s for s in st)
    tasks = statistics.median(s.tasks for s in st)
    batch = statistics.median(s.largest_batch for s in st)
    share = statistics.median(s.overhead_share for s in st)
    # the fixed cost: scatter and the pilot's round trip
    fixed = scatter_s + o
    rows: list[tuple[str, str, str]] = [
        ("plan", f"{len(inv.hosts):,} hosts, {n_mig:,} migrations, {len(plan.waves)} waves", ""),
        (f"{runs:,} runs on {w} local processes", f"{lw:.2f} s wall (median of {len(local)})", ""),
        (
            f"{runs:,} runs on a local Dask cluster of {w} workers",
            f"{dw:.2f} s wall (median of {len(remote)}); {dw / lw:.3f} x local",
            f"<= {TARGET:.2f} x local",
        ),
        (
            "  wall ratio of each interleaved pair",
            ", ".join(f"{r:.3f}" for r in pairs) + f" (median {statistics.median(pairs):.3f})",
            "",
        ),
        (
            "  CPU time of all processes (less disturbed by the load)",
            f"local {lc:.1f} s, Dask {dc:.1f} s: {dc / lc:.3f} x local (medians)",
            "",
        ),
        (
            "  of which the runs' own (task threads; the pool's processes)",
            f"local {med(local, 'runs_cpu_s'):.1f} s, Dask {med(remote, 'runs_cpu_s'):.1f} s: "
            f"{med(remote, 'runs_cpu_s') / med(local, 'runs_cpu_s'):.3f} x local",
            "",
        ),
        (
            "  of which this process (Dask: scheduler, client, nannies)",
            f"local {med(local, 'here_cpu_s'):.1f} s, Dask {med(remote, 'here_cpu_s'):.1f} s",
            "",
        ),
        (
            "  Dask's workers beyond their runs (event loops, monitors)",
            f"{statistics.median(s.cpu_s - s.here_cpu_s - s.runs_cpu_s for s in remote):.2f} s",
            "",
        ),
        (
            "  the same with the cluster's start and stop",
            f"{e2e.wall_s:.2f} s = {e2e.wall_s / lw:.3f} x local (start {start_s:.1f} s, stop "
            f"{stop_s:.1f} s, once)",
            "",
        ),
        ("  scatter of the prepared plan", f"{scatter_s * 1000:.0f} ms (once per run_many)", ""),
        (
            "  per-task overhead (empty task's round trip)",
            f"{o * 1000:.1f} ms (median)",
            "",
        ),
        ("  one run's work on a worker", f"{t * 1000:.1f} ms (median of the series' means)", ""),
        (
            "  batches",
            f"{tasks:.0f} tasks, up to {batch:.0f} runs each; overhead per task "
            f"{o / (batch * t):.1%} of its work",
            f"< {OVERHEAD_TARGET:.0%} sized, < 5% promised",
        ),
        (
            "  slot time not spent in runs",
            f"{share:.1%} = 1 - work / (wall x {w} workers)",
            "",
        ),
    ]
    print(f"\nload average at the end {os.getloadavg()}; simulator loop: {engine.IMPLEMENTATION}")
    _table(rows)

    print(
        "\nProjection (not a measurement) of the same runs on W one-thread workers, from the "
        "measures above:\n"
        f"  b = min(ceil(o / ({OVERHEAD_TARGET} t)), ceil(R / W)),  "
        "T(W) = fixed + ceil(ceil(R / b) / W) x (b t + o)\n"
        f"  R = {runs} runs, t = {t * 1000:.1f} ms, o = {o * 1000:.1f} ms, fixed = scatter + o "
        f"= {fixed * 1000:.0f} ms; it assumes t as measured here, a scheduler that keeps up and "
        "a scatter that does not grow with W (Dask copies between workers)"
    )
    proj: list[tuple[str, str, str]] = []
    for n in (w, 10, 100):
        b, k, secs = projection(runs, t, o, fixed, n)
        note = f"measured {dw:.2f} s" if n == w else ""
        proj.append(
            (f"W = {n}", f"b = {b}, {k} tasks, T = {secs:.2f} s, {lw * w / n:.2f} s ideal", note)
        )
    _table(proj)


def _table(rows: list[tuple[str, str, str]]) -> None:
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"\n{'measure':<{w0}}  {'result':<{w1}}  target")
    print(f"{'-' * w0}  {'-' * w1}  {'-' * 20}")
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:<{w1}}  {c}")


if __name__ == "__main__":
    main()
