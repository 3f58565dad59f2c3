"""`rollwave check INVENTORY PLAN`: judge a plan; exit 0 valid, 1 violations, 2 unreadable."""

from __future__ import annotations

from collections import Counter
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from planner.app.predict import predict
from planner.checker import RULES, CheckReport, check_plan
from planner.cli.common import emit_json, err, format_option, kv_table, out, path_arg
from planner.errors import ExitCode
from planner.formats import load_inventory, load_plan
from sim.model import load_model


@click.command("check")
@path_arg("inventory")
@path_arg("plan")
@click.option(
    "--ignore-digest",
    is_flag=True,
    help="Accept a plan made for another inventory file (e.g. the same cloud re-exported).",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Simulation model (YAML/JSON, kind sim-model): judge the plan's remedies with its "
    "predictions too (a live migration predicted never to finish without a remedy is a "
    "warning; max_migration_s, max_downtime_s).",
)
@click.option("--max-shown", default=50, show_default=True, help="Violations listed in text form.")
@format_option
def check_cmd(
    inventory: str,
    plan: str,
    ignore_digest: bool,
    model_path: str | None,
    max_shown: int,
    fmt: str,
) -> int:
    """Check PLAN against INVENTORY: every rule, every wave, with numbers.

    Also checks the inventory itself (over-capacity, headroom or HA groups already broken) and that
    the plan was made for this inventory file (sha256). With --model, the rules on remedies judge
    the model's predictions too. Exit 0 valid, 1 violations, 2 bad input.
    """
    inv = load_inventory(inventory)
    p = load_plan(plan)
    est = predict(inv, p.policy, load_model(model_path)).est if model_path else None
    report = check_plan(inv, p, digest=p.inventory_sha256 if ignore_digest else None, estimates=est)
    if fmt == "json":
        emit_json(report.to_dict())
    else:
        print_report(report, max_shown)
    return int(ExitCode.OK if report.ok else ExitCode.VIOLATIONS)


def print_report(report: CheckReport, max_shown: int = 50) -> None:
    print_metrics(report.metrics)
    if report.warnings:
        err.print(f"[yellow]{len(report.warnings)} warning(s)[/]")
        for w in report.warnings[:10]:
            err.print(f"  [yellow]warning[/] {escape(str(w))}")
    if report.ok:
        out.print("[bold green]plan is valid[/]: every rule holds at every wave")
        return
    counts = Counter(v.rule for v in report.violations)
    t = Table(title="violations by rule", title_justify="left")
    t.add_column("rule")
    t.add_column("count", justify="right")
    t.add_column("meaning")
    for rule, n in counts.most_common():
        t.add_row(rule, str(n), RULES.get(rule, ""))
    out.print(t)
    for v in report.violations[:max_shown]:
        out.print(f"  x {v}", markup=False, style="red")
    if len(report.violations) > max_shown:
        out.print(f"  ... and {len(report.violations) - max_shown} more (--format json for all)")
    out.print(f"[bold red]plan is invalid[/]: {len(report.violations)} violation(s)")


def print_metrics(m: Any) -> None:
    lb = m.get("lower_bounds", {})
    rows: list[tuple[str, Any]] = [
        ("waves", _with_bound(m["waves"], lb.get("waves"))),
        ("hosts upgraded", m["hosts_upgraded"]),
        (
            "migrations",
            f"{m['migrations']} ({m['live_migrations']} live, {m['cold_migrations']} cold)"
            + (f", lower bound {lb['migrations']}" if lb.get("migrations") is not None else ""),
        ),
        ("VMs moved", m["vms_moved"]),
        ("VMs moved more than once", m["vms_moved_more_than_once"]),
        ("migrations per moved VM", f"{m['migrations_per_moved_vm']:.3f}"),
        ("VMs stopped in place", m["stops"]),
        ("fullest destination", f"{100 * m['max_utilisation']:.1f}%"),
    ]
    slack = m.get("min_headroom_ratio") or {}
    if slack:
        key = min(slack, key=lambda k: slack[k])
        rows.append(("tightest headroom", f"{key}: free = {slack[key]:.2f} x required"))
    out.print(kv_table("plan", rows))


def _with_bound(value: int, bound: int | None) -> str:
    if not bound:
        return str(value)
    gap = value / bound - 1.0
    return f"{value} (lower bound {bound}, gap {100 * gap:.1f}%)"
