"""The sandbox's opt-in Glance (`with_image`) and its run-time computes (`hosts/NAME/add|remove`),
through real HTTP: keystoneauth sessions against the catalog, as any OpenStack client.

One small sandbox with an image service for the module, plus tiny ones killed to check that no
Glance outlives its sandbox or the sandbox's parent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from planner.errors import SandboxError
from planner.openstack.sandbox import manager

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


def _host(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "role": "compute",
        "az": "nova",
        "version": "2024.1",
        "enabled": True,
        "up": True,
        "capacity": {"VCPU": 16, "MEMORY_MB": 32768, "DISK_GB": 500},
    }


INV: dict[str, Any] = {
    "format_version": "1.0",
    "kind": "inventory",
    "cloud": "img",
    "taken_at": "2026-01-01T00:00:00Z",
    "hosts": [_host("img-1"), _host("img-2")],
    "vms": [
        {
            "id": "vm-1",
            "name": "vm-1",
            "project": "proj-a",
            "host": "img-1",
            "status": "ACTIVE",
            "resources": {"VCPU": 2, "MEMORY_MB": 2048, "DISK_GB": 10},
        }
    ],
}


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[manager.Running]:
    d = tmp_path_factory.mktemp("img") / "state"
    running = manager.start(
        INV, directory=d, exit_with_parent=True, write_clouds_yaml=False, with_image=True
    )
    try:
        yield running
    finally:
        manager.stop(d, remove_cloud_entry=False)
    assert not _glances_of(running.pid)


def _session(sb: manager.Running, user: str = "admin", project: str | None = None) -> Any:
    from keystoneauth1 import identity
    from keystoneauth1 import session as ks

    auth = identity.Password(
        auth_url=sb.auth_url,
        username=user,
        password=sb.admin_password if user == "admin" else sb.demo_password,
        project_name=project or user,
        user_domain_name="Default",
        project_domain_name="Default",
    )
    return ks.Session(auth=auth)


def _img(s: Any, method: str, path: str, **kw: Any) -> Any:
    return s.request(path, method, endpoint_filter={"service_type": "image"}, raise_exc=False, **kw)


def _nova(s: Any, method: str, path: str, mv: str = "2.53", **kw: Any) -> Any:
    headers = {"OpenStack-API-Version": f"compute {mv}"}
    return s.request(
        path,
        method,
        endpoint_filter={"service_type": "compute"},
        headers=headers,
        raise_exc=False,
        **kw,
    )


def _glances_of(sandbox_pid: int) -> list[int]:
    """Glance processes started by that sandbox (their command line names the module and pid)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"planner.openstack.sandbox.glance_serve" in cmd and str(sandbox_pid).encode() in cmd:
            try:
                state = (p / "stat").read_text().split(")")[-1].split()[0]
            except OSError:
                continue
            if state != "Z":
                out.append(int(p.name))
    return out


def _wait_gone(pids: list[int], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{p}").exists() for p in pids):
            return True
        time.sleep(0.1)
    return False


def test_catalog_has_a_real_glance_behind_the_token_check(sb: manager.Running) -> None:
    s = _session(sb)
    types = {e["type"] for e in s.auth.get_access(s).service_catalog.catalog}
    assert types == {"identity", "compute", "placement", "image"}
    r = _img(s, "GET", "/v2/images")
    assert r.status_code == 200
    assert [i["name"] for i in r.json()["images"]] == ["rollwave-base"]
    with pytest.raises(urllib.error.HTTPError) as anon:
        urllib.request.urlopen(sb.url + "/image/v2/images")
    assert anon.value.code == 401
    # Version discovery is open, and its links name the front, not Glance's own port.
    with pytest.raises(urllib.error.HTTPError) as versions:
        urllib.request.urlopen(sb.url + "/image/")
    assert versions.value.code == 300
    links = [v["links"][0]["href"] for v in json.loads(versions.value.read())["versions"]]
    assert links and all(h.startswith(sb.url + "/image/") for h in links)
    assert len(_glances_of(sb.pid)) == 1


def test_snapshot_uploads_bytes_and_an_upload_round_trips(sb: manager.Running) -> None:
    s = _session(sb)
    ids = json.loads(sb.ids_file.read_text())["vms"]
    r = _nova(
        s, "POST", f"/servers/{ids['vm-1']}/action", "2.45", json={"createImage": {"name": "snap"}}
    )
    assert r.status_code == 202, r.text
    image_id = r.json()["image_id"]
    deadline = time.monotonic() + 60
    while True:
        im = _img(s, "GET", f"/v2/images/{image_id}").json()
        if im["status"] in ("active", "killed") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert im["status"] == "active" and im["size"] > 0
    data = _img(s, "GET", f"/v2/images/{image_id}/file").content
    assert len(data) == im["size"] and ids["vm-1"].encode() in data
    # An upload streamed chunked (as glanceclient does) arrives whole.
    made = _img(
        s,
        "POST",
        "/v2/images",
        json={"name": "copy", "disk_format": "raw", "container_format": "bare"},
    )
    assert made.status_code == 201
    put = _img(
        s,
        "PUT",
        f"/v2/images/{made.json()['id']}/file",
        data=iter([data[:1000], data[1000:]]),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert put.status_code == 204
    assert _img(s, "GET", f"/v2/images/{made.json()['id']}/file").content == data
    # Nova boots from the uploaded image (it reads it from Glance over HTTP).
    flavor = _nova(s, "GET", "/flavors").json()["flavors"][0]["id"]
    body = {
        "server": {
            "name": "from-copy",
            "imageRef": made.json()["id"],
            "flavorRef": flavor,
            "networks": "none",
        }
    }
    booted = _nova(s, "POST", "/servers", "2.37", json=body)
    assert booted.status_code == 202, booted.text
    sid = booted.json()["server"]["id"]
    deadline = time.monotonic() + 120
    while (st := _nova(s, "GET", f"/servers/{sid}").json()["server"])["status"] == "BUILD":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert st["status"] == "ACTIVE" and st["image"]["id"] == made.json()["id"]
    assert _nova(s, "DELETE", f"/servers/{sid}").status_code == 204


def test_admin_may_scope_a_token_to_any_project_demo_may_not(sb: manager.Running) -> None:
    from keystoneauth1 import exceptions as ks_exc

    s = _session(sb, "admin", "proj-x")
    assert s.get_project_id() == "proj-x"
    made = _img(
        s,
        "POST",
        "/v2/images",
        json={"name": "px", "disk_format": "raw", "container_format": "bare"},
    )
    assert made.status_code == 201 and made.json()["owner"] == "proj-x"
    assert _img(s, "DELETE", f"/v2/images/{made.json()['id']}").status_code == 204
    with pytest.raises(ks_exc.Unauthorized):
        _session(sb, "demo", "admin").get_token()


def test_a_compute_added_and_removed_at_run_time(sb: manager.Running) -> None:
    s = _session(sb)
    body = {"capacity": {"VCPU": 8, "MEMORY_MB": 8192, "DISK_GB": 100}, "version": "2025.1"}
    out = manager.control(sb, "POST", "hosts/img-3/add", body)
    assert out["host"] == "img-3"
    svcs = _nova(s, "GET", "/os-services?binary=nova-compute").json()["services"]
    assert {(x["host"], x["state"], x["status"]) for x in svcs if x["host"] == "img-3"} == {
        ("img-3", "up", "enabled")
    }
    hyp = _nova(s, "GET", "/os-hypervisors/detail", "2.88").json()["hypervisors"]
    assert [h["state"] for h in hyp if h["hypervisor_hostname"] == "img-3"] == ["up"]
    with pytest.raises(SandboxError, match="already a compute"):
        manager.control(sb, "POST", "hosts/img-3/add", body)
    # A host with servers is refused before anything stops.
    with pytest.raises(SandboxError, match="still has 1 server"):
        manager.control(sb, "POST", "hosts/img-1/remove")
    manager.control(sb, "POST", "hosts/img-3/remove")
    svcs = _nova(s, "GET", "/os-services?binary=nova-compute").json()["services"]
    assert sorted(x["host"] for x in svcs) == ["img-1", "img-2"]
    hyp = _nova(s, "GET", "/os-hypervisors/detail", "2.88").json()["hypervisors"]
    assert sorted(h["hypervisor_hostname"] for h in hyp) == ["img-1", "img-2"]
    rps = s.get(
        "/resource_providers",
        endpoint_filter={"service_type": "placement"},
        headers={"OpenStack-API-Version": "placement 1.14"},
    ).json()["resource_providers"]
    assert sorted(r["name"] for r in rps) == ["img-1", "img-2"]
    with pytest.raises(SandboxError, match="unknown"):
        manager.control(sb, "POST", "hosts/img-3/remove")


TINY = {**INV, "hosts": [_host("solo")], "vms": []}


def test_a_killed_sandbox_leaves_no_glance(tmp_path: Path) -> None:
    d = tmp_path / "tiny"
    tiny = manager.start(TINY, directory=d, write_clouds_yaml=False, with_image=True)
    try:
        glances = _glances_of(tiny.pid)
        assert len(glances) == 1
        os.kill(tiny.pid, signal.SIGKILL)
        assert _wait_gone(glances), "Glance outlived its SIGKILLed sandbox"
    finally:
        manager.stop(d, remove_cloud_entry=False)


def test_a_killed_parent_leaves_neither_sandbox_nor_glance(tmp_path: Path) -> None:
    d = tmp_path / "child"
    script = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "from planner.openstack.sandbox import manager\n"
        "sb = manager.start(json.loads(sys.argv[1]), directory=Path(sys.argv[2]),"
        " exit_with_parent=True, write_clouds_yaml=False, with_image=True)\n"
        "print(sb.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(TINY), str(d)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        sandbox_pid = int(parent.stdout.readline())
        glances = _glances_of(sandbox_pid)
        assert len(glances) == 1
        parent.kill()
        parent.wait()
        assert _wait_gone([sandbox_pid, *glances]), "a process outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        manager.stop(d, remove_cloud_entry=False)
