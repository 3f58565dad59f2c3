"""Side-by-side use cases: plan one and re-check it (`rollwave plan --mode side-by-side`),
simulate one (`rollwave simulate` on such a plan), and the refusal of the commands that do not
handle one yet (execute; the in-place simulation). Its report: `planner.app.report`."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, replace
from typing import Any

from planner.app.predict import predict
from planner.checker import check_plan
from planner.errors import InfeasibleError, UsageError
from planner.inventory import Inventory
from planner.plan import Plan, Schedule, ScheduledCrossing
from planner.policy import Policy
from sim.crosscloud import CrossCloudResult, simulate_side_by_side
from sim.model import DEFAULT, SimModel
from solver.sidebyside import SideBySideOptions, plan_side_by_side


@dataclass(frozen=True)
class SideBySidePlan:
    plan: Plan
    metrics: dict[str, Any]
    notes: tuple[str, ...] = ()


def plan_and_check(
    inv: Inventory,
    policy: Policy,
    opts: SideBySideOptions,
    model: SimModel | None = None,
    start: _dt.datetime | None = None,
) -> SideBySidePlan:
    """A side-by-side plan the checker accepts, with its metrics in `plan.summary`; or
    `InfeasibleError` (proven by the pre-checks, or not found by the greedy). The policy's
    first/last order is for in-place upgrades (side by side, the old controllers retire last):
    it is left out of the plan's policy, with a note. With `start`, the plan's schedule: when
    each windowed project's VMs cross (the policy's project_windows), by the simulator's model;
    project windows that apply to a VM need a start (UsageError)."""
    windowed = windowed_projects(inv, policy)
    if windowed and start is None:
        raise UsageError(
            "the policy's project_windows apply to VMs of "
            + ", ".join(windowed)
            + ": a side-by-side plan with them needs a start date to schedule the crossings "
            "(plan --mode side-by-side --start 2026-12-14T22:00)"
        )
    notes: list[str] = []
    if policy.first or policy.last:
        notes.append(
            "the policy's first/last order does not apply side by side (the old controllers "
            "retire once the old cloud is empty): left out of the plan's policy"
        )
        policy = policy.with_changes(first=(), last=())
    # Moves inside the old cloud: cold for the VMs whose live migration would not finish under
    # the model (default: Nova's defaults on 10 GbE, as `plan`).
    est = predict(inv, policy, model or DEFAULT).est
    stuck = frozenset(v for v, e in est.vms.items() if e.live_outcome in ("aborted", "never"))
    opts = replace(opts, cold=opts.cold | stuck)
    out = plan_side_by_side(inv, policy, opts, digest=inv.digest or "")
    plan = out.plan
    calendar: dict[str, Any] = {}
    if start is not None:  # the schedule before the check: the checker judges it too
        plan, calendar = _scheduled(inv, plan, model or DEFAULT, start)
    report = check_plan(inv, plan)
    if not report.ok:
        # The greedy keeps the rules it models; one it does not (e.g. the policy's first/last
        # order, left out above) may still fail: say which, write nothing.
        rules = sorted({v.rule for v in report.violations})
        raise InfeasibleError(
            [
                "the side-by-side planner's plan breaks "
                + ", ".join(rules)
                + f" (first: {report.violations[0]})"
            ],
            proven=False,
        )
    metrics = {
        **out.metrics,
        "max_utilisation": report.metrics.get("max_utilisation"),
        **calendar,
    }
    return SideBySidePlan(replace(plan, summary=metrics), metrics, tuple(notes))


def windowed_projects(inv: Inventory, policy: Policy) -> list[str]:
    """The projects with windows in the policy that own VMs of the inventory."""
    named = {p for p, _ in policy.project_windows}
    return sorted({v.project for v in inv.vms if v.project in named})


def _scheduled(
    inv: Inventory, plan: Plan, model: SimModel, start: _dt.datetime
) -> tuple[Plan, dict[str, Any]]:
    """The plan with its schedule from `start` (the simulator's deterministic run: the same
    times `rollwave simulate --start` finds), and the summary's calendar fields."""
    r = simulate_side_by_side(inv, plan, model, start)
    last = start + _dt.timedelta(seconds=r.makespan_s)
    crossings = tuple(
        ScheduledCrossing(c.project, c.start, c.end, c.vms) for c in r.crossing_windows
    )
    plan = replace(plan, schedule=Schedule(start, (), last.replace(microsecond=0), crossings))
    return plan, {
        "crossing_windows": len(crossings),
        "window_wait_s": round(r.window_wait_s, 3),
        "last_done": last.replace(microsecond=0).isoformat(),
    }


@dataclass(frozen=True)
class SideBySideRun:
    result: CrossCloudResult
    violations: tuple[str, ...]  # what the checker found (the plan is simulated as written)


def simulate(
    inv: Inventory,
    plan: Plan,
    model: SimModel,
    *,
    ignore_digest: bool = False,
    start: _dt.datetime | None = None,
) -> SideBySideRun:
    """A side-by-side plan in time (`sim.crosscloud`: deterministic, one run), from `start`
    (default: the plan's schedule's start, if it has one)."""
    report = check_plan(inv, plan, digest=plan.inventory_sha256 if ignore_digest else None)
    if start is None and plan.schedule is not None:
        start = plan.schedule.start
    result = simulate_side_by_side(inv, plan, model, start)
    return SideBySideRun(result, tuple(str(v) for v in report.violations))


def refuse_side_by_side(plan: Plan, what: str) -> None:
    """`what` (e.g. "report") does not handle side-by-side plans yet: exit 2 with why."""
    if plan.side_by_side:
        raise UsageError(
            f"{what} does not handle side-by-side plans yet (mode side-by-side); "
            "`rollwave check` judges them, `rollwave simulate` simulates them"
        )
