"""Simulate a plan: one recorded run, or Monte Carlo over many seeds (`rollwave simulate`).

Prepare once (`prepare_run`: the plan checked, indexed for the event loop), then run. Each run
says whether it went wrong (`bad`: an invariant breached, a stall, a host not upgraded), the
condition `--strict` turns into exit code 1. Monte Carlo runs in local processes, or on a Dask
cluster (`cluster`, see `planner.app.distributed`): the same runs, the same numbers.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from planner.app import distributed, predict
from planner.app.sidebyside import refuse_side_by_side
from planner.errors import InfeasibleError
from planner.estimates import How
from planner.inventory import Inventory
from planner.plan import Plan
from sim import calendar
from sim.engine import Prepared, SimResult, prepare, simulate
from sim.model import SimModel
from sim.montecarlo import RunSummary, breach_note, run_many, summarise
from sim.timeline import write_timeline


def prepare_run(
    inv: Inventory,
    plan: Plan,
    model: SimModel,
    *,
    plan_file: str = "<plan>",
    ignore_digest: bool = False,
) -> Prepared:
    """The plan ready to run; `ignore_digest` accepts a plan made for another inventory file (as
    `rollwave check --ignore-digest`). `check_count` and `check_violations` say what the checker
    found: a plan that fails the check is still simulated as written."""
    refuse_side_by_side(plan, "the in-place simulation")
    return prepare(
        inv,
        plan,
        model,
        plan_file=plan_file,
        digest=plan.inventory_sha256 if ignore_digest else None,
    )


def in_calendar(prep: Prepared, start: _dt.datetime | None = None) -> Prepared:
    """The prepared plan in calendar time (`sim.calendar`) from `start`, else from the plan's
    schedule's start; unchanged without either. Each host's need is its maintenance at the 95th
    percentile as the planner predicts it (`Estimates.maintenance_s`, p95) with the plan's
    migrations and remedies. InfeasibleError when some host's windows never open long enough."""
    plan, inv = prep.plan, prep.inv
    if start is None and plan.schedule is not None:
        start = plan.schedule.start
    if start is None:
        return prep
    est = predict.predict(inv, plan.policy, prep.model).est
    how: dict[str, How] = {}
    vms: dict[str, list[str]] = {h: [] for h in prep.hosts}
    for _, m in plan.migrations():
        # as the planner predicted it: a shelve (or any move with downtime) is cold
        how[m.vm] = predict.how_of(m, {m.vm: m.remedy} if m.remedy is not None else {})
        vms[m.src].append(m.vm)
    need = [
        est.maintenance_s(h, vms[h], p95=True, how=how) if h in est.hosts else 0.0
        for h in prep.hosts
    ]
    planned = len(plan.schedule.windows) if plan.schedule is not None else None
    azs = [inv.host(h).az for h in prep.hosts]
    cal = calendar.build(plan.policy.windows, start, azs, need, planned)
    planned_hosts = set(plan.hosts)
    never = [
        f"{h} (AZ {azs[i]}): its maintenance is predicted to need {need[i] / 3600:.1f} h at the "
        "95th percentile; no opening of the windows that apply to it is that long"
        if cal.zones[cal.host_zone[i]]
        else f"{h} (AZ {azs[i]}): no maintenance window of the policy applies to it"
        for i, h in enumerate(prep.hosts)
        if h in planned_hosts and cal.host_fit(i, 0.0) == calendar.INF
    ]
    if not never and not prep.pipelined:  # lock-step: a wave's hosts go down together
        never = [
            f"wave {w + 1}: its hosts' windows (AZ {', '.join(sorted({str(azs[h]) for h in hs}))})"
            " are never open together long enough for its slowest host's maintenance at the "
            "95th percentile"
            for w, (hs, _, _) in enumerate(prep.waves)
            if cal.wave_fit(hs, 0.0) == calendar.INF
        ]
    if never:
        raise InfeasibleError([f"windows: {n}" for n in never[:20]])
    return replace(prep, calendar=cal)


@dataclass(frozen=True, eq=False)
class OneRun:
    prep: Prepared
    result: SimResult
    elapsed_s: float  # the run alone (not the timeline's writing)

    @property
    def bad(self) -> bool:
        res = self.result
        return res.breached or res.stalled or _not_upgraded(res)


@dataclass(frozen=True, eq=False)
class ManyRuns:
    prep: Prepared
    results: list[RunSummary]
    stats: dict[str, Any]  # `sim.montecarlo.summarise`: percentiles and probabilities
    median_run: int | None  # the seed of the median-makespan run (a completed one if any)
    elapsed_s: float  # the runs alone (and the cluster's start), not the median run's timeline
    engine: str = "local processes"  # where the runs ran, in words
    batches: distributed.BatchStats | None = None  # on a cluster: how the runs were cut

    @property
    def bad(self) -> bool:
        return any(r.any_breach or r.stalled or r.hosts_not_upgraded for r in self.results)


def simulate_once(prep: Prepared, seed: int, timeline: str | Path | None = None) -> OneRun:
    """One run, recorded; its timeline written to `timeline` (JSON lines, or CSV for .csv)."""
    t0 = time.perf_counter()
    res = simulate(prep, seed, record=True)
    elapsed = time.perf_counter() - t0
    if timeline:
        write_timeline(timeline, prep, res)
    return OneRun(prep, res, elapsed)


def monte_carlo(
    prep: Prepared,
    runs: int,
    seed: int,
    *,
    jobs: int | None = None,
    cluster: distributed.Cluster | distributed.ClusterSpec | str | None = None,
    timeline: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ManyRuns:
    """`runs` runs with seeds derived from `seed`, in `jobs` processes (default: the CPUs), or on
    `cluster` (an open `distributed.Cluster`, or what `--cluster` says: connected for the runs
    and closed after); `progress(done, runs)` as they come back. With `timeline`, the
    median-makespan run replayed, recorded and written there."""
    t0 = time.perf_counter()
    batches = None
    if cluster is None:
        results = run_many(prep, runs, seed, jobs=jobs, progress=progress)
        n = max(1, min(jobs or os.cpu_count() or 1, runs))
        engine = f"{n} local process{'es' if n > 1 else ''}"
    else:
        with distributed.using(cluster) as c:
            where = c.describe()
            results, batches = distributed.run_many(c, prep, runs, seed, progress=progress)
            engine = f"{where}, {batches.tasks} tasks"
    elapsed = time.perf_counter() - t0
    stats = summarise(results)
    stats["failures_modelled"] = prep.model.injects_failures
    stats["breach_note"] = breach_note(stats["p_any_breach"], prep.model.injects_failures)
    if prep.calendar is not None and "calendar" in stats:
        cal, mk = prep.calendar, stats["makespan_s"]
        stats["calendar"]["finish"] = {
            k: cal.at(mk[k]).isoformat() if mk[k] is not None else None
            for k in ("p50", "p95", "p99", "min", "max")
        }
    median_run = _median_run(results)
    if timeline and median_run is not None:
        write_timeline(timeline, prep, simulate(prep, median_run, record=True))
    return ManyRuns(prep, results, stats, median_run, elapsed, engine, batches)


def _not_upgraded(res: SimResult) -> bool:
    return any(s != "upgraded" for s in res.host_status.values())


def _median_run(results: list[RunSummary]) -> int | None:
    done = sorted((r.makespan_s, i) for i, r in enumerate(results) if r.completed)
    if not done:
        return results[0].seed if results else None
    return int(results[done[(len(done) - 1) // 2][1]].seed)
