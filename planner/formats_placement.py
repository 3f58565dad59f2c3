"""Reading and writing the inventory's optional Placement fields (docs/formats.md, "Placement's
view"): a host's traits, units, nested providers, other usage and drift notes; a VM's required
and forbidden traits and its allocations. `planner.formats` calls these for every host and VM;
absent fields read as empty, and empty ones are not written (files without them stay as they
were)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from planner.inventory import VM, Host, Provider, Units
from planner.reader import Reader, at

# A capacity column: a class, or a class on a nested provider's type (`VGPU@CUSTOM_X`).
_COLUMN = re.compile(r"^[A-Z][A-Z0-9_]*(@[A-Z0-9_+]+)?$")
_MAX = 2**62  # integers beyond this are no real inventory and would overflow the models


def _units(r: Reader, d: Mapping[str, Any], loc: str) -> dict[str, Units]:
    out: dict[str, Units] = {}
    for rc, raw in r.class_map(d, "units", loc, lambda v, w: v).items():
        where = at(at(loc, "units"), rc)
        u = r.obj(raw, where)
        if u is None:
            continue
        n = len(r.problems)
        lo = r.int_(u, "min_unit", where, required=False, default=1, minimum=1, maximum=_MAX)
        hi = r.int_(u, "max_unit", where, required=False, minimum=1, maximum=_MAX, nullable=True)
        step = r.int_(u, "step_size", where, required=False, default=1, minimum=1, maximum=_MAX)
        if hi is not None and lo is not None and hi < lo:
            r.bad(at(where, "max_unit"), f"{hi} is less than min_unit {lo}")
        if len(r.problems) == n:
            out[rc] = Units(lo, hi, step)
    return out


def _provider(r: Reader, name: str, raw: Any, loc: str) -> Provider | None:
    d = r.obj(raw, loc)
    if d is None:
        return None
    n = len(r.problems)
    capacity = r.class_map(
        d, "capacity", loc, lambda v, w: r.check_int(v, w, 1, None, _MAX), required=True
    )
    p = Provider(
        name=name,
        capacity=capacity,
        reserved=r.class_map(d, "reserved", loc, lambda v, w: r.check_int(v, w, 0, None, _MAX)),
        allocation_ratio=r.class_map(
            d, "allocation_ratio", loc, lambda v, w: r.check_num(v, w, 0.0, 1e6, True, None)
        ),
        traits=r.str_list(d, "traits", loc),
        units=_units(r, d, loc),
    )
    return p if len(r.problems) == n else None


def host_fields(r: Reader, d: Mapping[str, Any], loc: str) -> dict[str, Any]:
    """The Host keyword arguments of the Placement fields of host `d` at `loc`."""
    out: dict[str, Any] = {}
    if "traits" in d:
        out["traits"] = r.str_list(d, "traits", loc)
    if "units" in d:
        out["units"] = _units(r, d, loc)
    raw = d.get("providers")
    if raw is not None:
        where = at(loc, "providers")
        m = r.obj(raw, where)
        providers = []
        for name, p in (m or {}).items():
            got = _provider(r, str(name), p, at(where, str(name)))
            if got is not None:
                providers.append(got)
        out["providers"] = tuple(providers)
    raw = d.get("other_usage")
    if raw is not None:
        where = at(loc, "other_usage")
        usage: dict[str, int] = {}
        for key, n in (r.obj(raw, where) or {}).items():
            if not isinstance(key, str) or not _COLUMN.match(key):
                r.bad(at(where, str(key)), f"{key!r} is not a resource class (or CLASS@TRAITS)")
                continue
            got = r.check_int(n, at(where, key), 0, None, _MAX)
            if got is not None:
                usage[key] = got
        out["other_usage"] = usage
    if "drift" in d:
        out["drift"] = r.str_list(d, "drift", loc)
    return out


def vm_fields(r: Reader, d: Mapping[str, Any], loc: str) -> dict[str, Any]:
    """The VM keyword arguments of the Placement fields of VM `d` at `loc`."""
    out: dict[str, Any] = {}
    for key in ("required_traits", "forbidden_traits", "forbidden_aggregates"):
        if key in d:
            out[key] = r.str_list(d, key, loc)
    raw = d.get("allocations")
    if raw is not None:
        where = at(loc, "allocations")
        allocs: dict[str, dict[str, int]] = {}
        for name, alloc in (r.obj(raw, where) or {}).items():
            allocs[str(name)] = r.class_map(
                {"x": alloc}, "x", at(where, str(name)), lambda v, w: r.check_int(v, w, 0, None)
            )
        out["allocations"] = allocs
    return out


def _units_dict(units: Mapping[str, Units]) -> dict[str, Any]:
    return {
        rc: {"min_unit": u.min_unit, "max_unit": u.max_unit, "step_size": u.step_size}
        for rc, u in units.items()
    }


def host_dict(h: Host) -> dict[str, Any]:
    """The Placement fields of a host, those it has."""
    d: dict[str, Any] = {}
    if h.traits:
        d["traits"] = list(h.traits)
    if h.units:
        d["units"] = _units_dict(h.units)
    if h.providers:
        d["providers"] = {
            p.name: {
                "capacity": dict(p.capacity),
                "reserved": dict(p.reserved),
                "allocation_ratio": dict(p.allocation_ratio),
                "traits": list(p.traits),
                "units": _units_dict(p.units),
            }
            for p in h.providers
        }
    if h.other_usage:
        d["other_usage"] = dict(h.other_usage)
    if h.drift:
        d["drift"] = list(h.drift)
    return d


def vm_dict(v: VM) -> dict[str, Any]:
    """The Placement fields of a VM, those it has."""
    d: dict[str, Any] = {}
    if v.required_traits:
        d["required_traits"] = list(v.required_traits)
    if v.forbidden_traits:
        d["forbidden_traits"] = list(v.forbidden_traits)
    if v.forbidden_aggregates:
        d["forbidden_aggregates"] = list(v.forbidden_aggregates)
    if v.allocations:
        d["allocations"] = {p: dict(a) for p, a in v.allocations.items()}
    return d
