"""`rollwave simulate` in calendar time: `--start` or the plan's schedule; the calendar in the
text and JSON output, one run and Monte Carlo; bad input (a start that is not a date, windows in
the plan's policy that never open, an unknown zone, an unreadable time): one message naming the
file and place, exit 2, nothing written."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from planner.app.demo import example_path
from planner.formats import load_inventory, load_policy, save_plan
from planner.windows import Window
from solver.greedy import greedy_plan
from tests.test_sim_cli import invoke

NIGHTLY = (Window(tuple(range(7)), 22 * 60, 2 * 60, "Europe/Berlin"),)


def _files(d: Path, windows: tuple[Window, ...]) -> tuple[str, str]:
    inv_file = d / "inventory.json"
    shutil.copyfile(example_path("small.json"), inv_file)
    inv = load_inventory(inv_file)
    pol = dataclasses.replace(load_policy(example_path("small-policy.yaml")), windows=windows)
    plan_file = d / "plan.json"
    save_plan(greedy_plan(inv, pol, inventory_sha256=inv.digest or ""), plan_file)
    return str(inv_file), str(plan_file)


@pytest.fixture(scope="module")
def nightly(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return _files(tmp_path_factory.mktemp("nightly"), NIGHTLY)


def test_start_runs_in_the_calendar_text(nightly: tuple[str, str]) -> None:
    code, out, _ = invoke("simulate", *nightly, "--start", "2026-12-14T22:00")
    assert code == 0, out
    assert "window(s), last host done on 2026-12-1" in out
    assert "Mon 2026-12-14 22:00" in out and "Tue 2026-12-15 22:00" in out
    assert "every host's maintenance ended inside its window" in out


def test_start_runs_in_the_calendar_json(nightly: tuple[str, str]) -> None:
    code, out, _ = invoke(
        "simulate", *nightly, "--start", "2026-12-14T22:00", "--format", "json", "--no-vms"
    )
    assert code == 0
    cal = json.loads(out)["calendar"]
    assert cal["windows_used"] == len(cal["windows"]) >= 2
    assert cal["windows"][0]["start"] == "2026-12-14T22:00:00+01:00"
    assert cal["overruns"] == [] and cal["outside_windows"] == []
    hosts = [h for w in cal["windows"] for h in w["hosts"]]
    assert len(hosts) == len(set(hosts)) == 15
    # without --start (and no schedule in the plan): no calendar
    code, out, _ = invoke("simulate", *nightly, "--format", "json", "--no-vms")
    assert code == 0 and "calendar" not in json.loads(out)


def test_monte_carlo_gives_the_windows_used_and_the_finish(nightly: tuple[str, str]) -> None:
    args = ("simulate", *nightly, "--start", "2026-12-14T22:00", "--runs", "4", "--jobs", "1")
    code, out, _ = invoke(*args, "--format", "json")
    assert code == 0
    cal = json.loads(out)["calendar"]
    assert cal["windows_used"]["min"] >= 2
    assert cal["windows_planned"] is None and cal["p_more_windows_than_planned"] is None
    assert cal["p_overrun"] == 0.0
    assert cal["finish"]["p50"].startswith("2026-12-1")
    code, out, _ = invoke(*args)
    assert code == 0 and "windows used" in out and "last host done" in out


def test_the_plans_schedule_gives_the_start_and_the_windows_planned(
    tmp_path: Path,
) -> None:
    inv, _ = _files(tmp_path, NIGHTLY)
    pol = tmp_path / "policy.yaml"
    pol.write_text(
        Path(example_path("small-policy.yaml")).read_text()
        + '\nwindows:\n  - {days: daily, start: "22:00", end: "02:00", tz: Europe/Berlin}\n'
    )
    plan = tmp_path / "scheduled.json"
    code, out, _ = invoke(
        "plan", inv, "--policy", str(pol), "--start", "2026-12-14T22:00", "-o", str(plan)
    )
    assert code == 0, out
    planned = json.loads(plan.read_text())["summary"]["windows"]
    code, out, _ = invoke(
        "simulate", inv, str(plan), "--runs", "3", "--jobs", "1", "--format", "json"
    )
    assert code == 0
    cal = json.loads(out)["calendar"]
    assert cal["windows_planned"] == planned
    assert cal["p_more_windows_than_planned"] == 0.0


def test_a_start_that_is_not_a_date_is_bad_input_and_writes_nothing(
    nightly: tuple[str, str], tmp_path: Path
) -> None:
    tl = tmp_path / "tl.jsonl"
    code, _, err = invoke("simulate", *nightly, "--start", "next tuesday", "-o", str(tl))
    assert code == 2
    assert "--start" in err and "'next tuesday' is not a date" in err
    assert not tl.exists()


def test_windows_too_short_for_a_host_exit_3_and_write_nothing(tmp_path: Path) -> None:
    short = (Window(tuple(range(7)), 22 * 60, 22 * 60 + 5, "UTC"),)
    inv, plan = _files(tmp_path, short)
    tl = tmp_path / "tl.jsonl"
    code, _, err = invoke("simulate", inv, plan, "--start", "2026-12-14", "-o", str(tl))
    assert code == 3
    assert "no opening of the windows that apply to it is that long" in err
    assert not tl.exists()


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("tz", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("end", "22:00", "the window never opens"),
        ("days", "someday", "unknown day 'someday'"),
        ("start", "10pm", 'is not a time "HH:MM"'),
    ],
)
def test_bad_windows_in_the_plans_policy_are_bad_input_and_write_nothing(
    nightly: tuple[str, str], tmp_path: Path, field: str, value: str, words: str
) -> None:
    inv, plan = nightly
    data = json.loads(Path(plan).read_text())
    data["policy"]["windows"][0][field] = value
    bad = tmp_path / "bad-plan.json"
    bad.write_text(json.dumps(data))
    tl = tmp_path / "tl.jsonl"
    code, _, err = invoke("simulate", inv, str(bad), "--start", "2026-12-14T22:00", "-o", str(tl))
    assert code == 2, err
    assert str(bad) in err and f"policy.windows[0].{field}" in err and words in err
    assert not tl.exists()
