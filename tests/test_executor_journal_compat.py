"""Journals outlive rollwave versions: a run cut by an earlier rollwave resumes with this one, and
this one writes, record for record, the journal the earlier one wrote (and makes the same calls).

The reference files (tests/data/journals) were written by the executor of commit c35e689; the
scenarios are in tests/journal_scenarios.py (no cloud: the dry run's model run as a live one).
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from planner import formats
from planner.app.execute import SimEstimator, SolverReplanner
from planner.executor.hooks import Notifier
from planner.executor.journal import RunState, read_records
from planner.executor.run import ExecOptions, Executor
from planner.executor.ui import Reporter
from sim.model import DEFAULT
from tests.journal_scenarios import DATA, SCENARIOS, Scenario, comparable, run

WHOLE = [s for s in SCENARIOS if s.kill_at is None]
CUT = [s for s in SCENARIOS if s.kill_at is not None]


def build(
    plan: Any,
    sha: str,
    cloud: Any,
    hooks: Any,
    journal: Path,
    options: dict[str, Any],
    model: dict[str, Any] | None,
    resume: bool,
    clock: Any,
) -> Executor:
    est = SimEstimator(DEFAULT.with_changes(**model)) if model is not None else None
    opts = ExecOptions(upgrade_command="upgrade {host}", poll_s=0.5, **options)
    # The fixtures were written lock-step (the only mode then); lock-step keeps writing them.
    lockstep = replace(plan, policy=plan.policy.with_changes(execution="lockstep"))
    return Executor(
        lockstep,
        sha,
        cloud,
        opts=opts,
        reporter=Reporter(Console(file=io.StringIO()), quiet=True),
        hooks=hooks,
        notify=Notifier(None, None, lambda s: None),
        replanner=SolverReplanner(),
        estimator=est,
        journal_path=journal,
        plan_file="plan.json",
        resume=resume,
        clock=clock,
        sleep=clock.sleep,
    )


def _calls(name: str) -> list[str]:
    return (DATA / f"{name}.calls.txt").read_text().splitlines()


@pytest.mark.parametrize("s", WHOLE, ids=lambda s: s.name)
def test_a_run_writes_the_journal_and_makes_the_calls_it_did_before(
    s: Scenario, tmp_path: Path
) -> None:
    j = tmp_path / "run.journal.jsonl"
    res, cloud = run(build, s, j)
    assert res is not None and res.status in ("completed", "incomplete"), res
    assert comparable(j) == comparable(DATA / f"{s.name}.journal.jsonl")
    assert cloud.calls == _calls(s.name)


@pytest.mark.parametrize("s", CUT, ids=lambda s: s.name)
def test_a_killed_run_leaves_the_journal_it_did_before(s: Scenario, tmp_path: Path) -> None:
    j = tmp_path / "run.journal.jsonl"
    res, _ = run(build, s, j)
    assert res is None  # killed
    assert comparable(j) == comparable(DATA / f"{s.name}.journal.jsonl")


@pytest.mark.parametrize("s", CUT, ids=lambda s: s.name)
def test_a_journal_cut_by_an_earlier_rollwave_resumes(s: Scenario, tmp_path: Path) -> None:
    old = DATA / f"{s.name}.journal.jsonl"
    assert RunState.replay(read_records(old)).open_steps  # cut in the middle of a step
    j = tmp_path / "run.journal.jsonl"
    shutil.copy(old, j)
    start = formats.inventory_from_dict(json.loads((DATA / f"{s.name}.cloud.json").read_text()))
    res, cloud = run(build, s, j, start=start, resume=True)
    assert res is not None and res.status == "completed", res
    assert comparable(j) == comparable(DATA / f"{s.name}.resumed.journal.jsonl")
    assert cloud.calls == _calls(s.name)
    assert not RunState.replay(read_records(j)).open_steps
