"""The figures' look: the colour-blind-safe palette, the style every figure is drawn under, PNG
output and the units of their axes."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import matplotlib as mpl
from cycler import cycler
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

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
ROLLBACK, SOAK = "#F0C987", "#FFF3C4"  # light orange: rolling back; pale yellow: the soak
WINDOW = "#E8EEF8"  # pale blue: a maintenance window open

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


def no_data(fig: Figure, ax: Any, message: str) -> Figure:
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color=GREY)
    return fig
