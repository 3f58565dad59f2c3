"""The report of a side-by-side plan (`rollwave report` on a plan with mode side-by-side): both
clouds on one time axis, from a run of the side-by-side simulation (`sim.crosscloud`, passed
in by the caller as plain data: the core does not import the simulator).

The Gantt: one row per host, in the old cloud until its wave empties it (crossings out of it as
vermillion ticks, moves inside the old cloud as blue ones), then its hand-over (the new control
plane's deployment, or joining as a compute) and its life in the new cloud, or retired; below,
the VMs in each cloud over time and the VMs down (crossing) at once. Beyond `max_rows` hosts,
one row per wave.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from planner import __version__
from planner.checker import CheckReport
from planner.inventory import Inventory
from planner.plan import CROSS_CLOUD, Plan
from planner.report.build import FigureSpec, duration
from planner.report.html import CSS, esc, figure_html, write_page
from planner.report.plots.style import (
    BLUE,
    GREEN,
    GREY,
    ORANGE,
    PURPLE,
    VERMILLION,
    WIDTH,
    png_bytes,
    styled,
    time_unit,
)

OLD, NEW = "#C9DDF0", "#A6DBC9"  # pale blue: in the old cloud; light bluish green: in the new


class TimedMove(Protocol):
    @property
    def vm(self) -> str: ...
    @property
    def wave(self) -> int: ...
    @property
    def method(self) -> str: ...
    @property
    def start_s(self) -> float: ...
    @property
    def end_s(self) -> float: ...
    @property
    def downtime_s(self) -> float: ...


class TimedWave(Protocol):
    @property
    def index(self) -> int: ...
    @property
    def start_s(self) -> float: ...
    @property
    def drained_s(self) -> float: ...
    @property
    def end_s(self) -> float: ...


class SideBySideRun(Protocol):
    """What the report reads of a simulated side-by-side run (`sim.crosscloud`)."""

    @property
    def makespan_s(self) -> float: ...
    @property
    def lower_bound_s(self) -> float: ...
    @property
    def waves(self) -> Sequence[TimedWave]: ...
    @property
    def moves(self) -> Sequence[TimedMove]: ...
    @property
    def control_plane_ready_s(self) -> float | None: ...
    @property
    def old_empty_s(self) -> float: ...
    @property
    def total_downtime_s(self) -> float: ...
    @property
    def worst_downtime_s(self) -> float: ...


@dataclass(frozen=True)
class HandOver:
    """How long a host's hand-over takes after its wave is drained (the model's)."""

    control_plane_s: float
    join_s: float


@dataclass(frozen=True, eq=False)
class SideBySideReport:
    inventory: Inventory
    plan: Plan
    check: CheckReport
    run: SideBySideRun
    hand_over: HandOver
    max_rows: int = 60


@dataclass(frozen=True)
class Lane:
    label: str
    old_end_s: float  # in the old cloud until then (its wave drained)
    drain_start_s: float  # its wave's start
    role: str  # new-controller | new-compute | retired
    ready_s: float  # in its role from then


def lanes(report: SideBySideReport) -> list[Lane]:
    """One lane per host that leaves the old cloud (the plan's order), or per wave beyond
    `max_rows` hosts (its hosts' roles joined)."""
    run, plan, ho = report.run, report.plan, report.hand_over
    times = {w.index: w for w in run.waves}
    out: list[Lane] = []
    hosts = sum(len(w.hosts) for w in plan.waves)
    for w in plan.waves:
        t = times.get(w.index)
        if t is None:
            continue
        roles = [w.roles.get(h, "new-compute") for h in w.hosts]

        def ready(role: str, t: TimedWave = t) -> float:
            if role == "new-controller":
                return t.drained_s + ho.control_plane_s
            if role == "new-compute":
                return t.drained_s + ho.join_s
            return t.drained_s

        if hosts > report.max_rows:
            kinds = sorted(set(roles))
            label = f"wave {w.index} ({len(w.hosts)} host{'s' if len(w.hosts) != 1 else ''})"
            role = kinds[0] if len(kinds) == 1 else "new-compute"
            out.append(Lane(label, t.drained_s, t.start_s, role, max(map(ready, roles))))
            continue
        for h, role in zip(w.hosts, roles, strict=True):
            out.append(Lane(f"{h} (w{w.index})", t.drained_s, t.start_s, role, ready(role)))
    return out


def vms_per_cloud(report: SideBySideReport) -> tuple[list[float], list[int], list[int], list[int]]:
    """Times and, at each, the VMs in the old cloud, in the new cloud and down (crossing)."""
    events: list[tuple[float, int, int]] = []  # (time, d old, d down) at a crossing's ends
    for m in report.run.moves:
        if m.method == CROSS_CLOUD:
            events.append((m.start_s, -1, 1))
            events.append((m.end_s, 0, -1))
    events.sort()
    total = len(report.inventory.vms)
    ts, old, new, down = [0.0], [total], [0], [0]
    o, d = total, 0
    for t, do, dd in events:
        o += do
        d += dd
        ts.append(t)
        old.append(o)
        down.append(d)
        new.append(total - o - d)
    return ts, old, new, down


@styled
def sbs_gantt_figure(report: SideBySideReport) -> Figure:
    run = report.run
    rows = lanes(report)
    end = max(run.makespan_s, 1.0)
    unit, uname = time_unit(end)
    height = min(2.0 + 0.22 * len(rows), 16.0) + 2.6
    fig = Figure(figsize=(WIDTH, height))
    top_h = height - 2.6
    gs = fig.add_gridspec(2, 1, height_ratios=[top_h, 2.2], hspace=0.35)
    ax = fig.add_subplot(gs[0])
    after = {"new-controller": ORANGE, "new-compute": PURPLE, "retired": GREY}
    for y, lane in enumerate(rows):
        ax.barh(y, lane.drain_start_s / unit, left=0, color=OLD, height=0.7)
        ax.barh(
            y,
            (lane.old_end_s - lane.drain_start_s) / unit,
            left=lane.drain_start_s / unit,
            color=OLD,
            hatch="///",
            edgecolor=BLUE,
            linewidth=0,
            height=0.7,
        )
        if lane.role != "retired":
            ax.barh(
                y,
                (lane.ready_s - lane.old_end_s) / unit,
                left=lane.old_end_s / unit,
                color=after[lane.role],
                height=0.7,
            )
            if lane.ready_s < end:
                ax.barh(
                    y, (end - lane.ready_s) / unit, left=lane.ready_s / unit, color=NEW, height=0.7
                )
    # Moves on their source host's lane (per host only).
    if sum(len(w.hosts) for w in report.plan.waves) <= report.max_rows:
        row_of = {lane.label.split(" ")[0]: y for y, lane in enumerate(rows)}
        src = {(w.index, m.vm): m.src for w in report.plan.waves for m in w.migrations}
        for m in run.moves:
            row = row_of.get(src.get((m.wave, m.vm), ""))
            if row is None:
                continue
            colour = VERMILLION if m.method == CROSS_CLOUD else BLUE
            xs = [m.start_s / unit, m.end_s / unit]
            ax.plot(xs, [row, row], color=colour, lw=1.2, alpha=0.6)
    ax.set_yticks(range(len(rows)), [lane.label for lane in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, end / unit * 1.01)
    ax.set_xlabel(f"time ({uname})")
    ax.set_title(
        "Both clouds: each host in the old cloud, its hand-over, then the new cloud", pad=46
    )
    ax.legend(
        handles=[
            Patch(color=OLD, label="old cloud"),
            Patch(facecolor=OLD, hatch="///", edgecolor=BLUE, label="its wave empties it"),
            Patch(color=ORANGE, label="new control plane deploying"),
            Patch(color=PURPLE, label="joining as a compute"),
            Patch(color=NEW, label="new cloud"),
            Patch(color=VERMILLION, label="crossing (VM down)"),
            Patch(color=BLUE, label="move inside the old cloud"),
        ],
        loc="lower center",
        bbox_to_anchor=(0.5, 1.01),
        ncol=4,
    )
    ax.grid(axis="y", visible=False)
    bx = fig.add_subplot(gs[1])
    ts, old, new, down = vms_per_cloud(report)
    x = np.array(ts) / unit
    bx.step(x, old, where="post", color=BLUE, label="VMs in the old cloud")
    bx.step(x, new, where="post", color=GREEN, label="VMs in the new cloud")
    bx.step(x, down, where="post", color=VERMILLION, label="VMs down (crossing)")
    if run.control_plane_ready_s is not None:
        bx.axvline(run.control_plane_ready_s / unit, color=ORANGE, ls="--", lw=1)
    bx.set_xlim(0, end / unit * 1.01)
    bx.set_xlabel(f"time ({uname}); dashed: the new control plane up")
    bx.set_ylabel("VMs")
    bx.legend(loc="center right")
    return fig


def figures(report: SideBySideReport) -> list[FigureSpec]:
    return [
        FigureSpec(
            "sbs-gantt",
            "Both clouds over time",
            "Each host's row: in the old cloud (pale blue) until its wave has emptied it "
            "(hatched), then the new control plane's deployment (orange) or its joining as a "
            "compute (purple), then in the new cloud (green); retired hosts end. Crossings are "
            "vermillion (the VM is down the whole time), moves inside the old cloud blue. "
            "Below: VMs in each cloud and VMs down at once.",
            sbs_gantt_figure(report),
        )
    ]


def summary_rows(report: SideBySideReport) -> list[tuple[str, str]]:
    run, plan = report.run, report.plan
    s = plan.summary or {}
    lb = s.get("lower_bounds") or {}
    cross = sum(1 for _, m in plan.migrations() if m.method == CROSS_CLOUD)
    inside = sum(1 for _, m in plan.migrations() if m.method != CROSS_CLOUD)
    ctl = sorted(h for w in plan.waves for h, r in w.roles.items() if r == "new-controller")
    rows = [
        ("waves", f"{len(plan.waves):,}" + (f" (lower bound {lb['waves']:,})" if lb else "")),
        ("new controllers", ", ".join(ctl) or "-"),
        ("cross-cloud moves", f"{cross:,}"),
        ("moves inside the old cloud", f"{inside:,}"),
    ]
    if "vms_moved_twice" in s:
        rows.append(
            (
                "VMs moved twice",
                f"{s['vms_moved_twice']:,}"
                + (f" (lower bound {lb['vms_moved_twice']:,})" if "vms_moved_twice" in lb else ""),
            )
        )
    rows += [
        ("simulated makespan", f"{duration(run.makespan_s)} (lower bound "
         f"{duration(run.lower_bound_s)})"),
        ("new control plane up", "-" if run.control_plane_ready_s is None
         else duration(run.control_plane_ready_s)),
        ("old cloud empty", duration(run.old_empty_s)),
        ("downtime, total", duration(run.total_downtime_s)),
        ("downtime, worst VM", duration(run.worst_downtime_s)),
    ]  # fmt: skip
    return rows


def _kv(rows: Sequence[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def wave_rows(report: SideBySideReport) -> list[list[object]]:
    times = {w.index: w for w in report.run.waves}
    out: list[list[object]] = []
    for w in report.plan.waves:
        t = times.get(w.index)
        roles: Mapping[str, Any] = w.roles
        kinds = sorted({str(r) for r in roles.values()})
        cross = sum(1 for m in w.migrations if m.method == CROSS_CLOUD)
        out.append(
            [
                w.index,
                len(w.hosts),
                ", ".join(f"{sum(1 for r in roles.values() if r == k)} {k}" for k in kinds),
                cross,
                len(w.migrations) - cross,
                "-" if t is None else duration(t.start_s),
                "-" if t is None else duration(t.end_s),
            ]
        )
    return out


def render_html(report: SideBySideReport, rendered: list[tuple[FigureSpec, bytes]]) -> str:
    inv, chk = report.inventory, report.check
    verdict = (
        '<span class="verdict ok">valid: every rule holds at every wave</span>'
        if chk.ok
        else f'<span class="verdict bad">INVALID: {len(chk.violations):,} violation(s)</span>'
    )
    head = ["wave", "hosts", "roles", "crossings", "moves inside", "start", "end"]
    rows = wave_rows(report)
    table = (
        "<table><tr>"
        + "".join(f"<th>{esc(h)}</th>" for h in head)
        + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
        + "</table>"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>rollwave report: {esc(inv.cloud)} (side by side)</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Side-by-side upgrade plan: {esc(inv.cloud)}</h1>",
        f'<p class="sub">{verdict} &nbsp; checked by rollwave {esc(__version__)}; times from '
        "the side-by-side simulation (expected durations, one run)</p>",
        "<h2>Summary</h2>",
        _kv(summary_rows(report)),
    ]
    if not chk.ok:
        parts.append("<h3>Violations</h3><ul>")
        parts += [f"<li>{esc(v)}</li>" for v in chk.violations[:200]]
        parts.append("</ul>")
    for spec, png in rendered:
        parts.append(f"<h2>{esc(spec.title)}</h2>")
        parts.append(figure_html(spec, png))
    parts += ['<h2 id="waves">Waves</h2>', table, "</body></html>\n"]
    return "\n".join(parts)


def write_sbs_report(
    report: SideBySideReport,
    output: str | os.PathLike[str],
    png_dir: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write the HTML file (atomically) and, with `png_dir`, the figures as PNG there."""
    rendered = [(s, png_bytes(s.figure)) for s in figures(report)]
    return write_page(output, render_html(report, rendered), rendered, png_dir)
