"""Faults injected into the real Nova sandbox while a plan executes (issues 6 and 8): a failing
migration, a host that does not come back, drift just before a wave, SIGKILL and Ctrl-C mid-wave
then --resume, a failed upgrade rolled back, a host back with the wrong version, the canary.

One small sandbox for the module; each test resets it (every host back at the old version, up,
enabled) and plans afresh from a snapshot.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from planner.executor.journal import RunState, read_records
from planner.inventory import Inventory
from planner.openstack.sandbox import manager
from planner.plan import Plan
from solver.reroute import reroute
from tests.executor_support import (
    CLOUD,
    FAST,
    NEW,
    ROLLWAVE,
    Box,
    execute,
    journal_of,
    records,
    rollback_hook,
    spec,
    start_box,
    upgrade_hook,
    wait_for,
)
from tests.test_sandbox import env  # noqa: F401 - the module's isolated environment

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


@pytest.fixture(scope="module")
def box(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:  # noqa: F811
    b = start_box(tmp_path_factory.mktemp("faults"), spec(6, 1.5, 0.2, controllers=0), 2)
    try:
        yield b
    finally:
        manager.stop()


@pytest.fixture
def fresh(box: Box) -> Box:
    box.reset()
    return box


def plan_for(box: Box, name: str, **policy: Any) -> tuple[Path, Path, Inventory, Plan, str]:
    """A fresh plan to a version of its own (every host is to upgrade again) and its hook."""
    target = f"{NEW}.{box.n + 1}"
    inv_path, plan_path, inv, plan = box.fresh_plan(name, target, **policy)
    return inv_path, plan_path, inv, plan, upgrade_hook(target)


def hosts_now(box: Box) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in box.snapshot()["hosts"]}


def planned_hosts(plan: Plan, inv_vms: dict[str, str]) -> dict[str, str]:
    where = dict(inv_vms)
    for _, m in plan.migrations():
        where[m.vm] = m.dst
    return where


def state_of(plan_path: Path) -> RunState:
    return RunState.replay(read_records(journal_of(plan_path)))


def compute_host_without_stops(plan: Plan, wave_index: int) -> str:
    w = plan.waves[wave_index - 1]
    return next(h for h in w.hosts if not any(s.host == h for s in w.stops))


# -- issue 6 -----------------------------------------------------------------------------------


def before_wave(inv: Inventory, plan: Plan, index: int) -> Inventory:
    """The cloud as the plan leaves it when wave `index` starts."""
    where = {v.id: v.host for v in inv.vms}
    done: set[str] = set()
    for w in plan.waves[: index - 1]:
        done |= set(w.hosts)
        for m in w.migrations:
            where[m.vm] = m.dst
    target = plan.policy.target_version or NEW
    return replace(
        inv,
        hosts=tuple(replace(h, version=target) if h.name in done else h for h in inv.hosts),
        vms=tuple(replace(v, host=where[v.id]) for v in inv.vms),
    )


def test_a_failing_migration_is_retried_then_sent_elsewhere(fresh: Box) -> None:
    # N+0, so that a second destination exists for some VM of this small cloud; lock-step: the
    # destination is found in the state before its wave (pipelined, later hosts may be down too)
    inv_path, plan_path, inv, plan, hook = plan_for(
        fresh, "retry", execution="lockstep", **{"headroom.failures": 0}
    )
    once = Counter(m.vm for _, m in plan.migrations())
    live = [
        (w, m) for w in plan.waves for m in w.migrations if m.method == "live" and once[m.vm] == 1
    ]
    # A: fails once, the retry succeeds. B: fails on every retry to its planned host, so another
    # host is asked for (one the checker accepts from the live state must exist for B).
    a = live[0][1]
    b = None
    for w, m in live[1:]:
        others = tuple(o for o in w.migrations if o.vm != m.vm)
        state = before_wave(inv, plan, w.index)
        if reroute(
            state,
            plan.policy,
            m.vm,
            wave_hosts=w.hosts,
            others=others,
            stops=w.stops,
            avoid={m.dst},
        ):
            b = m
            break
    assert b is not None, "the fixture cloud needs a VM with a second possible destination"
    fresh.ctl("POST", "fail-next-migration", {"vm": a.vm, "times": 1})
    fresh.ctl("POST", "fail-next-migration", {"vm": b.vm, "times": 2})
    r = execute(fresh, inv_path, plan_path, "--upgrade-command", hook, "--retries", "1")
    assert r.code == 0, r
    st = state_of(plan_path)
    wa = next(w.index for w in plan.waves if a in w.migrations)
    wb = next(w.index for w in plan.waves if b in w.migrations)
    assert st.attempts[(wa, a.vm)] == 2 and st.moved[a.vm] == (wa, a.dst)
    assert st.attempts[(wb, b.vm)] == 3 and b.vm in st.retargeted
    new_dst = st.moved[b.vm][1]
    assert new_dst != b.dst
    vms = {v["id"]: v for v in fresh.snapshot()["vms"]}
    assert vms[b.vm]["host"] == new_dst and vms[b.vm]["status"] == "ACTIVE"
    assert vms[a.vm]["host"] == planned_hosts(plan, {})[a.vm]
    assert st.upgraded == set(plan.hosts)
    assert st.per_wave[wa]["retried"] >= 1 and st.per_wave[wb]["replanned"] == 1


def test_a_host_that_does_not_come_back_is_reported_and_left_disabled(fresh: Box) -> None:
    # N+0: without the lost host the rest can still go on (with N+1 this small cloud could not)
    inv_path, plan_path, _inv, plan, hook = plan_for(fresh, "down", **{"headroom.failures": 0})
    bad = compute_host_without_stops(plan, 2)
    fresh.ctl("POST", f"hosts/{bad}/refuse-up", {"refuse": True})
    # the deployment tool says it is done; the host never rejoins
    r = execute(
        fresh,
        inv_path,
        plan_path,
        "--upgrade-command",
        f"{hook}; exit 0",
        "--on-host-failure",
        "continue",
        "--service-timeout",
        "5",
    )
    assert r.code == 5, r
    assert f"not upgraded: {bad}" in r.out and "left disabled by rollwave" in r.out
    st = state_of(plan_path)
    assert st.outcomes[bad].status == "failed" and "down" in (st.outcomes[bad].reason or "")
    assert st.outcomes[bad].left_disabled and bad in st.disabled_by_us
    assert st.upgraded == set(plan.hosts) - {bad}
    now = hosts_now(fresh)
    assert not now[bad]["enabled"] and now[bad]["disabled_reason"].startswith("rollwave: plan")
    assert all(
        now[h]["version"] == plan.policy.target_version and now[h]["enabled"] for h in st.upgraded
    )
    assert {v["status"] for v in fresh.snapshot()["vms"]} <= {"ACTIVE", "SHUTOFF"}


def test_a_vm_created_on_a_wave_host_just_before_its_wave(fresh: Box) -> None:
    # lock-step: the re-check at each wave's start sees the VM (pipelined runs re-check when
    # they start and when nothing can be admitted; the host's own check empties it)
    inv_path, plan_path, _inv, plan, hook = plan_for(fresh, "drift", execution="lockstep")
    target = plan.waves[1].hosts[0]
    # the upgrade of a host of wave 1 (drained, so the wave's own moves are done) boots a VM on
    # a host of wave 2 (notifications, sent in the background, cannot time it)
    first = plan.waves[0].hosts[0]
    create = f"{ROLLWAVE} sandbox ctl create-vm --host {target} --name drift-vm --ram 256"
    r = execute(
        fresh,
        inv_path,
        plan_path,
        "--upgrade-command",
        f"case {{host}} in {first}) {create} || exit 1;; esac; {hook}",
    )
    assert r.code == 0, r
    st = state_of(plan_path)
    drift = [c for c in st.checks if not c["ok"]]
    assert drift and drift[0]["wave"] == 2
    assert any("drift-vm" in v and target in v for v in drift[0]["violations"])
    assert st.replans and st.replans[0]["wave"] == 2
    vm = next(v for v in fresh.snapshot()["vms"] if v["name"] == "drift-vm")
    assert vm["status"] == "ACTIVE" and vm["host"] != target
    assert st.moved[vm["id"]][1] == vm["host"]
    assert st.upgraded == set(plan.hosts)
    fresh.api.request("compute", "DELETE", f"/servers/{vm['id']}")


def _run_in_background(
    box: Box, inv_path: Path, plan_path: Path, hook: str, *more: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            ROLLWAVE,
            "execute",
            str(plan_path),
            "--os-cloud",
            CLOUD,
            "--mapping",
            str(box.sb.mapping_file),
            "--inventory",
            str(inv_path),
            *FAST,
            "--upgrade-command",
            hook,
            *more,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )


def _migration_in_flight(plan_path: Path, min_wave: int) -> bool:
    if not journal_of(plan_path).exists():
        return False
    st = RunState.replay(records(plan_path))
    return any(r["op"] == "migrate" and int(r["wave"]) >= min_wave for r in st.open_steps.values())


def _nova_migrating_every_begun(box: Box, plan_path: Path, min_wave: int) -> bool:
    """A migration (wave >= min_wave) is in flight, and Nova is migrating every VM whose
    migration the journal shows begun: a kill now cuts migrations Nova has, not one whose
    intent is written but whose request is not sent yet (a few ms, the journal's fsync)."""
    if not _migration_in_flight(plan_path, min_wave):
        return False
    begun = {
        str(r["vm"])
        for r in RunState.replay(records(plan_path)).open_steps.values()
        if r["op"] == "migrate"
    }
    for vm in begun:
        srv = box.api.get("compute", f"/servers/{vm}", "2.30")["server"]
        if srv["status"] != "MIGRATING":
            return False
    now = {
        str(r["vm"])
        for r in RunState.replay(records(plan_path)).open_steps.values()
        if r["op"] == "migrate"
    }
    return now == begun  # none begun meanwhile


def _upgrade_in_flight(plan_path: Path, after_seq: int) -> str | None:
    """A compute host whose upgrade command runs (begun after record `after_seq`)."""
    st = RunState.replay(records(plan_path))
    for r in st.open_steps.values():
        if r["op"] == "upgrade" and r["seq"] > after_seq and not r["host"].startswith("ctl-"):
            return str(r["host"])
    return None


def test_sigkill_mid_wave_then_resume_loses_nothing(fresh: Box) -> None:
    inv_path, plan_path, inv, plan, hook = plan_for(fresh, "sigkill")
    fresh.ctl("POST", "migration-duration", {"seconds": 4})
    proc = _run_in_background(fresh, inv_path, plan_path, hook)
    try:
        assert wait_for(lambda: _nova_migrating_every_begun(fresh, plan_path, 2), timeout=120)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    before_recs = records(plan_path)
    before = RunState.replay(before_recs)
    cut = [r for r in before.open_steps.values() if r["op"] == "migrate"]
    assert cut and not before.finished
    done_before = set(before.done_moves)
    r = execute(fresh, inv_path, plan_path, "--upgrade-command", hook)
    assert r.code == 2 and "--resume" in r.err, r  # the journal is there: no second start
    fresh.ctl("POST", "migration-duration", {"seconds": 0.3})
    # Killed again, now while a host's upgrade command runs: the command (in a session of its
    # own) goes on and the cloud soon reports the new version, which the run has not verified;
    # the resume must take the host through its upgrade, wait and enable, not re-plan it away.
    seen = max(int(x["seq"]) for x in before_recs)
    proc = _run_in_background(fresh, inv_path, plan_path, hook, "--resume")
    try:
        assert wait_for(lambda: _upgrade_in_flight(plan_path, seen), timeout=120)
        cut_host = _upgrade_in_flight(plan_path, seen)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert cut_host is not None
    target = plan.policy.target_version
    assert wait_for(lambda: hosts_now(fresh)[cut_host]["version"] == target, timeout=60)
    r = execute(fresh, inv_path, plan_path, "--resume", "--upgrade-command", hook)
    assert r.code == 0, r
    st = state_of(plan_path)
    assert st.finished and st.upgraded == set(plan.hosts) and not st.open_steps
    assert not st.replans, st.replans  # the plan held all along
    assert hosts_now(fresh)[cut_host]["enabled"]
    # nothing lost: every VM where the plan put it, in its state
    vms = {v["id"]: v for v in fresh.snapshot()["vms"]}
    want = planned_hosts(plan, {v.id: v.host for v in inv.vms})
    assert {v: vms[v]["host"] for v in want} == want
    assert {v.id: vms[v.id]["status"] for v in inv.vms} == {v.id: v.status for v in inv.vms}
    # nothing done twice: no migration begun again for a move finished before the kill, and
    # every move confirmed once
    recs = records(plan_path)
    kill_seq = max(int(x["seq"]) for x in before_recs)
    again = [
        x
        for x in recs
        if x.get("op") == "migrate"
        and x["ev"] == "intent"
        and x["seq"] > kill_seq
        and (int(x["wave"]), x["vm"]) in done_before
    ]
    assert again == []
    dones = Counter(
        (int(x["wave"]), x["vm"]) for x in recs if x.get("op") == "migrate" and x["ev"] == "done"
    )
    assert max(dones.values()) == 1 and len(dones) == sum(len(w.migrations) for w in plan.waves)
    # the migration cut by the kill was waited for and confirmed, not begun again
    for c in cut:
        assert any(
            x["step"] == c["step"] and x["ev"] == "done" and x.get("reconciled")
            for x in recs
            if x.get("step")
        )


def test_ctrl_c_finishes_in_flight_migrations_then_stops_and_resumes(fresh: Box) -> None:
    inv_path, plan_path, _inv, plan, hook = plan_for(fresh, "ctrlc")
    fresh.ctl("POST", "migration-duration", {"seconds": 3})
    proc = _run_in_background(fresh, inv_path, plan_path, hook)
    try:
        assert wait_for(lambda: _migration_in_flight(plan_path, 1), timeout=120)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    text = out.decode()
    assert proc.returncode == 130, text
    assert "--resume" in text
    st = state_of(plan_path)
    assert not [r for r in st.open_steps.values() if r["op"] == "migrate"]  # all finished
    assert st.runs[-1]["status"] == "interrupted" and not st.finished
    fresh.ctl("POST", "migration-duration", {"seconds": 0.3})
    r = execute(fresh, inv_path, plan_path, "--resume", "--upgrade-command", hook)
    assert r.code == 0, r
    assert state_of(plan_path).upgraded == set(plan.hosts)


# -- issue 8 -----------------------------------------------------------------------------------


def test_a_failed_upgrade_is_rolled_back_then_the_run_stops(fresh: Box) -> None:
    inv_path, plan_path, inv, plan, hook = plan_for(fresh, "rollback-stop")
    bad = compute_host_without_stops(plan, 1)
    failing = f'if [ {{host}} = {bad} ]; then echo "boom on {bad}"; exit 3; fi; {hook}'
    args = ("--upgrade-command", failing, "--rollback-command", rollback_hook(inv))
    r = execute(fresh, inv_path, plan_path, *args)
    assert r.code == 5, r
    assert "exited 3" in r.out and f"boom on {bad}" in r.out and "--on-host-failure stop" in r.out
    st = state_of(plan_path)
    assert st.outcomes[bad].status == "not-upgraded" and "rolled back" in str(
        st.outcomes[bad].reason
    )
    assert st.next_wave() == 2  # the wave was finished, no other started
    now = hosts_now(fresh)
    assert now[bad]["version"] == inv.host(bad).version and now[bad]["enabled"] and now[bad]["up"]
    log = plan_path.with_name("plan.journal.logs") / f"{bad}.upgrade.log"
    assert f"boom on {bad}" in log.read_text()  # its output, logged per host
    # going on without it
    r = execute(fresh, inv_path, plan_path, "--resume", *args, "--on-host-failure", "continue")
    assert r.code == 5 and "1 host(s) not upgraded" in r.out, r
    st = state_of(plan_path)
    assert st.finished and st.upgraded == set(plan.hosts) - {bad}
    assert hosts_now(fresh)[bad]["version"] == inv.host(bad).version


def test_a_host_back_with_the_wrong_version_is_rolled_back(fresh: Box) -> None:
    inv_path, plan_path, inv, plan, hook = plan_for(fresh, "wrong-version")
    bad = compute_host_without_stops(plan, 2)
    broken = upgrade_hook(f"{NEW}-broken")
    hook = f"if [ {{host}} = {bad} ]; then {broken}; else {hook}; fi"
    r = execute(
        fresh,
        inv_path,
        plan_path,
        "--upgrade-command",
        hook,
        "--rollback-command",
        rollback_hook(inv),
        "--on-host-failure",
        "continue",
        "--service-timeout",
        "3",
    )
    assert r.code == 5, r
    st = state_of(plan_path)
    reason = str(st.outcomes[bad].reason)
    assert st.outcomes[bad].status == "not-upgraded" and f"{NEW}-broken" in reason
    assert st.upgraded == set(plan.hosts) - {bad} and st.finished
    now = hosts_now(fresh)
    assert now[bad]["version"] == inv.host(bad).version and now[bad]["enabled"]


def test_a_canary_that_passes(fresh: Box) -> None:
    inv_path, plan_path, _inv, plan, hook = plan_for(fresh, "canary-ok")
    r = execute(
        fresh,
        inv_path,
        plan_path,
        "--upgrade-command",
        hook,
        "--canary",
        "2",
        "--soak",
        "1",
        "--health-command",
        "test -n {host}",
    )
    assert r.code == 0, r
    assert "canary passed" in r.err
    recs = records(plan_path)
    canary = [x for x in recs if x.get("op") == "canary"]
    assert [x["ev"] for x in canary] == ["intent", "done"]
    hosts, vms = canary[0]["hosts"], canary[0]["vms"]
    assert len(hosts) == 2 and 1 <= len(vms) <= 2
    # the canary VMs moved onto canary hosts before the next wave began, and not again in it
    # (an earlier wave may have moved one already: a plan may move a VM in two waves)
    nxt = canary[0]["wave"] + 1
    start_next = next(x["seq"] for x in recs if x.get("op") == "wave" and x.get("wave") == nxt)
    for vm in vms:
        moves = [
            x
            for x in recs
            if x.get("op") == "migrate"
            and x.get("vm") == vm
            and x["ev"] == "done"
            and x.get("wave") == nxt
        ]
        assert [m["host"] in hosts and m["seq"] < start_next for m in moves] == [True]
    assert state_of(plan_path).upgraded == set(plan.hosts)


def test_a_canary_that_fails_rolls_its_hosts_back(fresh: Box) -> None:
    inv_path, plan_path, inv, _plan, hook = plan_for(fresh, "canary-bad")
    r = execute(
        fresh,
        inv_path,
        plan_path,
        "--upgrade-command",
        hook,
        "--rollback-command",
        rollback_hook(inv),
        "--canary",
        "2",
        "--soak",
        "0.5",
        "--health-command",
        "echo unhealthy {host}; exit 1",
    )
    assert r.code == 5, r
    st = state_of(plan_path)
    assert st.canary is not None and st.canary["ev"] == "failed"
    hosts = st.canary["hosts"]
    assert "unhealthy" in st.canary["reason"]
    now = hosts_now(fresh)
    for h in hosts:
        assert st.outcomes[h].status == "not-upgraded" and "canary failed" in str(
            st.outcomes[h].reason
        )
        assert now[h]["version"] == inv.host(h).version and now[h]["enabled"] and now[h]["up"]
    assert not st.disabled_by_us
    assert {v["status"] for v in fresh.snapshot()["vms"]} <= {"ACTIVE", "SHUTOFF"}
