"""Plan reports for capacity planners: pictures and tables from a plan, its check, its replay and
its schedule (simulated or estimated), as one self-contained HTML file (`rollwave report`).

Application layer, below the use cases (`planner.app` builds and writes reports and runs
what-ifs): may import the core, `solver` and `sim`; never `planner.app` or the CLI.
"""

from planner.report.build import Report, build_report, figures
from planner.report.html import render_html, write_report
from planner.report.replay import Replay, replay
from planner.report.schedule import EstimateModel, MonteCarlo, Schedule, estimate_schedule
from planner.report.timeline import Timeline, read_montecarlo, read_timeline

__all__ = [
    "EstimateModel",
    "MonteCarlo",
    "Replay",
    "Report",
    "Schedule",
    "Timeline",
    "build_report",
    "estimate_schedule",
    "figures",
    "read_montecarlo",
    "read_timeline",
    "render_html",
    "replay",
    "write_report",
]
