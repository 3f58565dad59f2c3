"""Pipelined execution (issue 16): hosts of later waves enter maintenance as soon as admission says
yes on the live state. Run on the dry run's model of a cloud run as a live one (a clock only
sleeping moves), its headroom sampled at every call that changes it; killed mid-pipeline and
resumed; `--status` on the journal."""

from __future__ import annotations

import datetime as _dt
import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from planner.app.execute import SolverReplanner
from planner.capacity import CapacityModel, headroom
from planner.checker import check_plan
from planner.executor.hooks import Notifier
from planner.executor.journal import RunState, read_records
from planner.executor.run import ExecOptions, Executor, RunResult
from planner.executor.ui import Reporter, status_dict
from planner.generate import GenerateSpec, default_policy, generate
from planner.inventory import Inventory
from planner.plan import Plan
from planner.windows import Window
from solver.greedy import greedy_plan
from tests.journal_scenarios import Clock, FaultyCloud, FaultyHooks, Killed
from tests.test_cli import rollwave
from tests.test_executor_windows import World


def _cloud(execution: str = "pipelined") -> tuple[Inventory, Plan]:
    g = GenerateSpec(
        hosts=10,
        vms_per_host=2,
        utilisation=0.4,
        controllers=0,
        version="a",
        target_version="b",
        seed=0,
    )
    inv = generate(g)
    pol = default_policy(g).with_changes(max_hosts_per_wave=3, execution=execution)
    # the kill points below are calls of this plan's run: the greedy's other host orders give
    # it; its repair (which finds another plan of the same size first) is left out
    plan = greedy_plan(inv, pol, inventory_sha256="", repair_work=0)
    assert check_plan(inv, plan).ok and len(plan.waves) >= 4
    return inv, plan


class Sampled(FaultyCloud):
    """The model cloud, its headroom judged after every call that changes it (a service
    disabled or enabled, a migration asked): what an outside observer would sample."""

    def __init__(self, inv: Inventory, plan: Plan, **kw: Any) -> None:
        super().__init__(inv, plan.policy.target_version, **kw)
        self.rule = plan.policy.headroom
        self.samples = 0
        self.breaches: list[str] = []
        self.max_down = 0

    def _judge(self) -> None:
        inv = self.snapshot()
        self.samples += 1
        self.max_down = max(self.max_down, sum(1 for h in inv.hosts if not h.enabled))
        for r in headroom(CapacityModel(inv), self.rule):
            if not r.ok:
                self.breaches.append(f"{r.group}/{r.rc}: {r.free} < {r.required}")

    def set_service(self, host: str, enabled: bool, reason: str | None = None) -> None:
        super().set_service(host, enabled, reason)
        self._judge()

    def live_migrate(self, vm: str, host: str) -> None:
        super().live_migrate(vm, host)
        self._judge()


def _executor(
    plan: Plan, cloud: FaultyCloud, journal: Path, clock: Clock, *, resume: bool = False
) -> Executor:
    return Executor(
        plan,
        "e" * 64,
        cloud,
        opts=ExecOptions(upgrade_command="upgrade {host}", poll_s=1.0, max_parallel=2),
        reporter=Reporter(Console(file=io.StringIO()), quiet=True),
        hooks=FaultyHooks(cloud, set()),
        notify=Notifier(None, None, lambda s: None),
        replanner=SolverReplanner(),
        journal_path=journal,
        plan_file="plan.json",
        resume=resume,
        clock=clock,
        sleep=clock.sleep,
    )


def _run(plan: Plan, cloud: FaultyCloud, journal: Path) -> RunResult:
    return _executor(plan, cloud, journal, Clock()).run()


def _order(recs: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    """(what, wave, host) of the wave and admit records, in the journal's order."""
    out = []
    for r in recs:
        if r.get("op") == "wave" and r["ev"] in ("intent", "done"):
            out.append((f"wave {r['ev']}", int(r["wave"]), ""))
        elif r.get("op") == "admit" and r.get("admitted"):
            out.append(("admit", int(r["wave"]), str(r["host"])))
    return out


def test_a_later_waves_host_enters_before_the_earlier_wave_is_over(tmp_path: Path) -> None:
    inv, plan = _cloud()
    cloud = Sampled(inv, plan)
    j = tmp_path / "run.journal.jsonl"
    res = _run(plan, cloud, j)
    assert res.status == "completed", res.reason
    recs = read_records(j)
    assert recs[0]["execution"] == "pipelined"
    order = _order(recs)
    # some host of wave k+1 is admitted before wave k's done record
    early = [
        (k, h)
        for i, (what, k, h) in enumerate(order)
        if what == "admit" and ("wave done", k - 1, "") in order[i + 1 :]
    ]
    assert early, order
    # every host admitted once, every wave begun and ended once, every host upgraded
    admitted = [h for what, _, h in order if what == "admit"]
    assert sorted(admitted) == sorted(plan.hosts)
    st = RunState.replay(recs)
    assert st.upgraded == set(plan.hosts) and st.finished and not st.disabled_by_us
    assert st.ended == set(range(1, len(plan.waves) + 1))
    # no rule broken on any sampled state: headroom, and the wave size as hosts in maintenance
    assert cloud.samples > 20 and cloud.breaches == []
    assert cloud.max_down <= plan.policy.max_hosts_per_wave
    assert st.headroom_breaches == []
    assert st.counts()["migrations_done"] == sum(len(w.migrations) for w in plan.waves)
    # a host is admitted only once its evacuees' destinations of earlier waves are back, VMs
    # that move in two waves included (here one goes back to its first host)
    back = {r["host"]: i for i, r in enumerate(recs) if r.get("status") == "upgraded"}
    admit_at = {
        r["host"]: i for i, r in enumerate(recs) if r.get("op") == "admit" and r["admitted"]
    }
    wave = {h: w.index for w in plan.waves for h in w.hosts}
    twice = {m.vm for _, m in plan.migrations()}
    assert len(twice) < sum(len(w.migrations) for w in plan.waves)  # some VM moves twice
    for w in plan.waves:
        for m in w.migrations:
            if wave.get(m.dst, w.index) < w.index:
                assert back[m.dst] < admit_at[m.src], (m, w.index)


def test_refusals_are_journaled_once_per_change_of_reason(tmp_path: Path) -> None:
    inv, plan = _cloud()
    j = tmp_path / "run.journal.jsonl"
    assert _run(plan, Sampled(inv, plan), j).status == "completed"
    recs = [r for r in read_records(j) if r.get("op") == "admit"]
    refusals = [r for r in recs if not r["admitted"]]
    assert refusals, "a 10-host plan in waves of 3 never waits"
    rules = {r["rule"] for r in refusals}
    assert "size" in rules  # the fourth host waits for the wave size
    for r in refusals:
        assert r["reason"] and r["wave"] >= 1
    last: dict[str, tuple[Any, Any]] = {}
    for r in recs:
        key = (r.get("rule"), r.get("until")) if not r["admitted"] else ("admitted", None)
        assert last.get(r["host"]) != key, f"{r['host']}: the same reason journaled twice"
        last[r["host"]] = key


def test_lockstep_keeps_every_wave_after_the_last(tmp_path: Path) -> None:
    inv, plan = _cloud("lockstep")
    cloud = Sampled(inv, plan)
    j = tmp_path / "run.journal.jsonl"
    assert _run(plan, cloud, j).status == "completed"
    recs = read_records(j)
    assert "execution" not in recs[0]
    assert not any(r.get("op") == "admit" for r in recs)
    waves = [(r["ev"], r["wave"]) for r in recs if r.get("op") == "wave" and r["ev"] != "note"]
    assert waves == [(ev, k) for k in range(1, len(plan.waves) + 1) for ev in ("intent", "done")]
    assert cloud.breaches == []


# Cut with two waves under way: as a host is disabled, with migrations in flight, as a host is
# enabled again, as a VM is stopped, as the upgrade command starts.
@pytest.mark.parametrize("kill_at", [45, 54, 57, 99, 105, 108])
def test_killed_mid_pipeline_then_resumed_loses_nothing(tmp_path: Path, kill_at: int) -> None:
    inv, plan = _cloud()
    cloud = Sampled(inv, plan, kill_at=kill_at)
    j = tmp_path / "run.journal.jsonl"
    clock = Clock()
    ex = _executor(plan, cloud, j, clock)
    with pytest.raises(Killed):
        ex.run()
    assert ex.ctx.journal is not None
    ex.ctx.journal.close()  # the killed process's lock goes with it
    cut = RunState.replay(read_records(j))
    inside = {h for h in cut.admitted if h not in cut.outcomes}
    assert inside and not cut.finished
    assert len(cut.started - cut.ended) == 2  # mid-pipeline: two waves under way
    # the status of the cut run: its hosts in maintenance and the hosts waiting, with why
    data = status_dict(cut, str(j))
    adm = data["admission"]
    assert data["execution"] == "pipelined" and "killed" in data["status"]
    assert {r["host"] for r in adm["in_maintenance"]} == inside
    assert all(r["rule"] and r["reason"] for r in adm["waiting"])
    res = _executor(plan, cloud, j, clock, resume=True).run()
    assert res.status == "completed", res.reason
    recs = read_records(j)
    st = RunState.replay(recs)
    assert st.upgraded == set(plan.hosts) and st.finished and not st.disabled_by_us
    assert not st.open_steps
    # nothing admitted twice: the resumed run took the admitted hosts up where they were
    admitted = [str(r["host"]) for r in recs if r.get("op") == "admit" and r.get("admitted")]
    assert sorted(admitted) == sorted(plan.hosts)
    # every VM where the plan sends it last, each migration done once
    where = {v.id: v.host for v in cloud.snapshot().vms}
    planned = {v.id: v.host for v in inv.vms}
    for _, m in plan.migrations():
        planned[m.vm] = m.dst
    assert where == planned
    assert st.counts()["migrations_done"] == sum(len(w.migrations) for w in plan.waves)
    assert cloud.breaches == [] and cloud.max_down <= plan.policy.max_hosts_per_wave


def test_status_prints_the_hosts_in_maintenance_and_why_others_wait(tmp_path: Path) -> None:
    inv, plan = _cloud()
    cloud = Sampled(inv, plan, kill_at=60)
    j = tmp_path / "run.journal.jsonl"
    ex = _executor(plan, cloud, j, Clock())
    with pytest.raises(Killed):
        ex.run()
    assert ex.ctx.journal is not None
    ex.ctx.journal.close()
    r = rollwave("execute", "--status", j)
    assert r.code == 0, r
    cut = RunState.replay(read_records(j))
    inside = sorted(h for h in cut.admitted if h not in cut.outcomes)
    line = next(ln for ln in r.out.splitlines() if ln.startswith("pipelined:"))
    assert f"{len(inside)} host(s) in maintenance" in line
    assert all(h in line for h in inside)
    waiting = [ln for ln in r.out.splitlines() if ln.strip().startswith("waiting:")]
    assert waiting and all(": " in ln and "since" in ln for ln in waiting)


def test_at_the_windows_end_admission_stops_and_what_is_in_flight_finishes(
    tmp_path: Path,
) -> None:
    inv, plan = _cloud()
    nights = Window(days=tuple(range(7)), start=22 * 60, end=6 * 60, tz="UTC")
    plan = replace(plan, policy=replace(plan.policy, windows=(nights,)))
    # 06:00 comes 12 s (of the run's clock) after the start: wave 1 enters, then the window shuts
    w = World(plan, inv, _dt.datetime(2026, 12, 14, 5, 59, 48, tzinfo=_dt.UTC))
    j = tmp_path / "run.journal.jsonl"
    res = w.run(j)
    assert res.status == "completed", res.reason
    recs = read_records(j)
    at = next(i for i, r in enumerate(recs) if r.get("op") == "window" and r["what"] == "wait")
    assert recs[at]["opens"] == "2026-12-14T22:00:00Z"
    before = RunState.replay(recs[:at])
    # admitted before the close, then back in service: nothing in maintenance during the wait
    assert before.admitted and before.admitted <= set(before.outcomes)
    assert len(before.admitted) < len(plan.hosts)
    st = RunState.replay(recs)
    assert st.upgraded == set(plan.hosts)
    # every refusal of that night says why: the window
    closed = [r for r in recs[:at] if r.get("op") == "admit" and r.get("rule") == "window"]
    assert closed and all("next opens 2026-12-14T22:00:00Z" in r["reason"] for r in closed)
    assert w.wall() >= _dt.datetime(2026, 12, 14, 22, 0, tzinfo=_dt.UTC)


def test_no_window_wait_exits_with_the_resume_and_resumes_pipelined(tmp_path: Path) -> None:
    inv, plan = _cloud()
    nights = Window(days=tuple(range(7)), start=22 * 60, end=6 * 60, tz="UTC")
    plan = replace(plan, policy=replace(plan.policy, windows=(nights,)))
    w = World(plan, inv, _dt.datetime(2026, 12, 14, 5, 59, 48, tzinfo=_dt.UTC))
    j = tmp_path / "run.journal.jsonl"
    res = w.run(j, window_wait=False)
    assert res.status == "stopped" and res.exit_code == 5
    assert "next opens at 2026-12-14T22:00:00Z" in str(res.reason) and "resume" in str(res.reason)
    cut = RunState.replay(read_records(j))
    assert cut.admitted and cut.admitted <= set(cut.outcomes) and not cut.disabled_by_us
    w.jump(_dt.datetime(2026, 12, 14, 22, 0, 5, tzinfo=_dt.UTC))
    res = w.run(j, resume=True, window_wait=False)
    assert res.status == "completed", res.reason
    st = RunState.replay(read_records(j))
    assert st.upgraded == set(plan.hosts) and st.pipelined


class _NeverBack(Sampled):
    """The model cloud where one host's service stays down after its upgrade."""

    def __init__(self, inv: Inventory, plan: Plan, bad: str) -> None:
        super().__init__(inv, plan)
        self.bad = bad

    def run_hook(self, kind: str, host: str, command: str) -> None:
        super().run_hook(kind, host, command)
        if host == self.bad:
            self.services[host]["up"] = False


@pytest.mark.parametrize("bad", ["cmp-001", "cmp-006", "cmp-007"])
def test_a_host_that_never_comes_back_then_the_rest_re_planned(tmp_path: Path, bad: str) -> None:
    # N+0, waves of 2: the hosts sending VMs to the lost host wait until nothing is in
    # maintenance; the re-check then re-plans the rest from the live state (later waves may have
    # begun and ended before it: the new waves after it are new)
    g = GenerateSpec(
        hosts=10, vms_per_host=2, utilisation=0.2, controllers=0, version="a", target_version="b"
    )
    inv = generate(g)
    pol = default_policy(g).with_changes(max_hosts_per_wave=2, **{"headroom.failures": 0})
    # the kill points below are calls of this plan's run: the greedy's other host orders give
    # it; its repair (which finds another plan of the same size first) is left out
    plan = greedy_plan(inv, pol, inventory_sha256="", repair_work=0)
    cloud = _NeverBack(inv, plan, bad)
    j = tmp_path / "run.journal.jsonl"
    ex = _executor(plan, cloud, j, Clock())
    ex.ctx.opts = replace(ex.ctx.opts, on_host_failure="continue", service_timeout_s=5.0)
    res = ex.run()
    assert res.status == "incomplete", res.reason
    st = RunState.replay(read_records(j))
    assert st.replans and set(st.outcomes) == set(plan.hosts)
    assert st.upgraded == set(plan.hosts) - {bad} and st.outcomes[bad].left_disabled
    assert st.ended == set(range(1, len(st.schedule) + 1))
    assert cloud.breaches == []


def test_a_host_of_a_later_wave_enters_while_an_earlier_waves_host_still_waits(
    tmp_path: Path,
) -> None:
    """Waves [a], [b -> a], [c -> d], [d -> c], two hosts at once: b waits for a to be back, and
    c (wave 3) has nothing to wait for, so it is admitted with a, before b (wave 2) starts; d
    still keeps the plan's order (after c drained and is back)."""
    from tests.test_sim_pipelined import _lookahead

    inv, plan = _lookahead()
    cloud = Sampled(inv, plan)
    j = tmp_path / "run.journal.jsonl"
    res = _run(plan, cloud, j)
    assert res.status == "completed", res.reason
    recs = read_records(j)
    order = _order(recs)
    admits = [h for what, _, h in order if what == "admit"]
    assert admits.index("c") < admits.index("b")
    # c is admitted before wave 2's first host, which waits for wave 1 to end
    assert order.index(("admit", 3, "c")) < order.index(("admit", 2, "b"))
    assert order.index(("wave done", 1, "")) < order.index(("admit", 2, "b"))
    waits = {(r["host"], r["rule"]) for r in recs if r.get("op") == "admit" and not r["admitted"]}
    assert ("b", "order") in waits  # its evacuee's destination a is not back yet
    st = RunState.replay(recs)
    assert st.upgraded == set(plan.hosts) and st.finished and st.headroom_breaches == []
    assert cloud.breaches == [] and cloud.max_down <= plan.policy.max_hosts_per_wave
