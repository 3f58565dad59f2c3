"""`rollwave plan INVENTORY --policy POLICY -o PLAN`: solve, re-check, write, summarise."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from planner.app.planning import solve_and_check
from planner.app.schedule import parse_start
from planner.cli import plan_sbs
from planner.cli.common import SEED, OutputPath, emit_json, err, format_option, out, path_arg
from planner.errors import InfeasibleError, UsageError
from planner.formats import load_inventory, load_policy, save_plan
from planner.policy import selector_problem
from planner.rules.version import warnings as version_warnings
from sim.model import load_model
from solver.solve import PLANNERS, SolveOptions, SolveOutcome


class ProgressLine:
    """The search's progress on stderr: one line per update, at most twice a second (always
    for a new phase); rewritten in place on a terminal."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.phase = ""
        self.tty = sys.stderr.isatty()

    def __call__(self, phase: str, best: float | None, bound: float | None) -> None:
        now = time.perf_counter()
        if phase == self.phase and now - self.last < 0.5:
            return
        new_phase = phase != self.phase
        self.phase, self.last = phase, now
        t = now - self.t0
        if phase == "placement":
            msg = f"placing VMs: wave {int(best or 0) + 1} of {int(bound or 0)}"
        elif phase == "waves":
            msg = f"waves: best {_n(best)}, bound {_n(bound)}"
        else:
            msg = (
                f"VMs that would move twice (quarter-VM units): best {_n(best)}, bound {_n(bound)}"
            )
        line = f"  {msg}  [{t:5.1f} s]"
        if self.tty:
            sys.stderr.write(("\n" if new_phase and self.last else "") + "\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty and self.phase:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _n(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


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
    type=OutputPath(),
    help="Plan file to write (JSON).",
)
@click.option(
    "--planner",
    type=click.Choice(PLANNERS),
    default="cpsat",
    show_default=True,
    help="cpsat: OR-Tools CP-SAT (the greedy is its fallback); greedy: the greedy alone.",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0.5),
    default=None,
    metavar="SECONDS",
    help="Wall-clock cap on the whole run, from the process's start (default: 30 s + 25 ms a "
    "host). The search keeps a reserve for checking and writing the plan; optional passes that "
    "do not fit are skipped, with a note. Plans are reproducible unless this cap cuts the "
    "search short.",
)
@click.option(
    "--seed", type=SEED, default=0, show_default=True, help="Same input and seed, same plan."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="CP-SAT search workers (deterministic for a given number).",
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
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Simulation model (YAML/JSON, kind sim-model) the predictions and remedies come from; "
    "default: Nova's defaults on 10 GbE, as `simulate`.",
)
@click.option(
    "--start",
    metavar="DATE",
    default=None,
    help="When the upgrade starts (ISO 8601, e.g. 2026-12-14T22:00; without an offset, the "
    "wall clock of the policy's first window): schedule every host in the policy's "
    "maintenance windows, lock-step. Side by side: schedule each windowed project's "
    "crossings in its project_windows (needed when they apply).",
)
@click.option(
    "--mode",
    type=click.Choice(["in-place", "side-by-side"]),
    default="in-place",
    show_default=True,
    help="side-by-side: move every VM into a new cloud built of freed hosts (new control plane).",
)
@click.option(
    "--az-map",
    "az_map_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Side by side: each old AZ's name in the new cloud (file of kind az-map).",
)
@click.option(
    "--controllers",
    type=click.IntRange(min=2),
    default=2,
    show_default=True,
    help="Side by side: how many freed hosts become the new controllers (an HA group).",
)
@format_option
@click.pass_context
def plan_cmd(
    ctx: click.Context,
    inventory: str,
    policy_path: str,
    output: str,
    planner: str,
    time_limit: float | None,
    seed: int,
    workers: int,
    first: tuple[str, ...],
    last: tuple[str, ...],
    model_path: str | None,
    start: str | None,
    mode: str,
    az_map_path: str | None,
    controllers: int,
    fmt: str,
) -> None:
    """Plan the rolling upgrade of INVENTORY under POLICY and write PLAN.

    Fewest waves first, then fewest migrations (evacuees go to hosts already upgraded, so each
    VM moves once), then balance. Every migration carries its predicted duration, downtime and
    bytes under the model (--model; default Nova's defaults on 10 GbE), and every VM predicted
    not to finish its live migration (or over max_migration_s) the policy's remedy
    (non_converging). The plan is re-checked by the same checker as `rollwave check`, with the
    predictions, before it is written. When no plan exists, says why and exits with code 3:
    "no plan exists" is a proof (naming the rules in conflict), "no plan found (not proven
    impossible)" is not.

    With --mode side-by-side: plan the upgrade that replaces the control plane (see
    docs/concepts.md): hosts freed wave by wave, the first ones the new controllers, VMs crossing
    into the new cloud, emptied hosts joining it.
    """
    plan_sbs.check_options(ctx, mode)
    if mode == "side-by-side":
        plan_sbs.run(
            inventory, policy_path, output, az_map_path, controllers, seed, model_path, fmt, start
        )
        return
    inv = load_inventory(inventory)
    policy = load_policy(policy_path)
    plan_sbs.warn_project_windows(policy, policy_path)
    model = load_model(model_path)
    when = parse_start(start, policy.windows) if start is not None else None
    for opt, selectors in (("--first", first), ("--last", last)):
        for sel in selectors:
            problem = selector_problem(sel)
            if problem:
                raise UsageError(f"{opt}: {problem}")
    if first or last:
        policy = policy.with_changes(first=policy.first + first, last=policy.last + last)
    if not any(h.is_compute for h in inv.hosts):
        err.print(
            f"[yellow]note[/]: {inventory} has no compute host: the plan upgrades its controllers "
            "only, and no VM moves",
            markup=True,
        )
    for w in version_warnings(inv, policy):
        err.print(f"[yellow]warning[/]: {escape('[version] ' + w)}", markup=True)
    options = SolveOptions(
        planner=planner,  # type: ignore[arg-type]
        time_limit=time_limit,
        seed=seed,
        workers=workers,
        started=started_at(ctx),  # the time limit counts from the process's start
    )
    progress = ProgressLine()
    t0 = time.perf_counter()
    try:
        plan, metrics, outcome = solve_and_check(inv, policy, options, progress, model, when)
    except InfeasibleError as exc:
        if fmt == "json":  # the outcome for machines too; the message still goes to stderr
            emit_json({"plan": None, **exc.to_dict()})
        raise
    finally:
        progress.done()
    elapsed = time.perf_counter() - t0
    save_plan(plan, output)
    for note in outcome.notes:
        err.print(f"[yellow]note[/]: {note}", markup=True)
    for h in inv.hosts:  # the snapshot's drift notes: the plan counted Placement's usage
        for note in h.drift:
            text = escape(f"Placement drift on {h.name}: {note}")
            err.print(f"[yellow]warning[/]: {text}", markup=True)
    if outcome.wall_clock_hit:
        err.print(
            "[yellow]note[/]: the time limit cut the search short; another run may differ "
            "(raise --time-limit for a reproducible plan)"
        )
    if fmt == "json":
        emit_json(
            {
                "plan": output,
                "planner": outcome.planner,
                "status": outcome.status,
                "time_s": round(elapsed, 3),
                "time_limit_hit": outcome.wall_clock_hit,
                "summary": plan.summary,
                "notes": outcome.notes,
            }
        )
        return
    out.print(summary_table(metrics, outcome, elapsed))
    if plan.schedule is not None and plan.schedule.last_done is not None:
        n = len(plan.schedule.windows)
        out.print(
            f"{n} window{'s' if n != 1 else ''}, last host done on "
            f"{plan.schedule.last_done.strftime('%Y-%m-%d %H:%M %z')}"
        )
    out.print(f"wrote {output}")


def started_at(ctx: click.Context) -> float | None:
    """The `time.monotonic()` instant the time limit counts from: the process's start under
    `main` (the console entry), else (called in-process) when planning starts."""
    obj = ctx.find_root().obj
    started = obj.get("started") if isinstance(obj, dict) else None
    return started if isinstance(started, float) else None


def summary_table(m: dict[str, Any], outcome: SolveOutcome, elapsed: float) -> Table:
    lb = m.get("lower_bounds", {})
    t = Table(title="plan summary", title_justify="left", show_header=True, box=None)
    t.add_column("", style="bold")
    t.add_column("plan", justify="right")
    t.add_column("bound", justify="right")
    t.add_column("gap", justify="right")
    t.add_row("waves", str(m["waves"]), _s(lb.get("waves")), _gap(m.get("wave_gap")))
    t.add_row(
        "migrations",
        f"{m['migrations']:,}",
        _s(lb.get("migrations")),
        _gap(m.get("migration_gap")),
    )
    exact = m.get("migrations_minimal")
    if exact:  # the exact model's word (small clouds): optimal, or how far from its bound
        word = "proven minimal" if exact["status"] == "optimal" else f"gap {exact['gap']}"
        t.add_row("fewest migrations (exact)", word, f"{exact['bound']:,}", "")
    t.add_row("migrations per moved VM", f"{m['migrations_per_moved_vm']:.3f}", "1.000", "")
    t.add_row("VMs moved twice or more", f"{m['vms_moved_more_than_once']:,}", "", "")
    t.add_row("live / cold", f"{m['live_migrations']:,} / {m['cold_migrations']:,}", "", "")
    t.add_row("VMs stopped in place", f"{m['stops']:,}", "", "")
    t.add_row("fullest host", f"{100 * m['max_utilisation']:.1f}%", "", "")
    slack = m.get("min_headroom_ratio") or {}
    if slack:
        key = min(slack, key=lambda k: slack[k])
        t.add_row("tightest headroom", f"{slack[key]:.2f} x", key, "")
    if m.get("soft_group_warnings"):
        t.add_row("soft server groups not kept", str(m["soft_group_warnings"]), "", "")
    for label, value, bound, gap in prediction_rows(m):
        t.add_row(label, value, bound, gap)
    status = outcome.planner
    if outcome.planner == "cpsat":
        status += f", waves {outcome.status}"
    if (outcome.stats.get("exact") or {}).get("improved"):
        status += ", fewer migrations by the exact model"
    t.add_row("planner", status, "", "")
    t.add_row("time", f"{elapsed:.1f} s", "", "")
    return t


def prediction_rows(m: Any) -> list[tuple[str, str, str, str]]:
    """The summary's predictions: makespan against its lower bound, remedies, downtime."""
    mk = (m.get("predicted_makespan_s") or {}).get("lockstep")
    if mk is None:
        return []
    lb = m.get("lockstep_lower_bound_s") or m.get("makespan_lower_bound_s")
    rows = [
        (
            "predicted makespan (lock-step)",
            duration(mk),
            duration(lb) if lb else "",
            f"{mk / lb:.2f} x" if lb else "",
        )
    ]
    pipe = (m.get("predicted_makespan_s") or {}).get("pipelined")
    plb = m.get("pipelined_lower_bound_s") or m.get("makespan_lower_bound_s")
    if pipe is not None:
        rows.append(
            (
                "predicted makespan (pipelined)",
                f"{duration(pipe)} ({pipe / mk:.2f} x lock-step)" if mk else duration(pipe),
                duration(plb) if plb else "",
                f"{pipe / plb:.2f} x" if plb else "",
            )
        )
    anyplan = m.get("makespan_lower_bound_s")
    if anyplan and anyplan not in (lb, plb):
        rows.append(("makespan lower bound (any plan)", "", duration(anyplan), ""))
    rem = m.get("remedies") or {}
    rows.append(
        (
            "remedies",
            ", ".join(f"{k} {v}" for k, v in rem.items() if v) or "none needed",
            "",
            "",
        )
    )
    down = m.get("predicted_downtime_s") or {}
    if down:
        rows.append(
            (
                "predicted downtime",
                f"{down['total']:,.0f} s total, worst {down['worst']:,.1f} s",
                "",
                "",
            )
        )
    return rows


def duration(s: float) -> str:
    """Seconds as h:mm:ss."""
    n = round(s)
    return f"{n // 3600}:{n % 3600 // 60:02d}:{n % 60:02d}"


def _s(x: Any) -> str:
    return "" if x is None else f"{x:,}"


def _gap(x: Any) -> str:
    return "" if x is None else f"{100 * x:.1f}%"
