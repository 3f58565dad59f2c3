"""`rollwave simulate INVENTORY PLAN`: replay a plan in time (one run, or Monte Carlo)."""

from __future__ import annotations

import datetime as _dt
import math
import sys
import time
from typing import Any

import click
from rich.table import Table

from planner.app import distributed
from planner.app.schedule import parse_start
from planner.app.simulation import in_calendar, monte_carlo, prepare_run, simulate_once
from planner.capacity import format_amount
from planner.cli import simulate_sbs
from planner.cli.common import OutputPath, emit_json, err, format_option, kv_table, out, path_arg
from planner.errors import ExitCode
from planner.formats import load_inventory, load_plan
from sim.engine import OUTCOME_NAMES, Prepared, SimResult
from sim.model import load_model
from sim.timeline import hms, result_to_dict, summary


@click.command("simulate")
@path_arg("inventory")
@path_arg("plan")
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Simulation model (YAML/JSON, kind sim-model); default: Nova's defaults on 10 GbE.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the run(s).")
@click.option(
    "--runs",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Monte Carlo runs (seeds derived from --seed), in parallel processes.",
)
@click.option(
    "--jobs",
    type=click.IntRange(1),
    default=None,
    help="Processes for --runs (default: the number of CPUs).",
)
@click.option(
    "--cluster",
    metavar="ADDRESS|local[:N]",
    envvar=distributed.ENV_ADDRESS,
    show_envvar=True,
    default=None,
    help="Run --runs on a Dask cluster instead of local processes: a scheduler's address "
    "(tcp://HOST:PORT), or local[:N] for a local cluster of N workers. Needs the extra "
    f"{distributed.EXTRA}.",
)
@click.option(
    "-o",
    "--output",
    "timeline",
    type=OutputPath(),
    default=None,
    help="Timeline file to write: JSON lines, or CSV if the name ends in .csv. "
    "With --runs, the timeline of the median-makespan run.",
)
@click.option(
    "--ignore-digest",
    is_flag=True,
    help="Accept a plan made for another inventory file (as `rollwave check`).",
)
@click.option(
    "--no-vms",
    is_flag=True,
    help="Leave the per-VM list out of --format json (large clouds).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 1 when an invariant is breached, the run stalls or a host is not upgraded "
    "(with --runs: in any run).",
)
@click.option(
    "--start",
    metavar="DATE",
    default=None,
    help="Run in calendar time from DATE (ISO 8601, e.g. 2026-12-14T22:00; without an offset, "
    "the wall clock of the first window's zone): hosts enter maintenance only inside the "
    "policy's windows (side by side: a windowed project's VMs cross only inside its "
    "project_windows). Default: the plan's schedule's start, if it has one.",
)
@format_option
def simulate_cmd(
    inventory: str,
    plan: str,
    model_path: str | None,
    seed: int,
    runs: int,
    jobs: int | None,
    cluster: str | None,
    timeline: str | None,
    ignore_digest: bool,
    no_vms: bool,
    strict: bool,
    start: str | None,
    fmt: str,
) -> int:
    """Simulate executing PLAN on INVENTORY: makespan, per-wave and per-VM timings, downtime,
    bytes, failures, headroom over time and invariant breaches with their simulated time.

    Live migrations follow Nova's settings (downtime steps, completion timeout and its action,
    auto-converge, post-copy, bandwidth). With --runs N, prints P50/P95/P99 of makespan and
    downtime and the probability of a headroom breach and of a stall; --cluster runs them on
    a Dask cluster (the same numbers).
    """
    spec = distributed.from_options(cluster, jobs) if runs > 1 else None
    inv = load_inventory(inventory)
    p = load_plan(plan)
    model = load_model(model_path)
    if p.side_by_side:
        return simulate_sbs.run(
            inv, p, model, ignore_digest=ignore_digest, runs=runs, timeline=timeline,
            cluster=cluster, fmt=fmt, start=start,
        )  # fmt: skip
    t0 = time.perf_counter()
    at = parse_start(start, p.policy.windows) if start is not None else None
    prep = prepare_run(inv, p, model, plan_file=plan, ignore_digest=ignore_digest)
    prep = in_calendar(prep, at)
    prepare_s = time.perf_counter() - t0
    if prep.check_count:
        err.print(
            f"[yellow]warning[/]: the plan fails `rollwave check` with {prep.check_count} "
            f"violation(s); simulating it as written. First: {prep.check_violations[0]}",
            markup=True,
        )
    if runs == 1:
        one = simulate_once(prep, seed, timeline)
        res = one.result
        if fmt == "json":
            emit_json(result_to_dict(prep, res, per_vm=not no_vms))
        else:
            print_run(prep, res)
            err.print(f"simulated {res.events:,} events in {prepare_s + one.elapsed_s:.2f} s")
            if timeline:
                out.print(f"wrote {timeline}")
        return int(ExitCode.VIOLATIONS if strict and one.bad else ExitCode.OK)

    bar = RunsProgress(runs)
    try:
        many = monte_carlo(
            prep, runs, seed, jobs=jobs, cluster=spec, timeline=timeline, progress=bar
        )
    finally:
        bar.done()
    stats, median_run = many.stats, many.median_run
    elapsed = prepare_s + many.elapsed_s
    if fmt == "json":
        emit_json(
            {
                "format_version": "1.0",
                "kind": "simulation-montecarlo",
                "seed": seed,
                **stats,
                "median_run_seed": median_run,
                "time_s": round(elapsed, 3),
                "run_results": [r.to_dict() for r in many.results],
                "model": model.to_dict(),
            }
        )
    else:
        print_montecarlo(prep, stats, seed, median_run)
        err.print(
            f"{runs} runs, {stats['events']:,} events in {elapsed:.2f} s on {many.engine}",
            markup=False,
        )
        if timeline:
            out.print(f"wrote {timeline} (the median-makespan run, seed {median_run})")
    return int(ExitCode.VIOLATIONS if strict and many.bad else ExitCode.OK)


class RunsProgress:
    """Monte Carlo runs done, on stderr: rewritten in place on a terminal (at most 4 times a
    second), else a line at every tenth of the runs."""

    def __init__(self, runs: int) -> None:
        self.runs = runs
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.tenth = 0
        self.tty = sys.stderr.isatty()
        self.shown = False

    def __call__(self, done: int, runs: int) -> None:
        now = time.perf_counter()
        line = f"  runs {done:,}/{runs:,}  [{now - self.t0:5.1f} s]"
        if self.tty:
            if now - self.last < 0.25 and done < runs:
                return
            sys.stderr.write("\r\033[K" + line)
        else:
            tenth = 10 * done // runs
            if tenth == self.tenth:
                return
            self.tenth = tenth
            sys.stderr.write(line + "\n")
        self.last, self.shown = now, True
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty and self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# Text output
# ---------------------------------------------------------------------------------------------
def _s(x: float) -> str:
    return f"{hms(x)} ({x:,.0f} s)" if math.isfinite(x) else "never"


def print_run(prep: Prepared, res: SimResult, max_rows: int = 25) -> None:
    s = summary(prep, res)
    head = f"makespan {_s(res.makespan_s)}"
    if not res.completed:
        head = f"STALLED after {_s(res.makespan_s)}: the plan did not finish"
    out.print(f"[bold]{head}[/]")
    out.print(kv_table("simulation", _run_rows(prep, res, s)))
    out.print(_waves_table(prep, res, max_rows))
    _print_slow(prep, res)
    _print_failures(res)
    _print_invariants(res)
    _print_tightest(prep, res)
    _print_calendar(res)
    if res.stall:
        out.print(f"[bold red]stall[/]: {res.stall['reason']}", markup=True)


def _run_rows(prep: Prepared, res: SimResult, s: dict[str, Any]) -> list[tuple[str, Any]]:
    """The run in a few lines: its bounds, moves, downtime, hosts, canary and rollbacks."""
    rows: list[tuple[str, Any]] = []
    lb = res.lower_bound_s
    if lb > 0:
        rows.append(("lower bound", f"{_s(lb)}; simulated / bound = {res.makespan_s / lb:.2f}"))
    plb = res.plan_lower_bound_s
    if plb > 0:
        rows.append(
            (
                "this plan's bound",
                f"{_s(plb)} (its waves one after another, lock-step; simulated / bound = "
                f"{res.makespan_s / plb:.2f})",
            )
        )
    rows += [
        ("cloud", f"{prep.inv.cloud}: {len(prep.waves)} waves, seed {res.seed}"),
        (
            "migrations",
            f"{s['migrations']} ({s['live']} live, {s['cold']} cold), {s['stops']} stops, "
            f"{(s['bytes'] or 0) / 2**40:,.2f} TiB sent",
        ),
        ("outcomes", ", ".join(f"{k} {v}" for k, v in s["outcomes"].items()) or "none"),
        (
            "downtime",
            f"total {s['downtime_total_s']:,.1f} s (migrations {s['downtime_migrations_s']:,.1f} "
            f"s, stops {s['downtime_stops_s']:,.1f} s), worst migration "
            f"{s['downtime_max_s']:.3f} s, worst VM {s['downtime_worst_vm_s']:,.1f} s",
        ),
        ("non-converging VMs", s["non_converging"]),
        (
            "hosts",
            f"{s['hosts_upgraded']} upgraded, {s['hosts_not_upgraded']} not upgraded, "
            f"{s['hosts_rolled_back']} rolled back, {s['hosts_upgrade_failed']} failed their "
            f"upgrade, {s['hosts_crashed']} crashed",
        ),
    ]
    if res.execution == "pipelined":
        refused = sum(res.refusals.values())
        rows.append(
            (
                "execution",
                "pipelined: hosts admitted one by one as admission control allows"
                + (
                    f"; {refused} refusal(s): "
                    + ", ".join(f"{k} {v}" for k, v in sorted(res.refusals.items()))
                    if refused
                    else ""
                ),
            )
        )
    else:
        rows.append(("execution", "lock-step: each wave waits for the whole previous one"))
    rem = s["remedies"]
    if any(rem.values()):
        rows.append(
            (
                "remedies",
                f"{rem['force-complete']} force-completed, {rem['cold']} cold, "
                f"{rem['stop']} stopped in place (the plan's)",
            )
        )
    fb = s["force_fallbacks"]
    if fb["cold"] or fb["stayed"]:
        rows.append(
            (
                "force fallbacks",
                f"{fb['cold'] + fb['stayed']} force-complete(s) did not take "
                f"({prep.model.force_complete}): {fb['cold']} then migrated cold, "
                f"{fb['stayed']} stayed (their hosts not upgraded)",
            )
        )
    if res.canary_hosts:
        verdict = "failed, its hosts rolled back" if res.canary_failed else "passed"
        rows.append(
            (
                "canary",
                f"{', '.join(res.canary_hosts)}: soak {_s(res.soak_s)} in the makespan; {verdict}",
            )
        )
    if res.rollback_s > 0:
        rows.append(("rollbacks", f"{_s(res.rollback_s)} in total (hosts rolling back)"))
    if prep.check_count:
        rows.append(("plan check", f"{prep.check_count} violation(s) (see `rollwave check`)"))
    return rows


def _waves_table(prep: Prepared, res: SimResult, max_rows: int) -> Table:
    t = Table(title="waves", title_justify="left")
    for col in ("wave", "start", "end", "duration", "hosts", "migrations"):
        t.add_column(col, justify="right" if col != "hosts" else "left")
    for w in range(min(len(prep.waves), max_rows)):
        whosts = [prep.hosts[h] for h in prep.waves[w][0]]
        shown = ", ".join(whosts[:4]) + (f" +{len(whosts) - 4}" if len(whosts) > 4 else "")
        t.add_row(
            str(w + 1),
            hms(res.wave_start[w]),
            hms(res.wave_end[w]),
            hms(res.wave_end[w] - res.wave_start[w]),
            shown,
            str(sum(len(q) for q in prep.waves[w][1].values())),
        )
    if len(prep.waves) > max_rows:
        t.caption = f"... and {len(prep.waves) - max_rows} more waves (--format json for all)"
    return t


def _print_slow(prep: Prepared, res: SimResult) -> None:
    """VMs whose pre-copy does not converge, slowest first."""
    slow = sorted(
        (i for i in range(len(prep.m_vm)) if prep.m_flag[i] and res.mig_state[i] >= 0),
        key=lambda i: -(res.mig_end[i] - res.mig_start[i]),
    )
    if not slow:
        return
    out.print(
        f"[yellow]{len(slow)} VM(s) do not converge by pre-copy[/] (dirty rate >= "
        "bandwidth); each holds a migration slot:"
    )
    for i in slow[:10]:
        rec_end = res.mig_end[i] - res.mig_start[i]
        out.print(
            f"  {prep.inv.vms[prep.m_vm[i]].id} on {prep.hosts[prep.m_src[i]]}: "
            f"{prep.inv.vms[prep.m_vm[i]].memory_mb / 1024:.0f} GiB, "
            f"{_outcome(res, i)} after {hms(rec_end)}"
            + (f" (force_complete_after_s {prep.m_force[i]:g})" if prep.m_force[i] else ""),
            markup=False,
        )


def _print_failures(res: SimResult) -> None:
    if not res.failures:
        return
    out.print(f"[bold]{len(res.failures)} failure(s)[/]")
    for f in res.failures[:15]:
        verdict = "absorbed by headroom" if f.absorbed else "NOT absorbed by headroom"
        out.print(f"  {hms(f.t)} {f.kind}: {f.detail} ({verdict})", markup=False)
    if len(res.failures) > 15:
        out.print(f"  ... and {len(res.failures) - 15} more")


def _print_invariants(res: SimResult) -> None:
    if res.breach_counts:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(res.breach_counts.items()))
        out.print(f"[bold red]invariants breached[/]: {counts}")
        for b in res.breaches[:10]:
            out.print(f"  {hms(b.t)} [{b.kind}] {b.message}", markup=False, style="red")
    else:
        out.print(
            "[green]invariants held at every event[/] (capacity, anti-affinity, HA "
            "groups, headroom)"
        )


def _print_tightest(prep: Prepared, res: SimResult) -> None:
    tight = [
        (ms, g, c)
        for g, row in enumerate(res.min_slack)
        for c, ms in enumerate(row)
        if ms < 1 << 61
    ]
    if tight:
        ms, g, c = min(tight)
        rc = prep.classes[c]
        out.print(
            f"tightest headroom: {prep.groups[g]} {rc}, "
            f"{format_amount(rc, ms)} {'above' if ms >= 0 else 'BELOW'} the requirement"
        )


def _print_mc_calendar(cal: dict[str, Any] | None) -> None:
    """Monte Carlo in the calendar: windows used, the odds of more than planned, the finish."""
    if not cal:
        return
    w, f = cal["windows_used"], cal["finish"]
    rows: list[tuple[str, Any]] = [
        ("windows used", f"P50 {w['p50']:g}, P95 {w['p95']:g}, max {w['max']:g}"),
    ]
    if cal["windows_planned"] is not None:
        rows.append(
            (
                f"P(more than the plan's {cal['windows_planned']})",
                f"{100 * cal['p_more_windows_than_planned']:.1f}%",
            )
        )
    rows += [
        ("P(a host overruns its window)", f"{100 * cal['p_overrun']:.1f}%"),
        (
            "last host done",
            f"P50 {_date(f['p50'])}, P95 {_date(f['p95'])}, latest {_date(f['max'])}",
        ),
    ]
    out.print(kv_table("calendar", rows))


def _date(iso: str | None) -> str:
    return f"{_dt.datetime.fromisoformat(iso):%Y-%m-%d %H:%M %z}" if iso else "-"


def _print_calendar(res: SimResult) -> None:
    """The run in the calendar: windows used, hosts per window, overruns, last host done."""
    c = res.calendar
    if c is None:
        return
    planned = f" (the plan: {c.planned})" if c.planned is not None else ""
    done = f"{c.last_done:%Y-%m-%d %H:%M %z}" if c.last_done else "-"
    out.print(f"[bold]{c.used} window(s){planned}, last host done on {done}[/]")
    t = Table(title="windows", title_justify="left")
    for col in ("window", "opens", "closes", "hosts entered"):
        t.add_column(col, justify="left" if col == "hosts entered" else "right")
    for i, a, b, hs in c.windows[:25]:
        shown = ", ".join(hs[:4]) + (f" +{len(hs) - 4}" if len(hs) > 4 else "")
        t.add_row(str(i), f"{a:%a %Y-%m-%d %H:%M}", f"{b:%a %Y-%m-%d %H:%M}", shown)
    out.print(t)
    if c.overruns:
        worst = max(c.overruns, key=lambda x: x[1])
        out.print(
            f"[yellow]{len(c.overruns)} host(s) still in maintenance when their window closed[/]"
            f" (work in flight finishes after the close); the longest: {worst[0]}, "
            f"{hms(worst[1])} after",
            markup=True,
        )
    else:
        out.print("[green]every host's maintenance ended inside its window[/]", markup=True)


def _outcome(res: SimResult, i: int) -> str:
    st = res.mig_state[i]
    return OUTCOME_NAMES[st] if st >= 0 else "not started"


def print_montecarlo(prep: Prepared, stats: dict[str, Any], seed: int, median: int | None) -> None:
    mk = stats["makespan_s"]
    if mk["p50"] is not None:
        out.print(
            f"[bold]makespan P50 {hms(mk['p50'])}, P95 {hms(mk['p95'])}, "
            f"P99 {hms(mk['p99'])}[/] over {stats['completed_runs']} completed run(s)"
        )
    else:
        out.print("[bold red]no run completed[/]: every run stalled")
    t = Table(title=f"{stats['runs']} runs (seeds derived from {seed})", title_justify="left")
    for col in ("", "P50", "P95", "P99", "mean", "min", "max"):
        t.add_column(col, justify="right")
    for key, label in (
        ("makespan_s", "makespan"),
        ("downtime_s", "total downtime (s)"),
        ("lower_bound_s", "lower bound"),
    ):
        v = stats[key]
        fmt = hms if key != "downtime_s" else (lambda x: f"{x:,.1f}")
        t.add_row(
            label,
            *[
                fmt(v[k]) if v[k] is not None else "-"
                for k in ("p50", "p95", "p99", "mean", "min", "max")
            ],
        )
    out.print(t)
    _print_mc_calendar(stats.get("calendar"))
    note = f" ({stats['breach_note']})" if stats.get("breach_note") else ""
    out.print(
        kv_table(
            "risks",
            [
                (
                    "P(headroom breach)",
                    f"{100 * stats['p_headroom_breach']:.1f}%{note}",
                ),
                ("P(any invariant breach)", f"{100 * stats['p_any_breach']:.1f}%{note}"),
                ("P(stall)", f"{100 * stats['p_stall']:.1f}%"),
                ("P(a host not upgraded)", f"{100 * stats['p_host_not_upgraded']:.1f}%"),
                ("failures per run (mean)", stats["mean_failures"]),
                (
                    "median run",
                    f"--seed {median} --runs 1 replays it" if median is not None else "-",
                ),
            ],
        )
    )
