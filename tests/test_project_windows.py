"""Per-project maintenance windows side by side (issue 19): the policy key, the simulator's
crossings inside their project's windows, the planner's schedule, the commands. The checker's
pass/fail pair is in tests/checker_pwin_pairs.py."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.app.sidebyside import plan_and_check
from planner.checker import check_plan
from planner.errors import InfeasibleError, InputError, UsageError
from planner.formats import (
    load_plan,
    load_policy,
    plan_from_dict,
    plan_to_dict,
    save_inventory,
    save_plan,
    save_policy,
)
from planner.inventory import Inventory
from planner.plan import Schedule, ScheduledCrossing
from planner.policy import Policy
from planner.windows import Window, openings
from sim.crosscloud import simulate_side_by_side
from sim.model import DEFAULT
from solver.sidebyside import SideBySideOptions
from tests.clouds import edit_vm
from tests.clouds_sbs import six_and_two

UTC = dt.UTC
NIGHTLY = Window(tuple(range(7)), 22 * 60, 6 * 60, "UTC")
# Monday noon: the fixture's first crossing (wave 3, after the control plane) comes before 22:00.
START = dt.datetime(2026, 12, 14, 12, 0, tzinfo=UTC)


def _windowed(pol: Policy, **windows: tuple[Window, ...]) -> Policy:
    return pol.with_changes(project_windows=tuple(sorted(windows.items())))


def _fixture(**windows: tuple[Window, ...]) -> tuple[Inventory, Policy]:
    """six_and_two with VM e in project db (no windows) and the given project windows."""
    fx = six_and_two()
    return edit_vm(fx.inventory, "e", project="db"), _windowed(fx.policy, **windows)


# -- the policy key -----------------------------------------------------------------------------
def _policy_file(tmp_path: Path, extra: object) -> Path:
    p = tmp_path / "policy.json"
    d = {"format_version": "1.0", "kind": "policy", "max_hosts_per_wave": 3}
    d["project_windows"] = extra
    p.write_text(json.dumps(d))
    return p


def test_project_windows_read_and_write_back(tmp_path: Path) -> None:
    win = {"days": "mon-fri", "start": "22:00", "end": "06:00", "tz": "Europe/Berlin"}
    pol = load_policy(_policy_file(tmp_path, {"web": [win], "db": [win, win]}))
    assert [p for p, _ in pol.project_windows] == ["db", "web"]
    assert pol.windows_of_project("web") == (Window((0, 1, 2, 3, 4), 1320, 360, "Europe/Berlin"),)
    assert pol.windows_of_project("other") == ()
    again = tmp_path / "again.json"
    save_policy(pol, again)
    assert load_policy(again) == pol
    hash(pol)  # policies key the lower bounds' cache


@pytest.mark.parametrize(
    ("value", "where", "words"),
    [
        ([], "project_windows", "must be an object"),
        ({"web": []}, "project_windows.web", "non-empty list"),
        ({"web": "nightly"}, "project_windows.web", "non-empty list"),
        (
            {"web": [{"days": "mon", "start": "25:00", "end": "06:00", "tz": "UTC"}]},
            "project_windows.web[0].start",
            "HH:MM",
        ),
        (
            {"web": [{"days": "mon", "start": "22:00", "end": "06:00", "tz": "Mars/Base"}]},
            "project_windows.web[0].tz",
            "unknown time zone",
        ),
        (
            {"web": [{"days": "mon", "start": "22:00", "end": "06:00", "tz": "UTC", "azs": ["a"]}]},
            "project_windows.web[0].azs",
            "not for a project's window",
        ),
    ],
)
def test_bad_project_windows_name_the_file_and_place(
    tmp_path: Path, value: object, where: str, words: str
) -> None:
    path = _policy_file(tmp_path, value)
    with pytest.raises(InputError) as info:
        load_policy(path)
    text = str(info.value)
    assert str(path) in text and where in text and words in text, text


# -- the simulator ------------------------------------------------------------------------------
def test_a_windowed_projects_vms_cross_only_inside_its_window() -> None:
    inv, pol = _fixture(**{"project-1": (NIGHTLY,)})
    plan = replace(six_and_two().plan, policy=pol)
    unwindowed = replace(plan, policy=six_and_two().policy)
    free = simulate_side_by_side(inv, unwindowed, DEFAULT, START)
    r = simulate_side_by_side(inv, plan, DEFAULT, START)
    crossed = {x.vm: x for x in r.moves if x.method == "cross-cloud"}
    assert set(crossed) == set("abcdef")
    for vm, x in crossed.items():
        a = START + dt.timedelta(seconds=x.start_s)
        b = START + dt.timedelta(seconds=x.end_s)
        if vm == "e":  # project db: no windows, crosses as soon as a lane is free
            assert x.waited_s == 0 and x.project is None
            continue
        o = next(openings((NIGHTLY,), a - dt.timedelta(microseconds=1)))
        assert a.hour >= 22 or a.hour < 6, a
        assert b <= o[1] + dt.timedelta(microseconds=1), (vm, b, o)
        assert x.project == "project-1"
    # without windows the crossings start before 22:00; with them they waited for it
    first_free = min(x.start_s for x in free.moves if x.method == "cross-cloud")
    assert (START + dt.timedelta(seconds=first_free)).hour < 22
    assert r.window_wait_s > 0 and r.makespan_s > free.makespan_s
    d = r.to_dict()["project_windows"]
    assert d["openings_used"] == 1 == len(r.crossing_windows)
    assert d["per_window"][0]["crossings"] == 5 and d["crossings_waited"] >= 1
    w = r.crossing_windows[0]
    assert w.project == "project-1" and set(w.vms) == set("abcdf")
    assert w.start == dt.datetime(2026, 12, 14, 22, 0, tzinfo=UTC)
    assert w.end == dt.datetime(2026, 12, 15, 6, 0, tzinfo=UTC)
    # no project windows: no calendar fields, the same times as before
    assert "project_windows" not in free.to_dict()
    assert free.to_dict() == simulate_side_by_side(inv, unwindowed, DEFAULT).to_dict()


def test_a_crossing_waits_for_an_opening_long_enough_for_all_of_it() -> None:
    # a 1-minute window a night: too short for any crossing
    short = Window(tuple(range(7)), 22 * 60, 22 * 60 + 1, "UTC")
    inv, pol = _fixture(**{"project-1": (short,)})
    plan = replace(six_and_two().plan, policy=pol)
    with pytest.raises(InfeasibleError, match="no opening of the project's windows is that long"):
        simulate_side_by_side(inv, plan, DEFAULT, START)


def test_the_simulation_needs_a_start_with_project_windows() -> None:
    inv, pol = _fixture(**{"project-1": (NIGHTLY,)})
    plan = replace(six_and_two().plan, policy=pol)
    with pytest.raises(UsageError, match="start"):
        simulate_side_by_side(inv, plan, DEFAULT)
    # windows of a project without VMs need none
    inv2, pol2 = _fixture(nobody=(NIGHTLY,))
    simulate_side_by_side(inv2, replace(plan, policy=pol2), DEFAULT)


# -- the planner --------------------------------------------------------------------------------
def test_the_plan_schedules_the_crossings_in_their_projects_windows() -> None:
    inv, pol = _fixture(**{"project-1": (NIGHTLY,)})
    got = plan_and_check(inv, pol, SideBySideOptions(), DEFAULT, START)
    s = got.plan.schedule
    assert s is not None and s.start == START and s.windows == ()
    assert s.crossings and all(c.project == "project-1" for c in s.crossings)
    crossing = {m.vm for _, m in got.plan.migrations() if m.method == "cross-cloud" and m.vm != "e"}
    assert {vm for c in s.crossings for vm in c.vms} == crossing
    for c in s.crossings:
        o = next(openings((NIGHTLY,), c.start))
        assert o[0] == c.start and c.end <= o[1]
    assert check_plan(inv, got.plan).ok
    assert got.metrics["crossing_windows"] == len(s.crossings)
    # the simulator, from the plan's schedule, finds the same openings
    r = simulate_side_by_side(inv, got.plan, DEFAULT, s.start)
    assert [(c.project, c.start, c.end, c.vms) for c in r.crossing_windows] == [
        (c.project, c.start, c.end, c.vms) for c in s.crossings
    ]
    # and the schedule survives the file
    back = plan_from_dict(json.loads(json.dumps(plan_to_dict(got.plan))))
    assert back.schedule == s


def test_a_plan_with_project_windows_needs_a_start() -> None:
    inv, pol = _fixture(**{"project-1": (NIGHTLY,)})
    with pytest.raises(UsageError, match="needs a start date"):
        plan_and_check(inv, pol, SideBySideOptions(), DEFAULT)


# -- the commands -------------------------------------------------------------------------------
def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from planner.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


def _files(tmp_path: Path, inv: Inventory, pol: Policy) -> tuple[str, str]:
    i, p = tmp_path / "cloud.json", tmp_path / "policy.json"
    save_inventory(inv, i)
    save_policy(pol, p)
    return str(i), str(p)


def test_plan_and_simulate_side_by_side_with_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inv, pol = _files(tmp_path, *_fixture(**{"project-1": (NIGHTLY,)}))
    out = tmp_path / "plan.json"
    argv = ["plan", inv, "--policy", pol, "-o", str(out), "--mode", "side-by-side"]
    code, _, stderr = run(argv, capsys)
    assert code == 2 and "project_windows" in stderr and "--start" in stderr
    assert not out.exists()
    code, stdout, stderr = run([*argv, "--start", "2026-12-14T12:00"], capsys)
    assert code == 0, stderr
    assert "project windows used" in stdout
    plan = load_plan(out)
    assert plan.schedule is not None and plan.schedule.crossings
    # a start without an offset is the project windows' zone (UTC here)
    assert plan.schedule.start == START
    code, stdout, stderr = run(["simulate", inv, str(out), "--format", "json"], capsys)
    assert code == 0, stderr
    data = json.loads(stdout)["project_windows"]
    assert data["start"] == START.isoformat() and data["openings_used"] >= 1
    code, stdout, _ = run(["simulate", inv, str(out)], capsys)
    assert code == 0 and "crossings per project window" in stdout
    # the report simulates from the plan's schedule too
    html = tmp_path / "r.html"
    code, _, stderr = run(["report", inv, str(out), "-o", str(html)], capsys)
    assert code == 0 and html.exists(), stderr


def test_simulate_without_a_start_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    i, p = _fixture(**{"project-1": (NIGHTLY,)})
    inv, _ = _files(tmp_path, i, p)
    plan = tmp_path / "plan.json"
    save_plan(replace(six_and_two().plan, policy=p), plan)
    code, _, stderr = run(["simulate", inv, str(plan), "--ignore-digest"], capsys)
    assert code == 2 and "simulate --start" in stderr


def test_in_place_plans_ignore_project_windows_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.clouds import three_plus_spare

    fx = three_plus_spare()
    inv, pol = _files(tmp_path, fx.inventory, _windowed(fx.policy, **{"project-1": (NIGHTLY,)}))
    out = tmp_path / "plan.json"
    code, _, stderr = run(["plan", inv, "--policy", pol, "-o", str(out)], capsys)
    assert code == 0, stderr
    assert "project_windows" in stderr and "ignored in place" in stderr
    assert check_plan(fx.inventory, load_plan(out)).ok


def test_the_schemas_take_project_windows_and_crossings() -> None:
    from planner.formats import policy_to_dict
    from tests.test_schemas import errors

    inv, pol = _fixture(**{"project-1": (NIGHTLY,)})
    got = plan_and_check(inv, pol, SideBySideOptions(), DEFAULT, START)
    doc = json.loads(json.dumps(plan_to_dict(got.plan)))
    assert doc["schedule"]["crossings"] and errors("plan", doc) == []
    d = policy_to_dict(pol)
    assert errors("policy", d) == []
    d["project_windows"] = {"web": []}
    assert errors("policy", d)


@settings(max_examples=30, deadline=None)
@given(
    days=st.sets(st.integers(0, 6), min_size=1).map(lambda s: tuple(sorted(s))),
    opens=st.integers(0, 23 * 60),
    hours=st.integers(1, 12),
    tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
    offset_h=st.integers(0, 24 * 7),
    windowed=st.sets(st.sampled_from("abcdef"), min_size=1),
)
def test_every_windowed_crossing_lies_inside_an_opening_and_the_checker_agrees(
    days: tuple[int, ...], opens: int, hours: int, tz: str, offset_h: int, windowed: set[str]
) -> None:
    win = Window(days, opens, (opens + hours * 60) % (24 * 60), tz)
    inv = six_and_two().inventory
    for vm in "abcdef":
        inv = edit_vm(inv, vm, project="win" if vm in windowed else "free")
    pol = _windowed(six_and_two().policy, win=(win,))
    plan = replace(six_and_two().plan, policy=pol)
    start = START + dt.timedelta(hours=offset_h)
    r = simulate_side_by_side(inv, plan, DEFAULT, start)
    for x in r.moves:
        if x.method != "cross-cloud":
            continue
        if x.vm not in windowed:
            assert x.project is None and x.waited_s == 0
            continue
        assert x.opening is not None
        a = start + dt.timedelta(seconds=x.start_s)
        o = next(openings((win,), x.opening[0]))
        assert o[0] == x.opening[0] and abs((a - x.opening[0]).total_seconds()) < 1e-3
        assert (start + dt.timedelta(seconds=x.end_s)) <= o[1] + dt.timedelta(milliseconds=1)
    assert sum(len(c.vms) for c in r.crossing_windows) == len(windowed)
    crossings = tuple(
        ScheduledCrossing(c.project, c.start, c.end, c.vms) for c in r.crossing_windows
    )
    scheduled = replace(plan, schedule=Schedule(start, (), None, crossings))
    assert check_plan(inv, scheduled).ok


def test_the_executor_takes_a_plan_with_project_windows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It waits for them (tests/test_crosscloud_windows.py): the plan is no longer refused; here
    it gets as far as the clouds, which are not configured."""
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "clouds.yaml"))
    _, p = _fixture(**{"project-1": (NIGHTLY,)})
    plan = tmp_path / "plan.json"
    save_plan(replace(six_and_two().plan, policy=p), plan)
    journal = tmp_path / "j.jsonl"
    argv = ["execute", str(plan), "--source-cloud", "old", "--target-cloud", "new"]
    argv += ["--deploy-hook", "true", "--handover-hook", "true"]
    code, _, stderr = run([*argv, "--journal", str(journal)], capsys)
    assert "project_windows" not in stderr and "refuses" not in stderr, stderr
    assert code == 4 and "old" in stderr, (code, stderr)
    assert not journal.exists()
