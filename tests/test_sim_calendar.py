"""Maintenance windows in simulated time (`sim.calendar`, `planner.app.simulation.in_calendar`):
no host enters maintenance outside a window or when its P95 maintenance would overrun the
window's end, in both execution modes and both loops; overruns reported; the calendar's outcome
(windows used, hosts per window, last host done)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from importlib import resources

import pytest

from planner.app import predict
from planner.app.simulation import in_calendar
from planner.errors import InfeasibleError
from planner.formats import load_inventory, load_policy
from planner.inventory import Inventory
from planner.plan import Plan
from planner.windows import Window
from sim import calendar, engine
from sim import loop as python_loop
from sim.engine import Prepared, prepare, simulate
from sim.model import Distribution, SimModel
from solver.greedy import greedy_plan

BERLIN = _dt.timezone(_dt.timedelta(hours=1))  # December: Berlin is UTC+1
START = _dt.datetime(2026, 12, 14, 22, 0, tzinfo=BERLIN)
NIGHTLY = (Window(tuple(range(7)), 22 * 60, 2 * 60, "Europe/Berlin"),)
FIXED = SimModel(
    upgrade_compute=Distribution("fixed", 600.0),
    upgrade_controller=Distribution("fixed", 900.0),
)


def _example(execution: str, windows: tuple[Window, ...] = NIGHTLY) -> tuple[Inventory, Plan]:
    ex = resources.files("planner") / "examples"
    inv = load_inventory(str(ex / "small.json"))
    pol = load_policy(str(ex / "small-policy.yaml"))
    pol = dataclasses.replace(pol, windows=windows, execution=execution)  # type: ignore[arg-type]
    return inv, greedy_plan(inv, pol, inventory_sha256=inv.digest or "")


def _prep(execution: str, model: SimModel = FIXED) -> Prepared:
    inv, plan = _example(execution)
    return in_calendar(prepare(inv, plan, model, check=False), START)


# --- the calendar's arithmetic ---------------------------------------------------------------
def test_fit_is_the_first_time_open_long_enough() -> None:
    ops = ((100.0, 200.0), (300.0, 500.0))
    assert calendar.fit(ops, 0.0, 50.0) == 100.0  # closed: the next opening
    assert calendar.fit(ops, 120.0, 50.0) == 120.0  # open, long enough: now
    assert calendar.fit(ops, 160.0, 50.0) == 300.0  # open, but closes too soon
    assert calendar.fit(ops, 0.0, 250.0) == math.inf  # no opening that long
    assert calendar.fit((), 0.0, 0.0) == math.inf  # never open


def test_a_wave_waits_until_all_its_hosts_windows_are_open_for_its_slowest_host() -> None:
    cal = calendar.Calendar(
        START,
        zones=(((0.0, 100.0), (200.0, 400.0)), ((50.0, 300.0),)),
        host_zone=(0, 1),
        need=(10.0, 80.0),
        nights=((0.0, 400.0),),
    )
    assert cal.host_fit(0, 0.0) == 0.0
    assert cal.host_fit(1, 0.0) == 50.0
    # together: both open from 50 to 100 (too short for 80), then 200 to 300
    assert cal.wave_fit([0, 1], 0.0) == 200.0
    assert cal.wave_fit([0], 0.0) == 0.0


def test_the_calendar_of_per_az_windows_and_of_no_window() -> None:
    w = Window((0,), 22 * 60, 23 * 60, "UTC", ("az1",))
    start = _dt.datetime(2026, 12, 14, 0, 0, tzinfo=_dt.UTC)  # a Monday
    cal = calendar.build((w,), start, ["az1", "az2"], [0.0, 0.0])
    assert cal.zones[cal.host_zone[0]][0] == (22 * 3600.0, 23 * 3600.0)
    assert cal.zones[cal.host_zone[1]] == ()  # no window applies to az2: never open
    always = calendar.build((), start, ["az1"], [10.0])
    assert always.host_fit(0, 5.0) == 5.0


# --- runs in the calendar --------------------------------------------------------------------
@pytest.mark.parametrize("execution", ["pipelined", "lockstep"])
def test_every_host_enters_inside_a_window_with_room_for_its_p95(execution: str) -> None:
    prep = _prep(execution)
    cal = prep.calendar
    assert cal is not None
    res = simulate(prep, 0)
    assert res.completed and not res.breached
    out = res.calendar
    assert out is not None and out.outside == ()
    entered = 0
    for h, (s, _, _) in res.host_times.items():
        o = cal.opening_of(h, s)
        assert o is not None, f"{prep.hosts[h]} entered at {s} outside its windows"
        assert s + cal.need[h] <= o[1] + 1e-6, f"{prep.hosts[h]} may overrun"
        entered += 1
    assert entered == len(prep.plan.hosts)
    # 4-hour nights are too short for the whole example: it waits for the next night
    assert out.used >= 2
    assert sum(len(w[3]) for w in out.windows) == entered
    assert out.last_done == cal.at(max(e for _, _, e in res.host_times.values()))
    assert out.last_done is not None and out.last_done > START + _dt.timedelta(days=1)


def test_without_windows_the_same_run_finishes_in_one_window_earlier() -> None:
    inv, plan = _example("pipelined", ())
    free = simulate(in_calendar(prepare(inv, plan, FIXED, check=False), START), 0)
    nightly = simulate(_prep("pipelined"), 0)
    assert free.calendar is not None and nightly.calendar is not None
    assert free.calendar.used == 1
    assert free.makespan_s < nightly.makespan_s


def test_pipelined_waits_are_refusals_and_lockstep_waits_are_in_the_timeline() -> None:
    pipe = simulate(_prep("pipelined"), 0)
    assert pipe.refusals["window"] > 0
    assert pipe.timeline is not None
    assert any(r[1] == "admission_refused" and "window" in str(r[6]) for r in pipe.timeline)
    lock = simulate(_prep("lockstep"), 0)
    assert lock.timeline is not None
    assert any(r[1] == "window_wait" for r in lock.timeline)


def test_work_in_flight_at_the_close_finishes_and_is_reported_as_an_overrun() -> None:
    prep = _prep("pipelined")
    cal = prep.calendar
    assert cal is not None
    # hosts believed to need nothing: they enter until the last moment and overrun the close
    bold = dataclasses.replace(cal, need=tuple(0.0 for _ in cal.need))
    res = simulate(dataclasses.replace(prep, calendar=bold), 0)
    out = res.calendar
    assert res.completed and out is not None and out.overruns
    names = {h: i for i, h in enumerate(prep.hosts)}
    for host, after in out.overruns:
        h = names[host]
        s, _, e = res.host_times[h]
        o = bold.opening_of(h, s)
        assert o is not None and after == pytest.approx(e - o[1]) and after > 0
    # the honest calendar has none
    honest = simulate(prep, 0).calendar
    assert honest is not None and honest.overruns == ()


def test_windows_too_short_for_a_host_are_refused_before_the_run() -> None:
    inv, plan = _example("pipelined", (Window(tuple(range(7)), 22 * 60, 22 * 60 + 5, "UTC"),))
    with pytest.raises(InfeasibleError, match="no opening of the windows"):
        in_calendar(prepare(inv, plan, FIXED, check=False), START)


def test_without_a_start_the_run_ignores_the_calendar() -> None:
    inv, plan = _example("pipelined")
    prep = prepare(inv, plan, FIXED, check=False)
    assert plan.schedule is None and in_calendar(prep) is prep
    assert simulate(prep, 0).calendar is None


@pytest.mark.skipif(
    not engine.IMPLEMENTATION.startswith("compiled"), reason="no compiled loop in this install"
)
def test_both_loops_give_the_same_runs_in_the_calendar(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_sim_engine_equivalence import same

    compiled = engine._run_loop
    faulty = FIXED.with_changes(migration_failure_p=0.2, crash_p=1.0)
    for execution in ("pipelined", "lockstep"):
        for model in (FIXED, faulty):
            prep = _prep(execution, model)
            for seed in (0, 3):
                a = simulate(prep, seed)
                monkeypatch.setattr(engine, "_run_loop", python_loop.run_loop)
                b = simulate(prep, seed)
                monkeypatch.setattr(engine, "_run_loop", compiled)
                same(a, b)
                assert a.calendar == b.calendar


def test_a_lockstep_wave_whose_azs_windows_never_overlap_is_refused_before_the_run() -> None:
    apart = (
        Window(tuple(range(7)), 0, 6 * 60, "UTC", ("az1",)),
        Window(tuple(range(7)), 12 * 60, 18 * 60, "UTC", ("az2",)),
    )
    inv, plan = _example("lockstep", apart)
    mixed = [w for w in plan.waves if len({inv.host(h).az for h in w.hosts}) > 1]
    assert mixed, "the example needs a wave with hosts of both AZs"
    with pytest.raises(InfeasibleError, match=f"wave {mixed[0].index}: its hosts' windows"):
        in_calendar(prepare(inv, plan, FIXED, check=False), START)
    # pipelined, each host goes in its own AZ's window
    inv, plan = _example("pipelined", apart)
    res = simulate(in_calendar(prepare(inv, plan, FIXED, check=False), START), 0)
    assert res.completed and res.calendar is not None and res.calendar.outside == ()


def test_a_shelved_vms_host_needs_what_the_planner_predicts() -> None:
    # the example's hard affinity pair is shelved (a move with downtime): cold, not live
    inv, plan = _example("lockstep")
    shelved = [m for _, m in plan.migrations() if m.method == "shelve"]
    assert shelved
    host = shelved[0].src
    prep = in_calendar(prepare(inv, plan, FIXED, check=False), START)
    assert prep.calendar is not None
    est = predict.predict(inv, plan.policy, FIXED).est
    mine = [m for _, m in plan.migrations() if m.src == host]
    vms = [m.vm for m in mine]
    how = {m.vm: predict.how_of(m, {m.vm: m.remedy} if m.remedy else {}) for m in mine}
    assert {how[m.vm] for m in shelved if m.src == host} == {"cold"}
    need = prep.calendar.need[list(prep.hosts).index(host)]
    assert need == pytest.approx(est.maintenance_s(host, vms, p95=True, how=how))
    assert est.maintenance_s(host, vms, p95=True, how=dict.fromkeys(vms, "live")) > need
