"""Utilisation per host before, at the worst wave and after: a heatmap, or box plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from planner.report.plots.style import (
    BLACK,
    GREY,
    PALETTE,
    WIDTH,
    no_data,
    styled,
)


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
        return no_data(fig, ax, "no compute hosts")
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
