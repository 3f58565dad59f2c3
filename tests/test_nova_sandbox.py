"""Nova's state rules against the real Nova in the sandbox (issue 18): every move the planner
makes for PAUSED and SUSPENDED VMs, a hard affinity pair and a host that is down is one Nova
accepts (the whole plan executed), and every move it avoids is one Nova refuses (tried first,
on the cloud as seeded)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from planner.errors import CloudError
from planner.executor.cloud import LiveCloud
from planner.openstack.connect import Api, connect
from planner.openstack.sandbox import manager
from planner.policy import Headroom, Policy
from tests.executor_support import CLOUD, NEW, OLD, Box, execute, upgrade_hook
from tests.test_sandbox import _host, _vm, env  # noqa: F401 - the module's environment

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

SMALL = {"VCPU": 1, "MEMORY_MB": 1024, "DISK_GB": 10}


def _inventory() -> dict[str, Any]:
    """cmp-1: a PAUSED and a SUSPENDED VM; cmp-2: a hard affinity pair; cmp-3: down, with an
    ACTIVE VM on shared storage; cmp-4: empty."""
    hosts = [_host(f"cmp-{i}", "az1", version=OLD) for i in range(1, 5)]
    hosts[2]["up"] = False
    vms = [
        _vm(1, "cmp-1", status="PAUSED", resources=SMALL),
        _vm(2, "cmp-1", status="SUSPENDED", resources=SMALL),
        _vm(3, "cmp-2", server_group="sg-db", resources=SMALL),
        _vm(4, "cmp-2", server_group="sg-db", resources=SMALL),
        _vm(5, "cmp-3", resources=SMALL, local_disk=False),
    ]
    return {
        "format_version": "1.0",
        "kind": "inventory",
        "cloud": CLOUD,
        "taken_at": "2025-01-01T00:00:00Z",
        "hosts": hosts,
        "vms": vms,
        "server_groups": [
            {"id": "sg-db", "name": "db", "policy": "affinity", "max_server_per_host": 1}
        ],
        "ha_groups": [],
    }


@pytest.fixture(scope="module")
def box(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:  # noqa: F811
    sb = manager.start(_inventory(), migration_seconds=0.3, exit_with_parent=True)
    pol = Policy(
        max_hosts_per_wave=1,
        target_version=NEW,
        headroom=Headroom(failures=0),
        allow_stop=True,
        allow_evacuate=True,
    )
    try:
        yield Box(sb, Api(connect(CLOUD)), pol, tmp_path_factory.mktemp("nova"))
    finally:
        manager.stop()


def _uuid(box: Box, vm: str) -> str:
    return str(json.loads(box.sb.ids_file.read_text())["vms"][vm])


def _refused(call: Any, *args: str) -> CloudError:
    with pytest.raises(CloudError) as info:
        call(*args)
    return info.value


def test_nova_refuses_the_moves_the_planner_avoids(box: Box) -> None:
    cloud = LiveCloud(box.api, CLOUD)
    paused, suspended, member, on_down = (_uuid(box, f"vm-{i}") for i in (1, 2, 3, 5))
    # compute/api.py:4293: cold migration needs ACTIVE or STOPPED
    e = _refused(cloud.cold_migrate, paused, "cmp-4")
    assert e.status == 409 and "paused" in str(e), e
    # api.py:5586: live migration needs ACTIVE or PAUSED
    e = _refused(cloud.live_migrate, suspended, "cmp-4")
    assert e.status == 409 and "suspended" in str(e), e
    # the affinity filter: the only host holding a member is the source
    e = _refused(cloud.live_migrate, member, "cmp-4")
    assert e.status == 400 and "No valid host" in str(e), e
    # a down source compute
    e = _refused(cloud.live_migrate, on_down, "cmp-4")
    assert e.status == 400 and "unavailable" in str(e), e
    # nothing moved
    for vm, host in (
        (paused, "cmp-1"),
        (suspended, "cmp-1"),
        (member, "cmp-2"),
        (on_down, "cmp-3"),
    ):
        srv = cloud.server(vm)
        assert srv is not None and srv.host == host, srv


def test_every_move_the_plan_makes_is_one_nova_accepts(box: Box) -> None:
    inv_path, plan_path, inv, plan = box.fresh_plan("all")
    names = {v.id: v.name for v in inv.vms}
    methods = {names[m.vm]: m.method for _, m in plan.migrations()}
    assert methods == {
        "server-1": "live",
        "server-2": "shelve",
        "server-3": "shelve",
        "server-4": "shelve",
        "server-5": "evacuate",
    }
    run = execute(box, inv_path, plan_path, "--upgrade-command", upgrade_hook())
    assert run.code == 0, run
    dst = {m.vm: m.dst for _, m in plan.migrations()}
    cloud = LiveCloud(box.api, CLOUD)
    want = {"server-1": "PAUSED"}
    for vm, host in dst.items():
        srv = cloud.server(vm)
        assert srv is not None and srv.host == host, (names[vm], srv)
        assert srv.status == want.get(names[vm], "ACTIVE"), (names[vm], srv)
    pair = {dst[v.id] for v in inv.vms if v.server_group}
    assert len(pair) == 1  # the group moved whole, to one host
    after = box.snapshot()
    assert {h["name"]: h["version"] for h in after["hosts"]} == {
        f"cmp-{i}": NEW for i in range(1, 5)
    }


def test_the_forced_remedy_moves_an_affinity_group_with_the_workaround(box: Box) -> None:
    # Opt-in, as the operator's nova.conf: without it the destination fails the move late.
    got = box.ctl("POST", "nova-workarounds", {"disable_group_policy_check_upcall": True})
    assert got["disable_group_policy_check_upcall"] is True
    try:
        target = f"{NEW}.1"
        inv_path, plan_path, inv, plan = box.fresh_plan(
            "forced", target, allow_stop=False, affinity_moves="forced"
        )
        members = {v.id for v in inv.vms if v.server_group}
        moves = {m.vm: m for _, m in plan.migrations() if m.vm in members}
        assert set(moves) == members and {m.method for m in moves.values()} == {"live-forced"}
        run = execute(box, inv_path, plan_path, "--upgrade-command", upgrade_hook(target))
        assert run.code == 0, run
        cloud = LiveCloud(box.api, CLOUD)
        for vm, m in moves.items():
            srv = cloud.server(vm)
            assert srv is not None and (srv.host, srv.status) == (m.dst, "ACTIVE"), srv
    finally:
        box.ctl("POST", "nova-workarounds", {"disable_group_policy_check_upcall": False})
