"""Everything a plan report shows, gathered once: the checker's verdict and metrics, the replay,
the schedule (simulated or estimated), Monte Carlo results, and the figures drawn from them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from planner.checker import CheckReport, check_plan
from planner.errors import InputError
from planner.inventory import Inventory
from planner.plan import Plan
from planner.report import plots
from planner.report.calendar import place_in_windows
from planner.report.replay import Replay, Step, replay
from planner.report.schedule import (
    EstimateModel,
    MonteCarlo,
    Schedule,
    estimate_schedule,
    estimate_with_simulator,
)
from planner.report.timeline import Timeline, headroom_from_timeline, schedule_from_timeline
from sim.model import DEFAULT as DEFAULT_MODEL
from sim.model import SimModel


@dataclass(frozen=True)
class FigureSpec:
    key: str  # file name stem for --png
    title: str
    caption: str  # how to read it
    figure: Figure


@dataclass(frozen=True, eq=False)
class Report:
    inventory: Inventory
    plan: Plan
    check: CheckReport
    replay: Replay
    schedule: Schedule
    montecarlo: MonteCarlo | None = None
    timeline: Timeline | None = None
    max_rows: int = 60

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.check.metrics)

    @property
    def digest_matches(self) -> bool | None:
        if not self.inventory.digest or not self.plan.inventory_sha256:
            return None
        return self.inventory.digest == self.plan.inventory_sha256


def build_report(
    inv: Inventory,
    plan: Plan,
    *,
    timeline: Timeline | None = None,
    schedule: Schedule | None = None,
    montecarlo: MonteCarlo | None = None,
    estimate: EstimateModel | None = None,
    sim_model: SimModel | None = None,
    ignore_digest: bool = False,
    max_rows: int = 60,
) -> Report:
    """Check and replay the plan and put it in time: from a simulation's `timeline` when given
    (or a ready `schedule`); else estimated, with `estimate`'s simple parameters when given, or
    with the simulator's migration model (`sim_model`, default Nova's defaults on 10 GbE)."""
    check = check_plan(inv, plan, digest=plan.inventory_sha256 if ignore_digest else None)
    if schedule is None:
        if timeline is not None:
            schedule = schedule_from_timeline(timeline, plan)
        elif estimate is not None:
            schedule = estimate_schedule(inv, plan, estimate)
        else:
            try:
                schedule = estimate_with_simulator(inv, plan, sim_model or DEFAULT_MODEL)
            except InputError:  # a plan naming unknown hosts or VMs: the simple estimate
                schedule = estimate_schedule(inv, plan)
        if plan.schedule is not None:  # the estimate knows no windows: placed in the plan's
            schedule = place_in_windows(schedule, plan.schedule)
    return Report(
        inventory=inv,
        plan=plan,
        check=check,
        replay=replay(inv, plan),
        schedule=schedule,
        montecarlo=montecarlo,
        timeline=timeline,
        max_rows=max_rows,
    )


# ---------------------------------------------------------------------------------------------
# Figure data
# ---------------------------------------------------------------------------------------------
def headroom_series(rp: Replay, schedule: Schedule) -> list[plots.HeadroomSeries]:
    """Per scope group and class, the replay's headroom steps placed in time: `before` at 0, wave
    i over its span in the schedule, `after` at the makespan."""
    span = {w.index: (w.start, w.end) for w in schedule.waves}
    end = schedule.makespan_s
    times: list[tuple[float, float]] = []
    for s in rp.steps:
        if s.wave is None:
            t = 0.0 if s is rp.before else end
            times.append((t, t))
        else:
            times.append(span.get(s.wave, (end, end)))
    out = []
    for g in rp.groups:
        for rc in rp.classes:
            rows = [_row(s, g, rc) for s in rp.steps]
            out.append(
                plots.HeadroomSeries(
                    group=g,
                    rc=rc,
                    t0=[a for a, _ in times],
                    t1=[b for _, b in times],
                    free=[r[0] for r in rows],
                    required=[r[1] for r in rows],
                    labels=[s.label for s in rp.steps],
                )
            )
    return out


def _row(step: Step, group: str, rc: str) -> tuple[float, float]:
    for r in step.headroom:
        if r.group == group and r.rc == rc:
            return float(r.free), float(r.required)
    return 0.0, 0.0


def utilisation_data(rp: Replay) -> plots.UtilisationData:
    """Compute hosts (by scope group, then name) before, at the worst wave, and after."""
    idx = [i for i in range(len(rp.host_names)) if rp.compute[i]]
    gname = [rp.groups[rp.host_group[i]] if rp.host_group[i] >= 0 else "-" for i in idx]
    order = sorted(range(len(idx)), key=lambda k: (gname[k], rp.host_names[idx[k]]))
    idx = [idx[k] for k in order]
    gname = [gname[k] for k in order]
    worst = rp.worst_wave()
    steps = [rp.before] + ([worst] if worst is not None else []) + [rp.after]
    labels = ["before"] + ([f"{worst.label} (worst)"] if worst is not None else []) + ["after"]
    unavailable = ~np.array([rp.inventory.hosts[i].available for i in idx], dtype=bool)
    values = np.stack([s.utilisation[idx] for s in steps]) if idx else np.zeros((len(steps), 0, 0))
    down = (
        np.stack([s.down[idx] | unavailable for s in steps]) if idx else np.zeros((len(steps), 0))
    )
    return plots.UtilisationData(
        hosts=[rp.host_names[i] for i in idx],
        groups=gname,
        classes=rp.classes,
        states=labels,
        values=values,
        down=down.astype(bool),
    )


def per_wave_counts(rp: Replay) -> dict[str, list[int]]:
    plan = rp.plan
    repeat: Counter[int] = Counter()
    for ms in rp.moves.values():
        for m in ms[1:]:
            repeat[m.wave] += 1
    return {
        "waves": [w.index for w in plan.waves],
        "live": [sum(1 for m in w.migrations if m.method == "live") for w in plan.waves],
        "cold": [sum(1 for m in w.migrations if m.method == "cold") for w in plan.waves],
        "stops": [len(w.stops) for w in plan.waves],
        "repeat": [repeat[w.index] for w in plan.waves],
    }


def figures(report: Report) -> list[FigureSpec]:
    """The report's figures, in the order they appear."""
    rp, sched, m = report.replay, report.schedule, report.metrics
    kind = "simulated" if sched.source == "simulation" else "estimated (no timeline given)"
    out = [
        FigureSpec(
            "gantt",
            "Schedule",
            f"Timing is {kind}. "
            + (
                "Each row is a host, grouped by wave; the grey bar is its maintenance while it "
                "drains, the green bar its upgrade; each migration is a bar on its source host "
                "(stacked when several run at once)."
                if len(sched.hosts) <= report.max_rows
                else "One row per wave (too many hosts for one row each): blue while every host "
                "of the wave drains, grey while the last ones finish, green for the last "
                "upgrades. Below: migrations in flight and hosts in maintenance over time."
            ),
            plots.gantt_figure(sched, max_rows=report.max_rows),
        ),
        _headroom_spec(report),
        FigureSpec(
            "utilisation",
            "Utilisation per host",
            "Used / effective capacity of each compute host before the upgrade, at the wave with "
            "the tightest headroom and after the last wave. Hatched cells: host in maintenance "
            "(or disabled, down) in that state.",
            plots.utilisation_figure(utilisation_data(rp), max_rows=report.max_rows),
        ),
        FigureSpec(
            "migrations",
            "Migrations per wave",
            "What each wave moves. The line counts migrations that move a VM again after an "
            "earlier wave moved it (a VM sent to a host that is upgraded later).",
            plots.migrations_per_wave_figure(**per_wave_counts(rp)),
        ),
        FigureSpec(
            "bounds",
            "Lower bounds",
            "No plan under this policy can have fewer waves than the longest bar, nor fewer "
            "migrations than the bound; the distance to them is the plan's gap.",
            plots.bounds_figure(
                m["waves"],
                m["lower_bounds"].get("wave_bounds", {}),
                m["migrations"],
                m["lower_bounds"].get("migrations", 0),
            ),
        ),
    ]
    mc = report.montecarlo
    if mc is not None:
        out.append(
            FigureSpec(
                "montecarlo",
                "Monte Carlo",
                f"{mc.runs:,} simulated runs with failures drawn at random: the spread of the "
                "makespan and how often headroom was breached.",
                plots.makespan_figure(
                    mc.makespans_s,
                    breach_probability=mc.breach_probability,
                    lower_bound_s=mc.lower_bound_s,
                ),
            )
        )
    return out


def _headroom_spec(report: Report) -> FigureSpec:
    sampled = headroom_from_timeline(report.timeline) if report.timeline is not None else []
    if sampled:
        return FigureSpec(
            "headroom",
            "Headroom",
            "Free capacity per scope group and resource class over the available hosts that are "
            "not in maintenance, against what the policy requires (N+k largest hosts, reserve %), "
            "as the simulator sampled it during the run (failures included). The circled point "
            "is the tightest.",
            plots.headroom_figure(sampled),
        )
    return FigureSpec(
        "headroom",
        "Headroom",
        "Free capacity per scope group and resource class over the available hosts that are "
        "not in maintenance, against what the policy requires (N+k largest hosts, reserve %). "
        "Each wave is drawn over its span at its end-of-wave state, which bounds every state "
        "within it; the dots are the cloud before the first and after the last wave. The "
        "circled point is the tightest.",
        plots.headroom_figure(headroom_series(report.replay, report.schedule)),
    )


def stopped_rows(report: Report) -> list[dict[str, Any]]:
    """Stopped VMs with their downtime (from the schedule), longest first."""
    inv = report.inventory
    down = {(s.vm, s.wave): s.downtime_s for s in report.schedule.stops}
    rows: list[dict[str, Any]] = []
    for s in report.replay.stops:
        vm = inv.vm(s.vm)
        rows.append(
            {
                "vm": vm.name or vm.id,
                "id": vm.id,
                "host": s.host,
                "wave": s.wave,
                "memory_mb": vm.memory_mb,
                "downtime_s": down.get((s.vm, s.wave)),
            }
        )
    rows.sort(key=lambda r: (-(r["downtime_s"] or 0.0), r["wave"], r["vm"]))
    return rows


def moved_twice_rows(report: Report) -> list[dict[str, Any]]:
    inv = report.inventory
    rows = []
    for vm_id, ms in report.replay.moved_more_than_once().items():
        vm = inv.vm(vm_id)
        rows.append(
            {
                "vm": vm.name or vm.id,
                "id": vm.id,
                "moves": [(m.wave, m.src, m.dst, m.method) for m in ms],
            }
        )
    rows.sort(key=lambda r: (-len(r["moves"]), r["moves"][0][0], r["vm"]))
    return rows


def wave_rows(report: Report) -> list[dict[str, Any]]:
    rp, sched = report.replay, report.schedule
    span = {w.index: w for w in sched.waves}
    counts = per_wave_counts(rp)
    ratio = {s.wave: s.min_ratio() for s in rp.wave_steps}
    rows = []
    for i, w in enumerate(rp.plan.waves):
        sp = span.get(w.index)
        rows.append(
            {
                "index": w.index,
                "hosts": list(w.hosts),
                "live": counts["live"][i],
                "cold": counts["cold"][i],
                "stops": counts["stops"][i],
                "repeat": counts["repeat"][i],
                "start_s": sp.start if sp else None,
                "end_s": sp.end if sp else None,
                "min_headroom_ratio": ratio.get(w.index),
            }
        )
    return rows


def stop_downtime_total(report: Report) -> float:
    return sum(s.downtime_s for s in report.schedule.stops)


def tightest(report: Report) -> tuple[str, float] | None:
    slack: dict[str, float] = report.metrics.get("min_headroom_ratio") or {}
    if not slack:
        return None
    key = min(slack, key=lambda k: slack[k])
    return key, slack[key]


def summary_rows(report: Report) -> list[tuple[str, str]]:
    """The summary table at the top, as (label, value) pairs."""
    m, inv, plan = report.metrics, report.inventory, report.plan
    lb = m.get("lower_bounds", {})
    sched = report.schedule
    computes = len(inv.compute_hosts)
    rows = [
        ("cloud", f"{inv.cloud} (inventory taken {inv.taken_at})"),
        (
            "hosts",
            f"{computes:,} compute in {len(inv.azs)} AZ(s), "
            f"{plural(len(inv.hosts) - computes, 'controller')}; "
            f"{m['hosts_upgraded']:,} upgraded by the plan",
        ),
        ("VMs", f"{len(inv.vms):,}"),
        ("waves", _vs_bound(m["waves"], lb.get("waves"))),
        (
            "migrations",
            f"{m['migrations']:,} ({m['live_migrations']:,} live, "
            f"{m['cold_migrations']:,} cold)" + _bound_only(m["migrations"], lb.get("migrations")),
        ),
        (
            "VMs moved",
            f"{m['vms_moved']:,}; {m['migrations_per_moved_vm']:.3f} migrations per "
            f"moved VM; {m['vms_moved_more_than_once']:,} moved more than once",
        ),
        (
            "VMs stopped in place",
            f"{m['stops']:,}"
            + (
                f", {_duration(stop_downtime_total(report))} of downtime in all"
                if m["stops"]
                else ""
            ),
        ),
        (
            "makespan",
            f"{_duration(sched.makespan_s)} "
            f"({'simulated' if sched.source == 'simulation' else 'estimated'})",
        ),
    ]
    tl = report.timeline
    if tl is not None:
        done = tl.header.get("completed")
        n_inc = {k: len(tl.of(k)) for k in ("failure", "breach", "stall")}
        left = [h.host for h in report.schedule.hosts if not h.ok]
        rows.append(
            (
                "simulated run",
                ("completed" if done is not False else "STALLED: the plan did not finish")
                + f"; {n_inc['failure']} failure(s), {n_inc['breach']} invariant breach(es)"
                + (
                    f"; {plural(len(left), 'host')} NOT upgraded ({shorten(left, 5)})"
                    if left
                    else "; every host upgraded"
                )
                + (f", seed {tl.header['seed']}" if tl.header.get("seed") is not None else ""),
            )
        )
    mc = report.montecarlo
    if mc is not None and mc.runs:
        rows.append(
            (
                "Monte Carlo",
                f"{mc.runs:,} runs: makespan P50 {_duration(mc.percentile(50))}, P95 "
                f"{_duration(mc.percentile(95))}; headroom breached in {mc.breach_probability:.1%} "
                f"of runs, stalled in {mc.stall_probability:.1%}",
            )
        )
    t = tightest(report)
    if t is not None:
        rows.append(("tightest headroom", f"{t[0]}: free = {t[1]:.2f} x required"))
    worst = report.replay.min_absorbable()
    if worst is not None:
        scope = report.plan.policy.headroom.scope
        per = "in each AZ" if scope == "az" else "cloud-wide"
        rows.append(
            (
                "failures absorbed",
                f"at its tightest ({worst[1]}) the cloud could lose its {worst[0]:,} largest "
                f"host(s) {per} and still have room for their VMs (by total free capacity)",
            )
        )
    rows.append(("fullest host after a move", f"{100 * m['max_utilisation']:.1f}%"))
    if lb.get("max_compute_hosts_down") is not None:
        rows.append(
            (
                "headroom allows down at once",
                f"at most {lb['max_compute_hosts_down']:,} compute hosts",
            )
        )
    rows.append(("plan made by", _generator(plan)))
    return rows


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _vs_bound(value: int, bound: int | None) -> str:
    return f"{value:,}" + _bound_only(value, bound)


def _bound_only(value: int, bound: int | None) -> str:
    if not bound:
        return ""
    return f"; lower bound {bound:,}, gap {100 * (value / bound - 1):.1f}%"


def _generator(plan: Plan) -> str:
    g = dict(plan.generator)
    name = g.pop("name", "unknown")
    rest = ", ".join(f"{k} {v}" for k, v in g.items())
    made = f"{name}" + (f" ({rest})" if rest else "")
    return made + (f", {plan.created_at}" if plan.created_at else "")


def _duration(seconds: float) -> str:
    s = max(0.0, float(seconds))
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def duration(seconds: float | None) -> str:
    return "-" if seconds is None else _duration(seconds)


def shorten(items: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
