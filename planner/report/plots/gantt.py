"""The schedule: hosts by wave with their maintenance and migrations, or waves over time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from planner.report.calendar import Compressed, compress, hours, ticks
from planner.report.plots.style import (
    BLACK,
    COLD,
    DRAINING,
    FAILED,
    GREY,
    LIVE,
    ORANGE,
    ROLLBACK,
    SOAK,
    STOPPED,
    UPGRADING,
    WIDTH,
    WINDOW,
    no_data,
    plural,
    styled,
    thousands,
    time_unit,
)
from planner.report.schedule import HostSpan, Schedule


@styled
def gantt_figure(schedule: Schedule, *, max_rows: int = 60) -> Figure:
    """Hosts on the y-axis grouped by wave, their maintenance (draining, then upgrading) and each
    migration as a bar on its source host; beyond `max_rows` hosts, one row per wave and the
    migrations in flight over time. A schedule in the calendar is drawn against dates, its
    windows shaded and the closed hours between them compressed (`planner.report.calendar`)."""
    comp = None
    if schedule.calendar is not None:
        schedule, comp = compress(schedule)
    if len(schedule.hosts) > max_rows:
        fig = _gantt_by_wave(schedule)
        if comp is not None:
            for a in fig.axes:
                _calendar(a, comp, time_unit(schedule.makespan_s)[0], labels=a is fig.axes[-1])
        return fig
    hosts = sorted(schedule.hosts, key=lambda h: (h.wave, h.start, h.host))
    scale, unit = time_unit(schedule.makespan_s)
    fig = Figure(figsize=(WIDTH, max(3.0, 0.3 * len(hosts) + 1.8)), layout="constrained")
    ax = fig.add_subplot()
    kind = "simulated" if schedule.source == "simulation" else "estimated"
    ax.set_title(f"Hosts by wave: maintenance and migrations ({kind})", loc="left")
    if not hosts:
        return no_data(fig, ax, "the plan has no waves")
    row = {h.host: i for i, h in enumerate(hosts)}
    _maintenance_bars(ax, hosts, scale)
    _migration_bars(ax, schedule, row, scale)
    for r in schedule.rollbacks:
        if r.host in row:
            ax.broken_barh(
                [(r.start / scale, (r.end - r.start) / scale)],
                (row[r.host] - 0.4, 0.8),
                facecolors=ROLLBACK,
                edgecolors=FAILED,
                linewidth=0.8,
            )
    _soak_bands(ax, schedule, scale)
    stops = [(s.start / scale, row[s.host]) for s in schedule.stops if s.host in row]
    if stops:
        xs, ys = zip(*stops, strict=True)
        ax.scatter(
            xs, ys, marker="v", s=36, color=STOPPED, zorder=3, edgecolors=BLACK, linewidths=0.5
        )
    _wave_bands(ax, hosts)
    ax.set_yticks(range(len(hosts)), [h.host for h in hosts])
    for tick, h in zip(ax.get_yticklabels(), hosts, strict=True):
        if not h.ok:
            tick.set_color(FAILED)
    ax.set_ylim(len(hosts) - 0.5, -0.5)
    ax.set_xlim(0, max(schedule.makespan_s / scale, 1e-6) * 1.01)
    ax.set_xlabel(f"time since the start of the upgrade ({unit})")
    ax.set_ylabel("host (grouped by wave)")
    ax.grid(axis="y", visible=False)
    handles = _gantt_legend(ax, schedule, bool(stops))
    if comp is not None:
        _calendar(ax, comp, scale)
        handles.append(Patch(color=WINDOW, label="maintenance window open"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4))
    return fig


def _calendar(ax: Any, comp: Compressed, scale: float, *, labels: bool = True) -> None:
    """Dates on the x axis, each window's opening shaded, each compressed closed stretch
    hatched with its real length."""
    for a, b in comp.drawn_openings():
        ax.axvspan(a / scale, b / scale, color=WINDOW, zorder=0, lw=0)
    top = blended_transform_factory(ax.transData, ax.transAxes)
    for x0, x1, closed in comp.gaps:
        ax.axvspan(x0 / scale, x1 / scale, facecolor="white", edgecolor=GREY, hatch="//", lw=0)
        if labels:
            ax.text(
                (x0 + x1) / 2 / scale,
                0.5,
                hours(closed),
                transform=top,
                ha="center",
                va="center",
                fontsize=8,
                color=BLACK,
                rotation=90,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.5},
                clip_on=True,
            )
    if labels:
        marks = ticks(comp, scale)
        ax.set_xticks([x for x, _ in marks], [label for _, label in marks], fontsize=7)
        zone = f"{comp.axis.start:%Z}" or f"{comp.axis.start:%z}"
        ax.set_xlabel(f"date and time ({zone}); closed hours between windows compressed")


def _maintenance_bars(ax: Any, hosts: Sequence[HostSpan], scale: float) -> None:
    """Each host's row: draining, then upgrading; a host not upgraded outlined and hatched."""
    for i, h in enumerate(hosts):
        ax.broken_barh(
            [(h.start / scale, (h.drained - h.start) / scale)],
            (i - 0.4, 0.8),
            facecolors=DRAINING,
            edgecolors="none",
        )
        ax.broken_barh(
            [(h.drained / scale, (h.end - h.drained) / scale)],
            (i - 0.4, 0.8),
            facecolors=UPGRADING if h.ok else FAILED,
            edgecolors="none",
            alpha=1.0 if h.ok else 0.35,
        )
        if not h.ok:  # not upgraded: outline the whole stay in maintenance
            ax.broken_barh(
                [(h.start / scale, (h.end - h.start) / scale)],
                (i - 0.42, 0.84),
                facecolors="none",
                edgecolors=FAILED,
                hatch="//",
                linewidth=1.2,
            )


def _migration_bars(ax: Any, schedule: Schedule, row: dict[str, int], scale: float) -> None:
    """Each migration on its source host's row, in its lane (stacked when several run at once);
    one draw call per row, lane and colour."""
    lanes = max((m.lane for m in schedule.migrations), default=0) + 1
    lane_h = 0.64 / lanes
    bars: dict[tuple[int, int, str], list[tuple[float, float]]] = {}
    for m in schedule.migrations:
        if m.src not in row:
            continue
        colour = FAILED if not m.ok else LIVE if m.method == "live" else COLD
        bars.setdefault((row[m.src], m.lane, colour), []).append(
            (m.start / scale, max((m.end - m.start) / scale, 1e-9))
        )
    for (i, lane, colour), spans in bars.items():
        y = i - 0.32 + lane * lane_h
        ax.broken_barh(
            spans,
            (y + 0.08 * lane_h, 0.84 * lane_h),
            facecolors=colour,
            edgecolors="white",
            linewidth=0.3,
        )


def _wave_bands(ax: Any, hosts: Sequence[HostSpan]) -> None:
    """Alternate shading per wave, a line between waves and the wave's label on the right."""
    trans = blended_transform_factory(ax.transAxes, ax.transData)
    start = 0
    while start < len(hosts):
        w = hosts[start].wave
        end = start
        while end < len(hosts) and hosts[end].wave == w:
            end += 1
        if w % 2 == 0:
            ax.axhspan(start - 0.5, end - 0.5, color="#F4F4F4", zorder=0, lw=0)
        ax.text(
            1.005,
            (start + end - 1) / 2,
            f"wave {w}",
            transform=trans,
            va="center",
            ha="left",
            fontsize=9,
            clip_on=False,
        )
        if start:
            ax.axhline(start - 0.5, color=GREY, lw=0.6)
        start = end


def _gantt_legend(ax: Any, schedule: Schedule, stops: bool) -> list[Any]:
    """The legend's entries: always the maintenance and migration kinds, the rest when drawn."""
    handles: list[Any] = [
        Patch(color=DRAINING, label="host in maintenance, draining"),
        Patch(color=UPGRADING, label="host upgrading"),
        Patch(color=LIVE, label="live migration"),
        Patch(color=COLD, label="cold migration"),
    ]
    if any(not m.ok for m in schedule.migrations):
        handles.append(Patch(color=FAILED, label="failed migration attempt"))
    if any(not h.ok for h in schedule.hosts):
        handles.append(
            Patch(facecolor="none", edgecolor=FAILED, hatch="//", label="host not upgraded")
        )
    if schedule.rollbacks:
        handles.append(Patch(facecolor=ROLLBACK, edgecolor=FAILED, label="host rolling back"))
    if schedule.soaks:
        handles.append(Patch(color=SOAK, label="canary soak (nothing else runs)"))
    if stops:
        handles.append(
            ax.scatter(
                [],
                [],
                marker="v",
                color=STOPPED,
                edgecolors=BLACK,
                linewidths=0.5,
                label="VM stopped in place",
            )
        )
    return handles


def in_flight(
    starts: Sequence[float], ends: Sequence[float]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Step function (times, count) of how many intervals are open at each time."""
    if not len(starts):
        return np.array([0.0]), np.array([0])
    t = np.concatenate([np.asarray(starts, float), np.asarray(ends, float)])
    d = np.concatenate([np.ones(len(starts), int), -np.ones(len(ends), int)])
    order = np.lexsort((d, t))  # at equal times, ends (-1) before starts
    return t[order], np.cumsum(d[order])


def _soak_bands(ax: Any, schedule: Schedule, scale: float) -> None:
    """The canary's soak: a band across every row (the run waits; it is in the makespan)."""
    for s in schedule.soaks:
        ax.axvspan(s.start / scale, s.end / scale, color=SOAK, zorder=0, lw=0)
        ax.text(
            (s.start + s.end) / 2 / scale,
            0.0,
            "soak",
            transform=blended_transform_factory(ax.transData, ax.transAxes),
            ha="center",
            va="bottom",
            fontsize=8,
            color=GREY,
        )


def _gantt_by_wave(schedule: Schedule) -> Figure:
    scale, unit = time_unit(schedule.makespan_s)
    waves = list(schedule.waves)
    n = len(waves)
    top_h = min(9.0, max(2.0, 0.22 * n + 1.0))
    fig = Figure(figsize=(WIDTH, top_h + 2.6), layout="constrained")
    ax, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[top_h, 2.2])
    kind = "simulated" if schedule.source == "simulation" else "estimated"
    ax.set_title(
        f"Waves over time ({kind}; {len(schedule.hosts):,} hosts, "
        f"{len(schedule.migrations):,} migrations)",
        loc="left",
    )
    by_wave: dict[int, list[float]] = {}
    count: dict[int, int] = {}
    for h in schedule.hosts:
        by_wave.setdefault(h.wave, []).append(h.drained)
        count[h.wave] = count.get(h.wave, 0) + 1
    failed: dict[int, int] = {}
    for h in schedule.hosts:
        if not h.ok:
            failed[h.wave] = failed.get(h.wave, 0) + 1
    migr: dict[int, int] = {}
    for m in schedule.migrations:
        migr[m.wave] = migr.get(m.wave, 0) + 1
    for i, w in enumerate(waves):
        drained = max(by_wave.get(w.index, [w.start]))
        first = min(by_wave.get(w.index, [w.start]))
        ax.broken_barh(
            [(w.start / scale, (drained - w.start) / scale)],
            (i - 0.4, 0.8),
            facecolors=DRAINING,
            edgecolors="none",
        )
        # The part of the drain where every host of the wave is still draining.
        ax.broken_barh(
            [(w.start / scale, (first - w.start) / scale)],
            (i - 0.4, 0.8),
            facecolors=LIVE,
            edgecolors="none",
            alpha=0.55,
        )
        ax.broken_barh(
            [(drained / scale, (w.end - drained) / scale)],
            (i - 0.4, 0.8),
            facecolors=UPGRADING,
            edgecolors="none",
        )
        if n <= 40:
            ax.text(
                w.end / scale,
                i,
                f"  {plural(count.get(w.index, 0), 'host')}, "
                f"{plural(migr.get(w.index, 0), 'migration')}"
                + (f", {failed[w.index]} NOT upgraded" if failed.get(w.index) else ""),
                va="center",
                fontsize=8,
            )
    step = max(1, n // 30)
    ax.set_yticks(range(0, n, step), [f"wave {w.index}" for w in waves][::step])
    ax.set_ylim(n - 0.5, -0.5)
    ax.grid(axis="y", visible=False)
    _soak_bands(ax, schedule, scale)
    t, c = in_flight([m.start for m in schedule.migrations], [m.end for m in schedule.migrations])
    (l1,) = ax2.step(t / scale, c, where="post", color=LIVE, lw=1.0, label="migrations in flight")
    th, ch = in_flight([h.start for h in schedule.hosts], [h.end for h in schedule.hosts])
    (l2,) = ax2.step(
        th / scale, ch, where="post", color=ORANGE, lw=1.0, label="hosts in maintenance"
    )
    ax2.set_ylabel("count")
    ax2.set_xlabel(f"time since the start of the upgrade ({unit})")
    ax2.set_ylim(bottom=0)
    thousands(ax2)
    fig.legend(
        handles=[
            Patch(color=LIVE, alpha=0.55, label="every host of the wave draining"),
            Patch(color=DRAINING, label="some hosts still draining"),
            Patch(color=UPGRADING, label="last hosts upgrading"),
            l1,
            l2,
            *([Patch(color=SOAK, label="canary soak")] if schedule.soaks else []),
        ],
        loc="outside lower center",
        ncol=3,
    )
    ax.set_xlim(0, max(schedule.makespan_s / scale, 1e-6) * (1.12 if n <= 40 else 1.01))
    return fig
