"""The user mapping file: what Nova does not know about a cloud (docs/cli.md, `snapshot`).

    controllers:            # hosts without nova-compute that HA groups need
      - {name: ctl-1, az: az1, rack: r1, version: "2024.1"}
    ha_groups:
      - {name: galera, hosts: [ctl-1, ctl-2, ctl-3], min_available: 2}
    hosts:                  # per-host facts, by name
      cmp-001: {rack: r1, version: "2024.1"}
    versions:               # first matching pattern (fnmatch) wins
      - {pattern: "cmp-0*", version: "2024.1"}
    racks:
      - {pattern: "cmp-0[0-3]*", rack: r1}
    default_version: unknown
    vms:                    # per VM, by Nova uuid or name
      3f2a...: {migration: cold, dirty_rate_mb_s: 80, local_disk: true}
    projects:               # per project id
      9b1c...: {migration: none}
    scheduler:              # which of Nova's aggregate filters the cloud enables
      aggregate_instance_extra_specs: true        # default true
      aggregate_tenant_isolation: true            # AggregateMultiTenancyIsolation, default true
      limit_tenants_to_placement_aggregate: false # [scheduler] option, default false

JSON or YAML. Every key is optional; unknown keys are refused (a typo must not pass silently).
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from planner.errors import InputError, Problem

_TOP = {
    "controllers",
    "ha_groups",
    "hosts",
    "versions",
    "racks",
    "default_version",
    "vms",
    "projects",
    "scheduler",
}
SCHEDULER_KEYS = (
    "aggregate_instance_extra_specs",
    "aggregate_tenant_isolation",
    "limit_tenants_to_placement_aggregate",
)
VM_FIELDS = {"migration", "dirty_rate_mb_s", "local_disk", "allowed_aggregates", "az"}
MIGRATIONS = {"live", "cold", "none"}


@dataclass(frozen=True)
class Mapping:
    controllers: tuple[dict[str, Any], ...] = ()
    ha_groups: tuple[dict[str, Any], ...] = ()
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: tuple[tuple[str, str], ...] = ()
    racks: tuple[tuple[str, str], ...] = ()
    default_version: str = "unknown"
    vms: dict[str, dict[str, Any]] = field(default_factory=dict)
    projects: dict[str, dict[str, Any]] = field(default_factory=dict)
    scheduler: dict[str, bool] = field(default_factory=dict)  # filters the cloud enables

    def host_version(self, host: str) -> str | None:
        if self.hosts.get(host, {}).get("version"):
            return str(self.hosts[host]["version"])
        return next((v for p, v in self.versions if fnmatch.fnmatchcase(host, p)), None)

    def host_rack(self, host: str) -> str | None:
        if self.hosts.get(host, {}).get("rack"):
            return str(self.hosts[host]["rack"])
        return next((r for p, r in self.racks if fnmatch.fnmatchcase(host, p)), None)

    def vm_overrides(self, vm_id: str, name: str, project: str) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.projects.get(project, {}))
        out.update(self.vms.get(name, {}))
        out.update(self.vms.get(vm_id, {}))
        return out


def load(path: str | Path) -> Mapping:
    p = Path(path)
    try:
        text = p.read_text()
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except OSError as exc:
        raise InputError(str(p), f"cannot read: {exc.strerror or exc}") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise InputError(str(p), f"not valid JSON/YAML: {exc}") from None
    return parse(data or {}, str(p))


def parse(data: Any, file: str = "<mapping>") -> Mapping:
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise InputError(file, "a mapping file must be a mapping")
    for k in sorted(set(data) - _TOP):
        problems.append(Problem(k, f"unknown key (expected one of {', '.join(sorted(_TOP))})"))

    def listed(key: str) -> list[Any]:
        v = data.get(key) or []
        if not isinstance(v, list):
            problems.append(Problem(key, "must be a list"))
            return []
        return v

    def keyed(key: str) -> dict[str, dict[str, Any]]:
        v = data.get(key) or {}
        if not isinstance(v, dict) or not all(isinstance(x, dict) for x in v.values()):
            problems.append(Problem(key, "must map names to mappings"))
            return {}
        return {str(k): dict(x) for k, x in v.items()}

    controllers = []
    for i, c in enumerate(listed("controllers")):
        if not isinstance(c, dict) or not c.get("name"):
            problems.append(Problem(f"controllers[{i}].name", "missing"))
            continue
        controllers.append(dict(c))
    groups = []
    for i, g in enumerate(listed("ha_groups")):
        if not isinstance(g, dict) or not g.get("name") or not isinstance(g.get("hosts"), list):
            problems.append(Problem(f"ha_groups[{i}]", "needs name and a list of hosts"))
            continue
        groups.append(dict(g))

    def patterns(key: str, value: str) -> tuple[tuple[str, str], ...]:
        out = []
        for i, e in enumerate(listed(key)):
            if not isinstance(e, dict) or "pattern" not in e or value not in e:
                problems.append(Problem(f"{key}[{i}]", f"needs `pattern` and `{value}`"))
                continue
            out.append((str(e["pattern"]), str(e[value])))
        return tuple(out)

    vms = keyed("vms")
    projects = keyed("projects")
    for where, table in (("vms", vms), ("projects", projects)):
        for name, fields in table.items():
            for k in sorted(set(fields) - VM_FIELDS):
                problems.append(Problem(f"{where}.{name}.{k}", "unknown VM field"))
            if "migration" in fields and fields["migration"] not in MIGRATIONS:
                problems.append(
                    Problem(
                        f"{where}.{name}.migration",
                        f"must be one of {', '.join(sorted(MIGRATIONS))}",
                    )
                )
    scheduler = data.get("scheduler") or {}
    if not isinstance(scheduler, dict):
        problems.append(Problem("scheduler", "must be a mapping"))
        scheduler = {}
    for k, v in scheduler.items():
        if k not in SCHEDULER_KEYS:
            problems.append(
                Problem(
                    f"scheduler.{k}", f"unknown key (expected one of {', '.join(SCHEDULER_KEYS)})"
                )
            )
        elif not isinstance(v, bool):
            problems.append(Problem(f"scheduler.{k}", "must be true or false"))
    m = Mapping(
        controllers=tuple(controllers),
        ha_groups=tuple(groups),
        hosts=keyed("hosts"),
        versions=patterns("versions", "version"),
        racks=patterns("racks", "rack"),
        default_version=str(data.get("default_version") or "unknown"),
        vms=vms,
        projects=projects,
        scheduler={str(k): bool(v) for k, v in scheduler.items() if k in SCHEDULER_KEYS},
    )
    if problems:
        raise InputError(file, problems)
    return m
