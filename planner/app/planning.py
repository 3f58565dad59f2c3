"""Plan and check: the use case behind `rollwave plan`, the demo, the what-ifs and the notebooks.

The solver is never trusted blindly: a plan leaves here only after the checker has accepted it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from planner.checker import check_plan, plan_summary
from planner.errors import RollwaveError
from planner.inventory import Inventory
from planner.plan import Plan
from planner.policy import Policy
from solver.solve import PlannerName, SolveOptions, SolveOutcome
from solver.solve import solve as solve_plan


def solve_and_check(
    inv: Inventory,
    policy: Policy,
    options: SolveOptions | None = None,
    progress: Any = None,
) -> tuple[Plan, dict[str, Any], SolveOutcome]:
    """Plan, then re-check the result with the checker (the solver is never trusted blindly)."""
    outcome = solve_plan(inv, policy, options, progress=progress)
    plan = outcome.plan
    # solve() has run the checker on its plan (for this inventory's digest): no second replay.
    report = outcome.check if outcome.check is not None else check_plan(inv, plan)
    if not report.ok:
        lines = "\n".join(f"  {v}" for v in report.violations[:20])
        raise RollwaveError(
            f"internal error: the {outcome.planner} planner produced a plan the checker rejects "
            f"({len(report.violations)} violations); nothing was written:\n{lines}"
        )
    plan = replace(plan, summary=plan_summary(report.metrics))
    return plan, dict(report.metrics), outcome


def solve(
    inv: Inventory,
    policy: Policy,
    planner: PlannerName = "cpsat",
    time_limit: float | None = None,
    seed: int = 0,
) -> Plan:
    """Plan as `rollwave plan` does (CP-SAT, with the greedy planner as its fallback); raises
    InfeasibleError with the reasons when no plan exists."""
    options = SolveOptions(planner=planner, time_limit=time_limit, seed=seed)
    return solve_plan(inv, policy, options, inventory_sha256=inv.digest or "").plan
