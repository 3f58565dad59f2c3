"""The executor's parts that need no cloud: the journal, the planning view, re-planning, a new
destination, commands and notifications, the CLI's refusals, and the whole state machine driven
through the dry run's model of a cloud (the same code path as `execute --dry-run`)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from planner import formats
from planner.app.execute import SolverReplanner
from planner.checker import check_plan
from planner.errors import InfeasibleError, InputError, UsageError
from planner.executor import view as views
from planner.executor.cloud import DryRunCloud
from planner.executor.hooks import DryRunHooks, Hooks, Notifier, expand
from planner.executor.journal import (
    DONE,
    INTENT,
    Journal,
    RunState,
    read_records,
)
from planner.executor.run import ExecOptions, Executor, RunResult
from planner.executor.ui import Reporter, status_dict
from planner.inventory import Inventory
from planner.plan import Plan
from tests.clouds import NAMED, NEW, Cloud, Fixture, policy
from tests.test_cli import clean, rollwave

# -- the journal ------------------------------------------------------------------------------


def _journal(tmp_path: Path) -> Path:
    p = tmp_path / "j.jsonl"
    j = Journal(p)
    j.write({"ev": "header", "format_version": "1.0", "kind": "rollwave-journal"})
    j.write({"ev": INTENT, "op": "migrate", "step": "w1/migrate/a/1", "wave": 1, "vm": "a"})
    j.write(
        {"ev": DONE, "op": "migrate", "step": "w1/migrate/a/1", "wave": 1, "vm": "a", "host": "x"}
    )
    j.write({"ev": INTENT, "op": "migrate", "step": "w1/migrate/b/1", "wave": 1, "vm": "b"})
    j.close()
    return p


def test_journal_records_are_numbered_and_replay_to_the_run_state(tmp_path: Path) -> None:
    p = _journal(tmp_path)
    recs = read_records(p)
    assert [r["seq"] for r in recs] == [1, 2, 3, 4] and all("t" in r for r in recs)
    st = RunState.replay(recs)
    assert st.moved == {"a": (1, "x")} and (1, "a") in st.done_moves
    assert list(st.open_steps) == ["w1/migrate/b/1"]  # begun, never finished


def test_a_torn_last_line_is_dropped_a_torn_middle_line_is_an_error(tmp_path: Path) -> None:
    p = _journal(tmp_path)
    with open(p, "a") as f:
        f.write('{"seq": 5, "ev": "intent", "op": "mig')  # killed mid-write
    assert len(read_records(p)) == 4
    lines = p.read_text().splitlines()
    lines.insert(2, '{"broken')
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as e:
        read_records(p)
    assert "line 3" in str(e.value) and str(p) in str(e.value)


def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text('{"ev": "note"}\n')
    with pytest.raises(InputError, match="line 1"):
        read_records(p)


# -- the planning view, the remaining plan, re-planning, a new destination -----------------


def test_planning_view_marks_done_hosts_upgraded_and_ours_enabled() -> None:
    fx = NAMED["three_plus_spare"]()
    live = fx.inventory
    live = replace(
        live,
        hosts=tuple(
            replace(h, enabled=False, disabled_reason="rollwave: x") if h.name == "cmp-1" else h
            for h in live.hosts
        ),
        vms=tuple(replace(v, status="MIGRATING") if v.id == "vm-1a" else v for v in live.vms),
    )
    prog = views.Progress(frozenset({"cmp-4"}), frozenset(), frozenset({"cmp-1"}))
    view, pol = views.planning_view(live, fx.policy, prog)
    assert view.host("cmp-4").version == NEW and view.host("cmp-2").version != NEW
    assert view.host("cmp-1").enabled and view.vm("vm-1a").status == "ACTIVE"
    assert pol.target_version == NEW
    # without a target, a synthetic one marks the done hosts
    _, pol2 = views.planning_view(live, replace(fx.policy, target_version=None), prog)
    assert pol2.target_version == views.SYNTHETIC_TARGET


def test_a_host_cut_mid_upgrade_stays_in_its_wave_though_it_reports_the_target() -> None:
    """A run killed while a host's upgrade command ran: the cloud may already report the new
    version, but the run never saw the command succeed nor the service come back. The host
    stays in its wave (no drift, no re-plan that would drop it unverified)."""
    fx = NAMED["three_plus_spare"]()
    k = next(w.index for w in fx.plan.waves if "cmp-1" in w.hosts)
    sched = list(fx.plan.waves)
    done = {(k, m.vm) for m in sched[k - 1].migrations}
    moved = {m.vm: m.dst for m in sched[k - 1].migrations}  # drained, then its upgrade began
    inv = fx.inventory
    live = replace(
        inv,
        hosts=tuple(replace(h, version=NEW) if h.name == "cmp-1" else h for h in inv.hosts),
        vms=tuple(replace(v, host=moved.get(v.id, v.host)) for v in inv.vms),
    )
    before = frozenset(h for w in sched[: k - 1] for h in w.hosts)  # earlier waves: done
    for mid, ok in ((frozenset(), False), (frozenset({"cmp-1"}), True)):
        prog = views.Progress(before, frozenset(), frozenset(), mid_upgrade=mid)
        view, pol = views.planning_view(live, fx.policy, prog)
        rem = views.remaining_plan(sched, k, pol, terminal=set(), done_moves=done, skipped=set())
        assert check_plan(view, rem).ok is ok


def test_remaining_plan_drops_done_moves_and_finished_hosts() -> None:
    fx = NAMED["three_plus_spare"]()
    sched = list(fx.plan.waves)
    rem = views.remaining_plan(
        sched, 2, fx.policy, terminal=set(), done_moves={(2, "vm-1a")}, skipped=set()
    )
    assert [w.index for w in rem.waves] == [1, 2, 3]
    assert [m.vm for m in rem.waves[0].migrations] == ["vm-1b"]
    rem2 = views.remaining_plan(
        sched, 2, fx.policy, terminal={"cmp-1"}, done_moves=set(), skipped=set()
    )
    assert rem2.waves[0].hosts == ("cmp-2",)


def test_replan_gives_a_plan_the_checker_accepts_or_says_why_not() -> None:
    fx = NAMED["three_plus_spare"]()
    new = views.replan(SolverReplanner(), fx.inventory, fx.policy)
    assert check_plan(fx.inventory, new).ok
    full = Cloud("full").host("a", ram_mb=16384).host("b", ram_mb=16384)
    full.vm("v1", "a", ram_mb=8192).vm("v2", "b", ram_mb=8192)
    with pytest.raises(InfeasibleError):
        views.replan(SolverReplanner(), full.build(), policy(1))


# -- commands and notifications -----------------------------------------------------------------


def test_expand_quotes_the_host_and_leaves_other_braces() -> None:
    cmd = expand(
        "run {host} w{wave} p{plan} v{version} | awk '{print $1}'",
        host="cmp-1; rm -rf /",
        wave=3,
        plan="abcdef0123456789",
        version="2025.2",
    )
    assert cmd == "run 'cmp-1; rm -rf /' w3 pabcdef012345 v2025.2 | awk '{print $1}'"


def test_hooks_log_per_host_and_report_the_exit_code(tmp_path: Path) -> None:
    h = Hooks(tmp_path / "logs")
    run = h.start(
        "upgrade", "cmp-1", "echo hello $ROLLWAVE_HOST; exit 3", wave=1, plan="p", version=None
    )
    while (rc := run.poll()) is None:
        pass
    assert rc == 3
    text = (tmp_path / "logs" / "cmp-1.upgrade.log").read_text()
    assert "hello cmp-1" in text and "upgrade hook, wave 1" in text


def test_notify_command_gets_the_event_and_a_failure_is_only_a_warning(tmp_path: Path) -> None:
    out = tmp_path / "events"
    warnings: list[str] = []
    n = Notifier(
        f"cat >> {out}; echo >> {out}; test $ROLLWAVE_EVENT != wave_end", None, warnings.append
    )
    n("wave_start", wave=2, hosts=["a"])
    n("wave_end", wave=2)
    assert n.close() == {}  # sent in the background; close() waits for them (a bounded time)
    got = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert [g["event"] for g in got] == ["wave_start", "wave_end"] and got[0]["wave"] == 2
    assert len(warnings) == 1 and "exited 1 on wave_end" in warnings[0]


# -- the state machine on the dry run's model of a cloud ------------------------------------


def dry_run(
    inv: Inventory,
    plan: Plan,
    *,
    live: Inventory | None = None,
    lines: list[str] | None = None,
    **opts: Any,
) -> tuple[RunResult, list[str]]:
    lines = [] if lines is None else lines
    cloud = DryRunCloud(live or inv, lines.append, plan.policy.target_version)
    o = ExecOptions(upgrade_command="upgrade {host}", poll_s=0.01, **opts)
    ex = Executor(
        plan,
        "f" * 64,
        cloud,
        opts=o,
        reporter=Reporter(Console(file=open(os.devnull, "w")), quiet=True),  # noqa: SIM115
        hooks=DryRunHooks(cloud.run_hook),
        notify=Notifier(None, None, lines.append),
        replanner=SolverReplanner(),
        journal_path=None,
    )
    return ex.run(), lines


def _index(lines: list[str], needle: str) -> int:
    return next(i for i, ln in enumerate(lines) if needle in ln)


@pytest.mark.parametrize("name", sorted(NAMED))
def test_dry_run_of_every_fixture_upgrades_every_host_in_a_safe_order(name: str) -> None:
    fx: Fixture = NAMED[name]()
    res, lines = dry_run(fx.inventory, fx.plan)
    assert res.status == "completed", res.reason
    assert set(res.state.upgraded) == set(fx.plan.hosts)
    for w in fx.plan.waves:
        for m in w.migrations:
            post = _index(lines, f"/servers/{m.vm}/action")
            # the source is disabled before its VMs move, upgraded after, enabled after that
            assert _index(lines, f'<{m.src}> {{"status": "disabled"') < post
            assert post < _index(lines, f"upgrade hook: upgrade {m.src}")
        for h in w.hosts:
            up = _index(lines, f"upgrade hook: upgrade {h}")
            if fx.inventory.host(h).is_compute and fx.inventory.host(h).enabled:
                assert up < _index(lines, f'<{h}> {{"status": "enabled"')
        for s in w.stops:
            if fx.inventory.vm(s.vm).status == "ACTIVE":
                stop = _index(lines, f'/servers/{s.vm}/action {{"os-stop"')
                start = _index(lines, f'/servers/{s.vm}/action {{"os-start"')
                assert stop < _index(lines, f"upgrade hook: upgrade {s.host}") < start
    # a host disabled before the run stays disabled: never enabled by the executor
    for host in fx.inventory.hosts:
        if host.is_compute and not host.enabled:
            assert not any(f'<{host.name}> {{"status": "enabled"' in ln for ln in lines)


class _CtrlCAt(list[str]):
    """The dry run's printed calls; sets the executor's Ctrl-C count at the first line that
    contains `needle` (as a signal arriving during that call would)."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.ex: Executor | None = None

    def append(self, line: str) -> None:
        super().append(line)
        if self.needle in line and self.ex is not None and not self.ex.interrupts:
            self.ex.interrupts = 1


def _interrupted_dry_run(fx: Fixture, needle: str) -> tuple[RunResult, _CtrlCAt]:
    lines = _CtrlCAt(needle)
    cloud = DryRunCloud(fx.inventory, lines.append, fx.plan.policy.target_version)
    ex = Executor(
        fx.plan,
        "f" * 64,
        cloud,
        opts=ExecOptions(upgrade_command="upgrade {host}", poll_s=0.01, max_parallel=8),
        reporter=Reporter(Console(file=open(os.devnull, "w")), quiet=True),  # noqa: SIM115
        hooks=DryRunHooks(cloud.run_hook),
        notify=Notifier(None, None, lines.append),
        replanner=SolverReplanner(),
        journal_path=None,
    )
    lines.ex = ex
    return ex.run(), lines


def test_ctrl_c_during_a_migration_call_starts_nothing_more() -> None:
    fx = NAMED["three_plus_spare"]()
    # two migrations per source at once, so that the first wave's two could start together
    pol = fx.plan.policy.with_changes(max_concurrent_live_migrations=2)
    fx = replace(fx, plan=replace(fx.plan, policy=pol))
    res, lines = _interrupted_dry_run(fx, '{"os-migrateLive"')
    assert res.status == "interrupted" and res.exit_code == 130
    moves = [ln for ln in lines if '{"os-migrateLive"' in ln or '{"migrate"' in ln]
    assert len(moves) == 1  # the call under way when Ctrl-C came, and no other
    first = _index(lines, '{"os-migrateLive"')
    assert not any("upgrade hook" in ln or '"disabled"' in ln for ln in lines[first:])


def test_ctrl_c_during_a_wave_re_check_touches_nothing_of_that_wave() -> None:
    fx = NAMED["three_plus_spare"]()
    res, lines = _interrupted_dry_run(fx, "(snapshot)")
    assert res.status == "interrupted"
    assert not any('"disabled"' in ln or "/action" in ln or "hook" in ln for ln in lines)


@pytest.mark.parametrize(("name", "first"), [("ha_trio", "cmp-2"), ("unavailable_hosts", "cmp-1")])
def test_the_canary_uses_compute_hosts_in_service_only(name: str, first: str) -> None:
    """Controllers (no nova-compute) and a host disabled before the run are upgraded before
    the first compute host in service: the canary waits for it instead."""
    fx: Fixture = NAMED[name]()
    res, _ = dry_run(fx.inventory, fx.plan, canary=1, soak_s=60)
    assert res.status == "completed", res.reason
    assert res.state.canary is not None and res.state.canary["hosts"] == [first]


def _drifted(fx: Fixture) -> Inventory:
    """A VM appeared on cmp-2 (wave 3) after the plan was made."""
    c = Cloud("x").host("tmp")
    new = c.vm("new-vm", "tmp").build().vms[0]
    return replace(fx.inventory, vms=(*fx.inventory.vms, replace(new, host="cmp-2")))


def test_drift_is_detected_and_the_remaining_waves_are_replanned() -> None:
    fx = NAMED["three_plus_spare"]()
    res, lines = dry_run(fx.inventory, fx.plan, live=_drifted(fx))
    assert res.status == "completed", res.reason
    assert res.state.replans and "new-vm" in res.state.replans[0]["reason"]
    assert any("/servers/new-vm/action" in ln for ln in lines)  # the new VM was moved too
    assert res.state.upgraded == {"cmp-1", "cmp-2", "cmp-3", "cmp-4"}


def test_drift_without_replan_stops_before_touching_the_wave() -> None:
    fx = NAMED["three_plus_spare"]()
    res, lines = dry_run(fx.inventory, fx.plan, live=_drifted(fx), replan=False)
    # waves 1 and 2 still fit and run; wave 3 (cmp-2, where the VM appeared) is not touched
    assert res.status == "stopped" and res.exit_code == 5 and res.reason
    assert "drift" in res.reason and "new-vm" in res.reason and "wave 3" in res.reason
    assert any("upgrade hook: upgrade cmp-1" in ln for ln in lines)
    assert not any("<cmp-2>" in ln for ln in lines)


def test_status_of_a_journal(tmp_path: Path) -> None:
    p = _journal(tmp_path)
    d = status_dict(RunState.replay(read_records(p)), str(p))
    assert d["counts"]["migrations_done"] == 1
    assert [s["vm"] for s in d["open_steps"]] == ["b"]
    assert d["status"].startswith("killed")  # no end record, and nobody holds it
    j = Journal(p, seq=4)
    try:
        assert status_dict(RunState.replay(read_records(p)), str(p))["status"].startswith("running")
    finally:
        j.close()


# -- the command's refusals (before any cloud is touched) ------------------------------------


def _files(tmp_path: Path) -> tuple[str, str]:
    fx = NAMED["three_plus_spare"]()
    inv_path = tmp_path / "inv.json"
    digest = formats.save_inventory(fx.inventory, inv_path)
    plan_path = tmp_path / "plan.json"
    formats.save_plan(replace(fx.plan, inventory_sha256=digest), plan_path)
    return str(inv_path), str(plan_path)


def test_cli_refuses_a_plan_made_for_another_inventory_or_rejected(tmp_path: Path) -> None:
    inv, plan = _files(tmp_path)
    other = tmp_path / "other.json"
    formats.save_inventory(replace(NAMED["ha_trio"]().inventory), other)
    r = clean(rollwave("execute", plan, "--inventory", other, "--upgrade-command", "x"))
    assert r.code == 2 and "refusing" in r.err and "--allow-digest-mismatch" in r.err, r
    bad = tmp_path / "bad.json"
    p = formats.load_plan(plan)
    formats.save_plan(replace(p, waves=p.waves[1:]), bad)
    r = clean(rollwave("execute", bad, "--inventory", inv, "--upgrade-command", "x"))
    assert r.code == 2 and "checker rejects" in r.err and "coverage" in r.err, r


def test_cli_needs_an_upgrade_command_and_a_plan(tmp_path: Path) -> None:
    _, plan = _files(tmp_path)
    r = clean(rollwave("execute", plan))
    assert r.code == 2 and "--upgrade-command" in r.err, r
    r = clean(rollwave("execute"))
    assert r.code == 2 and "PLAN" in r.err, r
    r = clean(rollwave("execute", plan, "--dry-run", "--resume"))
    assert r.code == 2, r
    secret = "hooks.example.com/T0K3N"
    r = clean(
        rollwave("execute", plan, "--upgrade-command", "u {host}", "--notify-webhook", secret)
    )
    assert r.code == 2 and "--notify-webhook" in r.err and "T0K3N" not in r.err, r


def test_cli_status_reads_the_journal_only(tmp_path: Path) -> None:
    p = _journal(tmp_path)
    r = clean(rollwave("execute", "--status", p, "--format", "json"))
    assert r.code == 0, r
    d = json.loads(r.out)
    assert d["counts"]["migrations_done"] == 1 and d["open_steps"][0]["vm"] == "b"
    r = clean(rollwave("execute", "--status", p))
    assert r.code == 0 and "in flight when last written: migrate b" in r.out, r
    r = clean(rollwave("execute", "--status", tmp_path / "none.jsonl"))
    assert r.code == 2 and "no such journal" in r.err, r


def test_one_executor_per_journal(tmp_path: Path) -> None:
    p = _journal(tmp_path)
    first = Journal(p, seq=4)
    try:
        with pytest.raises(UsageError, match="another rollwave"):
            Journal(p)
    finally:
        first.close()
    Journal(p).close()  # free again once the first is gone
