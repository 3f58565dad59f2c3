"""The plan in the calendar (`rollwave plan --start`, `planner.app.schedule`): every host in
one opening of the policy's windows long enough for its wave's P95 maintenance, the checker
agreeing; impossible calendars explained; bad dates refused."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import pytest

from planner.app.demo import example_path
from planner.app.planning import plan_with_predictions
from planner.app.schedule import parse_start, wave_p95_s
from planner.checker import check_plan
from planner.cli import main
from planner.errors import InfeasibleError, UsageError
from planner.formats import load_inventory, load_policy
from planner.inventory import Inventory
from planner.policy import Policy
from planner.windows import Window, openings
from solver.solve import SolveOptions

GREEDY = SolveOptions(planner="greedy")
BERLIN_NIGHTS = Window(days=(0, 1, 2, 3, 4), start=22 * 60, end=6 * 60, tz="Europe/Berlin")
# Three hours a night: the example's nine waves (about four hours) need two nights.
SHORT_NIGHTS = Window(days=(0, 1, 2, 3, 4), start=22 * 60, end=1 * 60, tz="Europe/Berlin")
START = _dt.datetime(2026, 12, 14, 22, 0, tzinfo=_dt.timezone(_dt.timedelta(hours=1)))


@pytest.fixture(scope="module")
def example() -> tuple[Inventory, Policy]:
    return load_inventory(example_path("small.json")), load_policy(
        example_path("small-policy.yaml")
    )


def test_nightly_windows_schedule_every_host_inside_an_opening(
    example: tuple[Inventory, Policy],
) -> None:
    inv, pol = example
    pol = pol.with_changes(windows=(SHORT_NIGHTS,))
    plan, _, outcome, ph = plan_with_predictions(inv, pol, GREEDY, start=START)
    s = plan.schedule
    assert s is not None and s.start == START
    report = check_plan(inv, plan, estimates=ph.est)
    assert report.ok, report.violations[:3]
    scheduled = [h for w in s.windows for h in w.hosts]
    assert sorted(scheduled) == sorted(plan.hosts)
    # each window is inside one night (Mon-Fri 22:00-01:00 Berlin), in time order, apart
    for w in s.windows:
        o = next(openings(pol.windows, w.start))
        assert o[0] == w.start and w.end <= o[1]
    # each wave fits, at its P95, between its window's start and end
    how = {m.vm: "force-complete" if m.remedy else "live" for _, m in plan.migrations()}
    longest = max(wave_p95_s(ph.est, w, how) for w in plan.waves)  # type: ignore[arg-type]
    assert longest < 3 * 3600
    # 9 waves, about four hours in all: two nights
    assert len(s.windows) == 2
    assert s.windows[1].start == START + _dt.timedelta(days=1)
    assert plan.summary["windows"] == len(s.windows)
    assert s.last_done is not None and s.last_done > s.windows[-1].start
    assert plan.summary["last_done"] == s.last_done.isoformat()
    assert not any("does not keep schedule" in n for n in outcome.notes)


@pytest.mark.parametrize("execution", ["pipelined", "lockstep"])
def test_without_windows_one_window_from_the_start(
    example: tuple[Inventory, Policy], execution: str
) -> None:
    """The last host is done when the plan's prediction for the policy's execution says."""
    inv, pol = example
    pol = pol.with_changes(execution=execution)
    plan, _, _, ph = plan_with_predictions(inv, pol, GREEDY, start=START)
    s = plan.schedule
    assert s is not None and len(s.windows) == 1
    (w,) = s.windows
    assert w.start == START and w.end == s.last_done
    assert sorted(w.hosts) == sorted(plan.hosts)
    predicted = plan.summary["predicted_makespan_s"][execution]
    assert s.last_done is not None
    done_s = (s.last_done - START).total_seconds()
    if execution == "lockstep":
        assert done_s == pytest.approx(predicted, abs=1.0)
    else:
        # the replay with each host's expected maintenance: above the pipelined bound, at most
        # the expected makespan over drawn upgrades (the slowest of several draws sets the pace)
        assert plan.summary["pipelined_lower_bound_s"] <= done_s <= predicted + 1.0
        assert done_s < plan.summary["predicted_makespan_s"]["lockstep"]
    assert check_plan(inv, plan, estimates=ph.est).ok


def test_windows_too_short_for_a_wave_give_no_plan(example: tuple[Inventory, Policy]) -> None:
    inv, pol = example
    short = Window(days=tuple(range(7)), start=22 * 60, end=22 * 60 + 20, tz="UTC")
    with pytest.raises(
        InfeasibleError, match=r"wave 1 is predicted to need 0 h 45 min .*the longest: 0 h 20 min"
    ):
        plan_with_predictions(inv, pol.with_changes(windows=(short,)), GREEDY, start=START)


def test_a_window_for_one_az_leaves_the_others_never_open(
    example: tuple[Inventory, Policy],
) -> None:
    inv, pol = example
    az1 = Window(days=tuple(range(7)), start=0, end=1440, tz="UTC", azs=("az1",))
    with pytest.raises(InfeasibleError, match="no maintenance window of the policy applies"):
        plan_with_predictions(inv, pol.with_changes(windows=(az1,)), GREEDY, start=START)


def test_parse_start() -> None:
    assert parse_start("2026-12-14T22:00", (BERLIN_NIGHTS,)).utcoffset() == _dt.timedelta(hours=1)
    assert parse_start("2026-07-14T22:00", (BERLIN_NIGHTS,)).utcoffset() == _dt.timedelta(hours=2)
    assert parse_start("2026-12-14", ()).tzinfo == _dt.UTC
    assert parse_start("2026-12-14T22:00-05:00", ()).utcoffset() == _dt.timedelta(hours=-5)
    with pytest.raises(UsageError, match="--start: 'next monday' is not a date"):
        parse_start("next monday", ())


def test_cli_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pol = tmp_path / "policy.yaml"
    pol.write_text(
        example_path("small-policy.yaml").read_text()
        + 'windows:\n  - {days: mon-fri, start: "22:00", end: "06:00", tz: Europe/Berlin}\n'
    )
    out = tmp_path / "plan.json"
    argv = ["plan", str(example_path("small.json")), "--policy", str(pol), "-o", str(out)]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--planner", "greedy", "--start", "2026-12-14T22:00"])
    got = capsys.readouterr()
    assert info.value.code in (0, None), got.err
    assert "1 window, last host done on 2026-12-15 0" in got.out
    data = json.loads(out.read_text())
    assert data["schedule"]["start"] == "2026-12-14T22:00:00+01:00"
    out.unlink()
    with pytest.raises(SystemExit) as info:
        main([*argv, "--start", "2026-13-45"])
    got = capsys.readouterr()
    assert info.value.code == 2 and "--start: '2026-13-45' is not a date" in got.err
    assert not out.exists()


def test_pipelined_schedule_in_per_az_windows_of_two_zones(
    example: tuple[Inventory, Policy],
) -> None:
    """Pipelined, each host waits only for its own AZ's windows: the checker accepts the
    schedule, every host is in one window, and it needs no more windows than lock-step's."""
    inv, pol = example
    berlin = Window(
        days=tuple(range(7)), start=22 * 60, end=1 * 60, tz="Europe/Berlin", azs=("az1",)
    )
    new_york = Window(
        days=tuple(range(7)), start=22 * 60, end=1 * 60, tz="America/New_York", azs=("az2",)
    )
    got = {}
    for execution in ("pipelined", "lockstep"):
        p = pol.with_changes(windows=(berlin, new_york), execution=execution)
        plan, _, _, ph = plan_with_predictions(inv, p, GREEDY, start=START)
        s = plan.schedule
        assert s is not None
        assert check_plan(inv, plan, estimates=ph.est).ok
        assert sorted(h for w in s.windows for h in w.hosts) == sorted(plan.hosts)
        for w in s.windows:
            for h in w.hosts:
                o = next(openings(p.windows, w.start, inv.host(h).az))
                assert o[0] == w.start and w.end <= o[1]
        got[execution] = s
    assert len(got["pipelined"].windows) <= len(got["lockstep"].windows)
    piped, lock = got["pipelined"].last_done, got["lockstep"].last_done
    assert piped is not None and lock is not None and piped <= lock
