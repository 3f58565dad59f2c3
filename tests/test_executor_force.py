"""Issue 15 end to end, against the real Nova sandbox in link mode: VMs whose live migrations do
not converge (they dirty memory faster than the link sends it) keep running and report their
remaining memory until force-completed through Nova's API (nova-api, conductor, compute
manager, driver) or aborted at Nova's completion timeout; the executor force-completes them as
the plan says, falls back when the force does not take, and resumes a run killed mid-migration.
Last, maintenance windows through the command line: a closed one stops the run (exit 5).
"""

from __future__ import annotations

import datetime as _dt
import json
import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from planner import formats
from planner.checker import check_plan
from planner.executor.cloud import FINAL, LiveCloud, Server
from planner.executor.journal import RunState, read_records
from planner.inventory import Inventory
from planner.openstack.sandbox import manager
from planner.plan import Plan
from planner.policy import Headroom, Policy
from planner.windows import Window
from tests.executor_support import (
    CLOUD,
    OLD,
    Box,
    execute,
    journal_of,
    records,
    upgrade_hook,
    wait_for,
)
from tests.test_executor_faults import _run_in_background
from tests.test_sandbox import _host, _vm, env  # noqa: F401 - the module's environment

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

LINK = 2000.0  # MiB/s: a 2 GiB guest dirtying nothing crosses in about a second
BUSY = 3000.0  # MiB/s dirtied: never converges on that link
GIB2 = {"VCPU": 2, "MEMORY_MB": 2048, "DISK_GB": 10}
FORCE_RULE = "os_compute_api:servers:migrations:force_complete"  # Nova's policy rule


def _inventory() -> dict[str, Any]:
    """Four compute hosts; two VMs on each of the first three, one of each pair busy."""
    hosts = [_host(f"cmp-{i}", "az1", version=OLD) for i in range(1, 5)]
    vms = []
    for i in range(1, 7):
        busy = i % 2 == 1
        vms.append(
            _vm(
                i,
                f"cmp-{(i + 1) // 2}",
                resources=GIB2,
                dirty_rate_mb_s=BUSY if busy else 100.0,
            )
        )
    return {
        "format_version": "1.0",
        "kind": "inventory",
        "cloud": CLOUD,
        "taken_at": "2025-01-01T00:00:00Z",
        "hosts": hosts,
        "vms": vms,
        "server_groups": [],
        "ha_groups": [],
    }


@pytest.fixture(scope="module")
def box(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:  # noqa: F811
    from planner.openstack.connect import Api, connect

    sb = manager.start(
        _inventory(), migration_seconds=0.3, migration_link_mib_s=LINK, exit_with_parent=True
    )
    pol = Policy(max_hosts_per_wave=1, target_version=OLD, headroom=Headroom(failures=1))
    b = Box(sb, Api(connect(CLOUD)), pol, tmp_path_factory.mktemp("force"))
    try:
        yield b
    finally:
        manager.stop()


@pytest.fixture
def fresh(box: Box) -> Box:
    box.reset()
    for vm in json.loads(box.sb.ids_file.read_text())["vms"]:
        box.ctl(
            "POST",
            "migration-behaviour",
            {"vm": vm, "pause_fails": False, "dirty_rate_mb_s": None},
        )
    box.ctl(
        "POST",
        "nova-config",
        {"permit_post_copy": False, "completion_timeout": 800, "timeout_action": "abort"},
    )
    return box


def forced_plan(
    box: Box, name: str, after_s: float, also: frozenset[str] = frozenset(), **policy: Any
) -> tuple[Path, Path, Inventory, Plan, str, set[str]]:
    """A fresh plan to a version of its own whose busy VMs' migrations (and those of `also`)
    are force-completed `after_s` seconds after they start (the plan fields written here, as
    the planner would)."""
    target = f"{OLD}.{box.n + 1}"
    inv_path, plan_path, inv, plan = box.fresh_plan(name, target, **policy)
    busy = {v.id for v in inv.vms if (v.dirty_rate_mb_s or 0) >= LINK} | set(also)
    waves = tuple(
        replace(
            w,
            migrations=tuple(
                replace(m, force_complete_after_s=after_s, remedy="force-complete")
                if m.vm in busy and m.method == "live"
                else m
                for m in w.migrations
            ),
        )
        for w in plan.waves
    )
    plan = replace(plan, waves=waves)
    assert check_plan(inv, plan).ok
    formats.save_plan(plan, plan_path)
    moved = {m.vm for _, m in plan.migrations() if m.force_complete_after_s is not None}
    assert moved, "the plan moves no busy VM"
    return inv_path, plan_path, inv, plan, upgrade_hook(target), moved


def _where(box: Box) -> dict[str, tuple[str, str]]:
    return {v["id"]: (v["host"], v["status"]) for v in box.snapshot()["vms"]}


def _planned(inv: Inventory, plan: Plan) -> dict[str, str]:
    where = {v.id: v.host for v in inv.vms}
    for _, m in plan.migrations():
        where[m.vm] = m.dst
    return where


def _cloud() -> LiveCloud:
    from planner.openstack.connect import Api, connect

    return LiveCloud(Api(connect(CLOUD)), CLOUD)


def _server(cloud: LiveCloud, vm: str) -> Server:
    srv = cloud.server(vm)
    assert srv is not None
    return srv


def _elsewhere(cloud: LiveCloud, vm: str, *avoid: str) -> str:
    """A compute host the VM is not on (earlier tests move VMs about)."""
    srv = cloud.server(vm)
    assert srv is not None
    return next(h for h in ("cmp-4", "cmp-3", "cmp-2", "cmp-1") if h not in (srv.host, *avoid))


# -- the sandbox's Nova ------------------------------------------------------------------------


def test_a_busy_vm_migrates_until_forced_and_reports_its_remaining_memory(fresh: Box) -> None:
    cloud = _cloud()
    ids = json.loads(fresh.sb.ids_file.read_text())["vms"]
    vm, calm = ids["vm-1"], ids["vm-2"]
    # a VM that dirties less than the link sends converges by itself, its remaining memory
    # falling (at 500 MiB/s here: 4 s)
    fresh.ctl("POST", "migration-behaviour", {"vm": calm, "dirty_rate_mb_s": LINK - 500})
    dst = _elsewhere(cloud, calm)
    cloud.live_migrate(calm, dst)
    seen: list[int] = []

    def done() -> bool:
        seen.extend(p.memory_remaining for p in cloud.live_progress(calm) if p.memory_remaining)
        return _server(cloud, calm).settled

    assert wait_for(done, timeout=60)
    assert _server(cloud, calm).host == dst
    assert len(seen) >= 2 and seen[-1] < seen[0]
    # a busy one keeps running at its full memory until forced (here: the guest paused)
    dst = _elsewhere(cloud, vm)
    cloud.live_migrate(vm, dst)
    assert wait_for(lambda: any(p.status == "running" for p in cloud.live_progress(vm)), 30)
    p1 = cloud.live_progress(vm)[-1]
    assert wait_for(lambda: fresh.ctl("GET", "status")["migrations"][0]["seconds"] > 1.5, 30)
    p2 = cloud.live_progress(vm)[-1]
    assert p1.memory_remaining == p2.memory_remaining == p2.memory_total == 2048 << 20
    assert (p2.memory_processed or 0) > (p1.memory_processed or 0)  # it does send
    assert _server(cloud, vm).status == "MIGRATING"
    cloud.force_complete(vm, p2.id)
    assert wait_for(lambda: _server(cloud, vm).settled, 30)
    assert _server(cloud, vm).host == dst
    st = fresh.ctl("GET", "status")
    assert st["migrations_forced"] >= 1 and st["migrations"] == []


def test_post_copy_leaves_the_servers_list_and_a_timeout_aborts(fresh: Box) -> None:
    cloud = _cloud()
    ids = json.loads(fresh.sb.ids_file.read_text())["vms"]
    vm = ids["vm-3"]
    fresh.ctl("POST", "nova-config", {"permit_post_copy": True})
    dst = _elsewhere(cloud, vm)
    cloud.live_migrate(vm, dst)
    assert wait_for(lambda: any(p.status == "running" for p in cloud.live_progress(vm)), 30)
    mid = cloud.live_progress(vm)[-1].id
    cloud.force_complete(vm, mid)
    # post-copy: gone from the server's list, still in /os-migrations, then completed
    assert wait_for(
        lambda: (
            [m.status for m in cloud.migrations(vm) if m.id == mid] == ["running (post-copy)"]
            or _server(cloud, vm).settled
        ),
        30,
    )
    assert all(p.id != mid for p in cloud.live_progress(vm))
    assert wait_for(lambda: _server(cloud, vm).settled, 30)
    # (Nova marks the record completed a moment after the server is settled)
    assert wait_for(
        lambda: [m.status for m in cloud.migrations(vm) if m.id == mid] == ["completed"]
    )
    # Nova's completion timeout (1 s per GiB, at least 2 GiB counted): aborted, stays put
    fresh.ctl("POST", "nova-config", {"permit_post_copy": False, "completion_timeout": 1})
    known = {m.id for m in cloud.migrations(vm)}
    timeouts = fresh.ctl("GET", "status")["migrations_timed_out"]
    cloud.live_migrate(vm, _elsewhere(cloud, vm))
    # (the record's end, not the server's MIGRATING: a loaded machine may poll past those 2 s)
    assert wait_for(
        lambda: any(m.id not in known and m.status in FINAL for m in cloud.migrations(vm)), 60
    )
    assert wait_for(lambda: _server(cloud, vm).settled, 60)
    srv = cloud.server(vm)
    assert srv is not None and srv.host == dst and srv.status == "ACTIVE"
    assert cloud.migrations(vm)[-1].status == "cancelled"
    assert fresh.ctl("GET", "status")["migrations_timed_out"] == timeouts + 1


# -- the executor ------------------------------------------------------------------------------


def test_a_plan_with_busy_vms_ends_with_every_host_upgraded(fresh: Box) -> None:
    inv_path, plan_path, inv, plan, hook, busy = forced_plan(fresh, "forced", 2.0)
    forced_before = fresh.ctl("GET", "status")["migrations_forced"]
    r = execute(fresh, inv_path, plan_path, "--upgrade-command", hook)
    assert r.code == 0, r
    assert "done: every host upgraded" in r.out
    assert f"force-completed: {len(busy)} live migration(s)" in r.out
    st = RunState.replay(read_records(journal_of(plan_path)))
    assert st.finished and st.upgraded == set(plan.hosts) and not st.open_steps
    assert {vm for _, vm in st.forced} == busy and not st.fallbacks
    forces = [x for x in records(plan_path) if x.get("op") == "force" and x["ev"] == "intent"]
    assert all(x["why"] == "planned" and x["after_s"] >= 2.0 for x in forces)
    assert fresh.ctl("GET", "status")["migrations_forced"] - forced_before == len(busy)
    want = _planned(inv, plan)
    assert {v: h for v, (h, _) in _where(fresh).items() if v in want} == want
    # --status names them
    s = execute(fresh, inv_path, plan_path, "--status", journal_of(plan_path))
    assert s.code == 0 and s.out.count("force-completed:") == len(busy), s


def test_a_busy_vm_is_forced_early_when_its_memory_stops_falling(fresh: Box) -> None:
    inv_path, plan_path, _inv, plan, hook, busy = forced_plan(fresh, "stall", 600.0)
    r = execute(fresh, inv_path, plan_path, "--upgrade-command", hook, "--force-stall", "1")
    assert r.code == 0, r
    st = RunState.replay(read_records(journal_of(plan_path)))
    assert st.upgraded == set(plan.hosts) and {vm for _, vm in st.forced} == busy
    forces = [x for x in records(plan_path) if x.get("op") == "force" and x["ev"] == "intent"]
    assert forces and all(x["why"] == "stalled" and x["after_s"] < 60 for x in forces)
    assert st.options["force_stall_s"] == 1.0  # recorded: a resume keeps it


def test_a_force_that_does_not_take_falls_back_to_cold_and_is_reported(fresh: Box) -> None:
    inv_path, plan_path, inv, plan, hook, busy = forced_plan(
        fresh, "fallback", 1.0, non_converging=("force-complete", "cold")
    )
    stuck = sorted(busy)[0]
    fresh.ctl("POST", "migration-behaviour", {"vm": stuck, "pause_fails": True})
    r = execute(fresh, inv_path, plan_path, "--upgrade-command", hook, "--force-stall", "2")
    assert r.code == 0, r
    assert "force fallback" in r.out and "cold to" in r.out, r
    st = RunState.replay(read_records(journal_of(plan_path)))
    assert st.finished and st.upgraded == set(plan.hosts)
    assert [(f["vm"], f["to"]) for f in st.fallbacks] == [(stuck, "cold")]
    assert "did not take" in st.fallbacks[0]["reason"]
    recs = records(plan_path)
    moves = [x for x in recs if x.get("op") == "migrate" and x.get("vm") == stuck]
    assert [x["method"] for x in moves if x["ev"] == "intent"] == ["live", "cold"]
    assert fresh.ctl("GET", "status")["pauses_refused"] >= 1
    want = _planned(inv, plan)
    assert _where(fresh)[stuck] == (want[stuck], "ACTIVE")
    # --status reports it
    s = execute(fresh, inv_path, plan_path, "--status", journal_of(plan_path))
    assert "force fallback" in s.out and "cold to" in s.out, s


def test_a_force_nova_refuses_falls_back_and_without_cold_the_vm_stays(fresh: Box) -> None:
    # the cloud's policy forbids the force-complete API (403): the fallback aborts the live
    # migration; the policy's non_converging has no cold: the VM stays, its host is reported
    inv_path, plan_path, inv, plan, hook, busy = forced_plan(fresh, "refused", 1.0)
    fresh.ctl("POST", "nova-policy", {"rule": FORCE_RULE, "check": "!"})
    try:
        r = execute(fresh, inv_path, plan_path, "--upgrade-command", hook)
    finally:
        fresh.ctl("POST", "nova-policy", {"rule": FORCE_RULE, "check": None})
    assert r.code == 5, r  # ended with hosts not upgraded
    assert "force fallback" in r.out and "left on its host" in r.out, r
    st = RunState.replay(read_records(journal_of(plan_path)))
    assert st.finished and not st.forced
    # (a busy VM whose host was given up before its turn is not tried: it stays too)
    tried = {f["vm"] for f in st.fallbacks}
    assert tried and tried <= busy and all(f.get("to") is None for f in st.fallbacks)
    assert all("Nova refused the force-complete" in f["reason"] for f in st.fallbacks)
    assert {x["status"] for x in st.force_refusals} == {403}
    sources = {inv.vm(vm).host for vm in busy}
    assert {h for h, o in st.outcomes.items() if o.status == "not-upgraded"} == sources
    assert st.upgraded == set(plan.hosts) - sources
    where = _where(fresh)
    assert {vm: where[vm] for vm in busy} == {vm: (inv.vm(vm).host, "ACTIVE") for vm in busy}


def test_a_run_killed_mid_migration_resumes_and_forces_it(fresh: Box) -> None:
    inv_path, plan_path, _inv, plan, hook, busy = forced_plan(fresh, "killed", 4.0)

    def busy_in_flight() -> bool:
        if not journal_of(plan_path).exists():
            return False
        st = RunState.replay(records(plan_path))
        return any(
            r["op"] == "migrate" and r["vm"] in busy for r in st.open_steps.values()
        ) and any(
            fresh.api.get("compute", f"/servers/{r['vm']}", "2.30")["server"]["status"]
            == "MIGRATING"
            for r in st.open_steps.values()
            if r["op"] == "migrate" and r["vm"] in busy
        )

    proc = _run_in_background(fresh, inv_path, plan_path, hook)
    try:
        assert wait_for(busy_in_flight, timeout=120)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    kill_seq = max(int(x["seq"]) for x in records(plan_path))
    forced_before = set(RunState.replay(records(plan_path)).forced)
    cut = [
        r
        for r in RunState.replay(records(plan_path)).open_steps.values()
        if r["op"] == "migrate" and r["vm"] in busy
    ]
    assert cut
    r = execute(fresh, inv_path, plan_path, "--resume", "--upgrade-command", hook)
    assert r.code == 0, r
    recs = records(plan_path)
    st = RunState.replay(recs)
    assert st.finished and st.upgraded == set(plan.hosts) and not st.open_steps
    for c in cut:
        # the cut migration was followed, forced (once) and confirmed, not begun again
        after = [x for x in recs if x["seq"] > kill_seq and str(x.get("step", "")) != ""]
        forces = [x for x in after if x["op"] == "force" and x["step"].startswith(c["step"])]
        if (int(c["wave"]), c["vm"]) in forced_before:
            assert forces == [], forces
        else:
            assert [x["ev"] for x in forces] == ["intent", "done"], forces
        assert any(x["step"] == c["step"] and x["ev"] == "done" for x in after)
        assert (int(c["wave"]), c["vm"]) in st.forced


def test_a_block_migration_is_not_forced_while_it_copies_its_disks(fresh: Box) -> None:
    # local storage: every live migration is a block migration, whose 10 GiB disk crosses the
    # link first (about 5 s) while the memory waits, all of it remaining. Without the disk
    # check, --force-stall 1 would force each busy VM a second into its disk copy.
    disk_s = 10 * 1024 / LINK
    fresh.ctl("POST", "storage", {"local": True})
    try:
        before = fresh.ctl("GET", "status")
        # forced as planned (2 s: due during the disk copy, so at its end) ...
        inv_path, plan_path, _inv, plan, hook, busy = forced_plan(fresh, "disk-planned", 2.0)
        r = execute(fresh, inv_path, plan_path, "--upgrade-command", hook, "--force-stall", "600")
        assert r.code == 0, r
        st = RunState.replay(read_records(journal_of(plan_path)))
        assert st.upgraded == set(plan.hosts) and {vm for _, vm in st.forced} == busy
        forces = [x for x in records(plan_path) if x.get("op") == "force" and x["ev"] == "intent"]
        assert forces and all(x["why"] == "planned" and x["after_s"] >= disk_s for x in forces)
        # ... and on a stall, counted from the end of the disk copy
        inv_path, plan_path, _inv, plan, hook, busy = forced_plan(fresh, "disk-stall", 600.0)
        r = execute(fresh, inv_path, plan_path, "--upgrade-command", hook, "--force-stall", "1")
        assert r.code == 0, r
        st = RunState.replay(read_records(journal_of(plan_path)))
        assert st.upgraded == set(plan.hosts) and {vm for _, vm in st.forced} == busy
        forces = [x for x in records(plan_path) if x.get("op") == "force" and x["ev"] == "intent"]
        assert forces and all(x["why"] == "stalled" and x["after_s"] >= disk_s + 1 for x in forces)
        after = fresh.ctl("GET", "status")
        assert after["forces_copying_disks"] == before["forces_copying_disks"] == 0
        assert after["migrations_forced"] - before["migrations_forced"] == 2 * len(busy)
    finally:
        fresh.ctl("POST", "storage", {"local": False})


def test_a_block_migration_reports_its_disk_copy_then_its_memory(fresh: Box) -> None:
    cloud = _cloud()
    vm = json.loads(fresh.sb.ids_file.read_text())["vms"]["vm-5"]
    fresh.ctl("POST", "storage", {"local": True})
    try:
        cloud.live_migrate(vm, _elsewhere(cloud, vm))
        assert wait_for(lambda: any(p.copying_disks for p in cloud.live_progress(vm)), 30)
        p = cloud.live_progress(vm)[-1]
        assert p.disk_total == 10 << 30 and p.memory_remaining == p.memory_total == 2048 << 20
        assert fresh.ctl("GET", "status")["migrations"][0]["mode"] == "disk"
        # the disks copied, the memory pre-copy runs (this VM never converges): forced then
        assert wait_for(
            lambda: any(q.disk_remaining == 0 for q in cloud.live_progress(vm)), timeout=60
        )
        q = cloud.live_progress(vm)[-1]
        assert q.disk_processed == q.disk_total and not q.copying_disks
        cloud.force_complete(vm, q.id)
        assert wait_for(lambda: _server(cloud, vm).settled, 30)
        assert fresh.ctl("GET", "status")["forces_copying_disks"] == 0
    finally:
        fresh.ctl("POST", "storage", {"local": False})


# -- maintenance windows, through the command line -------------------------------------------


def _window(start: _dt.datetime, end: _dt.datetime) -> Window:
    return Window(
        days=tuple(range(7)),
        start=start.hour * 60 + start.minute,
        end=end.hour * 60 + end.minute,
        tz="UTC",
    )


def test_windows_a_closed_window_stops_the_run_an_open_one_lets_it_through(fresh: Box) -> None:
    now = _dt.datetime.now(_dt.UTC)
    later = _window(now + _dt.timedelta(hours=2), now + _dt.timedelta(hours=3))
    inv_path, plan_path, _inv, _plan, hook, _ = forced_plan(fresh, "closed", 2.0, windows=(later,))
    before = _where(fresh)
    r = execute(fresh, inv_path, plan_path, "--upgrade-command", hook, "--no-window-wait")
    assert r.code == 5, r
    assert "outside the maintenance windows" in r.out and "--resume" in r.out, r
    assert _where(fresh) == before  # nothing touched
    s = execute(fresh, inv_path, plan_path, "--status", journal_of(plan_path))
    assert "waits for the maintenance window opening at" in s.out, s
    # a window open now (another plan: the window is the policy's): the run goes through
    around = _window(now - _dt.timedelta(hours=1), now + _dt.timedelta(hours=1))
    inv_path, plan_path, _inv, plan, hook, _ = forced_plan(fresh, "open", 2.0, windows=(around,))
    r = execute(fresh, inv_path, plan_path, "--upgrade-command", hook, "--no-window-wait")
    assert r.code == 0, r
    st = RunState.replay(read_records(journal_of(plan_path)))
    assert st.upgraded == set(plan.hosts) and st.window is not None
    assert st.window["what"] == "open"
