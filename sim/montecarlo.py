"""Monte Carlo: many runs of one prepared plan with seeds derived from a base seed, in parallel
processes. Run i uses `run_seed(base, i)`; `simulate(prep, run_seed(base, i))` reproduces it alone.
The result does not depend on the number of processes (nor on a Dask cluster's workers:
`planner.app.distributed.run_many` runs the same `one_run`s there).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.engine import Prepared, simulate


def run_seed(base: int, i: int) -> int:
    """The seed of run i (0-based) of a Monte Carlo series with base seed `base`."""
    ss = np.random.SeedSequence([base & 0xFFFFFFFFFFFFFFFF, 0x5EED, i])
    return int(ss.generate_state(1, np.uint64)[0] >> 1)  # a non-negative int64


@dataclass(frozen=True, slots=True)
class RunSummary:
    seed: int
    makespan_s: float
    downtime_s: float
    completed: bool
    stalled: bool
    headroom_breach: bool
    any_breach: bool
    failures: int
    hosts_not_upgraded: int
    vms_lost: int
    lower_bound_s: float
    events: int
    # With windows (sim.calendar): windows used, the plan's, hosts that overran a window's close.
    windows_used: int | None = None
    windows_planned: int | None = None
    overruns: int = 0

    def to_dict(self) -> dict[str, Any]:
        cal = (
            {
                "windows_used": self.windows_used,
                "windows_planned": self.windows_planned,
                "overruns": self.overruns,
            }
            if self.windows_used is not None
            else {}
        )
        return cal | {
            "seed": self.seed,
            "makespan_s": round(self.makespan_s, 3),
            "downtime_s": round(self.downtime_s, 3),
            "completed": self.completed,
            "stalled": self.stalled,
            "headroom_breach": self.headroom_breach,
            "any_breach": self.any_breach,
            "failures": self.failures,
            "hosts_not_upgraded": self.hosts_not_upgraded,
            "vms_lost": self.vms_lost,
            "lower_bound_s": round(self.lower_bound_s, 3),
        }


def one_run(prep: Prepared, seed: int) -> RunSummary:
    r = simulate(prep, seed, record=False)
    not_upgraded = sum(1 for s in r.host_status.values() if s != "upgraded")
    cal = r.calendar
    return RunSummary(
        seed=seed,
        makespan_s=r.makespan_s,
        downtime_s=r.total_downtime_s,
        completed=r.completed,
        stalled=r.stalled,
        headroom_breach=r.headroom_breached,
        any_breach=r.breached,
        failures=len(r.failures),
        hosts_not_upgraded=not_upgraded,
        vms_lost=r.vms_lost,
        lower_bound_s=r.lower_bound_s,
        events=r.events,
        windows_used=cal.used if cal is not None else None,
        windows_planned=cal.planned if cal is not None else None,
        overruns=len(cal.overruns) if cal is not None else 0,
    )


_PREP: Prepared | None = None  # set in the parent before forking; inherited by the workers


def _init(prep: Prepared | None) -> None:
    global _PREP
    if prep is not None:
        _PREP = prep


def _chunk(seeds: Sequence[int]) -> list[RunSummary]:
    assert _PREP is not None
    return [one_run(_PREP, s) for s in seeds]


Progress = Callable[[int, int], None]  # (runs done, runs)


def run_many(
    prep: Prepared,
    runs: int,
    base_seed: int = 0,
    *,
    jobs: int | None = None,
    progress: Progress | None = None,
) -> list[RunSummary]:
    """`runs` runs, in order of their index, on `jobs` processes (default: the CPUs);
    `progress(done, runs)` as chunks of runs finish."""
    global _PREP
    seeds = [run_seed(base_seed, i) for i in range(runs)]
    jobs = max(1, min(jobs or os.cpu_count() or 1, runs))
    if jobs == 1:
        out = []
        for i, s in enumerate(seeds, 1):
            out.append(one_run(prep, s))
            if progress:
                progress(i, runs)
        return out
    # Fork shares the prepared plan with the workers without pickling it; elsewhere it is sent.
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if "fork" in methods else "spawn")
    _PREP = prep
    forked = ctx.get_start_method() == "fork"
    # Chunks of runs, a few per process, finish one after another: progress as they come.
    n_chunks = min(runs, jobs * 16)
    chunks = [seeds[i::n_chunks] for i in range(n_chunks)]
    by_seed: dict[int, RunSummary] = {}
    try:
        with ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=ctx,
            initializer=_init,
            initargs=(None if forked else prep,),
        ) as pool:
            for fut in as_completed([pool.submit(_chunk, c) for c in chunks]):
                by_seed.update((r.seed, r) for r in fut.result())
                if progress:
                    progress(len(by_seed), runs)
    finally:
        _PREP = None
    return [by_seed[s] for s in seeds]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear interpolation; None for no values."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return None
    return float(np.percentile(np.array(vals), q))


def summarise(runs: Sequence[RunSummary]) -> dict[str, Any]:
    """P50/P95/P99 of makespan (completed runs) and total downtime, breach and stall odds."""
    n = len(runs)
    done = [r for r in runs if r.completed]

    def stats(vals: list[float]) -> dict[str, float | None]:
        return {
            "p50": _r(percentile(vals, 50)),
            "p95": _r(percentile(vals, 95)),
            "p99": _r(percentile(vals, 99)),
            "mean": _r(float(np.mean(vals)) if vals else None),
            "min": _r(min(vals) if vals else None),
            "max": _r(max(vals) if vals else None),
        }

    return {
        "runs": n,
        "completed_runs": len(done),
        "makespan_s": stats([r.makespan_s for r in done]),
        "downtime_s": stats([r.downtime_s for r in runs]),
        "lower_bound_s": stats([r.lower_bound_s for r in runs]),
        "p_headroom_breach": _r(sum(r.headroom_breach for r in runs) / n if n else None, 4),
        "p_any_breach": _r(sum(r.any_breach for r in runs) / n if n else None, 4),
        "p_stall": _r(sum(r.stalled for r in runs) / n if n else None, 4),
        "p_host_not_upgraded": _r(
            sum(r.hosts_not_upgraded > 0 for r in runs) / n if n else None, 4
        ),
        "mean_failures": _r(float(np.mean([r.failures for r in runs])) if n else None, 4),
        "events": sum(r.events for r in runs),
    } | _calendar(runs, stats)


def _calendar(runs: Sequence[RunSummary], stats: Any) -> dict[str, Any]:
    """With windows: windows used (and the odds of more than the plan's), hosts overrunning a
    window's close, the finish (makespan from the start: add it to the start for a date)."""
    cal = [r for r in runs if r.windows_used is not None]
    if not cal:
        return {}
    n = len(cal)
    planned = cal[0].windows_planned
    used = [float(r.windows_used or 0) for r in cal]
    return {
        "calendar": {
            "windows_used": stats(used),
            "windows_planned": planned,
            "p_more_windows_than_planned": _r(
                sum((r.windows_used or 0) > planned for r in cal) / n if planned else None, 4
            ),
            "p_overrun": _r(sum(r.overruns > 0 for r in cal) / n, 4),
            "mean_overruns": _r(float(np.mean([r.overruns for r in cal])), 4),
        }
    }


NO_FAILURES = "no failures modelled: 0 by construction"


def breach_note(p_breach: float | None, failures_modelled: bool) -> str | None:
    """Words beside P(breach) when the model injects no failures: then a breach can come only
    from the plan itself (a plan the checker accepts has none), not from a risk."""
    if failures_modelled or p_breach is None:
        return None
    if p_breach == 0:
        return NO_FAILURES
    return "no failures modelled: the plan itself breaches (see `rollwave check`)"


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)
