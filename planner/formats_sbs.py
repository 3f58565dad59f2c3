"""The side-by-side fields of format 1 (plans and AZ maps): read with one located message per
bad value, written only when set, so in-place plans stay byte for byte as before.

- plan: `mode` ("in-place", the default, or "side-by-side") and `az_map` ({old AZ: new AZ});
- wave: `roles` ({host: new-controller | new-compute | retired});
- an AZ map file: {"kind": "az-map", "format_version": "1", "az_map": {old: new}} (JSON or
  YAML), checked against the inventory (every AZ named).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from planner.documents import read_document
from planner.errors import InputError, Problem
from planner.inventory import Inventory
from planner.plan import HOST_ROLES, PLAN_MODES, HostRole, Plan, PlanMode, Wave
from planner.reader import MISSING, Reader, at


def _names(r: Reader, raw: Any, loc: str) -> dict[str, str] | None:
    """A mapping of non-empty names to non-empty names."""
    d = r.obj(raw, loc)
    if d is None:
        return None
    out: dict[str, str] = {}
    for k, v in d.items():
        if not isinstance(k, str) or not k.strip():
            r.bad(loc, f"has a key that is not a non-empty name: {k!r}")
        elif not isinstance(v, str) or not v.strip():
            r.bad(at(loc, k), f"must be a non-empty name, got {v!r}")
        else:
            out[k] = v
    return out


def read_plan_fields(r: Reader, data: Mapping[str, Any]) -> tuple[PlanMode, dict[str, str] | None]:
    """The plan's `mode` and `az_map`."""
    mode: PlanMode = r.str_(
        data, "mode", "", required=False, default="in-place", choices=PLAN_MODES
    )
    raw = data.get("az_map")
    az_map = None if raw is None else _names(r, raw, "az_map")
    return mode, az_map


def read_roles(r: Reader, d: Mapping[str, Any], loc: str) -> dict[str, HostRole]:
    """A wave's `roles`."""
    raw = d.get("roles")
    if raw is None:
        return {}
    here = at(loc, "roles")
    names = _names(r, raw, here)
    out: dict[str, HostRole] = {}
    for host, role in (names or {}).items():
        if role not in HOST_ROLES:
            r.bad(at(here, host), f"is {role!r}, expected one of: {', '.join(HOST_ROLES)}")
        else:
            out[host] = role
    return out


def write_plan_fields(plan: Plan, d: dict[str, Any]) -> None:
    if plan.mode != "in-place":
        d["mode"] = plan.mode
    if plan.az_map is not None:
        d["az_map"] = dict(plan.az_map)


def write_roles(w: Wave, d: dict[str, Any]) -> None:
    if w.roles:
        d["roles"] = dict(w.roles)


# ---------------------------------------------------------------------------------------------
# AZ map files
# ---------------------------------------------------------------------------------------------
def load_az_map(path: str | os.PathLike[str], inv: Inventory) -> dict[str, str]:
    """An AZ map file, checked against `inv`: every AZ of its hosts and VM pins is named (else
    InputError naming the file and the missing AZ)."""
    file = os.fspath(path)
    data, _ = read_document(file, "az-map")
    return az_map_from_dict(data, inv, file)


def az_map_from_dict(data: Mapping[str, Any], inv: Inventory, file: str) -> dict[str, str]:
    r = Reader(file)
    raw = r.get(data, "az_map", "", True)
    az_map = (_names(r, raw, "az_map") if raw is not MISSING else None) or {}
    r.done()
    problems = [
        Problem(f"az_map.{az}", f"missing: AZ {az} ({why}) has no name in the new cloud")
        for az, why in sorted(inventory_azs(inv).items())
        if az not in az_map
    ]
    if problems:
        raise InputError(file, problems)
    return az_map


def inventory_azs(inv: Inventory) -> dict[str, str]:
    """Every AZ the inventory names, with where (for messages)."""
    out: dict[str, str] = {}
    for h in inv.hosts:
        if h.az is not None:
            out.setdefault(h.az, f"host {h.name}")
    for v in inv.vms:
        if v.az is not None:
            out.setdefault(v.az, f"the pin of VM {v.name or v.id}")
    return out
