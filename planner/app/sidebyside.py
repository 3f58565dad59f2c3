"""Side-by-side use cases: plan one and re-check it (`rollwave plan --mode side-by-side`),
simulate one (`rollwave simulate` on such a plan), and the refusal of the commands that do not
handle one yet (execute; the in-place simulation). Its report: `planner.app.report`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from planner.app.predict import predict
from planner.checker import check_plan
from planner.errors import InfeasibleError, UsageError
from planner.inventory import Inventory
from planner.plan import Plan
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
    inv: Inventory, policy: Policy, opts: SideBySideOptions, model: SimModel | None = None
) -> SideBySidePlan:
    """A side-by-side plan the checker accepts, with its metrics in `plan.summary`; or
    `InfeasibleError` (proven by the pre-checks, or not found by the greedy). The policy's
    first/last order is for in-place upgrades (side by side, the old controllers retire last):
    it is left out of the plan's policy, with a note."""
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
    report = check_plan(inv, out.plan)
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
    metrics = {**out.metrics, "max_utilisation": report.metrics.get("max_utilisation")}
    return SideBySidePlan(replace(out.plan, summary=metrics), metrics, tuple(notes))


@dataclass(frozen=True)
class SideBySideRun:
    result: CrossCloudResult
    violations: tuple[str, ...]  # what the checker found (the plan is simulated as written)


def simulate(
    inv: Inventory, plan: Plan, model: SimModel, *, ignore_digest: bool = False
) -> SideBySideRun:
    """A side-by-side plan in time (`sim.crosscloud`: deterministic, one run)."""
    report = check_plan(inv, plan, digest=plan.inventory_sha256 if ignore_digest else None)
    result = simulate_side_by_side(inv, plan, model)
    return SideBySideRun(result, tuple(str(v) for v in report.violations))


def refuse_side_by_side(plan: Plan, what: str) -> None:
    """`what` (e.g. "report") does not handle side-by-side plans yet: exit 2 with why."""
    if plan.side_by_side:
        raise UsageError(
            f"{what} does not handle side-by-side plans yet (mode side-by-side); "
            "`rollwave check` judges them, `rollwave simulate` simulates them"
        )
