"""`rollwave whatif INVENTORY --policy POLICY --vary KEY=V1,V2,...`: a policy sweep, side by
side."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import sys
import textwrap
import time
from collections.abc import Sequence
from typing import Any

import click
from rich.table import Table

from planner.app import distributed
from planner.app.schedule import parse_start
from planner.app.whatif import SweepConfig, sweep
from planner.cli.common import emit_json, err, out, path_arg
from planner.errors import UsageError
from planner.formats import load_inventory, load_policy, policy_to_dict, write_bytes_atomic
from planner.report import plots
from planner.report.whatif import (
    KEYS,
    VERDICTS,
    Outcome,
    Vary,
    apply_model,
    apply_policy,
    combinations,
    parse_vary,
    tradeoff,
)
from planner.report.whatif_windows import WINDOW_KEYS
from sim.model import load_model
from sim.montecarlo import NO_FAILURES, breach_note

COLUMNS = (
    ("waves", "waves"),
    ("makespan", "makespan"),
    ("migr/VM", "migrations per moved VM"),
    ("2x moved", "VMs moved more than once"),
    ("min headroom", "tightest free / required"),
    ("status", ""),
)


@click.command("whatif")
@path_arg("inventory")
@click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The base policy (JSON or YAML); --vary changes it.",
)
@click.option(
    "--vary",
    "vary",
    multiple=True,
    required=True,
    metavar="KEY=V1,V2,...",
    help="A policy key and its values (repeatable; every combination is tried), e.g. "
    "max_hosts_per_wave=2,4,8, headroom.failures=0,1,2, spare_hosts=0,2. Keys: "
    + ", ".join(sorted(KEYS))
    + ", or model.SECTION.KEY of the simulation model, e.g. "
    "model.failures.migration.probability=0,0.05; or the maintenance windows (with --start): "
    "windows=none,daily/22:00-06:00,mon-fri/22:00-04:00@Europe/Berlin (days with + for a list: "
    "sat+sun/08:00-20:00), windows.hours=4,8 or windows.days=daily,mon-fri (of the policy's "
    "windows).",
)
@click.option(
    "--start",
    metavar="DATE",
    default=None,
    help="Plan and simulate every combination in calendar time from DATE (as `rollwave plan "
    "--start`): columns windows and last host done.",
)
@click.option(
    "--runs",
    type=click.IntRange(0),
    default=20,
    show_default=True,
    help="Simulated runs per combination (Monte Carlo: makespan P50/P95, breach probability); "
    "0: no simulation, the estimate only.",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Simulation model (as `rollwave simulate --model`); default: Nova's defaults, 10 GbE.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Base seed; every combination uses the same seeds.",
)
@click.option(
    "--planner",
    type=click.Choice(["cpsat", "greedy"]),
    default="cpsat",
    show_default=True,
    help="The planner for every combination (as `rollwave plan --planner`).",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds the planner may take per combination (default: as `rollwave plan`).",
)
@click.option(
    "--jobs",
    type=click.IntRange(1),
    default=None,
    help="Processes (default: the number of CPUs).",
)
@click.option(
    "--cluster",
    metavar="ADDRESS|local[:N]",
    envvar=distributed.ENV_ADDRESS,
    show_envvar=True,
    default=None,
    help="Run the combinations on a Dask cluster instead of local processes: a scheduler's "
    "address (tcp://HOST:PORT), or local[:N] for a local cluster of N workers. Needs the extra "
    f"{distributed.EXTRA}.",
)
@click.option(
    "--max-combinations",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Refuse sweeps larger than this (each combination is a full plan).",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the trade-off plot (makespan against risk) as PNG.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "csv", "json"]),
    default="text",
    show_default=True,
    help="text for people, csv for spreadsheets, json for machines (all on stdout).",
)
def whatif_cmd(
    inventory: str,
    policy_path: str,
    vary: tuple[str, ...],
    runs: int,
    model_path: str | None,
    seed: int,
    planner: str,
    time_limit: float | None,
    jobs: int | None,
    cluster: str | None,
    max_combinations: int,
    plot_path: str | None,
    fmt: str,
    start: str | None,
) -> None:
    """Plan and simulate INVENTORY under every combination of --vary changes to POLICY (and to
    the simulation model: model.SECTION.KEY), in parallel, and compare: waves, makespan P50/P95,
    migrations per VM, tightest headroom, failures absorbed, probability of a headroom breach;
    combinations without a plan are rows with the reason. --cluster runs them on a Dask cluster.
    """
    spec = distributed.from_options(cluster, jobs)
    varies = [parse_vary(v) for v in vary]
    combos = combinations(varies)
    if len(combos) > max_combinations:
        raise UsageError(
            f"--vary: {len(combos)} combinations, more than --max-combinations "
            f"{max_combinations}; narrow the sweep or raise the limit"
        )
    inv = load_inventory(inventory)
    policy = load_policy(policy_path)
    model = load_model(model_path)
    windowed = [v.key for v in varies if v.key in WINDOW_KEYS]
    if windowed and start is None:
        raise UsageError(f"--vary {windowed[0]}: needs --start DATE (when the upgrade begins)")
    for c in combos:  # every value is valid before any work starts
        apply_policy(policy, c)
        apply_model(model, c)
    at = parse_start(start, policy.windows) if start is not None else None
    t0 = time.perf_counter()
    err.print(f"{len(combos)} combination(s) of {', '.join(v.key for v in varies)}")

    def progress(done: int, total: int, o: Outcome) -> None:
        if o.status != "ok":
            what = o.summary()
        elif o.makespan_p50_s is not None:
            what = (
                f"{o.waves} waves, makespan P50 {_hours(o.makespan_p50_s)}, "
                f"P(breach) {o.breach_probability:.0%}" + _note(o)
            )
        else:
            what = f"{o.waves} waves, makespan {_hours(o.makespan_s)} (estimated)"
        err.print(f"  [{done}/{total}] {o.label()}: {what}", markup=False, highlight=False)

    config = SweepConfig(
        runs=runs,
        seed=seed,
        model=model,
        planner="greedy" if planner == "greedy" else "cpsat",
        time_limit=time_limit,
        start=at,
    )
    results = sweep(inv, policy, combos, config, jobs=jobs, cluster=spec, progress=progress)
    elapsed = time.perf_counter() - t0
    if plot_path:
        fig = tradeoff(results, varies)
        write_bytes_atomic(plot_path, plots.png_bytes(fig))
    if fmt == "json":
        emit_json(
            {
                "format_version": "1.0",
                "kind": "whatif",
                "inventory": inventory,
                "inventory_sha256": inv.digest,
                "policy": policy_to_dict(policy, standalone=False),
                "vary": {v.key: list(v.values) for v in varies},
                "runs": runs,
                "seed": seed,
                "planner": planner,
                "model": model.to_dict(),
                "time_s": round(elapsed, 3),
                "outcomes": {v: n for v in VERDICTS if (n := sum(r.verdict == v for r in results))},
                "rows": [r.to_dict() for r in results],
            }
        )
    elif fmt == "csv":
        sys.stdout.write(to_csv(results, varies))
    else:
        out.print(table(results, varies))
        if plot_path:
            out.print(f"wrote {plot_path}")
    err.print(f"{len(results)} combination(s) in {elapsed:.1f} s")


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 3600:.2f} h"


def table(results: Sequence[Outcome], varies: Sequence[Vary]) -> Table:
    simulated = any(r.makespan_p50_s is not None for r in results)
    t = Table(title="what-if", title_justify="left")
    for v in varies:
        t.add_column(v.key, justify="right")
    t.add_column("waves (bound)", justify="right")
    if simulated:
        t.add_column("makespan P50", justify="right")
        t.add_column("P95", justify="right")
    else:
        t.add_column("makespan (est.)", justify="right")
    predicted = any(r.downtime_s is not None for r in results)
    if predicted:
        t.add_column("predicted makespan", justify="right")
        t.add_column("downtime", justify="right")
        t.add_column("remedies", justify="right")
    calendar = any(r.windows_planned is not None for r in results)
    if calendar:
        t.add_column("windows" + (" (sim. P50, max)" if simulated else ""), justify="right")
        t.add_column("last host done" + (" (sim. P50)" if simulated else ""), justify="right")
    t.add_column("migr/VM", justify="right")
    t.add_column("2x moved", justify="right")
    t.add_column("min headroom", justify="right")
    t.add_column("absorbs", justify="right")
    if simulated:
        t.add_column("P(breach)", justify="right")
    t.add_column("status", overflow="fold", min_width=12)
    n_metrics = len(t.columns) - len(varies) - 1
    for r in results:
        cells = [str(r.combo[v.key]) for v in varies]
        if r.waves is None:
            cells += ["-"] * n_metrics + [_status(r)]
            t.add_row(*cells)
            continue
        cells.append(f"{r.waves} ({r.waves_lower_bound})" if r.waves_lower_bound else str(r.waves))
        if simulated:
            cells += [_hours(r.makespan_p50_s), _hours(r.makespan_p95_s)]
        else:
            cells.append(_hours(r.makespan_s))
        if predicted:
            rem = ", ".join(f"{k} {v}" for k, v in r.remedies.items() if v) or "none"
            down = "-" if r.downtime_s is None else f"{r.downtime_s:,.0f} s"
            cells += [_hours(r.predicted_makespan_s), down, rem]
        if calendar:
            cells += _calendar_cells(r)
        cells += [
            f"{r.migrations_per_vm:.3f}" if r.migrations_per_vm is not None else "-",
            str(r.vms_moved_twice),
            f"{r.min_headroom_ratio:.2f}" if r.min_headroom_ratio is not None else "-",
            "-" if r.failures_absorbed is None else str(r.failures_absorbed),
        ]
        if simulated:
            cells.append(
                "-"
                if r.breach_probability is None
                else f"{r.breach_probability:.1%}" + ("*" if _note(r) else "")
            )
        cells.append(_status(r))
        t.add_row(*cells)
    verdicts = {r.verdict for r in results}
    notes = [f"{v.replace('_', ' ')}: {VERDICTS[v]}" for v in VERDICTS if v in verdicts - {"ok"}]
    if simulated and any(_note(r) for r in results):
        notes.insert(0, f"P(breach)*: {NO_FAILURES} (a valid plan; the model injects none)")
    if notes:
        t.caption = "; ".join(notes)
        t.caption_justify = "left"
    return t


def _calendar_cells(r: Outcome) -> list[str]:
    """Windows (planned; simulated P50 and max) and the last host done (planned; simulated)."""
    if r.windows_planned is None:
        return ["-", "-"]
    win = str(r.windows_planned)
    if r.windows_used_p50 is not None:
        win += f" ({r.windows_used_p50:g}, {r.windows_used_max:g})"
    done = _date(r.last_done)
    if r.finish_p50 is not None:
        done += f" ({_date(r.finish_p50)})"
    return [win, done]


def _date(iso: str | None) -> str:
    if iso is None:
        return "-"
    return f"{_dt.datetime.fromisoformat(iso):%a %m-%d %H:%M}"


def _note(o: Outcome) -> str:
    """ " (no failures modelled: 0 by construction)" for a simulated row whose model injects no
    failures and whose runs breached nothing; else ""."""
    if o.failures_modelled is None or o.breach_probability is None:
        return ""
    note = breach_note(o.breach_probability, o.failures_modelled)
    return f" ({note})" if note == NO_FAILURES else ""


STYLE = {"ok": "", "impossible": "red", "not_found": "yellow"}


def _status(r: Outcome) -> str:
    """The row's outcome, short enough for a table cell (--format json has every reason and the
    whole proof): the verdict coloured; for a proof, the families to blame and, on a line of its
    own, the smallest relaxation known to give a plan."""
    from rich.markup import escape

    def short(text: str, width: int = 100) -> str:
        return escape(textwrap.shorten(text, width, placeholder=" ..."))

    v = r.verdict
    if v == "ok":
        return "ok"
    if v == "impossible":
        fix = r.relaxations()
        return f"[red]impossible[/]: {short(r.blamed())}" + (
            f"\n[green]to plan[/]: {short(fix[0])}" if fix else ""
        )
    head, _, rest = r.summary().partition(": ")
    return f"[{STYLE.get(v, 'red')}]{escape(head)}[/]: {short(rest)}"


def to_csv(results: Sequence[Outcome], varies: Sequence[Vary]) -> str:
    """The JSON rows flat: `blame` as the family keys and `relaxations` joined by "; ",
    `proven` as true/false."""
    rows = [_flat(r.to_dict()) for r in results]
    keys = {v.key for v in varies}
    # every row's keys, in their order (rows in the calendar have its columns; failed ones not)
    fields = [v.key for v in varies] + list(
        dict.fromkeys(k for r in rows for k in r if k not in keys)
    )
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: "" if row.get(k) is None else row.get(k) for k in fields})
    return buf.getvalue()


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["blame"] = "; ".join(str(b["key"]) for b in row["blame"]) or None
    out["relaxations"] = "; ".join(row["relaxations"]) or None
    if row["proven"] is not None:
        out["proven"] = "true" if row["proven"] else "false"
    return out
