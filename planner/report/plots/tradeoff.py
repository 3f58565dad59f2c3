"""What-if: makespan against risk for every combination of a sweep, the best trade-offs joined."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from planner.report.plots.style import (
    BLUE,
    GREY,
    VERMILLION,
    WIDTH,
    no_data,
    styled,
    time_unit,
)

TITLE = "What-if: makespan against risk"


@dataclass(frozen=True)
class TradeoffPoint:
    label: str
    makespan_s: float  # P50 when simulated, else the estimate
    makespan_p95_s: float | None
    breach_probability: float | None
    failures_absorbed: int | None  # largest-host failures absorbable at the worst wave
    predicted_makespan_s: float | None = None  # the plan's own (predicted, as `execution`)
    downtime_s: float | None = None  # every guest's predicted downtime, summed
    execution: str | None = None  # how the predicted makespan runs: pipelined or lockstep


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
    title: str = TITLE,
    key_order: str = "",
    max_labels: int = 24,
) -> Figure:
    """Makespan against risk for every feasible combination: the probability of a headroom
    breach (when simulated) and how many of its largest hosts the cloud could lose at its
    tightest moment (fewer is riskier, comparable across policies), the Pareto-best combinations
    joined. Point labels are the combinations' values in `key_order`; combinations without a plan
    are listed below."""
    simulated = any(p.breach_probability is not None for p in points)
    downtime = any(p.downtime_s is not None and p.predicted_makespan_s for p in points)
    n_panels = (2 if simulated else 1) + (1 if downtime else 0)
    extra = 0.16 * min(len(infeasible), 9) + 0.25 if infeasible else 0.0
    fig = Figure(figsize=(WIDTH, 4.2 + extra), layout="constrained")
    gs = fig.add_gridspec(
        2 if infeasible else 1, n_panels, height_ratios=[4.2, extra] if infeasible else [1]
    )
    axes = [fig.add_subplot(gs[0, i]) for i in range(n_panels)]
    if downtime and title == TITLE:
        title += " and downtime"
    fig.suptitle(
        title + (f"\npoint labels: {key_order}" if key_order else ""),
        x=0.01,
        ha="left",
        fontsize=11,
        fontweight="bold",
    )
    if not points:
        no_data(fig, axes[0], "no combination has a plan")
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
        if downtime:
            panels[-1] = (axes[-2], *panels[-1][1:])
        for ax, ylabel, get, higher_is_safer in panels:
            pts = [(p, get(p)) for p in points]
            pts = [(p, y) for p, y in pts if y is not None]
            if not pts:
                no_data(fig, ax, f"no {ylabel}")
                continue
            _risk_panel(ax, pts, higher_is_safer, scale, simulated, n_panels, max_labels)
            ax.set_xlabel(f"makespan ({unit}{', P50 to P95' if simulated else ', estimated'})")
            ax.set_ylabel(ylabel)
            ax.legend(loc="best", fontsize=8)
        if downtime:
            _downtime_panel(axes[-1], points, n_panels, max_labels)
    if infeasible:
        _no_plan_list(fig.add_subplot(gs[1, :]), infeasible)
    return fig


def _risk_panel(
    ax: Any,
    pts: Sequence[tuple[TradeoffPoint, float | None]],
    higher_is_safer: bool,
    scale: float,
    simulated: bool,
    n_panels: int,
    max_labels: int,
    probability: bool = True,
) -> None:
    """One panel: each combination at (makespan, risk), P50 to P95 as a line when simulated, the
    best trade-offs joined, and labels that do not overlap. `probability`: the risk is one (an
    axis of percentages)."""
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
        text = "\n".join(names[:4]) + (f"\n+{len(names) - 4} more" if len(names) > 4 else "")
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
    elif not probability:
        ax.set_ylim(0, max(1e-9, float(ys.max())) * 1.3)
    else:
        ax.set_ylim(0, max(0.05, float(ys.max()) * 1.3))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.0%}"))


def _downtime_panel(
    ax: Any, points: Sequence[TradeoffPoint], n_panels: int, max_labels: int
) -> None:
    """Every guest's predicted downtime against the plan's predicted makespan (pipelined or
    lock-step, as each policy runs): the remedies' trade-off (force-complete pauses briefly, cold
    copies with the guest off, stop keeps it down through its host's maintenance)."""
    pts = [p for p in points if p.downtime_s is not None and p.predicted_makespan_s]
    scale, unit = time_unit(max(p.predicted_makespan_s or 0.0 for p in pts))
    moved = [replace(p, makespan_s=p.predicted_makespan_s or 0.0, makespan_p95_s=None) for p in pts]
    dscale, dunit = time_unit(max(p.downtime_s or 0.0 for p in pts))
    _risk_panel(
        ax,
        [(p, (p.downtime_s or 0.0) / dscale) for p in moved],
        False,
        scale,
        False,
        n_panels,
        max_labels,
        probability=False,
    )
    ax.xaxis.set_major_locator(MaxNLocator(4))
    runs = {p.execution for p in pts}
    how = (
        "pipelined"
        if runs == {"pipelined"}
        else "lock-step"
        if runs == {"lockstep"}
        else "as each policy runs"
    )
    ax.set_xlabel(f"makespan ({unit}, predicted, {how})")
    ax.set_ylabel(f"predicted downtime, all VMs ({dunit})")
    ax.legend(loc="best", fontsize=8)


def _no_plan_list(tax: Any, infeasible: Sequence[tuple[str, str]]) -> None:
    """The combinations without a plan, with their outcome, under the panels."""
    lines = [
        textwrap.shorten(f"no plan: {label}: {reason}", 160, placeholder=" ...")
        for label, reason in infeasible[:8]
    ]
    if len(infeasible) > 8:
        lines.append(f"... and {len(infeasible) - 8} more")
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
