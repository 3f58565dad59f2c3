"""What-if sweeps, run: plan (and simulate) a cloud under every combination of policy changes,
in parallel processes or on a Dask cluster (`rollwave whatif`, the notebooks).

The combinations themselves (`--vary` parsing, the spare-hosts transform) and a sweep's rows
(`Outcome`, its verdicts and words) live in `planner.report.whatif`; this module solves, checks,
replays, estimates and simulates them. A combination without a plan is a row with the reason,
never a crash.
"""

from __future__ import annotations

import datetime as _dt
import multiprocessing as mp
import os
import signal
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from planner.app import distributed
from planner.app.planning import plan_with_predictions
from planner.app.simulation import in_calendar
from planner.bounds import lower_bounds
from planner.checker import check_plan
from planner.errors import InfeasibleError, RollwaveError
from planner.inventory import Inventory
from planner.plan import Plan
from planner.policy import Policy
from planner.report.replay import replay
from planner.report.schedule import EstimateModel, estimate_schedule
from planner.report.whatif import SPARE, Outcome, apply, apply_model
from sim.model import DEFAULT as DEFAULT_MODEL
from sim.model import SimModel
from sim.montecarlo import run_many, summarise
from sim.prepare import Prepared, prepare
from solver.solve import PlannerName, SolveOptions


@dataclass(frozen=True)
class SweepConfig:
    runs: int = 0  # simulated runs per combination (0: the estimate only)
    seed: int = 0  # every combination uses the same seeds: differences come from the policy
    planner: PlannerName = "cpsat"
    time_limit: float | None = None  # per combination's plan; None: the planner's default
    model: SimModel = field(default_factory=lambda: DEFAULT_MODEL)
    estimate: EstimateModel = field(default_factory=EstimateModel)
    # In calendar time from this start (`rollwave whatif --start`): the plans scheduled in their
    # windows (`plan --start`), the runs in them (`simulate --start`).
    start: _dt.datetime | None = None


def evaluate(
    inv: Inventory,
    policy: Policy,
    combo: Mapping[str, Any],
    config: SweepConfig,
    *,
    reuse_plans: bool = False,
) -> Outcome:
    """Solve, check, replay, estimate and (with `config.runs`) simulate one combination. Never
    raises for a combination's own problems. `reuse_plans`: within a sweep, combinations that
    differ only in the simulation model share one plan."""
    combo = dict(combo)
    t0 = time.perf_counter()
    try:
        inv2, p2 = apply(inv, policy, combo)
        model = apply_model(config.model, combo)
        spares = int(combo.get(SPARE, 0))
        plan = (
            _solve_once(inv, inv2, p2, spares, config)
            if reuse_plans
            else _solve(inv2, p2, config, model)
        )
    except InfeasibleError as exc:
        return Outcome(
            combo,
            "infeasible",
            "; ".join(exc.reasons),
            proven=exc.proven,
            blame=tuple(dict(b) for b in exc.blame),
            solve_s=time.perf_counter() - t0,
        )
    except RollwaveError as exc:
        return Outcome(combo, "error", str(exc), solve_s=time.perf_counter() - t0)
    solve_s = time.perf_counter() - t0
    report = check_plan(inv2, plan)
    m = report.metrics
    ratios: dict[str, float] = m.get("min_headroom_ratio") or {}
    tight = min(ratios, key=lambda k: ratios[k]) if ratios else None
    status, reason = "ok", None
    if not report.ok:
        status = "invalid"
        reason = f"the checker rejects the plan: {report.violations[0]}"
    sched = estimate_schedule(inv2, plan, config.estimate)
    worst = replay(inv2, plan).min_absorbable()
    sim: dict[str, Any] = {}
    t1 = time.perf_counter()
    if config.runs > 0 and status == "ok":
        prep = prepare(inv2, plan, model, check=False)
        try:
            prep = in_calendar(prep, config.start)
        except InfeasibleError as exc:
            return Outcome(combo, "infeasible", "; ".join(exc.reasons), solve_s=solve_s)
        stats = summarise(run_many(prep, config.runs, config.seed, jobs=1))
        sim = _calendar(prep, stats) | {
            "makespan_p50_s": stats["makespan_s"]["p50"],
            "makespan_p95_s": stats["makespan_s"]["p95"],
            "breach_probability": stats["p_headroom_breach"],
            "any_breach_probability": stats["p_any_breach"],
            "failures_modelled": model.injects_failures,
            "stall_probability": stats["p_stall"],
            "runs": config.runs,
        }
    return Outcome(
        combo,
        status,
        reason,
        waves=m["waves"],
        waves_lower_bound=m["lower_bounds"].get("waves"),
        migrations=m["migrations"],
        migrations_per_vm=m["migrations_per_moved_vm"],
        vms_moved_twice=m["vms_moved_more_than_once"],
        min_headroom_ratio=ratios[tight] if tight else None,
        tightest=tight,
        failures_absorbed=worst[0] if worst else None,
        makespan_s=sched.makespan_s,
        solve_s=solve_s,
        simulate_s=time.perf_counter() - t1 if sim else 0.0,
        predicted_makespan_s=_predicted_makespan(plan),
        predicted_execution=plan.policy.execution,
        downtime_s=(plan.summary.get("predicted_downtime_s") or {}).get("total"),
        remedies=dict(plan.summary.get("remedies") or {}),
        windows_planned=len(plan.schedule.windows) if plan.schedule else None,
        last_done=_iso(plan.schedule.last_done) if plan.schedule else None,
        **sim,
    )


def _predicted_makespan(plan: Plan) -> float | None:
    """The plan's predicted makespan as its policy runs it: pipelined (admission control replayed
    over the predicted maintenance) or lock-step (its waves one after another)."""
    predicted = plan.summary.get("predicted_makespan_s") or {}
    got = predicted.get("pipelined" if plan.policy.execution == "pipelined" else "lockstep")
    return float(got) if got is not None else None


def _solve(inv: Inventory, policy: Policy, config: SweepConfig, model: SimModel) -> Plan:
    """Plan as `rollwave plan` does, with `--start` when the sweep has one."""
    options = SolveOptions(planner=config.planner, time_limit=config.time_limit, seed=config.seed)
    return plan_with_predictions(inv, policy, options, model=model, start=config.start)[0]


def _iso(t: _dt.datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def _calendar(prep: Prepared, stats: dict[str, Any]) -> dict[str, Any]:
    """A row's simulated calendar: windows used, P(more than planned), the finish dates."""
    cal = stats.get("calendar")
    if prep.calendar is None or not cal:
        return {}
    mk = stats["makespan_s"]
    return {
        "windows_used_p50": cal["windows_used"]["p50"],
        "windows_used_max": cal["windows_used"]["max"],
        "p_more_windows": cal["p_more_windows_than_planned"],
        "finish_p50": _iso(prep.calendar.at(mk["p50"])) if mk["p50"] is not None else None,
        "finish_p95": _iso(prep.calendar.at(mk["p95"])) if mk["p95"] is not None else None,
    }


# Plans solved in this process during one sweep, by (base inventory, policy, spare hosts):
# combinations that differ only in the simulation model share their plan (its predictions and
# remedies those of the sweep's model). A Dask worker lives on after a sweep: `_PLANS_SWEEP`
# names the sweep its plans belong to.
_PLANS: dict[tuple[int, str, int], Plan] = {}
_PLANS_SWEEP = ""


def _solve_once(
    base: Inventory, inv: Inventory, policy: Policy, spares: int, config: SweepConfig
) -> Plan:
    key = (id(base), repr(policy), spares)
    if key not in _PLANS:
        if len(_PLANS) > 64:
            _PLANS.clear()
        _PLANS[key] = _solve(inv, policy, config, config.model)
    return _PLANS[key]


# ---------------------------------------------------------------------------------------------
# The sweep, in parallel processes
# ---------------------------------------------------------------------------------------------
_JOB: tuple[Inventory, Policy, list[dict[str, Any]], SweepConfig] | None = None


def _run_one(i: int) -> tuple[int, Outcome]:
    assert _JOB is not None
    inv, policy, combos, config = _JOB
    return i, evaluate(inv, policy, combos[i], config, reuse_plans=True)


def _init(job: tuple[Inventory, Policy, list[dict[str, Any]], SweepConfig] | None) -> None:
    global _JOB
    # Ctrl-C is the parent's to handle: it stops the workers (no traceback from each of them).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if job is not None:
        _JOB = job


Progress = Callable[[int, int, Outcome], None]


def sweep(
    inv: Inventory,
    policy: Policy,
    combos: Sequence[Mapping[str, Any]],
    config: SweepConfig | None = None,
    *,
    jobs: int | None = None,
    cluster: distributed.Cluster | distributed.ClusterSpec | str | None = None,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Evaluate every combination (in `jobs` processes, default: the CPUs; or on `cluster`, an
    open `distributed.Cluster` or what `--cluster` says), results in the order of `combos`
    whatever order they finish in. `progress(done, total, outcome)` after each."""
    global _JOB
    config = config or SweepConfig()
    _PLANS.clear()  # plans of an earlier sweep (perhaps of another inventory) do not apply
    todo = [dict(c) for c in combos]
    n = len(todo)
    if cluster is not None:
        return _sweep_on(cluster, (inv, policy, todo, config, uuid.uuid4().hex), progress)
    jobs = max(1, min(jobs or os.cpu_count() or 1, n))
    results: list[Outcome | None] = [None] * n
    if jobs == 1:
        for i, c in enumerate(todo):
            results[i] = evaluate(inv, policy, c, config, reuse_plans=True)
            if progress:
                progress(i + 1, n, results[i])  # type: ignore[arg-type]
        return [r for r in results if r is not None]
    # fork shares the inventory with the workers without pickling it; elsewhere it is sent once
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    job = (inv, policy, todo, config)
    _JOB = job
    forked = ctx.get_start_method() == "fork"
    pool = ProcessPoolExecutor(
        max_workers=jobs, mp_context=ctx, initializer=_init, initargs=(None if forked else job,)
    )
    try:
        futures = [pool.submit(_run_one, i) for i in range(n)]
        for done, fut in enumerate(as_completed(futures), 1):
            i, outcome = fut.result()
            results[i] = outcome
            if progress:
                progress(done, n, outcome)
    except BaseException:
        # interrupted (or a worker died): stop the others now rather than after their work
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    else:
        pool.shutdown()
    finally:
        _JOB = None
    return [r for r in results if r is not None]


_ClusterJob = tuple[Inventory, Policy, list[dict[str, Any]], SweepConfig, str]


def _evaluate_batch(job: _ClusterJob, indices: list[int]) -> list[Outcome]:
    """A task on a Dask worker: the combinations `indices` of the scattered sweep `job`."""
    global _PLANS_SWEEP
    inv, policy, combos, config, sweep_id = job
    if sweep_id != _PLANS_SWEEP:  # plans of another sweep (another inventory, perhaps)
        _PLANS.clear()
        _PLANS_SWEEP = sweep_id
    return [evaluate(inv, policy, combos[i], config, reuse_plans=True) for i in indices]


def _sweep_on(
    cluster: distributed.Cluster | distributed.ClusterSpec | str,
    job: _ClusterJob,
    progress: Progress | None,
) -> list[Outcome]:
    """The sweep on a Dask cluster: inventory, policy, combinations and config scattered once,
    combinations in batches sized from the measured per-task overhead."""
    n = len(job[2])
    done = 0

    def on_batch(part: list[Outcome]) -> None:
        nonlocal done
        for outcome in part:
            done += 1
            if progress:
                progress(done, n, outcome)

    with distributed.using(cluster) as c:
        shared = c.scatter(job)
        try:
            results, _ = c.map_batched(_evaluate_batch, shared, list(range(n)), on_batch=on_batch)
        finally:
            shared.release()
    return results


# ---------------------------------------------------------------------------------------------
# How many hosts may go down at once
# ---------------------------------------------------------------------------------------------
def hosts_down_at_once(inv: Inventory, policy: Policy) -> dict[str, int | None]:
    """Per scope group (each AZ, or "cloud"), the most of its compute hosts that may be in
    maintenance at once with headroom still holding: the lower-bound argument of
    `bounds.lower_bounds` (`max_compute_hosts_down`) on that group alone. None: headroom does not
    limit it (no host of the group to upgrade). An upper bound: a plan may need fewer at once."""
    if policy.headroom.scope == "cloud":
        return {"cloud": lower_bounds(inv, policy).max_compute_hosts_down}
    out: dict[str, int | None] = {}
    for az in inv.azs:
        hosts = tuple(h for h in inv.hosts if h.is_compute and h.az == az)
        names = {h.name for h in hosts}
        sub = Inventory(
            cloud=f"{inv.cloud}/{az}",
            taken_at=inv.taken_at,
            hosts=hosts,
            vms=tuple(v for v in inv.vms if v.host in names),
            server_groups=inv.server_groups,
        )
        out[az] = lower_bounds(sub, policy).max_compute_hosts_down
    return out
