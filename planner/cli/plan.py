"""`rollwave plan INVENTORY --policy POLICY -o PLAN`: solve, re-check, write, summarise."""

from __future__ import annotations

import time
from dataclasses import replace

import click

from planner.checker import check_plan, plan_summary
from planner.cli.check import print_metrics
from planner.cli.common import emit_json, err, format_option, out, path_arg
from planner.errors import RollwaveError
from planner.formats import load_inventory, load_policy, save_plan
from planner.inventory import Inventory
from planner.plan import Plan
from planner.policy import Policy
from solver.greedy import greedy_plan


def solve_and_check(inv: Inventory, policy: Policy) -> tuple[Plan, dict[str, object]]:
    """Plan, then re-check the result with the checker (the solver is never trusted blindly)."""
    plan = greedy_plan(inv, policy, inventory_sha256=inv.digest or "")
    report = check_plan(inv, plan)
    if not report.ok:
        lines = "\n".join(f"  {v}" for v in report.violations[:20])
        raise RollwaveError(
            f"internal error: the planner produced a plan the checker rejects "
            f"({len(report.violations)} violations); nothing was written:\n{lines}"
        )
    return replace(plan, summary=plan_summary(report.metrics)), dict(report.metrics)


@click.command("plan")
@path_arg("inventory")
@click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Policy file (JSON or YAML).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Plan file to write (JSON).",
)
@click.option(
    "--first",
    multiple=True,
    metavar="SELECTOR",
    help="Hosts to upgrade before all others: a name glob or role=/az=/rack=/"
    "aggregate=/version=VALUE (repeatable), e.g. --first role=controller.",
)
@click.option(
    "--last",
    multiple=True,
    metavar="SELECTOR",
    help="Hosts to upgrade after all others (same selectors as --first).",
)
@format_option
def plan_cmd(
    inventory: str,
    policy_path: str,
    output: str,
    first: tuple[str, ...],
    last: tuple[str, ...],
    fmt: str,
) -> None:
    """Plan the rolling upgrade of INVENTORY under POLICY and write PLAN.

    The plan is re-checked by the same checker as `rollwave check` before it is written.
    """
    inv = load_inventory(inventory)
    policy = load_policy(policy_path)
    if first or last:
        policy = policy.with_changes(first=policy.first + first, last=policy.last + last)
    t0 = time.perf_counter()
    plan, metrics = solve_and_check(inv, policy)
    elapsed = time.perf_counter() - t0
    save_plan(plan, output)
    if fmt == "json":
        emit_json({"plan": output, "time_s": round(elapsed, 3), "summary": plan.summary})
        return
    print_metrics(metrics)
    err.print(f"planned in {elapsed:.2f} s")
    out.print(f"wrote {output}")
