"""Where Nova's aggregate filters let a VM go, derived from the cloud for `snapshot`.

- `AggregateInstanceExtraSpecsFilter` (`nova/scheduler/filters/aggregate_instance_extra_specs.py`):
  a flavor's `aggregate_instance_extra_specs:KEY=REQ` specs must match the metadata of the host's
  aggregates (Nova's `extra_specs_ops.match`: plain equality, `<or>`, `<in>`, `s==`, `>=`, ...).
  Written as the VM's `allowed_aggregates`: the aggregates whose own metadata match every spec
  (a host passing only through keys spread over several aggregates is left out: conservative).
- `AggregateMultiTenancyIsolation` (`aggregate_multitenancy_isolation.py`): a host in aggregates
  with `filter_tenant_id*` metadata takes only the projects listed there; it keeps OTHER projects
  out. Written as the VM's `forbidden_aggregates`: the isolating aggregates that do not list its
  project (a host also in an aggregate that lists it is then refused too: conservative).
- `[scheduler] limit_tenants_to_placement_aggregate` (`request_filter.py`): a project listed in
  some aggregates' `filter_tenant_id*` lands only in those; it keeps the project IN. Written as
  `allowed_aggregates` (with extra specs too: the aggregates that satisfy both).

The API does not say which filters a cloud enables; the mapping file's `scheduler` does
(`docs/cli.md`). By default extra specs and the isolation filter are modelled (both only narrow
where VMs go, so a plan stays valid if the cloud does not enable them) and the request filter is
not (Nova's default).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

SCOPE = "aggregate_instance_extra_specs"
TENANT_KEY = "filter_tenant_id"
DEFAULTS = {
    "aggregate_instance_extra_specs": True,
    "aggregate_tenant_isolation": True,
    "limit_tenants_to_placement_aggregate": False,
}


def _num(f: Callable[[float, float], bool]) -> Callable[[str, str], bool]:
    def cmp(x: str, y: str) -> bool:
        try:
            return f(float(x), float(y))
        except ValueError:
            return False

    return cmp


_OPS: dict[str, Callable[[str, str], bool]] = {
    "=": _num(operator.ge),
    "<in>": lambda x, y: y in x,
    "==": _num(operator.eq),
    "!=": _num(operator.ne),
    ">=": _num(operator.ge),
    "<=": _num(operator.le),
    "s==": operator.eq,
    "s!=": operator.ne,
    "s<": operator.lt,
    "s<=": operator.le,
    "s>": operator.gt,
    "s>=": operator.ge,
}


def match(value: str | None, req: str) -> bool:
    """Nova's `extra_specs_ops.match`: does an aggregate's metadata value satisfy a spec?"""
    words = req.split()
    op = words.pop(0) if words else None
    if op != "<or>" and op != "<all-in>" and op not in _OPS:
        return value == req
    if value is None:
        return False
    if op == "<or>":
        return value in words[::2]
    if op == "<all-in>":
        return bool(words) and all(w in value for w in words)
    return bool(words) and _OPS[str(op)](value, words[0])


def aggregate_specs(flavor: Mapping[str, Any]) -> dict[str, str]:
    """The flavor's `aggregate_instance_extra_specs:KEY` specs, by KEY."""
    out = {}
    for k, v in (flavor.get("extra_specs") or {}).items():
        scope, _, key = str(k).partition(":")
        if scope == SCOPE and key:
            out[key] = str(v)
    return out


def tenants(meta: Mapping[str, Any]) -> set[str] | None:
    """The projects an aggregate's `filter_tenant_id*` metadata lists (None: it isolates none)."""
    keys = [k for k in meta if str(k).startswith(TENANT_KEY)]
    if not keys:
        return None
    return {t.strip() for k in keys for t in str(meta[k]).split(",") if t.strip()}


def settings(mapping_scheduler: Mapping[str, bool]) -> dict[str, bool]:
    return {**DEFAULTS, **mapping_scheduler}


def derive(
    flavor: Mapping[str, Any],
    project: str,
    aggregates: list[dict[str, Any]],
    options: Mapping[str, bool],
) -> tuple[dict[str, list[str]], str | None]:
    """A VM's `allowed_aggregates` and `forbidden_aggregates` by the filters `options` enable,
    and a note when its flavor asks for metadata no aggregate has (then it is not restricted:
    Nova would find no host for it, so the cloud cannot be enforcing it)."""
    out: dict[str, list[str]] = {}
    note = None
    allowed: set[str] | None = None
    specs = aggregate_specs(flavor) if options["aggregate_instance_extra_specs"] else {}
    if specs:
        fits = {
            a["name"]
            for a in aggregates
            if all(match(_str((a.get("metadata") or {}).get(k)), r) for k, r in specs.items())
        }
        if fits:
            allowed = fits
        else:
            wanted = ", ".join(f"{k}={r}" for k, r in sorted(specs.items()))
            note = f"its flavor asks aggregate metadata {wanted}, which no aggregate has"
    listed = {a["name"]: tenants(a.get("metadata") or {}) for a in aggregates}
    if options["limit_tenants_to_placement_aggregate"]:
        own = {name for name, ts in listed.items() if ts is not None and project in ts}
        if own and allowed is not None and not allowed & own:
            note = "its project's aggregates and its flavor's aggregate specs share no aggregate"
        elif own:
            allowed = own if allowed is None else (allowed & own)
    if allowed is not None:
        out["allowed_aggregates"] = sorted(allowed)
    if options["aggregate_tenant_isolation"]:
        banned = sorted(n for n, ts in listed.items() if ts is not None and project not in ts)
        if banned:
            out["forbidden_aggregates"] = banned
    return out, note


def _str(v: Any) -> str | None:
    return None if v is None else str(v)
