"""Headroom over time: free capacity per scope group against what the policy requires."""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from planner.report.plots.style import (
    BLACK,
    PALETTE,
    SKY,
    VERMILLION,
    WIDTH,
    class_unit,
    no_data,
    styled,
    thousands,
    time_unit,
)


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
        return no_data(fig, fig.add_subplot(), "no headroom data")
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
