"""The real Nova sandbox, driven through openstacksdk over HTTP, and `rollwave snapshot` of it.

One sandbox for the module (start-ups are the expensive part on CI's 2 cores), plus one tiny
sandbox that is killed to check clean-up. Tests that change the cloud run after the round trip.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from planner import formats
from planner.cli import cli, main
from planner.errors import CloudError, SandboxError
from planner.openstack import clouds_yaml, mapping, snapshot
from planner.openstack.connect import Api, connect
from planner.openstack.sandbox import manager

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


def _host(name: str, az: str, **kw: Any) -> dict[str, Any]:
    h: dict[str, Any] = {
        "name": name,
        "role": "compute",
        "az": az,
        "rack": None,
        "aggregates": [],
        "version": "2024.1",
        "enabled": True,
        "up": True,
        "capacity": {"VCPU": 32, "MEMORY_MB": 65536, "DISK_GB": 1000},
        "reserved": {"VCPU": 0, "MEMORY_MB": 2048, "DISK_GB": 0},
        "allocation_ratio": {"VCPU": 4.0, "MEMORY_MB": 1.0, "DISK_GB": 1.0},
    }
    h.update(kw)
    return h


def _vm(i: int, host: str, **kw: Any) -> dict[str, Any]:
    v: dict[str, Any] = {
        "id": f"vm-{i}",
        "name": f"server-{i}",
        "project": "proj-a" if i % 2 else "proj-b",
        "host": host,
        "status": "ACTIVE",
        "resources": {"VCPU": 2, "MEMORY_MB": 4096, "DISK_GB": 20},
        "az": None,
        "allowed_aggregates": [],
        "server_group": None,
        "migration": "live",
    }
    v.update(kw)
    return v


# Inventory X: every field kind the sandbox can represent, on five hosts.
X: dict[str, Any] = {
    "format_version": "1.0",
    "kind": "inventory",
    "cloud": "rollwave-sandbox",
    "taken_at": "2025-01-01T00:00:00Z",
    "hosts": [
        _host("cmp-1", "az1", rack="r1", aggregates=["ssd"]),
        _host(
            "cmp-2",
            "az1",
            rack="r1",
            aggregates=["ssd"],
            capacity={"VCPU": 16, "MEMORY_MB": 32768, "DISK_GB": 500, "CUSTOM_GPU": 2},
            reserved={"VCPU": 2, "MEMORY_MB": 1024, "DISK_GB": 10, "CUSTOM_GPU": 0},
            allocation_ratio={"VCPU": 2.0, "MEMORY_MB": 1.5, "DISK_GB": 1.0, "CUSTOM_GPU": 1.0},
        ),
        _host("cmp-3", "az2", rack="r2", version="2025.1"),
        _host("cmp-4", "az2", rack="r2", enabled=False, disabled_reason="disk replacement"),
        _host("cmp-5", "az2", rack="r3", up=False),
        {
            "name": "ctl-1",
            "role": "controller",
            "az": "az1",
            "rack": "r1",
            "aggregates": [],
            "version": "2024.1",
            "enabled": True,
            "up": True,
            "capacity": {},
            "reserved": {},
            "allocation_ratio": {},
        },
        {
            "name": "ctl-2",
            "role": "controller",
            "az": "az2",
            "rack": "r2",
            "aggregates": [],
            "version": "2024.1",
            "enabled": True,
            "up": True,
            "capacity": {},
            "reserved": {},
            "allocation_ratio": {},
        },
    ],
    "vms": [
        _vm(1, "cmp-1", server_group="sg-web"),
        _vm(2, "cmp-3", server_group="sg-web", az="az2"),
        _vm(3, "cmp-1", status="SHUTOFF", migration="cold"),
        _vm(
            4,
            "cmp-2",
            resources={"VCPU": 4, "MEMORY_MB": 8192, "DISK_GB": 40, "CUSTOM_GPU": 1},
            allowed_aggregates=["ssd"],
            dirty_rate_mb_s=120.5,
            local_disk=True,
        ),
        _vm(5, "cmp-4", server_group="sg-db", migration="none"),
        _vm(6, "cmp-4", server_group="sg-db"),
        _vm(7, "cmp-5", resources={"VCPU": 1, "MEMORY_MB": 512}),
    ],
    "server_groups": [
        {"id": "sg-web", "name": "web", "policy": "anti-affinity", "max_server_per_host": 1},
        {"id": "sg-db", "name": "db", "policy": "anti-affinity", "max_server_per_host": 2},
    ],
    "ha_groups": [{"name": "control-plane", "hosts": ["ctl-1", "ctl-2"], "min_available": 1}],
}
# What the sandbox cannot represent: Nova picks the ids of servers and server groups (the
# sandbox's ids.json maps them back); `cloud` and `taken_at` describe the snapshot itself.
NOT_REPRESENTED = ("vm ids", "server group ids", "taken_at")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("sandbox")
    saved = dict(os.environ)
    # openstacksdk reads OS_CLIENT_CONFIG_FILE first, and `sandbox up` merges into that file;
    # HOME and XDG_CONFIG_HOME keep the user's own files out of reach as well.
    os.environ.update(
        HOME=str(root / "home"),
        XDG_CONFIG_HOME=str(root / "home" / ".config"),
        ROLLWAVE_SANDBOX_DIR=str(root / "state"),
        OS_CLIENT_CONFIG_FILE=str(root / "home" / "clouds.yaml"),
    )
    os.environ.pop("OS_CLOUD", None)
    try:
        yield dict(os.environ)
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def sb(env: dict[str, str]) -> Iterator[manager.Running]:
    formats.inventory_from_dict(X)  # X itself must be a valid inventory
    running = manager.start(X, migration_seconds=0.5, exit_with_parent=True)
    try:
        yield running
    finally:
        manager.stop()
    assert not (running.dir / "work").exists()
    assert not (running.dir / "state.json").exists()


@pytest.fixture(scope="module")
def conn(sb: manager.Running) -> Any:
    return connect(manager.CLOUD_NAME)


def _ids(sb: manager.Running) -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = json.loads(sb.ids_file.read_text())
    return data


def _norm(inv: dict[str, Any], ids: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """Inventory in comparable form: defaults filled, lists sorted, Nova ids mapped back."""
    back_vm = {v: k for k, v in (ids or {}).get("vms", {}).items()}
    back_sg = {v: k for k, v in (ids or {}).get("server_groups", {}).items()}
    parsed = formats.inventory_to_dict(formats.inventory_from_dict(copy.deepcopy(inv)))
    for h in parsed["hosts"]:
        h["aggregates"] = sorted(h["aggregates"])
        for rc in h["capacity"]:
            h["reserved"].setdefault(rc, 0)
            h["allocation_ratio"].setdefault(rc, 1.0)
        h.setdefault("disabled_reason", None)
    for v in parsed["vms"]:
        v["id"] = back_vm.get(v["id"], v["id"])
        v["server_group"] = back_sg.get(v["server_group"], v["server_group"])
    for g in parsed["server_groups"]:
        g["id"] = back_sg.get(g["id"], g["id"])
    parsed["hosts"].sort(key=lambda h: h["name"])
    parsed["vms"].sort(key=lambda v: v["id"])
    parsed["server_groups"].sort(key=lambda g: g["id"])
    parsed.pop("taken_at")
    return parsed


def test_snapshot_of_the_sandbox_equals_its_inventory(sb: manager.Running, tmp_path: Path) -> None:
    out = tmp_path / "snap.json"
    res = CliRunner().invoke(
        cli,
        [
            "snapshot",
            "--os-cloud",
            manager.CLOUD_NAME,
            "--mapping",
            str(sb.mapping_file),
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "5 compute hosts (1 disabled, 1 down), 2 controllers, 7 VMs" in res.output
    got = json.loads(out.read_text())
    # Nova's own ids, not the inventory's: the executor needs them
    assert set(_ids(sb)["vms"].values()) == {v["id"] for v in got["vms"]}
    assert _norm(got, _ids(sb)) == _norm(X)
    # aggregate metadata is kept beside the core's fields
    names = {a["name"] for a in got["aggregates"]}
    assert names == {"az1", "az2", "ssd", "rollwave-labels"}


def test_any_openstack_client_reaches_it_from_clouds_yaml(sb: manager.Running, conn: Any) -> None:
    entry = yaml.safe_load(clouds_yaml.user_clouds_yaml().read_text())["clouds"]
    assert entry[manager.CLOUD_NAME]["auth"]["auth_url"] == sb.auth_url
    hosts = {s.host: s for s in conn.compute.services() if s.binary == "nova-compute"}
    assert hosts["cmp-4"].status == "disabled"
    assert hosts["cmp-4"].disabled_reason == "disk replacement"
    assert hosts["cmp-5"].state == "down" and hosts["cmp-1"].state == "up"
    rp = next(r for r in conn.placement.resource_providers() if r.name == "cmp-2")
    invs = {i.resource_class: i for i in conn.placement.resource_provider_inventories(rp)}
    assert (invs["VCPU"].total, invs["VCPU"].reserved, invs["VCPU"].allocation_ratio) == (
        16,
        2,
        2.0,
    )
    assert invs["CUSTOM_GPU"].total == 2


def test_errors_name_the_call_and_status(
    sb: manager.Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "clouds.yaml"
    wrong = sb.cloud_entry()
    wrong["auth"]["password"] = "wrong"
    demo = sb.cloud_entry("demo")
    clouds_yaml.merge_entry("wrong", wrong, p)
    clouds_yaml.merge_entry("demo", demo, p)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(p))
    with pytest.raises(CloudError) as e:
        snapshot.collect(Api(connect("wrong")), "wrong", mapping.Mapping())
    assert e.value.status == 401 and "authentication failed" in str(e.value)
    assert "wrong" not in str(e.value).replace("'wrong'", "")  # no password echoed
    with pytest.raises(CloudError) as e2:
        snapshot.collect(Api(connect("demo")), "demo", mapping.Mapping())
    assert e2.value.status == 403 and e2.value.call is not None
    assert "os-services" in e2.value.call and "admin" in str(e2.value)
    with pytest.raises(SystemExit) as ex:
        main(["snapshot", "--os-cloud", "demo", "-q", "-o", str(tmp_path / "x.json")])
    assert ex.value.code == 4 and not (tmp_path / "x.json").exists()


def _wait_migration(conn: Any, server_id: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        migs = sorted(
            (m for m in conn.compute.migrations() if m.server_id == server_id), key=lambda m: m.id
        )
        if migs and migs[-1].status in ("completed", "error", "failed", "cancelled"):
            server = conn.compute.get_server(server_id)
            if not server.task_state:
                return migs[-1], server
        time.sleep(0.2)
    raise AssertionError(f"migration of {server_id} did not finish")


def test_live_migration_and_injected_failure(sb: manager.Running, conn: Any) -> None:
    vm = _ids(sb)["vms"]["vm-7"]
    # Nova refuses a disabled destination at once (400), as a real cloud does
    with pytest.raises(Exception, match="400"):
        conn.compute.live_migrate_server(vm, host="cmp-4", block_migration="auto")
    manager.control(sb, "POST", "hosts/cmp-5/up")  # its source must be up to migrate
    conn.compute.live_migrate_server(vm, host="cmp-1", block_migration="auto")
    mig, server = _wait_migration(conn, vm)
    assert mig.status == "completed" and server.compute_host == "cmp-1"
    manager.control(sb, "POST", "fail-next-migration", {"vm": "vm-7"})
    conn.compute.live_migrate_server(vm, host="cmp-2", block_migration="auto")
    mig, server = _wait_migration(conn, vm)
    assert mig.status == "error"
    assert server.compute_host == "cmp-1" and server.status == "ACTIVE"
    st = manager.control(sb, "GET", "status")
    assert st["migrations_completed"] >= 1 and st["migrations_failed"] == 1
    # a long migration can be aborted through Nova's API; the server stays where it was
    manager.control(sb, "POST", "migration-duration", {"seconds": 30, "vm": vm})
    conn.compute.live_migrate_server(vm, host="cmp-2", block_migration="auto")
    deadline = time.monotonic() + 30
    running: list[Any] = []
    while not running and time.monotonic() < deadline:
        running = [m for m in conn.compute.server_migrations(vm) if m.status == "running"]
        time.sleep(0.2)
    assert running, "the migration never showed as running"
    conn.compute.abort_server_migration(running[0], vm)
    mig, server = _wait_migration(conn, vm)
    assert mig.status == "cancelled" and server.compute_host == "cmp-1"


def test_upgrade_and_refusal_are_visible_through_the_apis(
    sb: manager.Running, conn: Any, tmp_path: Path
) -> None:
    manager.control(sb, "POST", "hosts/cmp-1/upgrade", {"version": "2025.1"})
    manager.control(sb, "POST", "hosts/cmp-2/refuse-up", {"refuse": True})
    manager.control(sb, "POST", "hosts/cmp-2/down")
    with pytest.raises(SandboxError, match="refuses to come back up"):
        manager.control(sb, "POST", "hosts/cmp-2/up")
    created = manager.control(
        sb,
        "POST",
        "vms",
        {"host": "cmp-3", "name": "drift", "resources": {"VCPU": 1, "MEMORY_MB": 256}},
    )
    assert created["status"] == "ACTIVE" and created["host"] == "cmp-3"
    inv, _ = snapshot.collect(Api(conn), "s", mapping.load(sb.mapping_file))
    hosts = {h["name"]: h for h in inv["hosts"]}
    assert hosts["cmp-1"]["version"] == "2025.1" and hosts["cmp-1"]["up"]
    assert not hosts["cmp-2"]["up"]
    assert any(v["name"] == "drift" and v["host"] == "cmp-3" for v in inv["vms"])


def test_one_upgrade_hook_serves_controllers_too(sb: manager.Running, conn: Any) -> None:
    """`ctl upgrade` of a controller (no nova-compute in the sandbox) sets its version in the
    mapping that snapshots read, so an executor's upgrade hook works for every host of a plan."""
    res = CliRunner().invoke(cli, ["sandbox", "ctl", "upgrade", "ctl-2", "--version", "2026.1"])
    assert res.exit_code == 0, res.output
    assert "controller" in res.output
    inv, _ = snapshot.collect(Api(conn), "s", mapping.load(sb.mapping_file))
    assert {h["name"]: h["version"] for h in inv["hosts"]}["ctl-2"] == "2026.1"
    # the sandbox owns mapping.json: rewriting it (a drift VM updates ids.json beside it) keeps
    # the controller's new version, and the file stays private
    assert manager.upgrade(sb, "ctl-1", "2026.2") == "controller"
    manager.control(sb, "POST", "vms", {"host": "cmp-3", "resources": {"VCPU": 1}})
    versions = {
        c["name"]: c["version"] for c in json.loads(sb.mapping_file.read_text())["controllers"]
    }
    assert versions == {"ctl-1": "2026.2", "ctl-2": "2026.1"}
    assert sb.mapping_file.stat().st_mode & 0o077 == 0
    from tests.test_cli import rollwave

    run = rollwave("sandbox", "ctl", "upgrade", "nope", "--version", "2026.1")
    assert run.code == 6 and "unknown compute host 'nope'" in run.err, run


def test_killed_sandbox_leaves_nothing(env: dict[str, str], tmp_path: Path) -> None:
    d = tmp_path / "tiny"
    tiny = {**X, "hosts": [_host("solo", "nova")], "vms": [], "server_groups": [], "ha_groups": []}
    sb = manager.start(tiny, directory=d, exit_with_parent=True, write_clouds_yaml=False)
    assert (d / "work").is_dir() and any((d / "work").iterdir())
    os.kill(sb.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while (d / "state.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (d / "state.json").exists() and not (d / "work").exists()
    assert not (d / "secrets.json").exists()
    assert manager.find(d) is None
    manager.stop(d)  # idempotent on a stopped sandbox


def test_pagination_collects_every_page(sb: manager.Running, conn: Any) -> None:
    api = Api(conn)
    pages = list(
        api.paginate(
            "compute", "/servers/detail?all_tenants=True", "servers", microversion="2.96", limit=2
        )
    )
    assert [len(p) for p in pages[:-1]] == [2] * (len(pages) - 1) and len(pages) >= 4
    ids = [s["id"] for p in pages for s in p]
    assert len(ids) == len(set(ids)) >= len(X["vms"])
    groups = list(
        api.paginate(
            "compute",
            "/os-server-groups?all_projects=True",
            "server_groups",
            microversion="2.64",
            limit=1,
            by_offset=True,
        )
    )
    assert [len(p) for p in groups] == [1, 1]


def test_novas_pinned_az_wins_over_the_mapping(
    sb: manager.Running, conn: Any, tmp_path: Path
) -> None:
    """docs/cli.md (`snapshot`): Nova's scheduler keeps a pinned VM in its AZ whatever a plan
    says, so the cloud's pin wins; the mapping pins only VMs Nova left free, and says so when
    it is overruled."""
    m = json.loads(sb.mapping_file.read_text())
    m["vms"] = {"server-2": {"az": "az1"}, "server-1": {"az": "az1"}}
    f = tmp_path / "mapping.json"
    f.write_text(json.dumps(m))
    notes: list[str] = []
    inv, _ = snapshot.collect(Api(conn), "s", mapping.load(f), notes.append)
    az = {v["name"]: v["az"] for v in inv["vms"]}
    assert az["server-2"] == "az2"  # booted into az2: Nova pinned it
    assert az["server-1"] == "az1"  # Nova left it free: the mapping pins it
    assert az["server-3"] is None
    assert [n for n in notes if "pinned" in n] == [
        "note: the mapping's az of 1 VMs (server-2) differs from the AZ Nova pinned them to; "
        "Nova's pin is kept (its scheduler would refuse any other)"
    ]
