"""The small charts: migrations per wave, the lower bounds, the Monte Carlo makespan."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from planner.report.plots.style import (
    BLACK,
    COLD,
    LIVE,
    SKY,
    STOPPED,
    VERMILLION,
    WIDTH,
    no_data,
    styled,
    thousands,
    time_unit,
)


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
        return no_data(fig, ax, "the plan has no waves")
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
        return no_data(fig, ax, "no runs")
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
