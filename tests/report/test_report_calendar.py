"""The report's Gantt chart across the calendar (`planner.report.calendar`): the drawn axis
compresses the closed hours between windows, an estimate is placed in the plan's windows, a
simulated timeline in calendar time carries its calendar, and the figure shows dates and windows."""

from __future__ import annotations

import dataclasses
import datetime as _dt
from pathlib import Path

import pytest

from planner.app.simulation import in_calendar
from planner.formats import load_inventory, load_policy
from planner.plan import Schedule as PlanSchedule
from planner.plan import ScheduledWindow
from planner.report import calendar, plots
from planner.report.build import build_report
from planner.report.schedule import HostSpan, Schedule, WaveSpan
from planner.report.timeline import read_timeline, schedule_from_timeline
from planner.windows import Window
from sim.engine import prepare, simulate
from sim.model import DEFAULT
from sim.timeline import write_timeline
from solver.greedy import greedy_plan
from tests.report.support import example

START = _dt.datetime(2026, 12, 14, 22, 0, tzinfo=_dt.timezone(_dt.timedelta(hours=1)))
NIGHTLY = (Window(tuple(range(7)), 22 * 60, 2 * 60, "Europe/Berlin"),)


def _schedule(axis: calendar.CalendarAxis | None) -> Schedule:
    hosts = (
        HostSpan("a", 1, 0.0, 20.0, 90.0),
        HostSpan("b", 2, 1000.0, 1010.0, 1150.0),  # runs on 50 s after its window closes
    )
    waves = (WaveSpan(1, 0.0, 90.0), WaveSpan(2, 1000.0, 1150.0))
    return Schedule("simulation", waves, hosts, (), (), calendar=axis)


def test_compress_keeps_open_time_and_shrinks_closed_time() -> None:
    axis = calendar.CalendarAxis(START, ((0.0, 100.0), (1000.0, 1100.0)))
    drawn, comp = calendar.compress(_schedule(axis))
    active = 100.0 + 150.0  # the first opening; the second to the last host's end
    gap = calendar.GAP_SHARE * active
    assert comp.gaps == ((100.0, 100.0 + gap, 900.0),)
    assert comp.x(50.0) == 50.0
    assert comp.x(1000.0) == pytest.approx(100.0 + gap)
    assert comp.x(1150.0) == pytest.approx(100.0 + gap + 150.0)
    b = drawn.hosts[1]
    assert b.end - b.start == pytest.approx(150.0)  # open time keeps its length
    assert drawn.makespan_s == pytest.approx(100.0 + gap + 150.0)  # 900 s closed drawn as gap


def test_a_start_before_the_first_opening_is_a_gap_too() -> None:
    axis = calendar.CalendarAxis(START, ((500.0, 600.0),))
    hosts = (HostSpan("a", 1, 500.0, 510.0, 590.0),)
    _, comp = calendar.compress(Schedule("simulation", (), hosts, (), (), calendar=axis))
    assert comp.gaps[0][2] == 500.0 and comp.x(500.0) == pytest.approx(comp.gaps[0][1])


def test_an_estimate_is_placed_in_the_plans_windows() -> None:
    est = Schedule(
        "estimate",
        (WaveSpan(1, 0.0, 90.0), WaveSpan(2, 90.0, 200.0)),
        (HostSpan("a", 1, 0.0, 20.0, 90.0), HostSpan("b", 2, 90.0, 100.0, 200.0)),
        (),
        (),
    )
    day = _dt.timedelta(days=1)
    plan_sched = PlanSchedule(
        START,
        (
            ScheduledWindow(1, START, START + _dt.timedelta(hours=4), ("a",)),
            ScheduledWindow(2, START + day, START + day + _dt.timedelta(hours=4), ("b",)),
        ),
    )
    placed = calendar.place_in_windows(est, plan_sched)
    assert placed.calendar is not None
    a, b = placed.hosts
    assert (a.start, a.end) == (0.0, 90.0)
    assert (b.start, b.end) == (86400.0, 86510.0)  # its window's opening, its length kept
    assert placed.waves[1].start == 86400.0


def test_the_header_round_trips_and_bad_headers_give_no_calendar() -> None:
    axis = calendar.from_header(
        {"calendar": {"start": START.isoformat(), "openings": [[0, 10], [20, None]]}}
    )
    assert axis == calendar.CalendarAxis(START, ((0.0, 10.0), (20.0, None)))
    assert calendar.from_header({}) is None
    assert calendar.from_header({"calendar": {"start": "soon"}}) is None
    assert calendar.from_header({"calendar": {"start": "2026-12-14T22:00"}}) is None  # no zone


def _windowed_run(tmp_path: Path) -> tuple[object, object, Path]:
    inv = load_inventory(example("small.json"))
    pol = dataclasses.replace(load_policy(example("small-policy.yaml")), windows=NIGHTLY)
    plan = greedy_plan(inv, pol, inventory_sha256=inv.digest or "")
    prep = in_calendar(prepare(inv, plan, DEFAULT, check=False), START)
    res = simulate(prep, 0)
    tl = tmp_path / "tl.jsonl"
    write_timeline(tl, prep, res)
    return inv, plan, tl


def test_a_timeline_in_calendar_time_draws_dates_and_windows(tmp_path: Path) -> None:
    inv, plan, tl = _windowed_run(tmp_path)
    sched = schedule_from_timeline(read_timeline(tl), plan)  # type: ignore[arg-type]
    assert sched.calendar is not None and sched.calendar.start == START
    assert len(sched.calendar.openings) >= 2
    fig = plots.gantt_figure(sched)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert any("Mon 14 Dec" in t for t in labels) and any("Tue 15 Dec" in t for t in labels)
    assert "compressed" in ax.get_xlabel()
    texts = [t.get_text() for t in ax.texts]
    assert any(t.endswith("h closed") for t in texts)
    # the wave view (many hosts) too
    fig = plots.gantt_figure(sched, max_rows=3)
    assert "compressed" in fig.axes[-1].get_xlabel()
    # the report built from it keeps it
    rep = build_report(inv, plan, timeline=read_timeline(tl))  # type: ignore[arg-type]
    assert rep.schedule.calendar is not None


def test_without_a_calendar_the_axis_is_time_since_the_start() -> None:
    fig = plots.gantt_figure(_schedule(None))
    assert "time since the start" in fig.axes[0].get_xlabel()
