"""Issue 18, the executor's failure handling against the real Nova sandbox: a destination that
starts refusing during the run (disabled: Nova's scheduler answers "No valid host") is given up
after `--retries` + 1 failures and another is asked of the re-planner; with no other allowed,
the VM stays and the run says why. VMs that land in ERROR during a run are reported.

One small sandbox for the module; each test resets it and plans afresh from a snapshot.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from planner.inventory import Inventory
from planner.openstack.sandbox import manager
from planner.plan import Migration, Plan
from solver.reroute import reroute
from tests.executor_support import Box, records, spec, start_box, wait_for
from tests.test_executor_faults import (
    _run_in_background,
    before_wave,
    plan_for,
    state_of,
)
from tests.test_sandbox import env  # noqa: F401 - the module's isolated environment

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

SLOW = 8.0  # seconds: the migrations before the one whose destination starts refusing


@pytest.fixture(scope="module")
def box(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:  # noqa: F811
    b = start_box(tmp_path_factory.mktemp("dests"), spec(8, 2.0, 0.12, controllers=0), 2)
    try:
        yield b
    finally:
        manager.stop()


@pytest.fixture
def fresh(box: Box) -> Box:
    box.reset()
    return box


def _victim(inv: Inventory, plan: Plan) -> tuple[int, Migration, list[Migration]]:
    """A live migration B that is not its source's first in its wave (those before it are
    slowed down: B starts after them, one migration per source at a time), whose destination
    has an alternative the checker accepts; with the migrations before it from the same
    source."""
    for w in plan.waves:
        for i, m in enumerate(w.migrations):
            before = [o for o in w.migrations[:i] if o.src == m.src]
            if m.method != "live" or not before:
                continue
            others = tuple(o for o in w.migrations if o.vm != m.vm)
            state = before_wave(inv, plan, w.index)
            alt = reroute(
                state,
                plan.policy,
                m.vm,
                wave_hosts=w.hosts,
                others=others,
                stops=w.stops,
                avoid={m.dst},
            )
            if alt is not None:
                return w.index, m, before
    raise AssertionError("the fixture cloud needs a second migration off a host")


def _refusing_run(fresh: Box, name: str, *more: str) -> tuple[Path, int, Migration, str]:
    """Execute a plan whose victim finds its destination disabled (by someone else) once the
    migrations before it are under way; the run's journal, the victim and the run's output."""
    # N+0 (so that a second destination exists); one migration per source at a time
    inv_path, plan_path, inv, plan, hook = plan_for(
        fresh, name, **{"headroom.failures": 0, "max_concurrent_live_migrations": 1}
    )
    k, b, before = _victim(inv, plan)
    for o in before:
        fresh.ctl("POST", "migration-duration", {"vm": o.vm, "seconds": SLOW})
    proc = _run_in_background(fresh, inv_path, plan_path, hook, "--retries", "1", *more)
    try:
        # the wave is under way (its first migration off b's source started): b waits for it
        assert wait_for(lambda: _started(plan_path, before[0].vm, k), timeout=300)
        svc = next(
            s
            for s in fresh.api.get("compute", "/os-services?binary=nova-compute", "2.53")[
                "services"
            ]
            if s["host"] == b.dst
        )
        fresh.api.request(
            "compute",
            "PUT",
            f"/os-services/{svc['id']}",
            microversion="2.53",
            json={"status": "disabled", "disabled_reason": "an operator, during the run"},
        )
        out, _ = proc.communicate(timeout=600)
    finally:
        proc.kill()
        for o in before:
            fresh.ctl("POST", "migration-duration", {"vm": o.vm, "seconds": 0.3})
    return plan_path, k, b, out.decode()


def _started(plan_path: Path, vm: str, wave: int) -> bool:
    """The run started `vm`'s migration of wave `wave` (a VM may move in several waves)."""
    try:
        recs = records(plan_path)
    except FileNotFoundError:
        return False
    return any(
        r.get("op") == "migrate" and r["ev"] == "intent" and r["vm"] == vm and r["wave"] == wave
        for r in recs
    )


def test_a_destination_that_starts_refusing_is_replaced_by_another(fresh: Box) -> None:
    plan_path, k, b, out = _refusing_run(fresh, "refusing")
    st = state_of(plan_path)
    recs = records(plan_path)
    tries = [
        r
        for r in recs
        if r.get("op") == "migrate"
        and r.get("vm") == b.vm
        and r["ev"] == "intent"
        and r["wave"] == k
    ]
    # --retries 1: two attempts to the planned (now disabled) host, then another
    assert [r["dst"] for r in tries[:2]] == [b.dst, b.dst], (b, tries, out)
    fails = [r for r in recs if r.get("op") == "migrate" and r.get("vm") == b.vm]
    assert any(r["ev"] == "failed" and "No valid host" in r["reason"] for r in fails), out
    ret = [r for r in recs if r.get("op") == "retarget" and r.get("vm") == b.vm and r["wave"] == k]
    assert len(ret) == 1 and ret[0]["old"] == b.dst and ret[0]["dst"] != b.dst, out
    assert "No valid host" in ret[0]["reason"]
    assert st.moved[b.vm][1] == ret[0]["dst"]
    vms = {v["id"]: v for v in fresh.snapshot()["vms"]}
    assert vms[b.vm]["host"] == ret[0]["dst"] and vms[b.vm]["status"] == "ACTIVE"
    assert b.src in st.upgraded
    assert "re-planned" in out and b.dst in out


def test_with_no_other_destination_allowed_the_vm_stays_and_the_run_says_why(
    fresh: Box,
) -> None:
    plan_path, k, b, out = _refusing_run(fresh, "refusing-stay", "--retargets", "0")
    st = state_of(plan_path)
    recs = records(plan_path)
    assert not [r for r in recs if r.get("op") == "retarget" and r.get("vm") == b.vm], out
    skip = [r for r in recs if r.get("op") == "skip" and r.get("vm") == b.vm and r["wave"] == k]
    assert len(skip) == 1, out
    why = skip[0]["reason"]
    assert "No valid host" in why and f"1 destination(s) tried ({b.dst}), the limit" in why
    host = [
        r
        for r in recs
        if r.get("op") == "host" and r.get("host") == b.src and r.get("status") == "not-upgraded"
    ]
    assert host and "could not be moved off it" in host[0]["reason"]
    assert "the limit" in host[0]["reason"]
    assert b.src not in st.upgraded
    assert "the limit" in out
    vms = {v["id"]: v for v in fresh.snapshot()["vms"]}
    assert vms[b.vm]["host"] == b.src and vms[b.vm]["status"] == "ACTIVE"


def _error_vm(fresh: Box, host: str) -> str:
    """A VM that lands in ERROR on `host`: booted there (a user's), then put in ERROR through
    Nova's API (`os-resetState`, as a failed operation leaves it)."""
    got = fresh.ctl(
        "POST", "vms", {"host": host, "resources": {"VCPU": 1, "MEMORY_MB": 256, "DISK_GB": 1}}
    )
    assert got["status"] == "ACTIVE", got
    fresh.api.request(
        "compute",
        "POST",
        f"/servers/{got['id']}/action",
        microversion="2.53",
        json={"os-resetState": {"state": "error"}},
    )
    return str(got["id"])


def test_vms_that_land_in_error_during_the_run_are_reported(fresh: Box) -> None:
    inv_path, plan_path, _inv, plan, hook = plan_for(fresh, "error-vm")
    assert len(plan.waves) >= 2
    w2 = plan.waves[1]
    for m in w2.migrations:  # the second wave lasts long enough for the VM to appear meanwhile
        fresh.ctl("POST", "migration-duration", {"vm": m.vm, "seconds": 4.0})
    proc = _run_in_background(fresh, inv_path, plan_path, hook)
    try:

        def first_wave_done() -> bool:
            try:
                recs = records(plan_path)
            except FileNotFoundError:
                return False
            return any(r.get("op") == "wave" and r["ev"] == "done" for r in recs)

        assert wait_for(first_wave_done, timeout=300)
        # on a host the run has upgraded and given back (no wave of the plan touches it again)
        new = _error_vm(fresh, plan.waves[0].hosts[0])
        out, _ = proc.communicate(timeout=600)
    finally:
        proc.kill()
        for m in w2.migrations:
            fresh.ctl("POST", "migration-duration", {"vm": m.vm, "seconds": 0.3})
    text = out.decode()
    notes = [r for r in records(plan_path) if r.get("op") == "vm-error"]
    assert [n["vm"] for n in notes] == [new], text
    k = notes[0]["wave"]
    assert k >= 2 and notes[0]["host"] == plan.waves[0].hosts[0]
    # numbered as the run prints its waves: reported among wave k's lines
    n = len(plan.waves)
    start, seen = text.find(f"wave {k}/{n}"), text.find("is in ERROR")
    done = text.find(f"wave {k} done")
    assert 0 <= start < seen < done, text
    assert new in text and f"VM in ERROR (seen in wave {k})" in text
    st = state_of(plan_path)
    assert [e["vm"] for e in st.vms_in_error] == [new]
    # reported once, not again at later waves' ends
    assert text.count("is in ERROR") == 1
