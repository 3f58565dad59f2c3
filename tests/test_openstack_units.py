"""Fast tests of the OpenStack adapter's pure parts (no cloud started)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from planner.errors import CloudError, InputError
from planner.openstack import clouds_yaml, conventions, mapping, snapshot
from planner.openstack.connect import Api, connect
from planner.openstack.sandbox import seed, web


def test_flavor_for_round_trips_through_flavor_resources() -> None:
    for res in (
        {"VCPU": 2, "MEMORY_MB": 4096, "DISK_GB": 20},
        {"VCPU": 1, "MEMORY_MB": 512},
        {"VCPU": 4, "MEMORY_MB": 8192, "DISK_GB": 40, "CUSTOM_GPU": 1},
    ):
        fl = seed.flavor_for(res)
        got = snapshot.flavor_resources(
            {
                "vcpus": fl.vcpus,
                "ram": fl.ram,
                "disk": fl.disk,
                "extra_specs": dict(fl.extra_specs),
            },
            volume_backed=False,
        )
        assert got == res


def test_the_vm_fields_nova_has_no_place_for_round_trip_through_server_metadata() -> None:
    vm = {
        "id": "v1",
        "migration": "cold",
        "dirty_rate_mb_s": 12.5,
        "local_disk": True,
        "allowed_aggregates": ["gpu", "ssd"],
    }
    meta = conventions.vm_metadata(vm)
    assert meta == {
        "rollwave_migration": "cold",
        "rollwave_dirty_rate_mb_s": "12.5",
        "rollwave_local_disk": "true",
        "rollwave_allowed_aggregates": '["gpu", "ssd"]',
    }
    got = conventions.vm_fields({**meta, "rollwave_other": "1", "owner": "x"})
    assert got == {k: v for k, v in vm.items() if k != "id"}
    assert conventions.vm_metadata({"id": "v2", "allowed_aggregates": []}) == {}
    assert conventions.label_key(conventions.VERSION_KEY, "cmp-1") == "rollwave_version:cmp-1"


def test_flavor_resources_follow_nova_rules() -> None:
    f = {
        "vcpus": 4,
        "ram": 2048,
        "disk": 10,
        "ephemeral": 5,
        "swap": 1536,
        "extra_specs": {"hw:cpu_policy": "dedicated", "resources:CUSTOM_X": "2"},
    }
    assert snapshot.flavor_resources(f, volume_backed=False) == {
        "PCPU": 4,
        "MEMORY_MB": 2048,
        "DISK_GB": 17,
        "CUSTOM_X": 2,
    }
    # volume-backed: the root disk is not on the host
    assert snapshot.flavor_resources(f, volume_backed=True)["DISK_GB"] == 7


def test_aggregates_carry_az_labels_and_metadata() -> None:
    inv = {
        "hosts": [
            {
                "name": "a",
                "role": "compute",
                "az": "az1",
                "aggregates": ["ssd"],
                "version": "v1",
                "rack": "r1",
            },
            {"name": "b", "role": "compute", "az": "nova", "aggregates": [], "version": "v2"},
            {"name": "c", "role": "controller", "az": "az1", "version": "v1"},
        ],
        "aggregates": [{"name": "ssd", "metadata": {"disk": "ssd"}}],
    }
    aggs = {a.name: a for a in seed.aggregates(inv)}
    assert aggs["az1"].az == "az1" and aggs["az1"].hosts == ("a",)
    assert aggs["ssd"].metadata == (("disk", "ssd"),)
    assert set(aggs) == {"az1", "ssd"}  # the default zone needs no aggregate
    assert all("c" not in a.hosts for a in aggs.values())  # controllers are not in Nova
    assert seed.label_metadata(inv) == {
        "rollwave_version:a": "v1",
        "rollwave_rack:a": "r1",
        "rollwave_version:b": "v2",
    }


def test_check_seedable_names_the_problem() -> None:
    inv = {
        "hosts": [{"name": "a", "role": "compute"}, {"name": "c", "role": "controller"}],
        "vms": [
            {"id": "v1", "host": "c"},
            {"id": "v2", "host": "zz"},
            {"id": "v3", "host": "a", "status": "SHELVED"},
        ],
    }
    problems = seed.check_seedable(inv)
    assert len(problems) == 3
    assert "controller" in problems[0] and "'zz'" in problems[1] and "SHELVED" in problems[2]


def test_mapping_refuses_typos_and_bad_values(tmp_path: Path) -> None:
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump({"controlers": [], "vms": {"x": {"migration": "warp"}}}))
    with pytest.raises(InputError) as e:
        mapping.load(p)
    text = e.value.render()
    assert "controlers: unknown key" in text and "vms.x.migration" in text


def test_mapping_precedence() -> None:
    m = mapping.parse(
        {
            "hosts": {"h1": {"version": "A", "rack": "r9"}},
            "versions": [{"pattern": "h*", "version": "B"}],
            "projects": {"p": {"migration": "cold"}},
            "vms": {"n": {"migration": "none"}},
        }
    )
    assert m.host_version("h1") == "A" and m.host_version("h2") == "B"
    assert m.host_version("x") is None and m.host_rack("h1") == "r9"
    assert m.vm_overrides("id", "other", "p") == {"migration": "cold"}
    assert m.vm_overrides("id", "n", "p") == {"migration": "none"}


def test_anonymize_is_consistent_and_hides_names() -> None:
    inv: dict[str, Any] = {
        "cloud": "prod-east",
        "hosts": [
            {
                "name": "nova-cmp-17.prod",
                "role": "compute",
                "az": "east-1",
                "rack": "R7",
                "aggregates": ["gpu"],
                "disabled_reason": "ticket 42",
            },
            {
                "name": "ctl-1.prod",
                "role": "controller",
                "az": "east-1",
                "rack": None,
                "aggregates": [],
                "disabled_reason": None,
            },
        ],
        "vms": [
            {
                "id": "uuid-1",
                "name": "db-primary",
                "project": "acme",
                "az": "east-1",
                "host": "nova-cmp-17.prod",
                "allowed_aggregates": ["gpu"],
                "server_group": "g1",
            }
        ],
        "server_groups": [{"id": "g1", "name": "acme-db", "policy": "anti-affinity"}],
        "ha_groups": [{"name": "galera", "hosts": ["ctl-1.prod"], "min_available": 1}],
        "aggregates": [
            {
                "name": "gpu",
                "hosts": ["nova-cmp-17.prod"],
                "metadata": {"owner": "acme", "availability_zone": "east-1"},
            }
        ],
    }
    out = snapshot.anonymize(inv)
    text = json.dumps(out)
    for secret in ("prod", "east", "acme", "db-primary", "galera", "R7", "ticket", "uuid-1"):
        assert secret not in text, secret
    cmp = next(h for h in out["hosts"] if h["role"] == "compute")
    vm = out["vms"][0]
    assert vm["host"] == cmp["name"] and vm["az"] == cmp["az"]
    assert vm["allowed_aggregates"] == cmp["aggregates"] == [out["aggregates"][0]["name"]]
    assert vm["server_group"] == out["server_groups"][0]["id"]
    assert out["ha_groups"][0]["hosts"] == [
        h["name"] for h in out["hosts"] if h["role"] == "controller"
    ]
    assert snapshot.anonymize(inv) == out  # deterministic


def test_clouds_yaml_merge_keeps_other_entries(tmp_path: Path) -> None:
    p = tmp_path / "clouds.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "clouds": {"prod": {"auth": {"auth_url": "https://x"}}},
                "client": {"force_ipv4": True},
            }
        )
    )
    clouds_yaml.merge_entry("rollwave-sandbox", {"auth": {"auth_url": "http://a"}}, p)
    data = yaml.safe_load(p.read_text())
    assert data["clouds"]["prod"] == {"auth": {"auth_url": "https://x"}}
    assert data["client"] == {"force_ipv4": True}
    assert p.stat().st_mode & 0o777 == 0o600
    # not removed when it points elsewhere (the user replaced it), removed when it is ours
    assert not clouds_yaml.remove_entry("rollwave-sandbox", only_if_auth_url="http://b", path=p)
    assert clouds_yaml.remove_entry("rollwave-sandbox", only_if_auth_url="http://a", path=p)
    assert set(yaml.safe_load(p.read_text())["clouds"]) == {"prod"}


def _call(
    app: Any, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[str, dict[str, str], Any]:
    import io

    raw = json.dumps(body).encode() if body is not None else b""
    env = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "wsgi.input": io.BytesIO(raw),
        "CONTENT_LENGTH": str(len(raw)),
    }
    for k, v in (headers or {}).items():
        env["HTTP_" + k.upper().replace("-", "_")] = v
    got: dict[str, Any] = {}

    def start(status: str, hdrs: list[tuple[str, str]]) -> None:
        got["status"], got["headers"] = status, dict(hdrs)

    out = b"".join(app(env, start))
    return got["status"], got["headers"], json.loads(out) if out else None


def test_keystone_stand_in_issues_tokens_and_guards_the_apis() -> None:
    seen: dict[str, str] = {}

    def nova(env: dict[str, Any], start: Any) -> list[bytes]:
        seen.update(
            user=env["HTTP_X_AUTH_USER"],
            roles=env["HTTP_X_ROLES"],
            script=env["SCRIPT_NAME"],
            path=env["PATH_INFO"],
        )
        start("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    def control(method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        return 200, {"path": path}

    users = [web.User("admin", "admin", "pw", "admin", "admin", ("admin",))]
    front = web.Front(web.Identity(users), nova, nova, control, "sekret")
    front.base_url = "http://127.0.0.1:1"
    auth: dict[str, Any] = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "admin", "password": "nope", "domain": {"name": "Default"}}
                },
            }
        }
    }
    assert _call(front, "POST", "/identity/v3/auth/tokens", auth)[0].startswith("401")
    auth["auth"]["identity"]["password"]["user"]["password"] = "pw"
    status, headers, body = _call(front, "POST", "/identity/v3/auth/tokens", auth)
    assert status.startswith("201")
    token = headers["X-Subject-Token"]
    kinds = {s["type"]: s["endpoints"][0]["url"] for s in body["token"]["catalog"]}
    assert kinds["compute"] == "http://127.0.0.1:1/compute/v2.1"
    assert _call(front, "GET", "/compute/v2.1/servers")[0].startswith("401")
    assert _call(front, "GET", "/compute/v2.1/servers", headers={"X-Auth-Token": token})[
        0
    ].startswith("200")
    assert seen == {
        "user": "admin",
        "roles": "admin",
        "script": "/compute",
        "path": "/v2.1/servers",
    }
    assert _call(front, "POST", "/rollwave/status", {})[0].startswith("403")
    assert _call(front, "POST", "/rollwave/status", {}, headers={web.CONTROL_HEADER: "sekret"})[
        2
    ] == {"path": "/status"}


def test_unreachable_endpoint_is_a_cloud_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = tmp_path / "clouds.yaml"
    clouds_yaml.merge_entry(
        "gone",
        {
            "auth": {
                "auth_url": f"http://127.0.0.1:{port}/identity/v3",
                "username": "u",
                "password": "p",
                "project_name": "p",
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "identity_api_version": 3,
        },
        p,
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(p))
    with pytest.raises(CloudError) as e:
        snapshot.collect(Api(connect("gone")), "gone", mapping.Mapping())
    assert "cannot reach" in str(e.value) and "password" not in str(e.value)
    with pytest.raises(CloudError) as e2:
        connect("no-such-cloud")
    assert "no-such-cloud" in str(e2.value)
