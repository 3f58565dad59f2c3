"""The report's figures: matplotlib (Agg, no pyplot state), one function per figure, each taking
plain data so it can be tested on small inputs.

Readable at a glance in a review meeting: 10-11 pt fonts, labelled axes with units, the
Okabe-Ito colour-blind-safe palette (cividis for heatmaps), and an aggregated form of every
per-host figure beyond `max_rows` hosts (2,000 rows of bars help nobody).
"""

from __future__ import annotations

import io
import itertools
import re
import textwrap
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import matplotlib as mpl
import numpy as np
from cycler import cycler
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator
from matplotlib.transforms import blended_transform_factory

from planner.report.schedule import Schedule

# Okabe & Ito (2008), safe for the common colour-vision deficiencies.
BLACK = "#000000"
ORANGE = "#E69F00"
SKY = "#56B4E9"
GREEN = "#009E73"
YELLOW = "#F0E442"
BLUE = "#0072B2"
VERMILLION = "#D55E00"
PURPLE = "#CC79A7"
GREY = "#999999"
PALETTE = (BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY, YELLOW, BLACK)

LIVE, COLD, FAILED, STOPPED = BLUE, ORANGE, VERMILLION, PURPLE
DRAINING, UPGRADING = "#DDDDDD", "#A6DBC9"  # light grey; a light bluish green

STYLE: Any = {  # typed Any: matplotlib types rc keys as a Literal
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.prop_cycle": cycler(color=list(PALETTE)),
    "figure.dpi": 100,
    "svg.hashsalt": "rollwave",
}
WIDTH = 10.0  # inches; 1,100 px at the PNG resolution below
DPI = 110

P = ParamSpec("P")
R = TypeVar("R")


def styled(fn: Callable[P, R]) -> Callable[P, R]:
    """Build the figure under the report's style without touching global rcParams."""

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with mpl.rc_context(STYLE):
            return fn(*args, **kwargs)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG, without the software-version stamp (same figure, same bytes)."""
    buf = io.BytesIO()
    with mpl.rc_context(STYLE):
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------------------------
def time_unit(max_seconds: float) -> tuple[float, str]:
    """(seconds per unit, unit name) for a time axis that reads naturally."""
    if max_seconds >= 2 * 3600:
        return 3600.0, "h"
    if max_seconds >= 120:
        return 60.0, "min"
    return 1.0, "s"


def class_unit(rc: str) -> tuple[float, str]:
    """(divisor, unit) to show amounts of a resource class in an operator's units."""
    if rc == "MEMORY_MB":
        return 1024.0, "GiB"
    if rc == "DISK_GB":
        return 1.0, "GB"
    if rc == "VCPU":
        return 1.0, "vCPU"
    return 1.0, rc


def thousands(ax: Any, axis: str = "y") -> None:
    """Plain numbers with thousands separators (no 1e6 offsets)."""
    fmt = FuncFormatter(lambda v, _pos: f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:g}")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _no_data(fig: Figure, ax: Any, message: str) -> Figure:
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color=GREY)
    return fig


# ---------------------------------------------------------------------------------------------
# Gantt
# ---------------------------------------------------------------------------------------------
@styled
def gantt_figure(schedule: Schedule, *, max_rows: int = 60) -> Figure:
    """Hosts on the y-axis grouped by wave, their maintenance (draining, then upgrading) and each
    migration as a bar on its source host; beyond `max_rows` hosts, one row per wave and the
    migrations in flight over time."""
    if len(schedule.hosts) > max_rows:
        return _gantt_by_wave(schedule)
    hosts = sorted(schedule.hosts, key=lambda h: (h.wave, h.start, h.host))
    scale, unit = time_unit(schedule.makespan_s)
    fig = Figure(figsize=(WIDTH, max(3.0, 0.3 * len(hosts) + 1.8)), layout="constrained")
    ax = fig.add_subplot()
    kind = "simulated" if schedule.source == "simulation" else "estimated"
    ax.set_title(f"Hosts by wave: maintenance and migrations ({kind})", loc="left")
    if not hosts:
        return _no_data(fig, ax, "the plan has no waves")
    row = {h.host: i for i, h in enumerate(hosts)}
    lanes = max((m.lane for m in schedule.migrations), default=0) + 1
    lane_h = 0.64 / lanes
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
    stops = [(s.start / scale, row[s.host]) for s in schedule.stops if s.host in row]
    if stops:
        xs, ys = zip(*stops, strict=True)
        ax.scatter(
            xs, ys, marker="v", s=36, color=STOPPED, zorder=3, edgecolors=BLACK, linewidths=0.5
        )
    # Wave bands: alternate shading and a label on the right.
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
    ax.set_yticks(range(len(hosts)), [h.host for h in hosts])
    for tick, h in zip(ax.get_yticklabels(), hosts, strict=True):
        if not h.ok:
            tick.set_color(FAILED)
    ax.set_ylim(len(hosts) - 0.5, -0.5)
    ax.set_xlim(0, max(schedule.makespan_s / scale, 1e-6) * 1.01)
    ax.set_xlabel(f"time since the start of the upgrade ({unit})")
    ax.set_ylabel("host (grouped by wave)")
    ax.grid(axis="y", visible=False)
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
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4))
    return fig


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
        ],
        loc="outside lower center",
        ncol=3,
    )
    ax.set_xlim(0, max(schedule.makespan_s / scale, 1e-6) * (1.12 if n <= 40 else 1.01))
    return fig


# ---------------------------------------------------------------------------------------------
# Headroom
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeadroomSeries:
    """Free capacity against the requirement of one scope group and class, step by step:
    step i holds from t0[i] to t1[i] (seconds); zero-length steps are drawn as points."""

    group: str
    rc: str
    t0: Sequence[float]
    t1: Sequence[float]
    free: Sequence[float]
    required: Sequence[float]
    labels: Sequence[str]  # e.g. "before", "wave 3", "after"


def _step_xy(
    t0: Sequence[float], t1: Sequence[float], y: Sequence[float]
) -> tuple[list[float], list[float]]:
    xs: list[float] = []
    ys: list[float] = []
    for a, b, v in zip(t0, t1, y, strict=True):
        xs += [a, b]
        ys += [v, v]
    return xs, ys


def natural_key(name: str) -> list[Any]:
    """az2 before az10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


_Worst = tuple[float, float, float, str]  # free / required, x, y, text


def _tightest(
    s: HeadroomSeries,
    x0: list[float],
    x1: list[float],
    y: Sequence[float],
    div: float,
    cunit: str,
    worst: _Worst | None,
) -> _Worst | None:
    for i, (f, r) in enumerate(zip(s.free, s.required, strict=True)):
        if r <= 0:
            continue
        if worst is None or f / r < worst[0]:
            gap = (f - r) / div
            text = (
                f"{s.group}, {s.labels[i]}: free = {f / r:.2f} x required "
                f"({abs(gap):,.1f} {cunit} {'above' if gap >= 0 else 'BELOW'})"
            )
            worst = (f / r, (x0[i] + x1[i]) / 2, y[i], text)
    return worst


def _ratios(s: HeadroomSeries) -> list[float]:
    return [f / r if r > 0 else np.nan for f, r in zip(s.free, s.required, strict=True)]


def _absolute_panel(
    ax: Any, series: list[HeadroomSeries], colour: Mapping[str, str], scale: float, rc: str
) -> _Worst | None:
    div, cunit = class_unit(rc)
    worst: _Worst | None = None
    for s in series:
        x0 = [t / scale for t in s.t0]
        x1 = [t / scale for t in s.t1]
        y = [f / div for f in s.free]
        xs, ys = _step_xy(x0, x1, y)
        ax.plot(xs, ys, color=colour[s.group], lw=1.6, label=f"{s.group} free")
        pts = [(a, v) for a, b, v in zip(x0, x1, y, strict=True) if a == b]
        if pts:
            ax.scatter(*zip(*pts, strict=True), color=colour[s.group], s=18, zorder=3)
        if any(r > 0 for r in s.required):
            xr, yr = _step_xy(x0, x1, [r / div for r in s.required])
            ax.plot(xr, yr, color=colour[s.group], lw=1.2, ls="--", label=f"{s.group} required")
        worst = _tightest(s, x0, x1, y, div, cunit, worst)
    ax.set_ylabel(f"{rc} free ({cunit})")
    return worst


def _ratio_panel(ax: Any, series: list[HeadroomSeries], scale: float, rc: str) -> _Worst | None:
    """Many groups: the band between the loosest and the tightest group, the tightest group at
    each moment, and the one group that gets tightest overall."""
    div, cunit = class_unit(rc)
    worst: _Worst | None = None
    worst_group = None
    for s in series:
        x0 = [t / scale for t in s.t0]
        x1 = [t / scale for t in s.t1]
        before = worst
        worst = _tightest(s, x0, x1, _ratios(s), div, cunit, worst)
        if worst is not before:
            worst_group = s
    grid = sorted({t for s in series for t in (*s.t0, *s.t1)})
    if len(grid) >= 2:
        mids = [(a + b) / 2 for a, b in itertools.pairwise(grid)]
        vals = np.array([[_value_at(s, m) for m in mids] for s in series])
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: nothing required
            lo, hi = np.nanmin(vals, axis=0), np.nanmax(vals, axis=0)
        xs = np.repeat(np.array(grid) / scale, 2)[1:-1]
        ax.fill_between(
            xs,
            np.repeat(lo, 2),
            np.repeat(hi, 2),
            color=SKY,
            alpha=0.35,
            lw=0,
            label=f"range over {len(series)} groups",
        )
        ax.plot(xs, np.repeat(lo, 2), color=BLACK, lw=1.0, label="tightest group at each time")
    if worst_group is not None:
        x0 = [t / scale for t in worst_group.t0]
        x1 = [t / scale for t in worst_group.t1]
        xs2, ys2 = _step_xy(x0, x1, _ratios(worst_group))
        ax.plot(xs2, ys2, color=VERMILLION, lw=1.6, label=f"{worst_group.group} (tightest)")
    ax.axhline(1.0, color=BLACK, ls="--", lw=1.2, label="required (1.0)")
    ax.set_ylabel(f"{rc}\nfree / required")
    return worst


def _value_at(s: HeadroomSeries, t: float) -> float:
    """The ratio of the step that holds at t (NaN outside every step or nothing required)."""
    for a, b, f, r in zip(s.t0, s.t1, s.free, s.required, strict=True):
        if a <= t < b:
            return f / r if r > 0 else float("nan")
    return float("nan")


@styled
def headroom_figure(series: Sequence[HeadroomSeries], *, max_groups: int = 6) -> Figure:
    """One panel per resource class: free capacity per scope group (solid) against what the
    policy requires (dashed, same colour), the tightest point marked. Beyond `max_groups`
    groups, free / required: the band over all groups, the tightest group at each time and the
    group that gets tightest (1.0 is the requirement)."""
    classes = list(dict.fromkeys(s.rc for s in series))
    groups = sorted(dict.fromkeys(s.group for s in series), key=natural_key)
    fig = Figure(figsize=(WIDTH, max(2.8, 2.5 * len(classes) + 0.6)), layout="constrained")
    if not series:
        return _no_data(fig, fig.add_subplot(), "no headroom data")
    axes = fig.subplots(len(classes), 1, sharex=True, squeeze=False)[:, 0]
    ratio = len(groups) > max_groups
    t_max = max(max(s.t1, default=0.0) for s in series)
    scale, unit = time_unit(t_max)
    colour = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}
    for ax, rc in zip(axes, classes, strict=True):
        mine = sorted((s for s in series if s.rc == rc), key=lambda s: natural_key(s.group))
        worst = (
            _ratio_panel(ax, mine, scale, rc)
            if ratio
            else _absolute_panel(ax, mine, colour, scale, rc)
        )
        if worst is not None and np.isfinite(worst[2]):
            bad = worst[0] < 1.0
            ax.scatter(
                [worst[1]],
                [worst[2]],
                marker="o",
                s=110,
                facecolors="none",
                edgecolors=VERMILLION if bad else BLACK,
                linewidths=1.8,
                zorder=4,
                label="tightest point",
            )
            ax.set_title(
                f"{rc}: tightest: {worst[3]}",
                loc="left",
                fontsize=10,
                color=VERMILLION if bad else BLACK,
            )
        ax.set_ylim(bottom=0)
        thousands(ax)
        if len(ax.get_legend_handles_labels()[1]) <= 14:
            ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    axes[-1].set_xlabel(f"time since the start of the upgrade ({unit})")
    fig.suptitle(
        "Headroom per scope group against the policy's requirement",
        x=0.01,
        ha="left",
        fontweight="bold",
        fontsize=11,
    )
    return fig


# ---------------------------------------------------------------------------------------------
# Utilisation
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class UtilisationData:
    """Utilisation (used / effective capacity) of compute hosts in three states."""

    hosts: Sequence[str]
    groups: Sequence[str]  # each host's scope group (AZ or "cloud")
    classes: Sequence[str]
    states: Sequence[str]  # e.g. ("before", "wave 4 (worst)", "after")
    values: np.ndarray[Any, Any]  # (states, hosts, classes)
    down: np.ndarray[Any, Any]  # (states, hosts): in maintenance (or unavailable)


@styled
def utilisation_figure(data: UtilisationData, *, max_rows: int = 60) -> Figure:
    """A heatmap hosts x (class, state); beyond `max_rows` hosts, box plots per class, state and
    scope group (5th-95th percentile whiskers, the fullest host marked)."""
    if len(data.hosts) > max_rows:
        return _utilisation_boxes(data)
    n_h, n_c, n_s = len(data.hosts), len(data.classes), len(data.states)
    fig = Figure(figsize=(WIDTH, max(3.0, 0.28 * n_h + 2.0)), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("Utilisation per host: before, at the worst wave, after", loc="left", pad=22)
    if n_h == 0 or n_c == 0:
        return _no_data(fig, ax, "no compute hosts")
    # columns: class-major, state-minor
    mat = np.transpose(data.values, (1, 2, 0)).reshape(n_h, n_c * n_s) * 100.0
    down = np.repeat(np.transpose(data.down)[:, None, :], n_c, axis=1).reshape(n_h, n_c * n_s)
    shown = np.ma.masked_array(mat, mask=down)
    cmap = mpl.colormaps["cividis"].with_extremes(bad="#FFFFFF", over="#FFFFFF")
    img = ax.imshow(shown, aspect="auto", cmap=cmap, vmin=0, vmax=100, interpolation="nearest")
    for i, j in zip(*np.nonzero(down), strict=True):
        ax.add_patch(
            Rectangle(
                (j - 0.5, i - 0.5), 1, 1, facecolor="#EEEEEE", hatch="///", edgecolor=GREY, lw=0
            )
        )
    if n_h <= 40:
        for i in range(n_h):
            for j in range(n_c * n_s):
                if down[i, j]:
                    ax.text(j, i, "down", ha="center", va="center", fontsize=7, color=GREY)
                    continue
                v = mat[i, j]
                ax.text(
                    j,
                    i,
                    f"{v:.0f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v < 55 else BLACK,
                )
    ax.set_yticks(range(n_h), [f"{h} ({g})" for h, g in zip(data.hosts, data.groups, strict=True)])
    ax.set_xticks(
        range(n_c * n_s), [s for _ in data.classes for s in data.states], rotation=30, ha="right"
    )
    top = ax.secondary_xaxis("top")
    top.set_xticks(
        [(c + 0.5) * n_s - 0.5 for c in range(n_c)], list(data.classes), fontweight="bold"
    )
    top.tick_params(length=0)
    for c in range(1, n_c):
        ax.axvline(c * n_s - 0.5, color="white", lw=3)
    ax.grid(False)
    cb = fig.colorbar(img, ax=ax, fraction=0.04, pad=0.01)
    cb.set_label("utilisation (% of effective capacity)")
    ax.set_ylabel("compute host (scope group)")
    return fig


def _utilisation_boxes(data: UtilisationData) -> Figure:
    groups = list(dict.fromkeys(data.groups))
    per_group = len(groups) <= 4
    fig = Figure(figsize=(WIDTH, 1.0 + 2.6 * len(data.classes)), layout="constrained")
    axes = fig.subplots(len(data.classes), 1, squeeze=False)[:, 0]
    fig.suptitle(
        f"Utilisation of {len(data.hosts):,} compute hosts: before, at the worst wave, after",
        x=0.01,
        ha="left",
        fontsize=11,
        fontweight="bold",
    )
    keys = groups if per_group else ["all"]
    host_group = np.array(list(data.groups))
    width = 0.8 / len(keys)
    for c, (ax, rc) in enumerate(zip(axes, data.classes, strict=True)):
        for g_i, g in enumerate(keys):
            sel = np.ones(len(data.hosts), bool) if g == "all" else host_group == g
            samples = []
            for s in range(len(data.states)):
                vals = data.values[s, sel & ~data.down[s], c] * 100.0
                samples.append(vals if len(vals) else np.array([np.nan]))
            pos = np.arange(len(data.states)) + (g_i - (len(keys) - 1) / 2) * width
            colour = PALETTE[g_i % len(PALETTE)]
            ax.boxplot(
                samples,
                positions=pos,
                widths=width * 0.85,
                whis=(5, 95),
                showfliers=False,
                patch_artist=True,
                boxprops={"facecolor": colour, "alpha": 0.55, "edgecolor": colour},
                medianprops={"color": BLACK},
                whiskerprops={"color": colour},
                capprops={"color": colour},
            )
            ax.scatter(
                pos,
                [np.nanmax(v) if np.isfinite(v).any() else np.nan for v in samples],
                marker="x",
                color=colour,
                s=30,
                zorder=3,
            )
        ax.set_xticks(range(len(data.states)), list(data.states))
        ax.set_ylabel(f"{rc} utilisation (%)")
        ax.set_ylim(0, max(100.0, float(np.nanmax(data.values[..., c], initial=0) * 100) + 5))
        ax.axhline(100, color=GREY, lw=0.8, ls=":")
        if per_group and len(keys) > 1:
            ax.legend(
                handles=[
                    Patch(color=PALETTE[i % len(PALETTE)], alpha=0.55, label=g)
                    for i, g in enumerate(keys)
                ],
                loc="upper left",
                ncol=len(keys),
            )
    return fig


# ---------------------------------------------------------------------------------------------
# Per wave, bounds, Monte Carlo
# ---------------------------------------------------------------------------------------------
@styled
def migrations_per_wave_figure(
    waves: Sequence[int],
    live: Sequence[int],
    cold: Sequence[int],
    stops: Sequence[int],
    repeat: Sequence[int],
) -> Figure:
    """Stacked bars per wave (live, cold migrations, VMs stopped in place) and, as a line, how
    many of the migrations move a VM for the second time or more."""
    fig = Figure(figsize=(WIDTH, 3.4), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("Migrations per wave", loc="left")
    if not waves:
        return _no_data(fig, ax, "the plan has no waves")
    x = np.asarray(waves)
    lv, cd, st = np.asarray(live), np.asarray(cold), np.asarray(stops)
    ax.bar(x, lv, color=LIVE, label="live migrations", width=0.8)
    ax.bar(x, cd, bottom=lv, color=COLD, label="cold migrations", width=0.8)
    ax.bar(x, st, bottom=lv + cd, color=STOPPED, label="VMs stopped in place", width=0.8)
    if any(repeat):
        ax.plot(
            x, repeat, color=BLACK, marker="o", ms=3.5, lw=1.2, label="of which a VM's 2nd+ move"
        )
    ax.set_xlabel("wave")
    ax.set_ylabel("VMs")
    step = max(1, len(waves) // 25)
    ax.set_xticks(x[::step])
    ax.set_ylim(0, max(1.0, float((lv + cd + st).max())) * 1.25)
    thousands(ax)
    ax.legend(loc="upper left", ncol=4)
    ax.grid(axis="x", visible=False)
    return fig


@styled
def bounds_figure(
    waves: int, wave_bounds: Mapping[str, int], migrations: int, migration_bound: int
) -> Figure:
    """Each lower bound on waves (bars) against the plan's waves (line), and migrations against
    their bound: what the gap is measured from."""
    fig = Figure(figsize=(WIDTH, max(2.6, 0.4 * len(wave_bounds) + 1.8)), layout="constrained")
    ax, ax2 = fig.subplots(1, 2, width_ratios=[3, 1.3])
    ax.set_title("Lower bounds on waves", loc="left")
    names = list(wave_bounds) or ["(none)"]
    values = [wave_bounds.get(n, 0) for n in names]
    y = np.arange(len(names))
    ax.barh(y, values, color=SKY, label="lower bound")
    for yi, v in zip(y, values, strict=True):
        ax.text(v, yi, f" {v:,}", va="center", fontsize=9)
    ax.axvline(waves, color=VERMILLION, lw=2, label=f"plan: {waves} waves")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("waves")
    ax.legend(loc="lower right")
    ax.grid(axis="y", visible=False)
    ax2.set_title("Migrations", loc="left")
    ax2.bar([0, 1], [migration_bound, migrations], color=[SKY, VERMILLION])
    ax2.set_xticks([0, 1], ["lower bound", "plan"])
    ax2.set_ylabel("migrations")
    ax2.grid(axis="x", visible=False)
    for i, v in enumerate([migration_bound, migrations]):
        ax2.text(i, v, f"{v:,}", ha="center", va="bottom", fontsize=9)
    return fig


@styled
def makespan_figure(
    makespans_s: Sequence[float],
    *,
    breach_probability: float | None = None,
    lower_bound_s: float | None = None,
) -> Figure:
    """Monte Carlo: the distribution of the makespan with its P50, P95 and P99."""
    fig = Figure(figsize=(WIDTH, 3.4), layout="constrained")
    ax = fig.add_subplot()
    runs = len(makespans_s)
    title = f"Makespan over {runs:,} simulated runs"
    if breach_probability is not None:
        title += f"; P(headroom breach) = {breach_probability:.1%}"
    ax.set_title(title, loc="left")
    if not runs:
        return _no_data(fig, ax, "no runs")
    v = np.asarray(makespans_s, float)
    scale, unit = time_unit(float(v.max()))
    ax.hist(v / scale, bins=min(40, max(5, runs // 5)), color=SKY, edgecolor="white")
    for q, ls in ((50, "-"), (95, "--"), (99, ":")):
        x = float(np.percentile(v, q)) / scale
        ax.axvline(x, color=BLACK, ls=ls, lw=1.4, label=f"P{q} = {x:,.2f} {unit}")
    if lower_bound_s:
        ax.axvline(
            lower_bound_s / scale,
            color=VERMILLION,
            lw=1.4,
            label=f"lower bound = {lower_bound_s / scale:,.2f} {unit}",
        )
    ax.set_xlabel(f"makespan ({unit})")
    ax.set_ylabel("runs")
    ax.legend(loc="upper right")
    return fig


# ---------------------------------------------------------------------------------------------
# What-if trade-off
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TradeoffPoint:
    label: str
    makespan_s: float  # P50 when simulated, else the estimate
    makespan_p95_s: float | None
    breach_probability: float | None
    failures_absorbed: int | None  # largest-host failures absorbable at the worst wave


def pareto(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (lower is better)."""
    out = []
    for i, (x, y) in enumerate(points):
        if not any(
            (x2 <= x and y2 <= y) and (x2 < x or y2 < y)
            for j, (x2, y2) in enumerate(points)
            if j != i
        ):
            out.append(i)
    return sorted(out, key=lambda i: points[i])


def label_spots(
    xs: np.ndarray[Any, Any],
    ys: np.ndarray[Any, Any],
    labels: Sequence[str],
    shown: Sequence[int],
    tol_frac: float = 0.05,
) -> list[tuple[float, float, list[str]]]:
    """Group labels of points at the same y whose x are within `tol_frac` of the x range of the
    previous one: one annotation per group, at its first point."""
    span = float(xs.max() - xs.min()) if len(xs) else 0.0
    tol = tol_frac * (span or 1.0)
    out: list[tuple[float, float, list[str]]] = []
    last_x = float("nan")
    for i in sorted(shown, key=lambda i: (float(ys[i]), float(xs[i]))):
        x, y = float(xs[i]), float(ys[i])
        if out and out[-1][1] == y and x - last_x <= tol:  # chained: near the previous point
            out[-1][2].append(labels[i])
        else:
            out.append((x, y, [labels[i]]))
        last_x = x
    return out


@styled
def tradeoff_figure(
    points: Sequence[TradeoffPoint],
    infeasible: Sequence[tuple[str, str]] = (),
    *,
    title: str = "What-if: makespan against risk",
    key_order: str = "",
    max_labels: int = 24,
) -> Figure:
    """Makespan against risk for every feasible combination: the probability of a headroom
    breach (when simulated) and how many of its largest hosts the cloud could lose at its
    tightest moment (fewer is riskier, comparable across policies), the Pareto-best combinations
    joined. Point labels are the combinations' values in `key_order`; combinations without a plan
    are listed below."""
    simulated = any(p.breach_probability is not None for p in points)
    n_panels = 2 if simulated else 1
    extra = 0.16 * min(len(infeasible), 9) + 0.25 if infeasible else 0.0
    fig = Figure(figsize=(WIDTH, 4.2 + extra), layout="constrained")
    gs = fig.add_gridspec(
        2 if infeasible else 1, n_panels, height_ratios=[4.2, extra] if infeasible else [1]
    )
    axes = [fig.add_subplot(gs[0, i]) for i in range(n_panels)]
    fig.suptitle(
        title + (f"\npoint labels: {key_order}" if key_order else ""),
        x=0.01,
        ha="left",
        fontsize=11,
        fontweight="bold",
    )
    if not points:
        _no_data(fig, axes[0], "no combination has a plan")
    else:
        scale, unit = time_unit(max(p.makespan_p95_s or p.makespan_s for p in points))
        panels: list[tuple[Any, str, Callable[[TradeoffPoint], float | None], bool]] = []
        if simulated:
            panels.append((axes[0], "P(headroom breach)", lambda p: p.breach_probability, False))
        panels.append(
            (
                axes[-1],
                "host failures absorbed at the worst wave",
                lambda p: p.failures_absorbed,
                True,
            )
        )
        for ax, ylabel, get, higher_is_safer in panels:
            pts = [(p, get(p)) for p in points]
            pts = [(p, y) for p, y in pts if y is not None]
            if not pts:
                _no_data(fig, ax, f"no {ylabel}")
                continue
            xs = np.array([p.makespan_s / scale for p, _ in pts])
            ys = np.array([float(y) for _, y in pts])  # type: ignore[arg-type]
            for (p, _), x, y in zip(pts, xs, ys, strict=True):
                if p.makespan_p95_s is not None:
                    ax.plot([x, p.makespan_p95_s / scale], [y, y], color=GREY, lw=1.0)
            ax.scatter(
                xs,
                ys,
                s=40,
                color=BLUE,
                zorder=3,
                label="combination (P50)" if simulated else "combination",
            )
            risk = -ys if higher_is_safer else ys
            front = pareto(list(zip(xs.tolist(), risk.tolist(), strict=True)))
            ax.plot(
                xs[front],
                ys[front],
                color=VERMILLION,
                lw=1.5,
                marker="o",
                ms=7,
                mfc="none",
                label="best trade-offs",
                zorder=4,
            )
            # one label per spot: combinations that land (nearly) on the same point share it
            shown = list(range(len(pts))) if len(pts) <= max_labels else list(front)
            names_all = [pts[i][0].label for i in range(len(pts))]
            # a label is about 1.1% of a full-width axis per character: keep them apart
            longest = max(len(n) for n in names_all)
            frac = min(0.3, 0.011 * longest * n_panels)
            for x, y, names in label_spots(xs, ys, names_all, shown, frac):
                text = "\n".join(names[:4]) + (
                    f"\n+{len(names) - 4} more" if len(names) > 4 else ""
                )
                ax.annotate(
                    text,
                    (x, y),
                    textcoords="offset points",
                    xytext=(6, 3),
                    fontsize=7.5,
                    va="bottom",
                )
            ax.margins(x=0.08, y=0.22)
            if higher_is_safer:
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            else:  # a probability
                ax.set_ylim(0, max(0.05, float(ys.max()) * 1.3))
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.0%}"))
            ax.set_xlabel(f"makespan ({unit}{', P50 to P95' if simulated else ', estimated'})")
            ax.set_ylabel(ylabel)
            ax.legend(loc="best", fontsize=8)
    if infeasible:
        lines = [
            textwrap.shorten(f"no plan: {label}: {reason}", 160, placeholder=" ...")
            for label, reason in infeasible[:8]
        ]
        if len(infeasible) > 8:
            lines.append(f"... and {len(infeasible) - 8} more")
        tax = fig.add_subplot(gs[1, :])
        tax.set_axis_off()
        tax.text(
            0.0,
            1.0,
            "\n".join(lines),
            fontsize=8,
            va="top",
            color=VERMILLION,
            transform=tax.transAxes,
            in_layout=False,
        )
    return fig
