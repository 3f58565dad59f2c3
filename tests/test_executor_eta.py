"""The executor's ETA (planner/executor/eta.py) weighs each step by its work in the model, and
counts a canary soak down, on the progress display (bars, the status line without a terminal) and in
`execute --status`.

A wave of one huge and five tiny migrations: the tiny ones finishing first leave nearly all of the
wave's work ahead, and the ETA says so (counting steps, it fell to a minute). The soak is driven by
an injected clock on the dry run's model of a cloud run as if live: no test sleeps."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from planner.app.execute import SimEstimator, SolverReplanner
from planner.executor import view as views
from planner.executor.cloud import DryRunCloud
from planner.executor.eta import Eta, host_step, vm_step
from planner.executor.hooks import DryRunHooks, Notifier
from planner.executor.journal import NOTE, Journal, RunState, parse_iso, read_records
from planner.executor.run import ExecOptions, Executor
from planner.executor.ui import status_dict
from sim.model import DEFAULT
from tests.clouds import NAMED, NEW, OLD, Cloud, Fixture, make_plan, mv, policy, wave
from tests.test_cli import clean, rollwave
from tests.test_executor_ops import Clock, Spy

TINY = 5


def one_huge_five_tiny() -> Fixture:
    """cmp-1 holds a 1 TB VM and five 512 MB ones; its wave moves the huge one first (one
    migration at a time off a host: the model runs it first), onto upgraded hosts."""
    c = Cloud("huge-and-tiny")
    for name, version in (("cmp-1", OLD), ("cmp-2", NEW), ("cmp-3", NEW)):
        c.host(name, vcpu=64, ram_mb=4 * 1024 * 1024, disk_gb=10000, version=version)
    c.vm("huge", "cmp-1", vcpu=32, ram_mb=1024 * 1024, disk_gb=100)
    for i in range(TINY):
        c.vm(f"tiny-{i}", "cmp-1", vcpu=1, ram_mb=512, disk_gb=1)
    pol = policy(1)
    moves = [mv("huge", "cmp-1", "cmp-2")] + [
        mv(f"tiny-{i}", "cmp-1", "cmp-3") for i in range(TINY)
    ]
    return Fixture("one_huge_five_tiny", c.build(), pol, make_plan(pol, wave(1, ["cmp-1"], moves)))


def estimated(fx: Fixture, first: int = 1, model: Any = DEFAULT, t0: float = 0.0) -> Eta:
    rem = views.remaining_plan(
        list(fx.plan.waves), first, fx.policy, terminal=set(), done_moves=set(), skipped=set()
    )
    eta = Eta(SimEstimator(model))
    assert eta.estimate(fx.inventory, rem, first, now=t0) is not None, eta.error
    return eta


# -- 1. steps weighed by their work ---------------------------------------------------------------


@pytest.fixture(scope="module")
def huge_eta() -> Eta:
    return estimated(one_huge_five_tiny())


def fresh(eta: Eta) -> Eta:
    return replace(eta, work=dict(eta.work), curve=list(eta.curve), _seen=set())


def test_the_model_moves_the_huge_vm_first_and_it_is_most_of_the_wave(huge_eta: Eta) -> None:
    eta = huge_eta
    assert eta.wave == 1 and eta.order[0] == vm_step("huge"), eta.order
    assert set(eta.work) == {vm_step("huge"), host_step("cmp-1")} | {
        vm_step(f"tiny-{i}") for i in range(TINY)
    }
    tiny = sum(eta.work[vm_step(f"tiny-{i}")] for i in range(TINY))
    assert eta.work[vm_step("huge")] > 15 * tiny  # 1 TB against 2.5 GB (and the overheads)
    # the host's step: its upgrade (the model's 1200 s median) and the disable and enable around it
    assert eta.work[host_step("cmp-1")] > 1000
    assert eta.wave_work == pytest.approx(sum(eta.work.values()))


def test_tiny_migrations_done_first_leave_the_huge_one_ahead(huge_eta: Eta) -> None:
    """The cloud moves the tiny VMs first, each in its model time: nothing says the cloud is
    faster or the wave nearly done. Counting steps (5 of 7 done: where the model had its 5th step
    done, after the huge one) put the wave near its end at a pace of 0.05: an ETA of a minute."""
    eta = fresh(huge_eta)
    total = eta.wave_s + eta.later_s
    now = 0.0
    for i in range(TINY):
        now += eta.work[vm_step(f"tiny-{i}")]
        eta.step_done(now, vm_step(f"tiny-{i}"))
    got = eta.left(now)
    assert got is not None
    real, _, pace = got
    assert pace == pytest.approx(1.0, rel=0.2)  # not skewed by the step count
    ahead = eta.work[vm_step("huge")] + eta.work[host_step("cmp-1")]
    assert real > 0.9 * ahead and real == pytest.approx(total - now, rel=0.1), (real, ahead)
    # then the huge one, in its model time: only the host is left
    now += eta.work[vm_step("huge")]
    eta.step_done(now, vm_step("huge"))
    got = eta.left(now)
    assert got is not None
    assert got[0] == pytest.approx(eta.work[host_step("cmp-1")], rel=0.1)
    assert got[2] == pytest.approx(1.0, rel=0.1)
    now += eta.work[host_step("cmp-1")]
    eta.step_done(now, host_step("cmp-1"))
    got = eta.left(now)
    assert got is not None and got[0] == pytest.approx(0.0, abs=1.0)


def test_a_slow_cloud_shows_its_pace_on_the_tiny_steps_already(huge_eta: Eta) -> None:
    """Tiny migrations that take 3x their model time: 3x pace, the huge one's time tripled."""
    eta = fresh(huge_eta)
    now = 0.0
    for i in range(TINY):
        now += 3 * eta.work[vm_step(f"tiny-{i}")]
        eta.step_done(now, vm_step(f"tiny-{i}"))
    got = eta.left(now)
    assert got is not None
    assert got[2] == pytest.approx(3.0, rel=0.2)
    assert got[0] == pytest.approx(3 * (eta.wave_s - now / 3), rel=0.2)


def test_the_same_step_twice_counts_once_and_an_unknown_step_weighs_the_average(
    huge_eta: Eta,
) -> None:
    eta = fresh(huge_eta)
    eta.step_done(10.0, vm_step("tiny-0"))
    eta.step_done(20.0, vm_step("tiny-0"))  # a found-on-destination after a done: once
    assert eta.done == 1 and eta.done_work == pytest.approx(eta.work[vm_step("tiny-0")])
    eta.step_done(30.0, vm_step("appeared-mid-wave"))
    assert eta.done_work == pytest.approx(
        eta.work[vm_step("tiny-0")] + eta.wave_work / len(eta.work)
    )


def test_a_step_given_up_shortens_the_wave_without_touching_the_pace(huge_eta: Eta) -> None:
    eta = fresh(huge_eta)
    now = 0.0
    for i in range(TINY):
        now += eta.work[vm_step(f"tiny-{i}")]
        eta.step_done(now, vm_step(f"tiny-{i}"))
    before = eta.left(now)
    eta.step_done(now, vm_step("huge"), dropped=True)
    after = eta.left(now)
    assert before is not None and after is not None
    assert after[2] == pytest.approx(before[2])  # the pace
    assert after[0] < before[0] - 0.8 * eta.work[vm_step("huge")]


def test_the_executor_tells_the_eta_which_step_ended() -> None:
    """Each migration and host the run finishes reaches the ETA by its key: all the wave's work
    is done at its end, none of it guessed."""
    fx = one_huge_five_tiny()
    lines: list[str] = []
    cloud = DryRunCloud(fx.inventory, lines.append, fx.plan.policy.target_version)
    clock = Clock(0.5)
    spy = Spy(heartbeat_s=0)
    ex = Executor(
        fx.plan,
        "f" * 64,
        cloud,
        opts=ExecOptions(upgrade_command="upgrade {host}", poll_s=0.01),
        reporter=spy,
        hooks=DryRunHooks(cloud.run_hook),
        notify=Notifier(None, None, lines.append),
        replanner=SolverReplanner(),
        estimator=SimEstimator(DEFAULT),
        journal_path=None,
        clock=clock,
        sleep=clock.sleep,
    )
    assert ex.run().status == "completed"
    eta = ex.eta
    assert eta is not None and eta.actual.keys() == {1}
    assert eta._seen == set(eta.work) and eta.done == len(eta.work) == TINY + 2
    assert eta.done_work == pytest.approx(eta.wave_work) and eta.dropped_work == 0
    # the status line says how much of the wave's work is behind it, beside its steps: the huge
    # VM (moved first) is over a third of it, the host's upgrade most of the rest
    got = {
        int(m[1]): int(m[2])
        for m in re.finditer(r"wave 1/1 (\d)/7 \((\d+)% of its work\)", spy.buf.getvalue())
    }
    assert got[1] > 35 and 40 < got[6] < 60, got
    assert list(got.values()) == sorted(got.values())
    bar = next(ln for ln in spy.buf.getvalue().splitlines() if ln.startswith("wave 1/1 ("))
    assert "(100% of its work)" in bar and "7/7" in bar, bar  # the bar, drawn at the end


# -- 2. the soak ----------------------------------------------------------------------------------

SOAK = 600.0


def test_the_soak_is_wall_time_and_counts_down() -> None:
    fx = NAMED["three_plus_spare"]()
    eta = estimated(fx, 1, DEFAULT.with_changes(canary_hosts=1, soak_s=SOAK))
    assert eta.soak_ahead_s == SOAK  # the model soaks after wave 1 (the spare, upgraded)
    later = eta.later_s
    assert later > SOAK
    eta.wave_done(1, 2 * eta.wave_s)  # a cloud twice as slow: not the soak, though
    got = eta.left(None)
    assert got is not None and got[2] == pytest.approx(2.0)
    assert got[0] == pytest.approx(2 * (later - SOAK) + SOAK)
    eta.soak_begin(1000.0, SOAK)
    for spent in (0.0, 100.0, 599.0):
        got = eta.left(1000.0 + spent)
        assert got is not None
        assert got[0] == pytest.approx(2 * (later - SOAK) + SOAK - spent)
    assert "soak 0:08:20 left" in eta.text(1100.0)
    eta.soak_end()
    got = eta.left(1700.0)
    assert got is not None and got[0] == pytest.approx(2 * (later - SOAK))
    assert "soak" not in eta.text(1700.0)


class LiveLike(DryRunCloud):
    """The dry run's model of the cloud, run as a live one: the executor soaks and sleeps (on
    the injected clock) and writes its journal."""

    dry = False


def test_the_executor_counts_the_soak_down_on_the_bars_the_status_line_and_status(
    tmp_path: Path,
) -> None:
    fx = NAMED["three_plus_spare"]()
    journal = tmp_path / "run.journal.jsonl"
    spy = Spy(heartbeat_s=0)  # the status line at each poll (stderr is no terminal here)
    clock = Clock(0.001)
    seen: list[dict[str, Any]] = []
    ex: Executor

    def sleep(s: float) -> None:
        clock.sleep(s)
        if "soaking" in spy._flight:
            bar = next(t for t in spy.progress.tasks if t.description == "canary")  # type: ignore[union-attr]
            st = RunState.replay(read_records(journal))
            assert st.eta is not None
            t_rec = parse_iso(st.eta["t"])
            seen.append(
                {
                    "clock": clock.t,
                    "bar": bar.fields["note"],
                    "eta": spy.eta,
                    "status": status_dict(st, str(journal), now=t_rec + 120.0),
                    "record": st.eta,
                }
            )

    lines: list[str] = []
    cloud = LiveLike(fx.inventory, lines.append, fx.plan.policy.target_version)
    model = DEFAULT.with_changes(canary_hosts=1, soak_s=SOAK)
    ex = Executor(
        fx.plan,
        "f" * 64,
        cloud,
        opts=ExecOptions(upgrade_command="upgrade {host}", poll_s=60.0, canary=1, soak_s=SOAK),
        reporter=spy,
        hooks=DryRunHooks(cloud.run_hook),
        notify=Notifier(None, None, lines.append),
        replanner=SolverReplanner(),
        estimator=SimEstimator(model),
        journal_path=journal,
        clock=clock,
        sleep=sleep,
    )
    res = ex.run()
    assert res.status == "completed", res.reason
    # ten polls of 60 s: the bar and the ETA count down, a minute each
    assert [s["bar"] for s in seen] == [f"soaking: 0:{m:02d}:00 left" for m in range(10, 0, -1)]
    etas = [s["eta"] for s in seen]
    assert all("soak" in e for e in etas) and len(set(etas)) == len(etas), etas
    lefts = [_hms(e.split()[1]) for e in etas]
    assert all(a - b == pytest.approx(60, abs=1) for a, b in itertools.pairwise(lefts)), lefts
    # the status line without a terminal says it too
    beats = [ln for ln in spy.buf.getvalue().splitlines() if ln.startswith("progress:")]
    assert any("canary" in b and "soaking: 0:07:00 left" in b and "ETA" in b for b in beats)
    # --status: the soak's start was journaled; two minutes later 8 minutes are left
    st0 = seen[0]["status"]
    assert st0["status"].startswith("running") and st0["eta"] is not None
    assert st0["eta"]["soak_left_s"] == pytest.approx(SOAK - 120.0, abs=0.2)
    assert st0["eta"]["left_s"] == pytest.approx(seen[0]["record"]["left_s"] - 120.0, abs=0.2)
    assert seen[0]["record"]["soak_left_s"] == pytest.approx(SOAK, abs=0.1)
    # the finished run has no ETA
    assert status_dict(RunState.replay(read_records(journal)), str(journal))["eta"] is None
    recs = [r for r in read_records(journal) if r.get("op") == "eta"]
    assert recs and all(r["ev"] == NOTE for r in recs)


def _hms(text: str) -> float:
    h, m, s = (int(x) for x in text.split(":"))
    return 3600 * h + 60 * m + s


def test_status_counts_the_recorded_eta_down(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    j = Journal(p)  # held: the run is running
    j.write({"ev": "header", "format_version": "1.0", "kind": "rollwave-journal"})
    j.write({"ev": NOTE, "op": "run", "what": "start", "pid": 4242})
    rec = j.write(
        {
            "ev": NOTE,
            "op": "eta",
            "wave": 2,
            "left_s": 1800.0,
            "model_s": 1500.0,
            "pace": 1.2,
            "soak_left_s": 300.0,
        }
    )
    t = parse_iso(rec["t"])
    d = status_dict(RunState.replay(read_records(p)), str(p), now=t + 100.0)
    assert d["eta"]["left_s"] == pytest.approx(1700.0) and d["eta"]["soak_left_s"] == 200.0
    d = status_dict(RunState.replay(read_records(p)), str(p), now=t + 400.0)
    assert d["eta"]["soak_left_s"] == 0.0 and d["eta"]["left_s"] == pytest.approx(1400.0)
    r = clean(rollwave("execute", "--status", p))
    assert r.code == 0, r
    assert "ETA 0:" in r.out and "the canary soaking: 0:0" in r.out, r.out
    r = clean(rollwave("execute", "--status", p, "--format", "json"))
    assert json.loads(r.out)["eta"]["left_s_then"] == 1800.0
    j.close()
    # no rollwave holds it now (killed): no ETA
    assert status_dict(RunState.replay(read_records(p)), str(p))["eta"] is None


@pytest.mark.parametrize("canary", [None, "done", "failed"])
def test_no_soak_is_foreseen_once_the_canary_is_over(canary: str | None) -> None:
    """Passed or failed, the canary does not come again: the ETA of the waves after it has no
    soak in it; before it, the model's soak is there."""
    fx = NAMED["three_plus_spare"]()
    lines: list[str] = []
    cloud = DryRunCloud(fx.inventory, lines.append, fx.plan.policy.target_version)
    model = DEFAULT.with_changes(canary_hosts=1, soak_s=SOAK)
    ex = Executor(
        fx.plan,
        "f" * 64,
        cloud,
        opts=ExecOptions(upgrade_command="u {host}", canary=1, soak_s=SOAK),
        reporter=Spy(),
        hooks=DryRunHooks(cloud.run_hook),
        notify=Notifier(None, None, lines.append),
        replanner=SolverReplanner(),
        estimator=SimEstimator(model),
        journal_path=None,
    )
    if canary is not None:
        ex.state.canary = {"ev": canary, "op": "canary", "hosts": ["cmp-4"]}
    ex.drift.check(2)
    assert ex.eta is not None and ex.eta.wave == 2
    assert ex.eta.soak_ahead_s == (SOAK if canary is None else 0.0)
