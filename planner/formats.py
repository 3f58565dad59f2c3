"""Reading and writing rollwave's files (format version 1): inventory, policy and plan.

JSON, or YAML with the same structure, each with `format_version` and `kind`. Readers ignore
unknown keys of the same major version. Every problem found is reported with the file and its place
in it (e.g. `hosts[3].capacity.VCPU`) as one `InputError`; outputs are written atomically.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

from planner import formats_placement, formats_sbs
from planner import project_windows as pw
from planner.documents import (
    FORMAT_VERSION,
    KINDS,
    MAJOR,
    check_header,
    dumps,
    gc_paused,
    parse_bytes,
    read_bytes,
    read_document,
    sha256_bytes,
    sha256_file,
    write_bytes_atomic,
    write_json,
    write_text_atomic,
)
from planner.errors import InputError, Problem
from planner.formats_nova import nova_policy_to_dict, read_nova_policy
from planner.inventory import (
    GROUP_POLICIES,
    MIGRATION_KINDS,
    ROLES,
    VM,
    HAGroup,
    Host,
    Inventory,
    ServerGroup,
)
from planner.limits import check_effective
from planner.plan import (
    ALL_METHODS,
    MIGRATION_REMEDIES,
    OUTCOMES,
    STOP_REMEDIES,
    Migration,
    Plan,
    Predicted,
    Schedule,
    ScheduledWindow,
    Stop,
    Wave,
)
from planner.policy import (
    DEFAULT_NON_CONVERGING,
    EXECUTIONS,
    MAX_MIGRATIONS_PER_WAVE,
    REMEDIES,
    SCOPES,
    Headroom,
    Policy,
    Remedy,
    selector_problem,
)
from planner.reader import MISSING, Reader
from planner.reader import at as _at
from planner.reader import type_name as _tn
from planner.windows import read_windows

__all__ = [
    "FORMAT_VERSION",
    "KINDS",
    "MAJOR",
    "Reader",
    "check_header",
    "dumps",
    "inventory_from_dict",
    "inventory_to_dict",
    "load_inventory",
    "load_plan",
    "load_policy",
    "parse_bytes",
    "plan_from_dict",
    "plan_to_dict",
    "policy_from_dict",
    "policy_to_dict",
    "read_bytes",
    "read_document",
    "save_inventory",
    "save_plan",
    "save_policy",
    "schema",
    "schema_text",
    "sha256_bytes",
    "sha256_file",
    "validate_inventory",
    "write_bytes_atomic",
    "write_json",
    "write_text_atomic",
]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# ---------------------------------------------------------------------------------------------
# JSON Schemas (for users' tooling; the reader above is the authority and gives located messages)
# ---------------------------------------------------------------------------------------------
def schema_text(kind: str) -> str:
    """The JSON Schema (draft 2020-12) of a format, as published in planner/schemas/."""
    if kind not in KINDS:
        raise ValueError(f"no schema for {kind!r}; kinds are {', '.join(KINDS)}")
    return (resources.files("planner") / "schemas" / f"{kind}.schema.json").read_text("utf-8")


def schema(kind: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(schema_text(kind))
    return data


# ---------------------------------------------------------------------------------------------
# Inventory
# ---------------------------------------------------------------------------------------------
def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    file = os.fspath(path)
    with gc_paused():
        data, digest = read_document(file, "inventory")
        return inventory_from_dict(data, file, digest=digest)


def inventory_from_dict(
    data: Mapping[str, Any], file: str = "<inventory>", *, digest: str | None = None
) -> Inventory:
    r = Reader(file)
    cloud = r.str_(data, "cloud", "", default="")
    taken_at = r.str_(data, "taken_at", "", default="")
    if taken_at:
        try:
            _dt.datetime.fromisoformat(taken_at.replace("Z", "+00:00"))
        except ValueError:
            r.bad("taken_at", f"is not an ISO 8601 timestamp: {taken_at!r}")
    hosts = [h for i, x in enumerate(r.items(data, "hosts", "")) if (h := _host(r, x, i))]
    vms = [v for i, x in enumerate(r.items(data, "vms", "")) if (v := _vm(r, x, i))]
    groups = [
        g
        for i, x in enumerate(r.items(data, "server_groups", "", required=False))
        if (g := _group(r, x, i))
    ]
    has = [
        ha
        for i, x in enumerate(r.items(data, "ha_groups", "", required=False))
        if (ha := _ha(r, x, i))
    ]
    r.done()
    inv = Inventory(
        cloud=cloud,
        taken_at=taken_at,
        hosts=tuple(hosts),
        vms=tuple(vms),
        server_groups=tuple(groups),
        ha_groups=tuple(has),
        digest=digest,
        source=file if digest is not None else None,
    )
    problems = validate_inventory(inv)
    if problems:
        raise InputError(file, problems)
    return inv


def _host(r: Reader, x: Any, i: int) -> Host | None:
    loc = f"hosts[{i}]"
    d = r.obj(x, loc)
    if d is None:
        return None
    n = len(r.problems)
    role = r.str_(d, "role", loc, choices=ROLES, default="compute")
    compute = role == "compute"
    capacity = r.class_map(
        d, "capacity", loc, lambda v, w: r.check_int(v, w, 1, None), required=compute
    )
    if compute and "capacity" in d and isinstance(d["capacity"], dict) and not d["capacity"]:
        r.bad(_at(loc, "capacity"), "a compute host needs at least one resource class")
    reserved = r.class_map(d, "reserved", loc, lambda v, w: r.check_int(v, w, 0, None))
    ratio = r.class_map(
        d, "allocation_ratio", loc, lambda v, w: r.check_num(v, w, 0.0, None, True, None)
    )
    for rc, res in reserved.items():
        if rc in capacity and res > capacity[rc]:
            r.bad(
                _at(_at(loc, "reserved"), rc),
                f"reserved {res} is more than the capacity {capacity[rc]}",
            )
    check_effective(r.bad, loc, capacity, reserved, ratio)
    host = Host(
        name=r.str_(d, "name", loc, default=""),
        role=role,
        az=r.str_(d, "az", loc, nullable=True, required=compute),
        rack=r.str_(d, "rack", loc, required=False, nullable=True),
        aggregates=r.str_list(d, "aggregates", loc),
        version=r.str_(d, "version", loc, default=""),
        enabled=r.bool_(d, "enabled", loc, default=True),
        up=r.bool_(d, "up", loc, default=True),
        capacity=capacity,
        reserved=reserved,
        allocation_ratio=ratio,
        disabled_reason=r.str_(d, "disabled_reason", loc, required=False, nullable=True),
        **formats_placement.host_fields(r, d, loc),
    )
    return host if len(r.problems) == n else None


def _vm(r: Reader, x: Any, i: int) -> VM | None:
    loc = f"vms[{i}]"
    d = r.obj(x, loc)
    if d is None:
        return None
    n = len(r.problems)
    resources = r.class_map(
        d, "resources", loc, lambda v, w: r.check_int(v, w, 0, None), required=True
    )
    local_disk = d.get("local_disk")
    if local_disk is not None and not isinstance(local_disk, bool):
        local_disk = r.check_int(local_disk, _at(loc, "local_disk"), 0, None)
    vm = VM(
        id=r.str_(d, "id", loc, default=""),
        name=r.str_(d, "name", loc, default="", nonempty=False),
        project=r.str_(d, "project", loc, default="", nonempty=False),
        host=r.str_(d, "host", loc, default=""),
        status=r.str_(d, "status", loc, default=""),
        resources=resources,
        az=r.str_(d, "az", loc, required=False, nullable=True),
        allowed_aggregates=r.str_list(d, "allowed_aggregates", loc),
        server_group=r.str_(d, "server_group", loc, required=False, nullable=True),
        migration=r.str_(
            d, "migration", loc, required=False, choices=MIGRATION_KINDS, default="live"
        ),
        dirty_rate_mb_s=r.num(
            d, "dirty_rate_mb_s", loc, required=False, minimum=0.0, nullable=True
        ),
        local_disk=local_disk,
        **formats_placement.vm_fields(r, d, loc),
    )
    return vm if len(r.problems) == n else None


def _group(r: Reader, x: Any, i: int) -> ServerGroup | None:
    loc = f"server_groups[{i}]"
    d = r.obj(x, loc)
    if d is None:
        return None
    n = len(r.problems)
    g = ServerGroup(
        id=r.str_(d, "id", loc, default=""),
        name=r.str_(d, "name", loc, default="", nonempty=False),
        policy=r.str_(d, "policy", loc, choices=GROUP_POLICIES, default="anti-affinity"),
        max_server_per_host=r.int_(
            d, "max_server_per_host", loc, required=False, default=1, minimum=1
        ),
    )
    return g if len(r.problems) == n else None


def _ha(r: Reader, x: Any, i: int) -> HAGroup | None:
    loc = f"ha_groups[{i}]"
    d = r.obj(x, loc)
    if d is None:
        return None
    n = len(r.problems)
    g = HAGroup(
        name=r.str_(d, "name", loc, default=""),
        hosts=r.str_list(d, "hosts", loc, required=True),
        min_available=r.int_(d, "min_available", loc, default=1, minimum=0),
    )
    return g if len(r.problems) == n else None


def validate_inventory(inv: Inventory) -> list[Problem]:
    """Cross-references and uniqueness: what a per-field reader cannot see."""
    problems: list[Problem] = []
    first_host: dict[str, int] = {}
    for i, h in enumerate(inv.hosts):
        if h.name in first_host:
            problems.append(
                Problem(
                    f"hosts[{i}].name",
                    f"duplicate host name {h.name!r} (first at hosts[{first_host[h.name]}])",
                )
            )
        else:
            first_host[h.name] = i
    first_group: dict[str, int] = {}
    for i, g in enumerate(inv.server_groups):
        if g.id in first_group:
            problems.append(
                Problem(
                    f"server_groups[{i}].id",
                    f"duplicate server group id {g.id!r} "
                    f"(first at server_groups[{first_group[g.id]}])",
                )
            )
        else:
            first_group[g.id] = i
    first_vm: dict[str, int] = {}
    for i, v in enumerate(inv.vms):
        if v.id in first_vm:
            problems.append(
                Problem(
                    f"vms[{i}].id", f"duplicate VM id {v.id!r} (first at vms[{first_vm[v.id]}])"
                )
            )
        else:
            first_vm[v.id] = i
        if v.host not in first_host:
            problems.append(Problem(f"vms[{i}].host", f"unknown host {v.host!r}"))
        elif inv.hosts[first_host[v.host]].role != "compute":
            problems.append(
                Problem(f"vms[{i}].host", f"{v.host!r} is a controller; controllers host no VMs")
            )
        if v.server_group is not None and v.server_group not in first_group:
            problems.append(
                Problem(f"vms[{i}].server_group", f"unknown server group {v.server_group!r}")
            )
    first_ha: dict[str, int] = {}
    for i, ha in enumerate(inv.ha_groups):
        if ha.name in first_ha:
            problems.append(Problem(f"ha_groups[{i}].name", f"duplicate HA group {ha.name!r}"))
        else:
            first_ha[ha.name] = i
        seen: set[str] = set()
        for j, hn in enumerate(ha.hosts):
            if hn not in first_host:
                problems.append(Problem(f"ha_groups[{i}].hosts[{j}]", f"unknown host {hn!r}"))
            if hn in seen:
                problems.append(Problem(f"ha_groups[{i}].hosts[{j}]", f"{hn!r} listed twice"))
            seen.add(hn)
        if ha.min_available > len(ha.hosts):
            problems.append(
                Problem(
                    f"ha_groups[{i}].min_available",
                    f"{ha.min_available} is more than the group's {len(ha.hosts)} hosts",
                )
            )
    return problems


def inventory_to_dict(inv: Inventory) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "kind": "inventory",
        "cloud": inv.cloud,
        "taken_at": inv.taken_at,
        "hosts": [_host_dict(h) for h in inv.hosts],
        "vms": [_vm_dict(v) for v in inv.vms],
        "server_groups": [
            {
                "id": g.id,
                "name": g.name,
                "policy": g.policy,
                "max_server_per_host": g.max_server_per_host,
            }
            for g in inv.server_groups
        ],
        "ha_groups": [
            {"name": g.name, "hosts": list(g.hosts), "min_available": g.min_available}
            for g in inv.ha_groups
        ],
    }


def _host_dict(h: Host) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": h.name,
        "role": h.role,
        "az": h.az,
        "rack": h.rack,
        "aggregates": list(h.aggregates),
        "version": h.version,
        "enabled": h.enabled,
        "up": h.up,
        "capacity": dict(h.capacity),
        "reserved": dict(h.reserved),
        "allocation_ratio": dict(h.allocation_ratio),
    }
    if h.disabled_reason is not None:
        d["disabled_reason"] = h.disabled_reason
    return d | formats_placement.host_dict(h)


def _vm_dict(v: VM) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": v.id,
        "name": v.name,
        "project": v.project,
        "host": v.host,
        "status": v.status,
        "resources": dict(v.resources),
        "az": v.az,
        "allowed_aggregates": list(v.allowed_aggregates),
        "server_group": v.server_group,
        "migration": v.migration,
    }
    if v.dirty_rate_mb_s is not None:
        d["dirty_rate_mb_s"] = v.dirty_rate_mb_s
    if v.local_disk is not None:
        d["local_disk"] = v.local_disk
    return d | formats_placement.vm_dict(v)


# ---------------------------------------------------------------------------------------------
# Policy
# ---------------------------------------------------------------------------------------------
def load_policy(path: str | os.PathLike[str]) -> Policy:
    file = os.fspath(path)
    data, _ = read_document(file, "policy")
    r = Reader(file)
    policy = _policy(r, data, "")
    r.done()
    assert policy is not None
    return policy


def policy_from_dict(data: Mapping[str, Any], file: str = "<policy>") -> Policy:
    r = Reader(file)
    policy = _policy(r, data, "")
    r.done()
    assert policy is not None
    return policy


def _policy(r: Reader, d: Mapping[str, Any], loc: str) -> Policy | None:
    n = len(r.problems)
    head_raw = d.get("headroom", {})
    head = Headroom()
    if head_raw is not None:
        hd = r.obj(head_raw, _at(loc, "headroom"))
        if hd is not None:
            hloc = _at(loc, "headroom")
            head = Headroom(
                failures=r.int_(hd, "failures", hloc, required=False, default=1, minimum=0),
                scope=r.str_(hd, "scope", hloc, required=False, default="az", choices=SCOPES),
                reserve_percent=r.num(
                    hd,
                    "reserve_percent",
                    hloc,
                    required=False,
                    default=0.0,
                    minimum=0.0,
                    maximum=100.0,
                ),
            )
    p = Policy(
        max_hosts_per_wave=r.int_(d, "max_hosts_per_wave", loc, default=1, minimum=1),
        target_version=r.str_(d, "target_version", loc, required=False, nullable=True),
        max_hosts_per_wave_per_az=r.int_(
            d, "max_hosts_per_wave_per_az", loc, required=False, minimum=1, nullable=True
        ),
        max_hosts_per_wave_per_rack=r.int_(
            d, "max_hosts_per_wave_per_rack", loc, required=False, minimum=1, nullable=True
        ),
        headroom=head,
        max_concurrent_live_migrations=r.int_(
            d, "max_concurrent_live_migrations", loc, required=False, default=1, minimum=1
        ),
        allow_stop=r.bool_(d, "allow_stop", loc, required=False, default=False),
        first=_selectors(r, d, "first", loc),
        last=_selectors(r, d, "last", loc),
        max_migrations_per_wave=r.int_(
            d,
            "max_migrations_per_wave",
            loc,
            required=False,
            minimum=1,
            maximum=MAX_MIGRATIONS_PER_WAVE,
            nullable=True,
            beyond=" (leave it out, or null, for no cap)",
        ),
        non_converging=_remedies(r, d, loc),
        max_migration_s=r.num(
            d,
            "max_migration_s",
            loc,
            required=False,
            minimum=0.0,
            exclusive_min=True,
            nullable=True,
        ),
        max_downtime_s=r.num(d, "max_downtime_s", loc, required=False, minimum=0.0, nullable=True),
        execution=r.str_(
            d, "execution", loc, required=False, default="pipelined", choices=EXECUTIONS
        ),
        windows=read_windows(r, d, "windows", loc),
        **read_nova_policy(r, d, loc),
        project_windows=pw.read(r, d, loc),
    )
    return p if len(r.problems) == n else None


def _remedies(r: Reader, d: Mapping[str, Any], loc: str) -> tuple[Remedy, ...]:
    """`non_converging`: a remedy or a list of them; `refuse` only last; `stop` needs
    allow_stop."""
    raw = d.get("non_converging")
    here = _at(loc, "non_converging")
    if raw is None:
        return DEFAULT_NON_CONVERGING
    items = [(here, raw)] if isinstance(raw, str) else None
    if isinstance(raw, list):
        if not raw:
            r.bad(here, "names no remedy (leave it out for the default, force-complete)")
        items = [(_at(here, i), x) for i, x in enumerate(raw)]
    if items is None:
        r.bad(here, f"must be a remedy or a list of remedies, got {_tn(raw)}")
        return DEFAULT_NON_CONVERGING
    out: list[Remedy] = []
    n = len(r.problems)
    for i, (where, x) in enumerate(items):
        if not isinstance(x, str) or x not in REMEDIES:
            got = repr(x) if isinstance(x, str) else _tn(x)
            r.bad(where, f"is {got}, expected one of: {', '.join(REMEDIES)}")
        elif x in out:
            r.bad(where, f"{x!r} is listed twice")
        elif x == "refuse" and i != len(items) - 1:
            r.bad(where, "'refuse' must come last (the remedies after it are never reached)")
        elif x == "stop" and d.get("allow_stop") is not True:
            r.bad(where, "'stop' needs allow_stop: true (VMs are stopped in place)")
        else:
            out.append(x)
    return tuple(out) if len(r.problems) == n else DEFAULT_NON_CONVERGING


def _selectors(r: Reader, d: Mapping[str, Any], key: str, loc: str) -> tuple[str, ...]:
    out = r.str_list(d, key, loc)
    for i, sel in enumerate(out):
        why = selector_problem(sel)
        if why:
            r.bad(_at(_at(loc, key), i), why)
    return out


def policy_to_dict(p: Policy, *, standalone: bool = True) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if standalone:
        d = {"format_version": FORMAT_VERSION, "kind": "policy"}
    d.update(
        {
            "target_version": p.target_version,
            "max_hosts_per_wave": p.max_hosts_per_wave,
            "max_hosts_per_wave_per_az": p.max_hosts_per_wave_per_az,
            "max_hosts_per_wave_per_rack": p.max_hosts_per_wave_per_rack,
            "headroom": {
                "failures": p.headroom.failures,
                "scope": p.headroom.scope,
                "reserve_percent": p.headroom.reserve_percent,
            },
            "max_concurrent_live_migrations": p.max_concurrent_live_migrations,
            "allow_stop": p.allow_stop,
        }
    )
    if p.first:
        d["first"] = list(p.first)
    if p.last:
        d["last"] = list(p.last)
    if p.max_migrations_per_wave is not None:
        d["max_migrations_per_wave"] = p.max_migrations_per_wave
    # Written only when set (or not the default), so that files written before stay as they were.
    if p.non_converging != DEFAULT_NON_CONVERGING:
        d["non_converging"] = list(p.non_converging)
    if p.max_migration_s is not None:
        d["max_migration_s"] = p.max_migration_s
    if p.max_downtime_s is not None:
        d["max_downtime_s"] = p.max_downtime_s
    if p.execution != "pipelined":
        d["execution"] = p.execution
    if p.windows:
        d["windows"] = [w.to_dict() for w in p.windows]
    d.update(nova_policy_to_dict(p))
    pw.to_dict(p, d)
    return d


# ---------------------------------------------------------------------------------------------
# Plan
# ---------------------------------------------------------------------------------------------
def load_plan(path: str | os.PathLike[str]) -> Plan:
    file = os.fspath(path)
    with gc_paused():
        data, _ = read_document(file, "plan")
        return plan_from_dict(data, file)


def plan_from_dict(data: Mapping[str, Any], file: str = "<plan>") -> Plan:
    r = Reader(file)
    # Empty when the plan was made from an inventory that never was a file (library use):
    # readable, so that every plan written can be read back, and then fails the digest rule.
    digest = r.str_(data, "inventory_sha256", "", default="", nonempty=False)
    if digest and not _SHA256.match(digest):
        r.bad("inventory_sha256", "must be 64 lower-case hex digits (a sha256)")
    policy_raw = r.get(data, "policy", "", True)
    policy = None
    if policy_raw is not MISSING:
        pd = r.obj(policy_raw, "policy")
        if pd is not None:
            policy = _policy(r, pd, "policy")
    waves = [w for i, x in enumerate(r.items(data, "waves", "")) if (w := _wave(r, x, i))]
    summary = data.get("summary", {})
    if not isinstance(summary, dict):
        r.bad("summary", f"must be an object, got {_tn(summary)}")
        summary = {}
    generator = data.get("generator", {})
    if not isinstance(generator, dict):
        r.bad("generator", f"must be an object, got {_tn(generator)}")
        generator = {}
    created_at = r.str_(data, "created_at", "", required=False, nullable=True)
    schedule = _schedule(r, data.get("schedule"), "schedule")
    mode, az_map = formats_sbs.read_plan_fields(r, data)
    r.done()
    assert policy is not None
    return Plan(
        inventory_sha256=digest,
        policy=policy,
        waves=tuple(waves),
        summary=summary,
        generator=generator,
        created_at=created_at,
        schedule=schedule,
        mode=mode,
        az_map=az_map,
    )


def _wave(r: Reader, x: Any, i: int) -> Wave | None:
    loc = f"waves[{i}]"
    d = r.obj(x, loc)
    if d is None:
        return None
    n = len(r.problems)
    migrations = []
    for j, m in enumerate(r.items(d, "migrations", loc, required=False)):
        mloc = f"{loc}.migrations[{j}]"
        md = r.obj(m, mloc)
        if md is None:
            continue
        m = Migration(
            vm=r.str_(md, "vm", mloc, default=""),
            src=r.str_(md, "from", mloc, default=""),
            dst=r.str_(md, "to", mloc, default=""),
            method=r.str_(md, "method", mloc, required=False, default="live", choices=ALL_METHODS),
        )
        # The optional fields of remedies and predictions (absent from most migrations).
        if "force_complete_after_s" in md or "remedy" in md or "predicted" in md:
            m = Migration(
                m.vm,
                m.src,
                m.dst,
                m.method,
                force_complete_after_s=r.num(
                    md,
                    "force_complete_after_s",
                    mloc,
                    required=False,
                    minimum=0.0,
                    exclusive_min=True,
                    nullable=True,
                ),
                remedy=r.str_(
                    md, "remedy", mloc, required=False, nullable=True, choices=MIGRATION_REMEDIES
                ),
                predicted=_predicted(r, md, mloc, migration=True),
            )
        migrations.append(m)
    stops = []
    for j, s in enumerate(r.items(d, "stops", loc, required=False)):
        sloc = f"{loc}.stops[{j}]"
        sd = r.obj(s, sloc)
        if sd is None:
            continue
        stops.append(
            Stop(
                vm=r.str_(sd, "vm", sloc, default=""),
                host=r.str_(sd, "host", sloc, default=""),
                remedy=r.str_(
                    sd, "remedy", sloc, required=False, nullable=True, choices=STOP_REMEDIES
                ),
                predicted=_predicted(r, sd, sloc, migration=False),
            )
        )
    w = Wave(
        index=r.int_(d, "index", loc, default=i + 1, minimum=0),
        hosts=r.str_list(d, "hosts", loc, required=True),
        migrations=tuple(migrations),
        stops=tuple(stops),
        predicted_s=r.num(d, "predicted_s", loc, required=False, minimum=0.0, nullable=True),
        roles=formats_sbs.read_roles(r, d, loc),
    )
    return w if len(r.problems) == n else None


def _predicted(r: Reader, d: Mapping[str, Any], loc: str, *, migration: bool) -> Predicted | None:
    """`predicted`: {duration_s, downtime_s, bytes, outcome} of a migration (all four), or
    {downtime_s} of a stop."""
    raw = d.get("predicted")
    if raw is None:
        return None
    here = _at(loc, "predicted")
    pd = r.obj(raw, here)
    if pd is None:
        return None
    n = len(r.problems)
    p = Predicted(
        downtime_s=r.num(pd, "downtime_s", here, minimum=0.0, default=0.0),
        duration_s=r.num(pd, "duration_s", here, required=migration, minimum=0.0, nullable=True),
        bytes=r.num(pd, "bytes", here, required=migration, minimum=0.0, nullable=True),
        outcome=r.str_(pd, "outcome", here, required=migration, nullable=True, choices=OUTCOMES),
    )
    return p if len(r.problems) == n else None


def _timestamp(r: Reader, d: Mapping[str, Any], key: str, loc: str, *, required: bool) -> Any:
    """An ISO 8601 timestamp with a UTC offset (`2026-12-14T22:00:00+01:00`), as an aware
    datetime; YAML's own timestamps are taken as they are if they carry an offset."""
    value = r.get(d, key, loc, required)
    if value is MISSING or (value is None and not required):
        return None
    where = _at(loc, key)
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            r.bad(where, f"is not an ISO 8601 timestamp: {value!r}")
            return None
    if not isinstance(value, _dt.datetime):
        r.bad(where, f"must be an ISO 8601 timestamp (a string), got {_tn(value)}")
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        r.bad(where, f"needs a UTC offset (e.g. {value.isoformat()}+01:00 or Z)")
        return None
    return value


def _schedule(r: Reader, raw: Any, loc: str) -> Schedule | None:
    """`schedule`: {start, windows: [{index, start, end, hosts}], last_done}; the checker judges
    what it means (every host in one window, windows that apply to it)."""
    if raw is None:
        return None
    d = r.obj(raw, loc)
    if d is None:
        return None
    n = len(r.problems)
    start = _timestamp(r, d, "start", loc, required=True)
    windows = []
    for i, x in enumerate(r.items(d, "windows", loc)):
        wloc = f"{loc}.windows[{i}]"
        wd = r.obj(x, wloc)
        if wd is None:
            continue
        m = len(r.problems)
        w = ScheduledWindow(
            index=r.int_(wd, "index", wloc, default=i + 1, minimum=1),
            start=_timestamp(r, wd, "start", wloc, required=True),
            end=_timestamp(r, wd, "end", wloc, required=True),
            hosts=r.str_list(wd, "hosts", wloc, required=True),
        )
        if len(r.problems) == m:
            windows.append(w)
    last_done = _timestamp(r, d, "last_done", loc, required=False)
    crossings = pw.read_crossings(r, d, loc, _timestamp)
    if len(r.problems) != n:
        return None
    return Schedule(start, tuple(windows), last_done, crossings)


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    d: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "kind": "plan",
        "inventory_sha256": plan.inventory_sha256,
        "created_at": plan.created_at,
        "generator": dict(plan.generator),
        "policy": policy_to_dict(plan.policy, standalone=False),
        "summary": dict(plan.summary),
        "waves": [_wave_dict(w) for w in plan.waves],
    }
    if plan.schedule is not None:
        d["schedule"] = _schedule_dict(plan.schedule)
    formats_sbs.write_plan_fields(plan, d)
    return d


# The optional fields are written only when set: plans without them stay byte for byte as before.
def _wave_dict(w: Wave) -> dict[str, Any]:
    d: dict[str, Any] = {
        "index": w.index,
        "hosts": list(w.hosts),
        "migrations": [_migration_dict(m) for m in w.migrations],
        "stops": [_stop_dict(s) for s in w.stops],
    }
    if w.predicted_s is not None:
        d["predicted_s"] = w.predicted_s
    formats_sbs.write_roles(w, d)
    return d


def _migration_dict(m: Migration) -> dict[str, Any]:
    d: dict[str, Any] = {"vm": m.vm, "from": m.src, "to": m.dst, "method": m.method}
    if m.force_complete_after_s is not None:
        d["force_complete_after_s"] = m.force_complete_after_s
    if m.remedy is not None:
        d["remedy"] = m.remedy
    if m.predicted is not None:
        d["predicted"] = _predicted_dict(m.predicted)
    return d


def _stop_dict(s: Stop) -> dict[str, Any]:
    d: dict[str, Any] = {"vm": s.vm, "host": s.host}
    if s.remedy is not None:
        d["remedy"] = s.remedy
    if s.predicted is not None:
        d["predicted"] = _predicted_dict(s.predicted)
    return d


def _predicted_dict(p: Predicted) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if p.duration_s is not None:
        d["duration_s"] = p.duration_s
    d["downtime_s"] = p.downtime_s
    if p.bytes is not None:
        d["bytes"] = p.bytes
    if p.outcome is not None:
        d["outcome"] = p.outcome
    return d


def _schedule_dict(s: Schedule) -> dict[str, Any]:
    d: dict[str, Any] = {
        "start": s.start.isoformat(),
        "windows": [
            {
                "index": w.index,
                "start": w.start.isoformat(),
                "end": w.end.isoformat(),
                "hosts": list(w.hosts),
            }
            for w in s.windows
        ],
    }
    if s.last_done is not None:
        d["last_done"] = s.last_done.isoformat()
    pw.write_crossings(s, d)
    return d


def save_inventory(inv: Inventory, path: str | os.PathLike[str]) -> str:
    """Write an inventory; returns the sha256 of the bytes written (what a plan records)."""
    text = dumps(inventory_to_dict(inv), 2)
    write_text_atomic(path, text)
    return sha256_bytes(text.encode("utf-8"))


def save_policy(policy: Policy, path: str | os.PathLike[str]) -> None:
    write_json(path, policy_to_dict(policy), 3)


def save_plan(plan: Plan, path: str | os.PathLike[str]) -> None:
    write_json(path, plan_to_dict(plan), 4)
