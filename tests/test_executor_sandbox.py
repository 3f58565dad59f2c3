"""Issue 6 end to end, against the real Nova sandbox: a 20-host cloud planned and executed, with
its headroom sampled from outside during the run; the dry run first (it changes nothing)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from planner.executor.journal import RunState, read_records
from planner.openstack.sandbox import manager
from tests.executor_support import (
    NEW,
    Box,
    Sampler,
    execute,
    journal_of,
    spec,
    start_box,
    upgrade_hook,
)
from tests.test_sandbox import env  # noqa: F401 - the module's isolated environment

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


@pytest.fixture(scope="module")
def box(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:  # noqa: F811
    b = start_box(tmp_path_factory.mktemp("exec20"), spec(20, 1.5, 0.4, controllers=3), 4)
    try:
        yield b
    finally:
        manager.stop()


def _state(box: Box) -> dict[str, Any]:
    """What the cloud looks like, without the snapshot's own time."""
    inv = box.snapshot()
    inv.pop("taken_at")
    return inv


def test_dry_run_prints_every_call_and_changes_nothing(box: Box) -> None:
    inv_path, plan_path, _, plan = box.fresh_plan("dry")
    before = _state(box)
    done_before = box.ctl("GET", "status")["migrations_completed"]
    r = execute(box, inv_path, plan_path, "--dry-run", "--upgrade-command", upgrade_hook())
    assert r.code == 0, r
    lines = r.out.splitlines()
    moves = [ln for ln in lines if '{"os-migrateLive"' in ln or '{"migrate"' in ln]
    assert len(moves) == sum(len(w.migrations) for w in plan.waves)
    cold = sum(1 for _, m in plan.migrations() if m.method == "cold")
    assert sum('{"confirmResize"' in ln for ln in lines) == cold
    stops = sum(len(w.stops) for w in plan.waves)
    assert sum('{"os-stop"' in ln for ln in lines) == sum('{"os-start"' in ln for ln in lines)
    assert sum('{"os-stop"' in ln for ln in lines) <= stops
    assert sum("disabled_reason" in ln for ln in lines) == 20  # each compute host, once
    assert any(ln.startswith("RUN  upgrade hook") for ln in lines)
    assert "nothing was changed" in r.out
    # --format json: the same calls inside the JSON, and nothing else on stdout
    rj = execute(
        box,
        inv_path,
        plan_path,
        "--dry-run",
        "--format",
        "json",
        "--upgrade-command",
        upgrade_hook(),
    )
    assert rj.code == 0, rj
    data = json.loads(rj.out)
    assert data["dry_run"] and data["status"] == "completed"
    assert data["calls"] == [
        ln for ln in lines if ln.startswith(("GET", "PUT", "POST", "DEL", "RUN"))
    ]
    assert _state(box) == before
    assert box.ctl("GET", "status")["migrations_completed"] == done_before
    assert not journal_of(plan_path).exists()


def test_a_20_host_plan_executes_end_to_end_with_headroom_kept(box: Box) -> None:
    inv_path, plan_path, inv, plan = box.fresh_plan("e2e")
    assert len([h for h in inv.hosts if h.is_compute]) == 20
    with Sampler(box, plan.policy) as sampler:
        r = execute(box, inv_path, plan_path, "--upgrade-command", upgrade_hook())
    assert r.code == 0, r
    assert "done: every host upgraded" in r.out and "execution summary" in r.out
    after = box.snapshot()
    hosts = {h["name"]: h for h in after["hosts"]}
    vms = {v["id"]: v for v in after["vms"]}
    # every compute host runs the new version and is back in service (the one disabled before
    # the run stays disabled, with its own reason)
    for h in inv.hosts:
        if not h.is_compute:
            continue
        assert hosts[h.name]["version"] == NEW, h.name
        assert hosts[h.name]["enabled"] == h.enabled and hosts[h.name]["up"], h.name
        assert hosts[h.name]["disabled_reason"] == h.disabled_reason
    # every VM in the state it was in, on the host the plan chose for it
    planned = {v.id: v.host for v in inv.vms}
    for _, m in plan.migrations():
        planned[m.vm] = m.dst
    assert {v: vms[v]["host"] for v in planned} == planned
    assert {v.id: vms[v.id]["status"] for v in inv.vms} == {v.id: v.status for v in inv.vms}
    # headroom held all along, seen from outside and by the executor itself
    assert sampler.samples >= 5 and sampler.breaches == []
    st = RunState.replay(read_records(journal_of(plan_path)))
    assert st.headroom_breaches == [] and st.finished
    assert st.upgraded == set(plan.hosts) and not st.disabled_by_us and not st.open_steps
    assert st.counts()["migrations_done"] == sum(len(w.migrations) for w in plan.waves)
    # the controllers (no nova-compute: only their upgrade command) were upgraded too
    assert {h for h in st.upgraded if h.startswith("ctl-")} == {"ctl-1", "ctl-2", "ctl-3"}


def test_resume_of_a_finished_run_does_nothing(box: Box, tmp_path: Path) -> None:
    plan_path = next(box.root.glob("*-e2e/plan.json"))
    inv_path = plan_path.with_name("inventory.json")
    before = _state(box)
    r = execute(box, inv_path, plan_path, "--resume", "--upgrade-command", upgrade_hook())
    assert r.code == 0, r
    assert _state(box) == before


def test_pipelined_admits_a_later_waves_host_before_the_earlier_wave_ends(box: Box) -> None:
    target = f"{NEW}.pipelined"
    inv_path, plan_path, inv, plan = box.fresh_plan("pipelined", target)
    assert plan.policy.execution == "pipelined" and len(plan.waves) >= 3
    before = sum(1 for h in inv.hosts if h.is_compute and not h.enabled)
    with Sampler(box, plan.policy, every=0.5) as sampler:
        run = execute(box, inv_path, plan_path, "--upgrade-command", upgrade_hook(target))
    assert run.code == 0, run
    recs = read_records(journal_of(plan_path))
    assert recs[0]["execution"] == "pipelined"
    # a host of wave k+1 admitted while wave k is still under way (before its done record)
    done_at = {
        r["wave"]: i for i, r in enumerate(recs) if r.get("op") == "wave" and r["ev"] == "done"
    }
    early = [
        (r["host"], r["wave"])
        for i, r in enumerate(recs)
        if r.get("op") == "admit" and r.get("admitted") and i < done_at.get(r["wave"] - 1, -1)
    ]
    assert early, "no host entered before the wave ahead of it ended"
    # no rule broken on the sampled states: headroom, and hosts in maintenance at once
    assert sampler.samples >= 5 and sampler.breaches == []
    assert sampler.most_disabled - before <= plan.policy.max_hosts_per_wave
    # the refusals are in the journal, with the rule and its words, and the run printed them
    refusals = [r for r in recs if r.get("op") == "admit" and not r.get("admitted")]
    assert refusals and all(r["rule"] and r["reason"] for r in refusals)
    first = refusals[0]
    assert f"{first['host']} (wave {first['wave']}) waits: {first['rule']}: " in run.err
    st = RunState.replay(recs)
    assert st.upgraded == set(plan.hosts) and st.finished and st.headroom_breaches == []
    assert not st.disabled_by_us and not st.open_steps
