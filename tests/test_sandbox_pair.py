"""Two named sandboxes side by side, one with capped microversions: each answers on its own,
each negotiates its own range, and stopping one leaves the other running.

Two tiny clouds for the module (start-ups are the expensive part). The test that stops one of
them runs last.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from planner.errors import ApiIncompatibleError, UsageError
from planner.openstack import apicheck, clouds_yaml
from planner.openstack.connect import connect
from planner.openstack.sandbox import manager
from tests.test_cli import rollwave

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

OLD, NEW = "pair-old", "pair-new"
CAPS = {"compute_min": "2.60", "compute_max": "2.96", "placement_max": "1.36"}


def _inventory(prefix: str) -> dict[str, Any]:
    def host(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "role": "compute",
            "az": "nova",
            "version": "2024.1",
            "capacity": {"VCPU": 8, "MEMORY_MB": 16384, "DISK_GB": 100},
        }

    return {
        "format_version": "1.0",
        "kind": "inventory",
        "cloud": prefix,
        "taken_at": "2025-01-01T00:00:00Z",
        "hosts": [host(f"{prefix}-1"), host(f"{prefix}-2")],
        "vms": [
            {
                "id": f"{prefix}-vm",
                "name": f"{prefix}-vm",
                "project": "p",
                "host": f"{prefix}-1",
                "resources": {"VCPU": 1, "MEMORY_MB": 512, "DISK_GB": 1},
            }
        ],
        "server_groups": [],
        "ha_groups": [],
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("pair")
    saved = dict(os.environ)
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
def pair(env: dict[str, str]) -> Iterator[dict[str, manager.Running]]:
    """`pair-old` capped at compute 2.60-2.96 / placement 1.36, `pair-new` uncapped, started at
    once."""
    got: dict[str, manager.Running] = {}
    errors: list[BaseException] = []

    def up(name: str, caps: dict[str, str] | None) -> None:
        try:
            got[name] = manager.start(
                _inventory(name), name=name, api_caps=caps, exit_with_parent=True
            )
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=up, args=(OLD, CAPS)),
        threading.Thread(target=up, args=(NEW, None)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        if errors:
            raise errors[0]
        yield got
    finally:
        for name in (OLD, NEW, "pair-bad"):  # pair-bad: started only if a cap check broke
            manager.stop(name=name)
    for sb in got.values():
        assert not (sb.dir / "state.json").exists() and not (sb.dir / "work").exists()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _token(sb: manager.Running) -> str:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": "admin", "password": sb.admin_password}},
            }
        }
    }
    req = urllib.request.Request(
        sb.auth_url + "/auth/tokens",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return str(resp.headers["X-Subject-Token"])


def test_two_named_sandboxes_answer_side_by_side(pair: dict[str, manager.Running]) -> None:
    old, new = pair[OLD], pair[NEW]
    assert old.dir != new.dir and old.url != new.url
    assert (old.name, new.name) == (OLD, NEW)
    assert old.dir == manager.state_dir(OLD) and new.dir == manager.state_dir(NEW)
    entries = yaml.safe_load(clouds_yaml.user_clouds_yaml().read_text())["clouds"]
    assert entries[OLD]["auth"]["auth_url"] == old.auth_url
    assert entries[NEW]["auth"]["auth_url"] == new.auth_url
    assert manager.CLOUD_NAME not in entries  # the default sandbox is not touched
    for name in (OLD, NEW):
        hosts = {h.name for h in connect(name).compute.hypervisors()}
        assert hosts == {f"{name}-1", f"{name}-2"}, (name, hosts)
    run = rollwave("sandbox", "status", "--name", OLD)
    assert run.code == 0 and f"(cloud {OLD})" in run.out, run
    assert "compute max 2.96" in run.out and "placement max 1.36" in run.out, run
    run = rollwave("sandbox", "status")
    assert run.code == 6 and "no sandbox is running" in run.err, run


def test_a_capped_sandbox_advertises_and_negotiates_its_range(
    pair: dict[str, manager.Running],
) -> None:
    old, new = pair[OLD], pair[NEW]
    # version discovery: the root and /v2.1 itself answer without a token, as in Nova's paste
    for sb, lo, compute, placement in (
        (old, "2.60", "2.96", "1.36"),
        (new, "2.1", "2.104", "1.39"),
    ):
        status, doc = _get(sb.url + "/compute/")
        v21 = next(v for v in doc["versions"] if v["id"] == "v2.1")
        assert status == 200 and v21["version"] == compute and v21["min_version"] == lo
        status, doc = _get(sb.url + "/compute/v2.1/")
        assert status == 200 and doc["version"]["version"] == compute
        status, doc = _get(sb.url + "/placement/")
        assert status == 200 and doc["versions"][0]["max_version"] == placement
    # the real negotiation refuses above the cap; the uncapped twin serves the same request
    for sb, code in ((old, 406), (new, 200)):
        tok = _token(sb)
        status, body = _get(
            sb.url + "/compute/v2.1/servers",
            {"X-Auth-Token": tok, "OpenStack-API-Version": "compute 2.100"},
        )
        assert status == code, (sb.name, status, body)
        if code == 406:
            assert "Minimum is 2.60 and maximum is 2.96" in body
        status, body = _get(
            sb.url + "/compute/v2.1/servers",
            {"X-Auth-Token": tok, "OpenStack-API-Version": "compute 2.59"},
        )
        assert status == code, (sb.name, status, body)
        status, body = _get(
            sb.url + "/placement/resource_providers",
            {"X-Auth-Token": tok, "OpenStack-API-Version": "placement 1.39"},
        )
        assert status == code, (sb.name, status, body)


def test_caps_the_sandbox_cannot_serve_are_bad_input(env: dict[str, str], tmp_path: Path) -> None:
    run = rollwave("sandbox", "up", "--name", "pair-bad", "--hosts", "1", "--compute-max", "2.50")
    assert run.code == 2 and "the sandbox seeds its cloud at 2.96" in run.err, run
    assert manager.find(name="pair-bad") is None
    run = rollwave("sandbox", "up", "--hosts", "1", "--placement-max", "2.1")
    assert run.code == 2 and "microversions of this API are 1.N" in run.err, run
    run = rollwave(
        "sandbox", "up", "--hosts", "1", "--compute-min", "2.99", "--compute-max", "2.97"
    )
    assert run.code == 2 and "--compute-min 2.99 is above --compute-max 2.97" in run.err, run
    run = rollwave("sandbox", "up", "--hosts", "1", "--name", "../x")
    assert run.code == 2 and "sandbox name '../x'" in run.err, run
    # a named sandbox never overwrites a real cloud's clouds.yaml entry
    real = {"auth": {"auth_url": "https://keystone.example.com:5000/v3", "username": "ops"}}
    clouds_yaml.merge_entry("prod", real)
    run = rollwave("sandbox", "up", "--hosts", "1", "--name", "prod")
    assert run.code == 2 and "already has a cloud 'prod'" in run.err, run
    assert clouds_yaml.get_entry("prod") == real
    clouds_yaml.remove_entry("prod")
    assert not (tmp_path / "x").exists()


def test_api_check_passes_when_the_new_cloud_covers_the_old_range(
    pair: dict[str, manager.Running], tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    run = rollwave("api-check", "--old-cloud", OLD, "--new-cloud", NEW, "-o", out)
    assert run.code == 0, run
    assert "compatible: the new cloud pair-new serves every API version" in run.out, run
    assert "v2.1 max microversion 2.96 -> 2.104" in run.out, run
    assert "v2.1 min microversion 2.60 -> 2.1" in run.out, run
    rep = json.loads(out.read_text())
    assert rep["compatible"] is True
    by = {s["service"]: s for s in rep["services"]}
    assert by["compute"]["verdict"] == "compatible" and by["compute"]["lost"] == []
    assert by["compute"]["old"]["document"].endswith("/compute/")  # the root: every version
    assert [v["id"] for v in by["compute"]["new"]["versions"]] == ["v2.0", "v2.1"]
    assert by["placement"]["new"]["versions"][0]["max_microversion"] == "1.39"
    # no Cinder, Neutron or Glance over HTTP in these sandboxes: reported absent, not faked
    assert {by[s]["verdict"] for s in ("image", "block-storage", "network")} == {"absent"}
    assert by["network"]["old"]["endpoint"] is None


def test_api_check_fails_naming_what_the_old_range_loses(
    pair: dict[str, manager.Running], tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    run = rollwave(
        "api-check", "--old-cloud", NEW, "--new-cloud", OLD, "--format", "json", "-o", out
    )
    assert run.code == 7, run
    rep = json.loads(run.out)
    assert rep == json.loads(out.read_text())  # the report is the result: written either way
    assert rep["compatible"] is False
    by = {s["service"]: s for s in rep["services"]}
    assert by["compute"]["verdict"] == "incompatible"
    assert [f["message"] for f in by["compute"]["lost"]] == [
        "v2.1 max microversion lowered 2.104 -> 2.96: 2.97-2.104 no longer served",
        "v2.1 min microversion raised 2.1 -> 2.60: 2.1-2.59 no longer served",
    ]
    assert [f["message"] for f in by["placement"]["lost"]] == [
        "v1.0 max microversion lowered 1.39 -> 1.36: 1.37-1.39 no longer served"
    ]
    assert "API check failed" in run.err and "compute: v2.1 max microversion" in run.err, run
    assert "placement: v1.0 max microversion lowered" in run.err, run


def test_api_check_refuses_the_same_cloud_twice(
    pair: dict[str, manager.Running], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "report.json"
    run = rollwave("api-check", "--old-cloud", NEW, "--new-cloud", NEW, "-o", out)
    assert run.code == 2 and "both 'pair-new'" in run.err, run
    # another name for the same cloud: told apart by auth URL and endpoints, not by ids
    conf = tmp_path / "clouds.yaml"
    alias = pair[NEW].cloud_entry("demo")
    clouds_yaml.merge_entry(NEW, pair[NEW].cloud_entry(), conf)
    clouds_yaml.merge_entry("alias", alias, conf)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(conf))
    run = rollwave("api-check", "--old-cloud", NEW, "--new-cloud", "alias", "-o", out)
    assert run.code == 2 and "are the same cloud (both authenticate at" in run.err, run
    # another Keystone, but an endpoint in common: one cloud too
    other = pair[OLD].cloud_entry()
    other["compute_endpoint_override"] = pair[NEW].url + "/compute/v2.1"
    clouds_yaml.merge_entry("shared", other, conf)
    run = rollwave("api-check", "--old-cloud", NEW, "--new-cloud", "shared", "-o", out)
    assert run.code == 2 and "both have the compute endpoint" in run.err, run
    assert not out.exists()


def test_api_check_unknown_or_unreachable_cloud(
    pair: dict[str, manager.Running], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "report.json"
    run = rollwave("api-check", "--old-cloud", OLD, "--new-cloud", "nope", "-o", out)
    assert run.code == 4 and "'nope'" in run.err, run
    conf = tmp_path / "clouds.yaml"
    clouds_yaml.merge_entry(OLD, pair[OLD].cloud_entry(), conf)
    dead = pair[NEW].cloud_entry()
    dead["compute_endpoint_override"] = "http://127.0.0.1:9/compute/v2.1"  # nothing listens
    clouds_yaml.merge_entry("dead", dead, conf)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(conf))
    run = rollwave("api-check", "--old-cloud", OLD, "--new-cloud", "dead", "-o", out)
    assert run.code == 4 and "cannot reach the compute endpoint" in run.err, run
    assert "Traceback" not in run.err and not out.exists()


def test_the_gate_before_a_side_by_side_execution(pair: dict[str, manager.Running]) -> None:
    report = apicheck.require_compatible(OLD, NEW)
    assert report.compatible
    with pytest.raises(ApiIncompatibleError) as e:
        apicheck.require_compatible(NEW, OLD)
    assert e.value.exit_code == 7 and e.value.report["compatible"] is False
    assert "compute: v2.1 max microversion lowered 2.104 -> 2.96" in str(e.value)
    overridden = apicheck.require_compatible(NEW, OLD, override=True)
    assert not overridden.compatible
    assert [s.service for s in overridden.incompatible()] == ["compute", "placement"]
    with pytest.raises(UsageError):  # the override never covers one cloud named twice
        apicheck.require_compatible(NEW, NEW, override=True)


def test_down_one_leaves_the_other(pair: dict[str, manager.Running]) -> None:
    run = rollwave("sandbox", "down", "--name", OLD)
    assert run.code == 0 and f"sandbox {OLD} stopped" in run.out, run
    assert manager.find(name=OLD) is None
    entries = yaml.safe_load(clouds_yaml.user_clouds_yaml().read_text())["clouds"]
    assert OLD not in entries and NEW in entries
    assert {h.name for h in connect(NEW).compute.hypervisors()} == {f"{NEW}-1", f"{NEW}-2"}
    run = rollwave("sandbox", "ctl", "--name", NEW, "host-down", f"{NEW}-2")
    assert run.code == 0 and f"{NEW}-2: compute service down" in run.out, run
    run = rollwave("sandbox", "ctl", "--name", OLD, "host-down", f"{OLD}-2")
    assert run.code == 6 and f"no sandbox named {OLD}" in run.err, run
