"""Plan and check: the use case behind `rollwave plan`, the demo, the what-ifs and the notebooks.

Every plan carries the migration model's predictions (`planner.app.predict`; the default model
without a file): each VM that would not finish its live migration, or would take longer than
`max_migration_s`, gets the policy's remedy before the solver runs (a cold one migrates cold, a
stopped one cannot move); the solved waves are shaped by their predicted durations
(`solver.durations`: hosts swapped between waves so that long drains go together, the waves and
the VMs moved as solved), then, run pipelined (the default), planned for it (`solver.pipeline`:
evacuees sent to hosts upgraded well before, each wave's longest maintenance first), and the
plan is annotated with the remedies, the predicted durations, downtimes and bytes, and each wave's
predicted lock-step duration.

The solver is never trusted blindly: a plan leaves here only after the checker has accepted it,
with the estimates (the remedy rules judge its predictions too).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from planner.app import predict
from planner.app import schedule as calendar
from planner.app.budget import LOAD, Budget
from planner.checker import CheckReport, check_plan, plan_summary
from planner.errors import RollwaveError
from planner.inventory import Inventory
from planner.plan import Plan, Wave
from planner.policy import Policy
from sim.model import DEFAULT as DEFAULT_MODEL
from sim.model import SimModel
from solver import azwaves, durations, pipeline
from solver.solve import PlannerName, SolveOptions, SolveOutcome, default_time_limit
from solver.solve import solve as solve_plan


def solve_and_check(
    inv: Inventory,
    policy: Policy,
    options: SolveOptions | None = None,
    progress: Any = None,
    model: SimModel | None = None,
    start: _dt.datetime | None = None,
) -> tuple[Plan, dict[str, Any], SolveOutcome]:
    """Predict with `model` (default: Nova's defaults on 10 GbE), choose each VM's remedy,
    plan, annotate, then re-check the result with the checker and the estimates. Raises
    InfeasibleError when a VM has no remedy (or the policy says refuse)."""
    plan, metrics, outcome, _ = plan_with_predictions(inv, policy, options, progress, model, start)
    return plan, metrics, outcome


def plan_with_predictions(
    inv: Inventory,
    policy: Policy,
    options: SolveOptions | None = None,
    progress: Any = None,
    model: SimModel | None = None,
    start: _dt.datetime | None = None,
) -> tuple[Plan, dict[str, Any], SolveOutcome, predict.Physics]:
    """`solve_and_check`, and the predictions it planned with. With `start`, the plan's
    schedule in the policy's maintenance windows too (`planner.app.schedule`)."""
    opts = options or SolveOptions()
    limit = opts.time_limit if opts.time_limit is not None else default_time_limit(inv)
    budget = Budget.for_run(inv, limit, opts.started)
    opts = replace(
        opts, time_limit=limit, started=budget.started, reserve=budget.reserve, reserve_load=LOAD
    )
    ph = predict.predict(inv, policy, model or DEFAULT_MODEL)
    remedies = predict.choose_remedies(inv, policy, ph.est)
    inv2 = predict.remedied_inventory(inv, remedies)
    outcome = solve_plan(inv2, policy, opts, progress=progress)
    digest = outcome.plan.inventory_sha256
    how = {m.vm: predict.how_of(m, remedies) for _, m in outcome.plan.migrations()}
    moves = sum(len(w.migrations) for w in outcome.plan.waves)
    if azwaves.applies(outcome.plan) and budget.allows("per_az", moves):
        outcome = _per_az(inv2, outcome, lambda w: calendar.wave_p95_s(ph.est, w, how), start)
    # Durations shape the waves (same waves, same VMs moved); the checker has the last word.
    shaped = durations.Shaped(outcome.plan, 0.0, 0.0, 0)
    if budget.allows("durations", moves):
        shaped = durations.shape(inv2, outcome.plan, ph.est, how, ph.shutdown_s)

    def finished(solved: Plan) -> tuple[Plan, CheckReport]:
        done = predict.annotate(inv, solved, ph, remedies)
        if start is not None:
            sched = calendar.schedule(
                inv, done, ph.est, how, start, predict.expected_maintenance(inv, done, ph, remedies)
            )
            done = replace(done, schedule=sched)
        return done, check_plan(inv, done, digest=digest, estimates=ph.est)

    # Run pipelined (the default), destinations and order chosen for it; same waves, same VMs.
    piped = None
    if policy.execution == "pipelined" and budget.allows("pipelining", moves):
        piped = pipeline.plan_for_pipelining(inv2, shaped.plan, ph.est, how, ph.shutdown_s)
    notes = list(outcome.notes) + budget.notes
    if budget.wall_clock_hit:
        outcome.wall_clock_hit = True
    plan, report = finished(piped.plan if piped is not None else shaped.plan)
    if piped is not None and piped.plan is not shaped.plan and not report.ok:
        notes.append(
            "the waves' destinations and order as shaped were kept: planned for pipelining, the "
            f"plan broke a rule ({report.violations[0]})"
        )
        piped = None
        plan, report = finished(shaped.plan)
    elif piped is not None:
        outcome.stats["pipelining"] = {
            "before_s": round(piped.before_s, 3),
            "after_s": round(piped.after_s, 3),
            "lag": piped.lag,
            "redirected": piped.moved,
            "to_capacity": piped.full,
            "gathered": piped.gathered,
        }
    if shaped.swaps and not report.ok:
        notes.append(
            "the waves as solved were kept: shaped by their predicted durations, the plan broke "
            f"a rule ({report.violations[0]})"
        )
        plan, report = finished(outcome.plan)
    elif shaped.swaps:
        outcome.stats["durations"] = {
            "before_s": round(shaped.before_s, 3),
            "after_s": round(shaped.after_s, 3),
            "swaps": shaped.swaps,
        }
    if not report.ok:
        lines = "\n".join(f"  {v}" for v in report.violations[:20])
        raise RollwaveError(
            f"internal error: the {outcome.planner} planner produced a plan the checker rejects "
            f"({len(report.violations)} violations); nothing was written:\n{lines}"
        )
    extra = predict.summary(inv, plan, policy, ph, remedies)
    if "exact" in outcome.stats:  # small clouds: are the migrations proven minimal
        extra["migrations_minimal"] = dict(outcome.stats["exact"])
    if plan.schedule is not None:
        extra.update(calendar.summary(plan.schedule))
    if budget.skipped:  # the optional passes the time limit left out (a user must know)
        extra["skipped_for_time"] = list(budget.skipped)
    plan = replace(plan, summary={**plan_summary(report.metrics), **extra})
    metrics = {**report.metrics, **extra}
    # The outcome tells of the plan returned (annotated), checked with the estimates. The
    # solver's models relax the remedy family (they make no predictions); chosen here before
    # they ran, the plan keeps it, so their note about it does not apply.
    # Likewise the schedule family, once a schedule is written.
    kept = ["does not keep remedy ("] + (["does not keep schedule ("] if start else [])
    notes = [n for n in notes if not any(k in n for k in kept)]
    # Hosts Nova's state rules leave out, not upgraded (planner.rules.method.left_out).
    notes += [v.message for v in report.warnings if v.rule == "left_out"]
    outcome = replace(outcome, plan=plan, check=report, notes=notes)
    return plan, metrics, outcome, ph


def _per_az(
    inv: Inventory,
    outcome: SolveOutcome,
    need_s: Callable[[Wave], float],
    start: _dt.datetime | None,
) -> SolveOutcome:
    """Lock-step waves whose AZs' windows are never open together for `need_s` split per AZ
    (`solver.azwaves`), kept when the checker accepts them (else as solved, with a note)."""
    split = azwaves.per_az(inv, outcome.plan, need_s, start)
    if split is outcome.plan:
        return outcome
    report = check_plan(inv, split)
    if not report.ok:
        v = report.violations[0]
        note = f"the waves as solved were kept: split per AZ, they broke a rule ({v})"
        return replace(outcome, notes=[*outcome.notes, note])
    stats = {
        **outcome.stats,
        "per_az": {"waves_before": len(outcome.plan.waves), "waves": len(split.waves)},
    }
    return replace(outcome, plan=split, stats=stats)


def solve(
    inv: Inventory,
    policy: Policy,
    planner: PlannerName = "cpsat",
    time_limit: float | None = None,
    seed: int = 0,
    model: SimModel | None = None,
) -> Plan:
    """Plan as `rollwave plan` does (CP-SAT, with the greedy planner as its fallback, the
    predictions of `model`, default Nova's defaults on 10 GbE); raises InfeasibleError with the
    reasons when no plan exists."""
    options = SolveOptions(planner=planner, time_limit=time_limit, seed=seed)
    return plan_with_predictions(inv, policy, options, model=model)[0]
