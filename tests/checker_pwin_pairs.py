"""The checker's pass/fail pair for per-project windows side by side (`project_window`),
imported by tests/test_checker.py (which wants a pair for every rule)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from planner.checker import check_plan
from planner.plan import Plan, Schedule, ScheduledCrossing
from planner.windows import Window
from tests.clouds_sbs import six_and_two

_NIGHTLY = Window(tuple(range(7)), 22 * 60, 6 * 60, "Europe/Berlin")
_START = dt.datetime(2026, 12, 14, 12, 0, tzinfo=dt.UTC)
_OPEN = dt.datetime(2026, 12, 14, 21, 0, tzinfo=dt.UTC)  # 22:00 in Berlin
_CLOSE = dt.datetime(2026, 12, 15, 5, 0, tzinfo=dt.UTC)


def _pwin_plan(*crossings: ScheduledCrossing, schedule: bool = True) -> Plan:
    fx = six_and_two()
    pol = fx.policy.with_changes(project_windows=(("project-1", (_NIGHTLY,)),))
    s = Schedule(_START, (), _CLOSE, crossings) if schedule else None
    return replace(fx.plan, policy=pol, schedule=s)


def _rules(plan: Plan) -> list[str]:
    return [
        v.message for v in check_plan(six_and_two().inventory, plan).violations
        if v.rule == "project_window"
    ]  # fmt: skip


def test_project_window_passes() -> None:
    plan = _pwin_plan(ScheduledCrossing("project-1", _OPEN, _CLOSE, tuple("abcdef")))
    assert check_plan(six_and_two().inventory, plan).ok
    # split over two openings, the second one entered late: still inside
    late = _OPEN + dt.timedelta(days=1, hours=2)
    plan = _pwin_plan(
        ScheduledCrossing("project-1", _OPEN, _CLOSE, tuple("abc")),
        ScheduledCrossing("project-1", late, _CLOSE + dt.timedelta(days=1), tuple("def")),
    )
    assert _rules(plan) == []
    # in place, or without project windows, the family is silent
    inplace = replace(plan, mode="in-place", schedule=None)
    assert _rules(inplace) == []


def test_project_window_fails() -> None:
    msgs = _rules(_pwin_plan(schedule=False))
    assert len(msgs) == 1 and "6 cross-cloud move(s)" in msgs[0] and "no schedule" in msgs[0]
    # opened at noon (closed then), or past the close
    msgs = _rules(_pwin_plan(ScheduledCrossing("project-1", _START, _CLOSE, tuple("abcdef"))))
    assert len(msgs) == 1 and "closed then" in msgs[0], msgs
    late = _CLOSE + dt.timedelta(hours=1)
    msgs = _rules(_pwin_plan(ScheduledCrossing("project-1", _OPEN, late, tuple("abcdef"))))
    assert len(msgs) == 1 and "close at 2026-12-15T05:00:00+00:00" in msgs[0], msgs
    # a VM left out, one twice, one of a project without windows
    msgs = _rules(
        _pwin_plan(
            ScheduledCrossing("project-1", _OPEN, _CLOSE, tuple("abcdd")),
            ScheduledCrossing("web", _OPEN, _CLOSE, ("f",)),
        )
    )
    assert any("d is scheduled to cross twice" in m for m in msgs), msgs
    assert any("no project_windows for that project" in m for m in msgs), msgs
    assert any("cross-cloud move(s)" in m and m.endswith(": e") for m in msgs), msgs
