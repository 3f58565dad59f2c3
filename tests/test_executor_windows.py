"""Maintenance windows in the executor: a wave starts only inside a window of every host of it
(and long enough for its predicted duration); the waves under way finish; the run waits for the
next opening, or stops (exit 5) with `--no-window-wait` and resumes then; the journal and
`--status` say so. The cloud is the dry run's model run as a live one, on a clock (monotonic and
calendar) that only the executor's sleeping moves."""

from __future__ import annotations

import datetime as _dt
import io
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from planner.app.execute import SolverReplanner
from planner.executor.cloud import DryRunCloud
from planner.executor.hooks import DryRunHooks, Notifier
from planner.executor.journal import RunState, read_records
from planner.executor.run import ExecOptions, Executor
from planner.executor.ui import Reporter, status_dict
from planner.executor.window import admission
from planner.plan import Plan
from planner.windows import Window
from tests.clouds import NAMED
from tests.journal_scenarios import Clock, FaultyCloud, FaultyHooks

UTC = _dt.UTC
NIGHTS = Window(days=tuple(range(7)), start=22 * 60, end=6 * 60, tz="UTC")
T0 = _dt.datetime(2026, 12, 14, 5, 40, tzinfo=UTC)  # a Monday, 20 minutes before 06:00


def _plan(predicted: dict[int, float]) -> tuple[Plan, Any]:
    fx = NAMED["three_plus_spare"]()
    waves = tuple(replace(w, predicted_s=predicted.get(w.index)) for w in fx.plan.waves)
    plan = replace(fx.plan, waves=waves, policy=replace(fx.plan.policy, windows=(NIGHTS,)))
    return plan, fx.inventory


class World:
    """One cloud and one clock for a run and its resumes."""

    def __init__(self, plan: Plan, inv: Any, start: _dt.datetime) -> None:
        self.plan = plan
        self.cloud = FaultyCloud(inv, plan.policy.target_version)
        self.clock = Clock()
        self.t0 = self.clock.t
        self.start = start

    def wall(self) -> _dt.datetime:
        return self.start + _dt.timedelta(seconds=self.clock.t - self.t0)

    def jump(self, to: _dt.datetime) -> None:
        self.clock.t = self.t0 + (to - self.start).total_seconds()

    def run(self, journal: Path, resume: bool = False, **opts: Any) -> Any:
        o = ExecOptions(upgrade_command="upgrade {host}", poll_s=5.0, **opts)
        ex = Executor(
            self.plan,
            "e" * 64,
            self.cloud,
            opts=o,
            reporter=Reporter(Console(file=io.StringIO()), quiet=True),
            hooks=FaultyHooks(self.cloud, set()),
            notify=Notifier(None, None, lambda s: None),
            replanner=SolverReplanner(),
            journal_path=journal,
            plan_file="plan.json",
            resume=resume,
            clock=self.clock,
            sleep=self.clock.sleep,
            wall=self.wall,
        )
        return ex.run()


def test_a_wave_that_would_overrun_the_window_waits_for_the_next(tmp_path: Path) -> None:
    # waves 1-2 fit before 06:00; wave 3 (predicted 30 min) does not: it waits for 22:00
    plan, inv = _plan({1: 60.0, 2: 300.0, 3: 1800.0, 4: 300.0})
    w = World(plan, inv, T0)
    j = tmp_path / "run.journal.jsonl"
    res = w.run(j)
    assert res.status == "completed", res.reason
    recs = read_records(j)
    notes = [(r["what"], r["wave"]) for r in recs if r.get("op") == "window"]
    assert notes == [("open", 1), ("open", 2), ("wait", 3), ("open", 3), ("open", 4)]
    wait = next(r for r in recs if r.get("op") == "window" and r["what"] == "wait")
    assert wait["opens"] == "2026-12-14T22:00:00Z" and wait["closes"] == "2026-12-15T06:00:00Z"
    # wave 3 began (its intent) once the window opened; wave 2 had ended before 06:00
    assert w.wall() >= _dt.datetime(2026, 12, 14, 22, 0, tzinfo=UTC)
    seqs = {(r.get("op"), r.get("ev"), r.get("wave")): r["seq"] for r in recs}
    assert seqs[("window", "note", 3)] < seqs[("wave", "intent", 3)]
    assert RunState.replay(recs).upgraded == set(plan.hosts)


def test_no_window_wait_stops_with_exit_5_and_resumes_in_the_window(tmp_path: Path) -> None:
    plan, inv = _plan({})
    start = _dt.datetime(2026, 12, 14, 12, 0, tzinfo=UTC)  # closed until 22:00
    w = World(plan, inv, start)
    j = tmp_path / "run.journal.jsonl"
    res = w.run(j, window_wait=False)
    assert res.status == "stopped" and res.exit_code == 5, res
    assert "2026-12-14T22:00:00Z" in str(res.reason) and "--no-window-wait" in str(res.reason)
    st = RunState.replay(read_records(j))
    assert not st.started  # nothing touched
    assert not any("os-migrateLive" in c or '"disabled"' in c for c in w.cloud.calls)
    data = status_dict(st, str(j))
    assert data["window"]["what"] == "wait" and data["window"]["opens"] == "2026-12-14T22:00:00Z"
    assert st.options["window_wait"] is False  # recorded: a resume keeps it
    # resumed after 22:00: every wave runs in that night's window
    w.jump(_dt.datetime(2026, 12, 14, 22, 5, tzinfo=UTC))
    res = w.run(j, resume=True, window_wait=False)
    assert res.status == "completed", res.reason
    st = RunState.replay(read_records(j))
    assert st.upgraded == set(plan.hosts) and st.window is not None
    assert st.window["what"] == "open"


def test_a_ctrl_c_while_waiting_stops_the_run_touching_nothing(tmp_path: Path) -> None:
    plan, inv = _plan({})
    w = World(plan, inv, _dt.datetime(2026, 12, 14, 12, 0, tzinfo=UTC))
    ex_holder: list[Executor] = []
    sleep = w.clock.sleep

    def sleep_then_ctrl_c(s: float) -> None:
        sleep(s)
        if w.wall() > _dt.datetime(2026, 12, 14, 13, 0, tzinfo=UTC):
            ex_holder[0].interrupts = 1

    j = tmp_path / "run.journal.jsonl"
    ex = Executor(
        plan,
        "e" * 64,
        w.cloud,
        opts=ExecOptions(upgrade_command="upgrade {host}", poll_s=5.0),
        reporter=Reporter(Console(file=io.StringIO()), quiet=True),
        hooks=FaultyHooks(w.cloud, set()),
        notify=Notifier(None, None, lambda s: None),
        replanner=SolverReplanner(),
        journal_path=j,
        clock=w.clock,
        sleep=sleep_then_ctrl_c,
        wall=w.wall,
    )
    ex_holder.append(ex)
    res = ex.run()
    assert res.status == "interrupted"
    st = RunState.replay(read_records(j))
    assert not st.started and st.window is not None and st.window["what"] == "wait"


def test_admission_per_az_and_for_the_predicted_time() -> None:
    az1 = Window(days=(0,), start=22 * 60, end=23 * 60, tz="UTC", azs=("az1",))
    az2 = Window(days=(0,), start=22 * 60 + 30, end=23 * 60 + 30, tz="UTC", azs=("az2",))
    mon = _dt.datetime(2026, 12, 14, 12, 0, tzinfo=UTC)

    def at(h: int, m: int = 0) -> _dt.datetime:
        return _dt.datetime(2026, 12, 14, h, m, tzinfo=UTC)

    # both AZs together: from 22:30 (az2 opens) to 23:00 (az1 closes)
    assert admission((az1, az2), ["az1", "az2"], mon, None) == (at(22, 30), at(23), True)
    assert admission((az1, az2), ["az1"], mon, None) == (at(22), at(23), True)
    # 40 minutes fit in az1's window alone, not in the overlap: the next Monday's is no longer
    got = admission((az1, az2), ["az1", "az2"], mon, 2400.0)
    assert got is not None and got[2] is False and got[0] == at(22, 30)
    assert admission((az1, az2), ["az1"], mon, 2400.0) == (at(22), at(23), True)
    # an AZ no window applies to: never
    assert admission((az1, az2), ["az3"], mon, None) is None
    # open now: from now
    assert admission((az1,), ["az1"], at(22, 10), None) == (at(22, 10), at(23), True)


def test_the_dry_run_says_it_would_wait_and_goes_on() -> None:
    plan, inv = _plan({})
    lines: list[str] = []
    cloud = DryRunCloud(inv, lines.append, plan.policy.target_version)
    buf = io.StringIO()
    ex = Executor(
        plan,
        "e" * 64,
        cloud,
        opts=ExecOptions(upgrade_command="upgrade {host}", poll_s=0.01),
        reporter=Reporter(Console(file=buf, width=200), quiet=False),
        hooks=DryRunHooks(cloud.run_hook),
        notify=Notifier(None, None, lines.append),
        replanner=SolverReplanner(),
        journal_path=None,
        wall=lambda: _dt.datetime(2026, 12, 14, 12, 0, tzinfo=UTC),
    )
    res = ex.run()
    assert res.status == "completed" and res.state.upgraded == set(plan.hosts)
    text = buf.getvalue()
    assert text.count("outside the maintenance windows; would wait until 2026-12-14T22:00:00Z") == 4
