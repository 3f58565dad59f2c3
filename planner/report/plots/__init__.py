"""The report's figures: matplotlib (Agg, no pyplot state), one function per figure, each taking
plain data so it can be tested on small inputs. One module per family of figures: `gantt` (the
schedule), `headroom`, `utilisation`, `charts` (migrations per wave, lower bounds, Monte Carlo),
`tradeoff` (what-ifs); `style` holds their look, PNG output and units.

Readable at a glance in a review meeting: 10-11 pt fonts, labelled axes with units, the
Okabe-Ito colour-blind-safe palette (cividis for heatmaps), and an aggregated form of every
per-host figure beyond `max_rows` hosts (2,000 rows of bars help nobody).
"""

from planner.report.plots.charts import bounds_figure, makespan_figure, migrations_per_wave_figure
from planner.report.plots.gantt import gantt_figure, in_flight
from planner.report.plots.headroom import HeadroomSeries, headroom_figure, natural_key
from planner.report.plots.style import (
    BLACK,
    BLUE,
    COLD,
    DPI,
    DRAINING,
    FAILED,
    GREEN,
    GREY,
    LIVE,
    ORANGE,
    PALETTE,
    PURPLE,
    ROLLBACK,
    SKY,
    SOAK,
    STOPPED,
    STYLE,
    UPGRADING,
    VERMILLION,
    WIDTH,
    YELLOW,
    class_unit,
    plural,
    png_bytes,
    styled,
    thousands,
    time_unit,
)
from planner.report.plots.tradeoff import TradeoffPoint, label_spots, pareto, tradeoff_figure
from planner.report.plots.utilisation import UtilisationData, utilisation_figure

__all__ = [
    "BLACK",
    "BLUE",
    "COLD",
    "DPI",
    "DRAINING",
    "FAILED",
    "GREEN",
    "GREY",
    "LIVE",
    "ORANGE",
    "PALETTE",
    "PURPLE",
    "ROLLBACK",
    "SKY",
    "SOAK",
    "STOPPED",
    "STYLE",
    "UPGRADING",
    "VERMILLION",
    "WIDTH",
    "YELLOW",
    "HeadroomSeries",
    "TradeoffPoint",
    "UtilisationData",
    "bounds_figure",
    "class_unit",
    "gantt_figure",
    "headroom_figure",
    "in_flight",
    "label_spots",
    "makespan_figure",
    "migrations_per_wave_figure",
    "natural_key",
    "pareto",
    "plural",
    "png_bytes",
    "styled",
    "thousands",
    "time_unit",
    "tradeoff_figure",
    "utilisation_figure",
]
