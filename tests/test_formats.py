"""Reading and writing the three formats: every kind of bad input gets one clear, located message;
round trips are lossless; outputs are atomic."""

from __future__ import annotations

import copy
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from planner import formats
from planner.errors import ExitCode, InputError
from planner.formats import (
    inventory_from_dict,
    inventory_to_dict,
    load_inventory,
    load_plan,
    load_policy,
    plan_from_dict,
    plan_to_dict,
    policy_from_dict,
    policy_to_dict,
    save_inventory,
    save_plan,
    save_policy,
    sha256_file,
    write_json,
    write_text_atomic,
)
from planner.generate import GenerateSpec, default_policy, generate
from solver.greedy import greedy_plan
from tests.clouds import Cloud, ha_trio, mixed_methods, three_plus_spare

_DELETE = object()


# ---------------------------------------------------------------------------------------------
# Helpers: valid documents and a way to break them at a path like `hosts[1].capacity.VCPU`
# ---------------------------------------------------------------------------------------------
def inventory_doc() -> dict[str, Any]:
    """A small valid inventory document: 3 computes (one in a server group), a controller."""
    inv = (
        Cloud("doc")
        .host("cmp-1", aggregates=["ssd"])
        .host("cmp-2")
        .host("cmp-3", az="az2")
        .controller("ctl-1")
        .vm("vm-1", "cmp-1")
        .vm("vm-2", "cmp-2")
        .vm("vm-3", "cmp-3", status="SHUTOFF", migration="cold")
        .group("sg-1", "anti-affinity", members=["vm-1", "vm-2"])
        .ha("control", ["ctl-1"], 0)
        .build()
    )
    return inventory_to_dict(inv)


def policy_doc() -> dict[str, Any]:
    return policy_to_dict(three_plus_spare().policy)


def plan_doc() -> dict[str, Any]:
    fx = three_plus_spare()
    d = plan_to_dict(fx.plan)
    d["inventory_sha256"] = "0" * 64
    return d


def at(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of doc with the value at `path` (e.g. `hosts[1].capacity.VCPU`) set or deleted."""
    out = copy.deepcopy(doc)
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    node: Any = out
    for p in parts[:-1]:
        node = node[int(p[1:-1])] if p.startswith("[") else node[p]
    last = parts[-1]
    key: Any = int(last[1:-1]) if last.startswith("[") else last
    if value is _DELETE:
        del node[key]
    else:
        node[key] = value
    return out


def problems(exc: InputError) -> list[str]:
    return [str(p) for p in exc.problems]


def write(tmp_path: Path, name: str, data: Any) -> Path:
    path = tmp_path / name
    if isinstance(data, (bytes, str)):
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    elif name.endswith((".yaml", ".yml")):
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    else:
        path.write_text(json.dumps(data))
    return path


def test_the_base_documents_are_valid() -> None:
    inventory_from_dict(inventory_doc())
    policy_from_dict(policy_doc())
    plan_from_dict(plan_doc())


# ---------------------------------------------------------------------------------------------
# Unreadable files
# ---------------------------------------------------------------------------------------------
def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.json", '{\n  "kind": "inventory",\n  "hosts": [1, 2,]\n}\n')
    with pytest.raises(InputError) as e:
        load_inventory(path)
    assert e.value.file == str(path)
    assert e.value.exit_code == ExitCode.BAD_INPUT
    (p,) = e.value.problems
    assert p.location == "line 3 column 18"
    assert p.message.startswith("invalid JSON")


def test_malformed_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "pol.yaml", "kind: policy\nformat_version: '1.0'\nheadroom: [1, 2\n")
    with pytest.raises(InputError) as e:
        load_policy(path)
    (p,) = e.value.problems
    assert re.fullmatch(r"line \d+ column \d+", p.location)
    assert p.message.startswith("invalid YAML")


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as e:
        load_inventory(write(tmp_path, "inv.json", b""))
    assert problems(e.value) == ["line 1 column 1: invalid JSON: Expecting value"]


def test_empty_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as e:
        load_policy(write(tmp_path, "p.yaml", b""))
    assert "must be a JSON/YAML object with kind 'policy', got null" in problems(e.value)[0]


def test_not_an_object(tmp_path: Path) -> None:
    with pytest.raises(InputError) as e:
        load_plan(write(tmp_path, "plan.json", "[1, 2]"))
    assert "got a list" in problems(e.value)[0]


def test_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(InputError) as e:
        load_inventory(write(tmp_path, "inv.json", b'{"kind": "inventory", "cloud": "\xff\xfe"}'))
    assert problems(e.value) == ["not UTF-8 text (byte 32)"]


def test_utf8_with_bom_is_fine(tmp_path: Path) -> None:
    path = write(tmp_path, "p.json", b"\xef\xbb\xbf" + json.dumps(policy_doc()).encode())
    assert load_policy(path) == three_plus_spare().policy


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as e:
        load_inventory(tmp_path / "nope.json")
    assert e.value.render() == f"error: {tmp_path / 'nope.json'}: no such file"


def test_a_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError) as e:
        load_plan(tmp_path)
    assert problems(e.value) == ["is a directory, not a file"]


def test_unknown_extension_reads_json_then_yaml(tmp_path: Path) -> None:
    as_json = write(tmp_path, "policy.txt", json.dumps(policy_doc()))
    as_yaml = write(tmp_path, "policy", yaml.safe_dump(policy_doc()))
    assert load_policy(as_json) == load_policy(as_yaml) == three_plus_spare().policy


# ---------------------------------------------------------------------------------------------
# Header: kind and format_version
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"kind": "plan"}, "kind: is 'plan', expected 'inventory' (are the arguments in the right"),
        ({"kind": "inventroy"}, "kind: is 'inventroy', expected 'inventory'"),
        ({"kind": _DELETE}, "kind: missing (expected 'inventory')"),
        ({"format_version": "2.0"}, "format_version: unsupported version '2.0'"),
        ({"format_version": 2}, "format_version: unsupported version 2"),
        ({"format_version": "one"}, "format_version: unsupported version 'one'"),
        ({"format_version": True}, "format_version: unsupported version True"),
        ({"format_version": _DELETE}, "format_version: missing (expected '1.0')"),
    ],
)
def test_header_problems(tmp_path: Path, change: dict[str, Any], expected: str) -> None:
    doc = inventory_doc()
    for k, v in change.items():
        doc = at(doc, k, v)
    with pytest.raises(InputError) as e:
        load_inventory(write(tmp_path, "inv.json", doc))
    assert any(p.startswith(expected) for p in problems(e.value)), problems(e.value)


@pytest.mark.parametrize("version", ["1.0", "1.7", "1", 1, 1.0, 1.3])
def test_any_minor_version_of_major_1_is_read(tmp_path: Path, version: Any) -> None:
    doc = at(inventory_doc(), "format_version", version)
    assert load_inventory(write(tmp_path, "inv.json", doc)).hosts


def test_unknown_keys_are_ignored_everywhere(tmp_path: Path) -> None:
    inv = inventory_doc()
    inv["x_future"] = {"anything": [1, 2]}
    inv["hosts"][0]["x_gpu_model"] = "H100"
    inv["vms"][0]["x_tags"] = ["a"]
    inv["server_groups"][0]["rules"] = {}
    inv["ha_groups"][0]["x_quorum"] = "raft"
    pol = policy_doc()
    pol["x_window"] = "Sat 02:00"
    pol["headroom"]["x_mode"] = "strict"
    plan = plan_doc()
    plan["x_note"] = "hi"
    plan["waves"][1]["x_eta"] = 3
    plan["waves"][1]["migrations"][0]["x_bw"] = 10
    assert inventory_from_dict(inv) == inventory_from_dict(inventory_doc())
    assert policy_from_dict(pol) == policy_from_dict(policy_doc())
    assert plan_from_dict(plan).waves == plan_from_dict(plan_doc()).waves


# ---------------------------------------------------------------------------------------------
# Inventory fields: one located message per problem
# ---------------------------------------------------------------------------------------------
INVENTORY_CASES: list[tuple[str, Any, str]] = [
    # (path, value or _DELETE, expected "location: message" prefix)
    ("hosts[1].capacity.VCPU", -4, "hosts[1].capacity.VCPU: must be positive, got -4"),
    ("hosts[1].capacity.VCPU", 0, "hosts[1].capacity.VCPU: must be positive, got 0"),
    ("hosts[1].capacity.VCPU", "16", "hosts[1].capacity.VCPU: must be an integer, got a string"),
    ("hosts[1].capacity.MEMORY_MB", 1.5, "hosts[1].capacity.MEMORY_MB: must be an integer"),
    ("hosts[1].capacity.DISK_GB", None, "hosts[1].capacity.DISK_GB: must be an integer, got null"),
    ("hosts[1].capacity.vcpu", 4, "hosts[1].capacity.vcpu: 'vcpu' is not a Placement resource"),
    ("hosts[1].capacity", {}, "hosts[1].capacity: a compute host needs at least one resource"),
    ("hosts[1].capacity", _DELETE, "hosts[1].capacity: missing"),
    ("hosts[1].capacity", [16], "hosts[1].capacity: must be an object, got a list"),
    ("hosts[0].reserved.MEMORY_MB", 70000, "hosts[0].reserved.MEMORY_MB: reserved 70000 is more"),
    ("hosts[0].reserved.VCPU", -1, "hosts[0].reserved.VCPU: must not be negative, got -1"),
    ("hosts[0].allocation_ratio.VCPU", 0, "hosts[0].allocation_ratio.VCPU: must be > 0, got 0"),
    ("hosts[0].allocation_ratio.VCPU", -2.0, "hosts[0].allocation_ratio.VCPU: must be > 0"),
    ("hosts[0].allocation_ratio.VCPU", "4", "hosts[0].allocation_ratio.VCPU: must be a number"),
    ("hosts[0].role", "storage", "hosts[0].role: is 'storage', expected one of: compute, contr"),
    ("hosts[0].name", _DELETE, "hosts[0].name: missing"),
    ("hosts[0].name", "", "hosts[0].name: must not be empty"),
    ("hosts[0].enabled", "yes", "hosts[0].enabled: must be true or false, got a string"),
    ("hosts[0].up", _DELETE, "hosts[0].up: missing"),
    ("hosts[0].version", 2025.1, 'hosts[0].version: must be a string, got a number (write "2025.1'),
    ("hosts[0].az", _DELETE, "hosts[0].az: missing"),
    ("hosts[0].aggregates", "ssd", "hosts[0].aggregates: must be a list, got a string"),
    ("hosts[0].aggregates", [7], "hosts[0].aggregates[0]: must be a non-empty string, got an"),
    ("hosts[2]", "cmp-3", "hosts[2]: must be an object, got a string"),
    ("hosts", {}, "hosts: must be a list, got an object"),
    ("hosts", _DELETE, "hosts: missing"),
    ("vms", _DELETE, "vms: missing"),
    ("cloud", 7, "cloud: must be a string, got an integer"),
    ("taken_at", "yesterday", "taken_at: is not an ISO 8601 timestamp: 'yesterday'"),
    ("vms[1].host", "cmp-9", "vms[1].host: unknown host 'cmp-9'"),
    ("vms[1].host", "ctl-1", "vms[1].host: 'ctl-1' is a controller; controllers host no VMs"),
    ("vms[1].server_group", "sg-9", "vms[1].server_group: unknown server group 'sg-9'"),
    ("vms[1].id", "vm-1", "vms[1].id: duplicate VM id 'vm-1' (first at vms[0])"),
    ("vms[1].id", _DELETE, "vms[1].id: missing"),
    ("vms[1].resources", _DELETE, "vms[1].resources: missing"),
    ("vms[1].resources.VCPU", -1, "vms[1].resources.VCPU: must not be negative, got -1"),
    ("vms[1].migration", "warp", "vms[1].migration: is 'warp', expected one of: live, cold, none"),
    ("vms[1].status", None, "vms[1].status: must be a string, got null"),
    ("vms[1].dirty_rate_mb_s", -3, "vms[1].dirty_rate_mb_s: must be >= 0, got -3"),
    ("vms[1].local_disk", "yes", "vms[1].local_disk: must be an integer, got a string"),
    ("vms[1].allowed_aggregates", [""], "vms[1].allowed_aggregates[0]: must be a non-empty str"),
    ("server_groups[0].policy", "spread", "server_groups[0].policy: is 'spread', expected one"),
    ("server_groups[0].max_server_per_host", 0, "server_groups[0].max_server_per_host: must be "),
    ("server_groups[0].id", _DELETE, "server_groups[0].id: missing"),
    ("ha_groups[0].hosts", ["ctl-9"], "ha_groups[0].hosts[0]: unknown host 'ctl-9'"),
    ("ha_groups[0].hosts", ["ctl-1", "ctl-1"], "ha_groups[0].hosts[1]: 'ctl-1' listed twice"),
    ("ha_groups[0].min_available", 2, "ha_groups[0].min_available: 2 is more than the group's 1"),
    ("ha_groups[0].min_available", -1, "ha_groups[0].min_available: must not be negative"),
    ("ha_groups[0].hosts", _DELETE, "ha_groups[0].hosts: missing"),
]


@pytest.mark.parametrize(("path", "value", "expected"), INVENTORY_CASES)
def test_inventory_problem_is_located(path: str, value: Any, expected: str) -> None:
    with pytest.raises(InputError) as e:
        inventory_from_dict(at(inventory_doc(), path, value), "inv.json")
    found = problems(e.value)
    assert any(p.startswith(expected) for p in found), found
    assert len(found) == 1, found
    assert e.value.render().startswith(f"error: inv.json: {expected}")


def test_duplicate_host_server_group_and_ha_group() -> None:
    doc = inventory_doc()
    doc["hosts"].append(dict(doc["hosts"][0]))
    doc["server_groups"].append(dict(doc["server_groups"][0]))
    doc["ha_groups"].append(dict(doc["ha_groups"][0]))
    with pytest.raises(InputError) as e:
        inventory_from_dict(doc)
    assert problems(e.value) == [
        "hosts[4].name: duplicate host name 'cmp-1' (first at hosts[0])",
        "server_groups[1].id: duplicate server group id 'sg-1' (first at server_groups[0])",
        "ha_groups[1].name: duplicate HA group 'control'",
    ]


def test_every_problem_is_reported_at_once() -> None:
    doc = inventory_doc()
    doc = at(doc, "hosts[0].capacity.VCPU", -1)
    doc = at(doc, "hosts[2].enabled", "no")
    doc = at(doc, "vms[0].migration", "teleport")
    with pytest.raises(InputError) as e:
        inventory_from_dict(doc)
    assert [p.location for p in e.value.problems] == [
        "hosts[0].capacity.VCPU",
        "hosts[2].enabled",
        "vms[0].migration",
    ]


def test_many_problems_are_capped_in_the_rendering() -> None:
    doc = inventory_doc()
    doc["vms"] = [dict(doc["vms"][0], id=f"v{i}", host="nowhere") for i in range(60)]
    with pytest.raises(InputError) as e:
        inventory_from_dict(doc, "inv.json")
    assert len(e.value.problems) == 60
    lines = e.value.render().splitlines()
    assert len(lines) == 51
    assert lines[-1] == "error: inv.json: ... and 10 more problems"


def test_controllers_need_no_capacity_az_or_rack() -> None:
    doc = inventory_doc()
    ctl = doc["hosts"][3]
    for key in ("capacity", "az", "rack", "aggregates", "reserved", "allocation_ratio"):
        ctl.pop(key)
    inv = inventory_from_dict(doc)
    assert inv.host("ctl-1").effective("VCPU") == 0


def test_optional_fields_take_their_defaults() -> None:
    doc = inventory_doc()
    h = doc["hosts"][0]
    for key in ("reserved", "allocation_ratio", "rack", "aggregates"):
        h.pop(key)
    v = doc["vms"][2]
    for key in ("az", "allowed_aggregates", "server_group", "migration"):
        v.pop(key)
    doc["server_groups"][0].pop("max_server_per_host")
    doc.pop("ha_groups")
    inv = inventory_from_dict(doc)
    host = inv.host("cmp-1")
    assert (host.reserved, host.allocation_ratio, host.rack, host.aggregates) == ({}, {}, None, ())
    assert host.effective("MEMORY_MB") == 65536
    vm = inv.vm("vm-3")
    assert (vm.az, vm.allowed_aggregates, vm.server_group, vm.migration) == (None, (), None, "live")
    assert inv.server_groups[0].max_server_per_host == 1
    assert inv.ha_groups == ()


def test_further_resource_classes_are_read_like_the_standard_ones() -> None:
    doc = inventory_doc()
    doc["hosts"][0]["capacity"]["CUSTOM_GPU_A100"] = 4
    doc["vms"][0]["resources"]["CUSTOM_GPU_A100"] = 1
    inv = inventory_from_dict(doc)
    assert inv.resource_classes == ("VCPU", "MEMORY_MB", "DISK_GB", "CUSTOM_GPU_A100")
    assert inv.host("cmp-1").effective("CUSTOM_GPU_A100") == 4


def test_yaml_timestamps_and_local_disk_sizes() -> None:
    doc = inventory_doc()
    text = yaml.safe_dump(doc).replace("'2026-01-01T00:00:00Z'", "2026-01-01T00:00:00Z")
    data = formats.parse_bytes(text.encode(), "inv.yaml")
    inv = inventory_from_dict(at(data, "vms[0].local_disk", 30))
    assert inv.taken_at.startswith("2026-01-01T00:00:00")
    assert inv.vm("vm-1").local_disk_gb == 30


# ---------------------------------------------------------------------------------------------
# Policy and plan fields
# ---------------------------------------------------------------------------------------------
def _w(**changes: Any) -> dict[str, Any]:
    """A valid maintenance window (weeknights in Berlin) with some keys changed or deleted."""
    w: dict[str, Any] = {"days": "mon-fri", "start": "22:00", "end": "06:00", "tz": "Europe/Berlin"}
    for k, v in changes.items():
        if v is _DELETE:
            del w[k]
        else:
            w[k] = v
    return w


POLICY_CASES: list[tuple[str, Any, str]] = [
    ("max_hosts_per_wave", _DELETE, "max_hosts_per_wave: missing"),
    ("max_hosts_per_wave", 0, "max_hosts_per_wave: must be positive, got 0"),
    ("max_hosts_per_wave", "2", "max_hosts_per_wave: must be an integer, got a string"),
    ("max_hosts_per_wave_per_az", 0, "max_hosts_per_wave_per_az: must be positive"),
    ("max_hosts_per_wave_per_rack", -1, "max_hosts_per_wave_per_rack: must be positive"),
    ("max_migrations_per_wave", "50", "max_migrations_per_wave: must be an integer, got a string"),
    ("max_migrations_per_wave", 2.5, "max_migrations_per_wave: must be an integer, got a number"),
    ("max_migrations_per_wave", 0, "max_migrations_per_wave: must be positive, got 0"),
    (
        "max_migrations_per_wave",
        10**12,
        "max_migrations_per_wave: must be at most 1,000,000 (leave it out, or null, for no cap), "
        "got 1,000,000,000,000",
    ),
    ("headroom", 1, "headroom: must be an object, got an integer"),
    ("headroom.scope", "region", "headroom.scope: is 'region', expected one of: az, cloud"),
    ("headroom.failures", -1, "headroom.failures: must not be negative, got -1"),
    ("headroom.reserve_percent", 150, "headroom.reserve_percent: must be <= 100, got 150"),
    ("headroom.reserve_percent", -5, "headroom.reserve_percent: must be >= 0, got -5"),
    ("max_concurrent_live_migrations", 0, "max_concurrent_live_migrations: must be positive"),
    ("allow_stop", "true", "allow_stop: must be true or false, got a string"),
    ("target_version", 2025.2, 'target_version: must be a string, got a number (write "2025.2"'),
    ("first", "role=controller", "first: must be a list, got a string"),
    ("first", [""], "first[0]: must be a non-empty string"),
    ("first", ["roel=controller"], "first[0]: unknown selector key 'roel'"),
    ("last", ["az="], "last[0]: selector 'az=' has no value after '='"),
    ("non_converging", "teleport", "non_converging: is 'teleport', expected one of: force-comp"),
    ("non_converging", ["cold", "teleport"], "non_converging[1]: is 'teleport', expected one"),
    ("non_converging", 3, "non_converging: must be a remedy or a list of remedies, got an int"),
    ("non_converging", [], "non_converging: names no remedy"),
    ("non_converging", ["refuse", "cold"], "non_converging[0]: 'refuse' must come last"),
    ("non_converging", ["cold", "cold"], "non_converging[1]: 'cold' is listed twice"),
    ("non_converging", "stop", "non_converging: 'stop' needs allow_stop: true"),
    ("non_converging", ["cold", "stop"], "non_converging[1]: 'stop' needs allow_stop: true"),
    ("max_migration_s", 0, "max_migration_s: must be > 0, got 0"),
    ("max_migration_s", -5, "max_migration_s: must be > 0, got -5"),
    ("max_migration_s", "600", "max_migration_s: must be a number, got a string"),
    ("max_migration_s", float("nan"), "max_migration_s: must be a finite number, got nan"),
    ("max_downtime_s", float("inf"), "max_downtime_s: must be a finite number, got inf"),
    ("max_downtime_s", -1, "max_downtime_s: must be >= 0, got -1"),
    ("max_downtime_s", True, "max_downtime_s: must be a number, got a boolean"),
    ("execution", "parallel", "execution: is 'parallel', expected one of: pipelined, lockstep"),
    ("windows", {"days": "mon"}, "windows: must be a list, got an object"),
    ("windows", [7], "windows[0]: must be an object, got an integer"),
    ("windows", [_w(days="mon-fry")], "windows[0].days: unknown day 'mon-fry'; days are mon,"),
    ("windows", [_w(days=["sat", "sunday"])], "windows[0].days: unknown day 'sunday'"),
    ("windows", [_w(days="")], "windows[0].days: names no day: the window never opens"),
    ("windows", [_w(days=[])], "windows[0].days: names no day: the window never opens"),
    ("windows", [_w(days=5)], "windows[0].days: must be a string or a list of day names, got an"),
    ("windows", [_w(days=_DELETE)], "windows[0].days: missing"),
    ("windows", [_w(start="25:00")], 'windows[0].start: is not a time "HH:MM" (00:00 to 23:59)'),
    ("windows", [_w(start="10pm")], 'windows[0].start: is not a time "HH:MM" (24-hour)'),
    ("windows", [_w(start="24:00")], 'windows[0].start: is not a time "HH:MM" (00:00 to 23:5'),
    (
        "windows",
        [_w(start=1320)],
        'windows[0].start: must be a time "HH:MM" in quotes, got an integer (YAML reads an '
        "unquoted 22:00 as the number 1320)",
    ),
    ("windows", [_w(end=None)], 'windows[0].end: must be a time "HH:MM", got null'),
    (
        "windows",
        [_w(end="22:00")],
        "windows[0].end: is the same time as start (22:00): the window never opens",
    ),
    ("windows", [_w(tz="Mars/Olympus")], "windows[0].tz: unknown time zone 'Mars/Olympus'"),
    ("windows", [_w(tz=_DELETE)], "windows[0].tz: missing"),
    ("windows", [_w(azs=[])], "windows[0].azs: names no AZ (leave it out"),
    ("windows", [_w(azs="az1")], "windows[0].azs: must be a list, got a string"),
]


@pytest.mark.parametrize(("path", "value", "expected"), POLICY_CASES)
def test_policy_problem_is_located(path: str, value: Any, expected: str) -> None:
    with pytest.raises(InputError) as e:
        policy_from_dict(at(policy_doc(), path, value), "pol.yaml")
    found = problems(e.value)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_policy_defaults() -> None:
    p = policy_from_dict({"max_hosts_per_wave": 3})
    assert p.target_version is None
    assert (p.headroom.failures, p.headroom.scope, p.headroom.reserve_percent) == (1, "az", 0.0)
    assert (p.max_concurrent_live_migrations, p.allow_stop) == (1, False)
    assert (p.max_hosts_per_wave_per_az, p.max_hosts_per_wave_per_rack) == (None, None)
    assert (p.first, p.last) == ((), ())
    assert p.max_migrations_per_wave is None


def test_max_migrations_per_wave_is_written_only_when_set() -> None:
    p = policy_from_dict({"max_hosts_per_wave": 3})
    assert "max_migrations_per_wave" not in policy_to_dict(
        p
    )  # files written before stay as they were
    capped = p.with_changes(max_migrations_per_wave=40)
    assert policy_to_dict(capped)["max_migrations_per_wave"] == 40
    assert policy_from_dict(policy_to_dict(capped)) == capped
    assert policy_from_dict({"max_hosts_per_wave": 3, "max_migrations_per_wave": None}) == p


def test_new_policy_fields_are_read_and_written_only_when_set() -> None:
    base = policy_from_dict({"max_hosts_per_wave": 3})
    assert base.non_converging == ("force-complete",)
    assert (base.max_migration_s, base.max_downtime_s) == (None, None)
    assert (base.execution, base.windows) == ("pipelined", ())
    written = policy_to_dict(base)
    for key in ("non_converging", "max_migration_s", "max_downtime_s", "execution", "windows"):
        assert key not in written, key  # files written before stay as they were
    p = policy_from_dict(
        {
            "max_hosts_per_wave": 3,
            "allow_stop": True,
            "non_converging": ["cold", "stop", "refuse"],
            "max_migration_s": 1800,
            "max_downtime_s": 0,
            "execution": "lockstep",
            "windows": [_w(), _w(days="SAT,sun", start="00:00", end="24:00", azs=["az2"])],
        }
    )
    assert p.non_converging == ("cold", "stop", "refuse")
    assert (p.max_migration_s, p.max_downtime_s, p.execution) == (1800.0, 0.0, "lockstep")
    assert [(w.days, w.start, w.end, w.tz, w.azs) for w in p.windows] == [
        ((0, 1, 2, 3, 4), 22 * 60, 6 * 60, "Europe/Berlin", ()),
        ((5, 6), 0, 24 * 60, "Europe/Berlin", ("az2",)),
    ]
    d = policy_to_dict(p)
    assert d["windows"][1] == {
        "days": ["sat", "sun"],
        "start": "00:00",
        "end": "24:00",
        "tz": "Europe/Berlin",
        "azs": ["az2"],
    }
    assert policy_from_dict(d) == p
    # a scalar remedy is a list of one; null is the default
    assert policy_from_dict({"max_hosts_per_wave": 1, "non_converging": "cold"}).non_converging == (
        "cold",
    )
    assert policy_from_dict({"max_hosts_per_wave": 1, "non_converging": None}) == policy_from_dict(
        {"max_hosts_per_wave": 1}
    )


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        ("mon-fri", (0, 1, 2, 3, 4)),
        ("fri-mon", (0, 4, 5, 6)),
        ("sat,sun", (5, 6)),
        (" Sat , SUN ", (5, 6)),
        ("daily", tuple(range(7))),
        (["tue", "thu-fri"], (1, 3, 4)),
        ("sun-sun", (6,)),
    ],
)
def test_window_days(days: Any, expected: tuple[int, ...]) -> None:
    p = policy_from_dict({"max_hosts_per_wave": 1, "windows": [_w(days=days)]})
    assert p.windows[0].days == expected


def test_an_unquoted_yaml_time_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "pol.yaml"
    path.write_text(
        'format_version: "1.0"\nkind: policy\nmax_hosts_per_wave: 1\nwindows:\n'
        "  - {days: mon-fri, start: 22:00, end: '06:00', tz: Europe/Berlin}\n"
    )
    with pytest.raises(InputError) as e:
        load_policy(path)
    assert e.value.file == str(path)
    assert problems(e.value) == [
        'windows[0].start: must be a time "HH:MM" in quotes, got an integer (YAML reads an '
        "unquoted 22:00 as the number 1320)"
    ]


def test_every_bad_window_field_is_reported_at_once() -> None:
    bad = _w(days="someday", start="7", end="25:61", tz="Nowhere/Town")
    with pytest.raises(InputError) as e:
        policy_from_dict({"max_hosts_per_wave": 1, "windows": [_w(), bad]}, "pol.yaml")
    assert [p.split(":")[0] for p in problems(e.value)] == [
        "windows[1].days",
        "windows[1].start",
        "windows[1].end",
        "windows[1].tz",
    ]


PLAN_CASES: list[tuple[str, Any, str]] = [
    ("inventory_sha256", "abc", "inventory_sha256: must be 64 lower-case hex digits"),
    ("inventory_sha256", "A" * 64, "inventory_sha256: must be 64 lower-case hex digits"),
    ("inventory_sha256", _DELETE, "inventory_sha256: missing"),
    ("policy", _DELETE, "policy: missing"),
    ("policy", [], "policy: must be an object, got a list"),
    ("policy.max_hosts_per_wave", 0, "policy.max_hosts_per_wave: must be positive"),
    ("waves", _DELETE, "waves: missing"),
    ("waves", {}, "waves: must be a list, got an object"),
    ("waves[1].hosts", _DELETE, "waves[1].hosts: missing"),
    ("waves[1].index", "2", "waves[1].index: must be an integer, got a string"),
    ("waves[1].index", -1, "waves[1].index: must not be negative, got -1"),
    ("waves[1].migrations", "x", "waves[1].migrations: must be a list, got a string"),
    ("waves[1].migrations[0].from", _DELETE, "waves[1].migrations[0].from: missing"),
    ("waves[1].migrations[0].to", 3, "waves[1].migrations[0].to: must be a string, got an int"),
    ("waves[1].migrations[0].method", "teleport", "waves[1].migrations[0].method: is 'telepo"),
    ("waves[1].migrations[0]", [], "waves[1].migrations[0]: must be an object, got a list"),
    ("waves[1].stops", [{"vm": "vm-1a"}], "waves[1].stops[0].host: missing"),
    ("summary", [], "summary: must be an object, got a list"),
    ("policy.execution", "fast", "policy.execution: is 'fast', expected one of: pipelined, loc"),
    ("policy.windows", [_w(tz="Berlin")], "policy.windows[0].tz: unknown time zone 'Berlin'"),
    (
        "waves[1].migrations[0].force_complete_after_s",
        0,
        "waves[1].migrations[0].force_complete_after_s: must be > 0, got 0",
    ),
    (
        "waves[1].migrations[0].force_complete_after_s",
        "60",
        "waves[1].migrations[0].force_complete_after_s: must be a number, got a string",
    ),
    (
        "waves[1].migrations[0].remedy",
        "stop",
        "waves[1].migrations[0].remedy: is 'stop', expected one of: force-complete, cold",
    ),
    (
        "waves[1].migrations[0].predicted",
        {"duration_s": 60, "downtime_s": 0.2, "bytes": 1e9},
        "waves[1].migrations[0].predicted.outcome: missing",
    ),
    (
        "waves[1].migrations[0].predicted",
        {"duration_s": 60, "downtime_s": 0.2, "bytes": 1e9, "outcome": "exploded"},
        "waves[1].migrations[0].predicted.outcome: is 'exploded', expected one of: converged",
    ),
    (
        "waves[1].migrations[0].predicted",
        {"duration_s": 60, "downtime_s": -1, "bytes": 1e9, "outcome": "converged"},
        "waves[1].migrations[0].predicted.downtime_s: must be >= 0, got -1",
    ),
    ("waves[1].migrations[0].predicted", 5, "waves[1].migrations[0].predicted: must be an obj"),
    (
        "waves[1].stops",
        [{"vm": "vm-1a", "host": "cmp-1", "remedy": "cold"}],
        "waves[1].stops[0].remedy: is 'cold', expected one of: stop",
    ),
    (
        "waves[1].stops",
        [{"vm": "vm-1a", "host": "cmp-1", "predicted": {}}],
        "waves[1].stops[0].predicted.downtime_s: missing",
    ),
    ("waves[1].predicted_s", -1, "waves[1].predicted_s: must be >= 0, got -1"),
    ("waves[1].predicted_s", "1h", "waves[1].predicted_s: must be a number, got a string"),
    ("schedule", [], "schedule: must be an object, got a list"),
    ("schedule", {"windows": []}, "schedule.start: missing"),
    ("schedule", {"start": "tomorrow", "windows": []}, "schedule.start: is not an ISO 8601 tim"),
    ("schedule", {"start": "2026-12-14T22:00", "windows": []}, "schedule.start: needs a UTC off"),
    ("schedule", {"start": 1765746000, "windows": []}, "schedule.start: must be an ISO 8601 tim"),
    ("schedule", {"start": "2026-12-14T22:00Z"}, "schedule.windows: missing"),
    (
        "schedule",
        {
            "start": "2026-12-14T22:00Z",
            "windows": [
                {
                    "index": 0,
                    "start": "2026-12-14T22:00Z",
                    "end": "2026-12-15T06:00Z",
                    "hosts": ["cmp-1"],
                }
            ],
        },
        "schedule.windows[0].index: must be positive, got 0",
    ),
    (
        "schedule",
        {
            "start": "2026-12-14T22:00Z",
            "windows": [{"index": 1, "start": "2026-12-14T22:00Z", "end": "2026-12-15T06:00Z"}],
        },
        "schedule.windows[0].hosts: missing",
    ),
    (
        "schedule",
        {"start": "2026-12-14T22:00Z", "windows": [], "last_done": "2026-12-15 06:00"},
        "schedule.last_done: needs a UTC offset",
    ),
]


@pytest.mark.parametrize(("path", "value", "expected"), PLAN_CASES)
def test_plan_problem_is_located(path: str, value: Any, expected: str) -> None:
    with pytest.raises(InputError) as e:
        plan_from_dict(at(plan_doc(), path, value), "plan.json")
    found = problems(e.value)
    assert len(found) == 1 and found[0].startswith(expected), found


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fixture", [three_plus_spare, ha_trio, mixed_methods])
def test_inventory_policy_plan_round_trip(tmp_path: Path, fixture: Any) -> None:
    fx = fixture()
    digest = save_inventory(fx.inventory, tmp_path / "inv.json")
    save_policy(fx.policy, tmp_path / "pol.json")
    save_plan(fx.plan, tmp_path / "plan.json")
    inv = load_inventory(tmp_path / "inv.json")
    assert inv == fx.inventory
    assert inv.digest == digest == sha256_file(tmp_path / "inv.json")
    assert load_policy(tmp_path / "pol.json") == fx.policy
    assert load_plan(tmp_path / "plan.json") == fx.plan
    # Saving what was loaded gives the same bytes.
    before = (tmp_path / "inv.json").read_bytes()
    save_inventory(inv, tmp_path / "inv.json")
    assert (tmp_path / "inv.json").read_bytes() == before


def test_generated_cloud_round_trips_and_yaml_reads_the_same(tmp_path: Path) -> None:
    inv = generate(GenerateSpec(hosts=20, seed=3, upgraded_hosts=2))
    save_inventory(inv, tmp_path / "inv.json")
    loaded = load_inventory(tmp_path / "inv.json")
    assert loaded == inv
    data = json.loads((tmp_path / "inv.json").read_text())
    (tmp_path / "inv.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert load_inventory(tmp_path / "inv.yaml") == inv


def test_plan_of_a_generated_cloud_round_trips(tmp_path: Path) -> None:
    spec = GenerateSpec(hosts=12, seed=1, utilisation=0.4)
    inv = generate(spec)
    plan = greedy_plan(inv, default_policy(spec), inventory_sha256="f" * 64)
    save_plan(plan, tmp_path / "plan.json")
    assert load_plan(tmp_path / "plan.json") == plan


def test_generated_clouds_are_byte_identical_for_the_same_seed(tmp_path: Path) -> None:
    spec = GenerateSpec(hosts=30, seed=11, upgraded_hosts=3)
    a = save_inventory(generate(spec), tmp_path / "a.json")
    b = save_inventory(generate(spec), tmp_path / "b.json")
    c = save_inventory(generate(GenerateSpec(hosts=30, seed=12, upgraded_hosts=3)), tmp_path / "c")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert a == b != c


def test_file_digest_is_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "inv.json"
    save_inventory(three_plus_spare().inventory, path)
    before = load_inventory(path).digest
    path.write_text(path.read_text() + "\n")  # same content, other bytes
    assert load_inventory(path).digest != before


# ---------------------------------------------------------------------------------------------
# Atomic, well-behaved writes
# ---------------------------------------------------------------------------------------------
def test_written_files_get_normal_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "new.json", "{}\n")
        existing = tmp_path / "old.json"
        existing.write_text("x")
        existing.chmod(0o640)
        write_text_atomic(existing, "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640
    assert existing.read_text() == "{}\n"


def test_a_failed_write_leaves_the_old_file_and_no_litter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "plan.json"
    target.write_text("the old plan")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(InputError) as e:
        write_json(target, {"a": 1})
    assert e.value.render() == f"error: {target}: cannot write: No space left on device"
    assert target.read_text() == "the old plan"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]


def test_unserialisable_data_never_touches_the_file(tmp_path: Path) -> None:
    target = tmp_path / "plan.json"
    target.write_text("the old plan")
    with pytest.raises(TypeError):
        write_json(target, {"a": object()})
    assert target.read_text() == "the old plan"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]


def test_writing_into_a_missing_directory_or_onto_a_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError) as e:
        write_text_atomic(tmp_path / "no" / "such" / "plan.json", "{}")
    assert "does not exist" in e.value.render()
    with pytest.raises(InputError) as e:
        write_text_atomic(tmp_path, "{}")
    assert e.value.render() == f"error: {tmp_path}: cannot write: is a directory"


def test_dumps_keeps_one_record_per_line() -> None:
    text = formats.dumps(inventory_doc(), 2)
    host_lines = [line for line in text.splitlines() if '"name": "cmp-' in line]
    assert len(host_lines) == 3
    assert json.loads(text) == inventory_doc()
