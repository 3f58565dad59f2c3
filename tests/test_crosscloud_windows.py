"""Side-by-side execution honours per-project windows (planner/executor/crosswindow.py): the
verdicts against the calendar, and the run's order, waits and stops with the clouds' side
replaced by a recorder of the moves (the moves themselves: tests/test_crosscloud_sandbox.py)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from planner.errors import ExecutionError
from planner.executor.crosscloud import CrossCloudRun, CrossOptions, Journal
from planner.executor.crossmove import SOURCE_STATUS
from planner.executor.crosswindow import judge, need_of
from planner.executor.hooks import Hooks
from planner.plan import Migration, Plan, Predicted
from planner.windows import Window
from tests.clouds_sbs import six_and_two
from tests.test_cli_plan import run

UTC = dt.UTC
NIGHTLY = Window(tuple(range(7)), 22 * 60, 6 * 60, "UTC")  # 22:00-06:00 every day
NOON = dt.datetime(2026, 12, 14, 12, 0, tzinfo=UTC)
NIGHT = dt.datetime(2026, 12, 14, 23, 0, tzinfo=UTC)
HEADER = {"plan_sha256": "abc", "source": "old", "target": "new"}
# Wave 3 of six_and_two crosses a..f; a and c are of project web (nightly windows).
PROJECT = {"a": "web", "c": "web"}


# -- the verdicts -------------------------------------------------------------------------------
def test_a_crossing_goes_inside_an_opening_and_waits_outside_it() -> None:
    v = judge("a", "web", (NIGHTLY,), NIGHT, None)
    assert v is not None and v.go and v.closes == dt.datetime(2026, 12, 15, 6, 0, tzinfo=UTC)
    v = judge("a", "web", (NIGHTLY,), NOON, None)
    assert v is not None and not v.go and v.opens == dt.datetime(2026, 12, 14, 22, tzinfo=UTC)


def test_a_crossing_needs_its_predicted_time_left_in_the_opening() -> None:
    late = dt.datetime(2026, 12, 15, 5, 30, tzinfo=UTC)  # half an hour before it closes
    assert judge("a", "web", (NIGHTLY,), late, 1200.0).go  # type: ignore[union-attr]
    v = judge("a", "web", (NIGHTLY,), late, 3600.0)
    assert v is not None and not v.go and v.opens == dt.datetime(2026, 12, 15, 22, tzinfo=UTC)
    # Longer than any opening: the first opening is taken, said so (`fits` False).
    v = judge("a", "web", (NIGHTLY,), NIGHT, 9 * 3600.0)
    assert v is not None and v.go and not v.fits
    m = Migration("a", "cmp-5", "cmp-3", "cross-cloud")
    assert need_of(m) is None
    assert need_of(replace(m, predicted=Predicted(60.0, duration_s=900.0))) == 900.0


def test_windows_that_never_open_are_no_verdict() -> None:
    never = Window((0,), 60, 120, "UTC", azs=("elsewhere",))  # applies to no VM
    assert judge("a", "web", (never,), NOON, None) is None


# -- the run ------------------------------------------------------------------------------------
class Clouds:
    """The old cloud's servers as the run reads them (their project, whether a move started)
    and the moves done, in order."""

    def __init__(self) -> None:
        self.moved: list[str] = []
        self.stopped: set[str] = set()

    def original(self, vm: str) -> dict[str, Any] | None:
        if vm in self.moved:
            return None
        meta = {SOURCE_STATUS: "ACTIVE"} if vm in self.stopped else {}
        return {"tenant_id": PROJECT.get(vm, "db"), "metadata": meta}

    def move(self, vm: str, dst: str, wave: int) -> None:
        self.moved.append(vm)


class Run(CrossCloudRun):
    def __init__(self, plan: Plan, journal: Journal, clock: list[dt.datetime], wait: bool) -> None:
        opts = CrossOptions("old", "new", {}, "deploy", "handover", window_wait=wait)

        def sleep(s: float) -> None:
            self.slept.append(s)
            clock[0] += dt.timedelta(seconds=s)

        super().__init__(
            plan, "plan.json", opts, journal, _no_cloud, Hooks(journal.path.parent / "h"),
            self.lines.append, clock=lambda: clock[0], sleep=sleep,
        )  # fmt: skip
        self.clouds = Clouds()
        self.mover = self.clouds  # type: ignore[assignment]

    lines: list[str]
    slept: list[float]
    roles: list[int]

    def __new__(cls, *args: Any, **kw: Any) -> Run:
        self = super().__new__(cls)
        self.lines, self.slept, self.roles = [], [], []
        return self

    def _disable(self, host: str, wave: int) -> None:
        pass

    def _target_deployed(self) -> None:
        pass

    def _inside(self, vm: str, dst: str, method: str) -> None:
        self.clouds.moved.append(f"{vm}@{dst}")

    def _roles(self, w: Any) -> None:
        self.roles.append(w.index)


def _no_cloud(cloud: str, project: str | None) -> Any:
    raise AssertionError("no cloud in these tests")


def _plan() -> Plan:
    fx = six_and_two()
    pol = fx.policy.with_changes(project_windows=(("web", (NIGHTLY,)),))
    return replace(fx.plan, policy=pol)


def _events(path: Path, event: str) -> list[dict[str, Any]]:
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in recs if r.get("event") == event]


def test_no_window_wait_stops_before_the_held_crossings_and_resume_crosses_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.jsonl"
    clock = [NOON]
    r = Run(_plan(), Journal(path, HEADER, resume=False), clock, wait=False)
    with pytest.raises(ExecutionError) as exc:
        r.run()
    msg = str(exc.value)
    assert exc.value.exit_code == 5
    assert "2026-12-14T22:00:00Z" in msg and "--resume --journal" in msg and str(path) in msg
    # Other projects' crossings and the moves inside the old cloud went; web's did not.
    crossed = [m for m in r.clouds.moved if "@" not in m]
    assert crossed == ["b", "d", "e", "f"]
    assert r.roles == [1, 2]  # wave 3's hosts keep a and c: no roles taken
    assert {e["vm"] for e in _events(path, "window-wait")} == {"a", "c"}
    assert _events(path, "window-stop")[0]["vms"] == ["a", "c"]
    assert r.slept == []

    clock[0] = NIGHT
    again = Run(_plan(), Journal(path, HEADER, resume=True), clock, wait=False)
    again.run()
    assert again.clouds.moved == ["a", "c"]  # the rest is done, per the journal
    assert again.roles == [3, 4]
    assert {e["vm"] for e in _events(path, "window-open")} == {"a", "c"}
    assert _events(path, "run-done")


def test_the_run_waits_for_the_window_after_the_waves_other_moves(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    clock = [NOON]
    r = Run(_plan(), Journal(path, HEADER, resume=False), clock, wait=True)
    r.run()
    crossed = [m for m in r.clouds.moved if "@" not in m]
    assert crossed == ["b", "d", "e", "f", "a", "c"]
    assert r.roles == [1, 2, 3, 4]
    assert clock[0] >= dt.datetime(2026, 12, 14, 22, tzinfo=UTC) and r.slept
    assert max(r.slept) <= 60.0  # re-checks the clock while waiting
    assert any("waiting" in line and "web" in line for line in r.lines)


def test_a_move_under_way_is_finished_whatever_the_clock(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    r = Run(_plan(), Journal(path, HEADER, resume=False), [NOON], wait=False)
    r.clouds.stopped.add("a")  # a killed run had stopped it
    with pytest.raises(ExecutionError):
        r.run()
    assert "a" in r.clouds.moved and "c" not in r.clouds.moved


def test_status_shows_the_crossings_waiting_for_their_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "j.jsonl"
    r = Run(_plan(), Journal(path, HEADER, resume=False), [NOON], wait=False)
    with pytest.raises(ExecutionError):
        r.run()
    code, out, _ = run(["execute", "--status", str(path)], capsys)
    assert code == 0 and "waiting for their project's window: 2 VM(s) (a, c)" in out, out
    assert "2026-12-14T22:00:00Z" in out
