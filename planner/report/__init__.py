"""Plan reports for capacity planners: pictures and tables from a plan, its check, its replay and
its schedule (simulated or estimated), as one self-contained HTML file (`rollwave report`).

Application layer: may import the core, `solver` and `sim`.
"""

from planner.report.build import MonteCarlo, Report, build_report, figures
from planner.report.html import render_html, write_report
from planner.report.replay import Replay, replay
from planner.report.schedule import EstimateModel, Schedule, estimate_schedule

__all__ = [
    "EstimateModel",
    "MonteCarlo",
    "Replay",
    "Report",
    "Schedule",
    "build_report",
    "estimate_schedule",
    "figures",
    "render_html",
    "replay",
    "write_report",
]
