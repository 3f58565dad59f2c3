"""What Placement holds beyond the compute nodes' root inventories, for `snapshot`.

- Provider trees: every provider whose root is a compute node's (the list `GET
  /resource_providers` at 1.14 carries `root_provider_uuid`, so no call per tree), each nested
  one with its inventory (total, reserved, allocation_ratio, min_unit, max_unit, step_size).
- Traits of every provider of a tree (`GET /resource_providers/{uuid}/traits`, 1.6).
- Allocations of every provider, per consumer (`/allocations`); its usages are their sums (as
  Placement computes them), so `/usages` is not asked.

The plan counts what Placement counts (it is what the scheduler sees): a VM's `resources` are
its allocations on its host's providers, and usage on a host that no VM of the inventory
accounts for (a consumer Nova does not know, a migration's) is the host's `other_usage`. Where
Placement and Nova disagree the host gets a `drift` note, and `snapshot` prints them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from planner.inventory import pool_key

# 1.14: provider lists carry parent and root uuids; traits need 1.6, usages and allocations 1.0.
PLACEMENT_MV = "1.14"
TRAIT_PREFIX = "trait:"


@dataclass
class Tree:
    """One compute node's provider tree, as read."""

    root: str  # uuid
    names: dict[str, str] = field(default_factory=dict)  # uuid -> name (root included)
    children: list[str] = field(default_factory=list)  # uuids of nested providers
    inventories: dict[str, dict[str, Any]] = field(default_factory=dict)
    traits: dict[str, list[str]] = field(default_factory=dict)
    usages: dict[str, dict[str, int]] = field(default_factory=dict)
    # provider uuid -> consumer uuid -> class -> amount
    allocations: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)


def read_trees(
    api: Any,
    providers: list[dict[str, Any]],
    host_rps: dict[str, list[str]],
    root_invs: dict[str, Any],
) -> dict[str, Tree]:
    """Each compute host's tree (its first compute node's), every provider read in parallel."""
    by_root: dict[str, list[dict[str, Any]]] = {}
    for rp in providers:
        root = rp.get("root_provider_uuid") or rp["uuid"]
        by_root.setdefault(root, []).append(rp)
    trees: dict[str, Tree] = {}
    for host, rps in host_rps.items():
        t = Tree(rps[0])
        for rp in by_root.get(t.root, []):
            t.names[rp["uuid"]] = rp["name"]
            if rp["uuid"] != t.root:
                t.children.append(rp["uuid"])
        t.names.setdefault(t.root, host)
        trees[host] = t

    def get(path: str, key: str) -> Any:
        return api.get("placement", path, PLACEMENT_MV).get(key) or {}

    calls: list[tuple[Tree, str, str]] = []
    for t in trees.values():
        for uuid in t.names:
            calls += [(t, uuid, "traits"), (t, uuid, "allocations")]
        calls += [(t, uuid, "inventories") for uuid in t.children]

    def one(c: tuple[Tree, str, str]) -> Any:
        return get(f"/resource_providers/{c[1]}/{c[2]}", c[2])

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, calls))
    for (t, uuid, what), got in zip(calls, results, strict=True):
        if what == "traits":
            t.traits[uuid] = sorted(str(x) for x in got)
        elif what == "allocations":
            t.allocations[uuid] = {
                str(c): {str(k): int(v) for k, v in (a.get("resources") or {}).items()}
                for c, a in got.items()
            }
            usage: dict[str, int] = {}
            for alloc in t.allocations[uuid].values():
                for rc, n in alloc.items():
                    usage[rc] = usage.get(rc, 0) + n
            t.usages[uuid] = usage
        else:
            t.inventories[uuid] = got
    for t in trees.values():
        t.inventories.setdefault(t.root, root_invs.get(t.root, {}))
    return trees


def _units(inv: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The units of each class that are not Placement's defaults (min 1, step 1, max total)."""
    out: dict[str, dict[str, Any]] = {}
    for rc, i in inv.items():
        lo, step = int(i.get("min_unit", 1)), int(i.get("step_size", 1))
        hi = i.get("max_unit")
        hi = None if hi is None or int(hi) >= int(i.get("total", 0)) else int(hi)
        if lo != 1 or step != 1 or hi is not None:
            out[rc] = {"min_unit": lo, "max_unit": hi, "step_size": step}
    return out


def host_fields(t: Tree, asked: set[str]) -> dict[str, Any]:
    """The host's Placement fields: its traits, root units and nested providers. Of the traits,
    those some VM requires or forbids (`asked`; a compute node carries dozens of capability
    traits no flavor names), and on a nested provider its CUSTOM_ ones too (its type)."""
    out: dict[str, Any] = {}
    root_traits = [x for x in t.traits.get(t.root, []) if x in asked]
    if root_traits:
        out["traits"] = root_traits
    units = _units(t.inventories.get(t.root, {}))
    if units:
        out["units"] = units
    providers = {}
    for uuid in t.children:
        inv = t.inventories.get(uuid, {})
        if not inv:
            continue
        providers[t.names[uuid]] = {
            "capacity": {rc: int(i["total"]) for rc, i in inv.items()},
            "reserved": {rc: int(i.get("reserved", 0)) for rc, i in inv.items()},
            "allocation_ratio": {
                rc: float(i.get("allocation_ratio", 1.0)) for rc, i in inv.items()
            },
            "traits": [x for x in t.traits.get(uuid, []) if x in asked or x.startswith("CUSTOM_")],
            "units": _units(inv),
        }
    if providers:
        out["providers"] = providers
    return out


def _amounts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "nothing"


def reconcile(
    hosts: list[dict[str, Any]], vms: list[dict[str, Any]], trees: dict[str, Tree]
) -> dict[str, list[str]]:
    """Put Placement's truth into the hosts and VMs (in place) and say where it disagrees with
    Nova: per host, its drift notes (also written into the host's `drift`)."""
    on_host: dict[str, list[dict[str, Any]]] = {}
    for v in vms:
        on_host.setdefault(v["host"], []).append(v)
    notes: dict[str, list[str]] = {}
    asked = {x for v in vms for k in ("required_traits", "forbidden_traits") for x in v.get(k, [])}
    for h in hosts:
        t = trees.get(h["name"])
        if t is None:
            continue
        h.update(host_fields(t, asked))
        mine = notes.setdefault(h["name"], [])
        keys = {uuid: set(t.traits.get(uuid, [])) if uuid != t.root else set() for uuid in t.names}
        other: dict[str, int] = {}
        known = {v["id"] for v in on_host.get(h["name"], [])}
        for v in on_host.get(h["name"], []):
            held = {
                t.names[uuid]: t.allocations.get(uuid, {}).get(v["id"], {})
                for uuid in t.names
                if t.allocations.get(uuid, {}).get(v["id"])
            }
            if not held:
                mine.append(f"VM {v['id']} has no allocation in Placement on this host")
                continue
            total: dict[str, int] = {}
            for alloc in held.values():
                for rc, n in alloc.items():
                    total[rc] = total.get(rc, 0) + n
            if total != v["resources"]:
                mine.append(
                    f"VM {v['id']}: Placement holds {_amounts(total)}; its flavor asks "
                    f"{_amounts(v['resources'])} (the plan counts Placement's)"
                )
                v["resources"] = total
            if len(held) > 1 or next(iter(held)) != t.names[t.root]:
                v["allocations"] = held
        for uuid, name in t.names.items():
            allocs = t.allocations.get(uuid, {})
            counted: dict[str, int] = {}
            for consumer, alloc in allocs.items():
                if consumer in known:
                    for rc, n in alloc.items():
                        counted[rc] = counted.get(rc, 0) + n
                else:
                    mine.append(
                        f"consumer {consumer} holds {_amounts(alloc)} on {name} and is no VM on "
                        "this host (kept as other usage)"
                    )
            for rc, used in t.usages.get(uuid, {}).items():
                extra = used - counted.get(rc, 0)
                if extra > 0:
                    key = pool_key(rc, keys[uuid])
                    other[key] = other.get(key, 0) + extra
        if other:
            h["other_usage"] = other
        if mine:
            h["drift"] = list(mine)
    return {k: v for k, v in notes.items() if v}


def flavor_traits(flavor: dict[str, Any]) -> dict[str, list[str]]:
    """`trait:X=required|forbidden` extra specs as the VM's required and forbidden traits."""
    req, forb = [], []
    for k, v in (flavor.get("extra_specs") or {}).items():
        if str(k).startswith(TRAIT_PREFIX):
            name = str(k)[len(TRAIT_PREFIX) :]
            if str(v) == "required":
                req.append(name)
            elif str(v) == "forbidden":
                forb.append(name)
    out: dict[str, list[str]] = {}
    if req:
        out["required_traits"] = sorted(req)
    if forb:
        out["forbidden_traits"] = sorted(forb)
    return out


def drift_report(notes: dict[str, list[str]], limit: int = 20) -> str:
    """The snapshot's drift report: the hosts where Placement and Nova disagree."""
    if not notes:
        return ""
    lines = [f"Placement drift on {len(notes)} host(s) (the plan counts Placement's usage):"]
    shown = 0
    for host in sorted(notes):
        for note in notes[host]:
            if shown < limit:
                lines.append(f"  {host}: {note}")
            shown += 1
    if shown > limit:
        lines.append(f"  ... and {shown - limit} more (see each host's `drift` in the inventory)")
    return "\n".join(lines)


def anonymize(hosts: list[dict[str, Any]], vms: list[dict[str, Any]]) -> None:
    """Rename nested providers after their (already renamed) host, in the hosts and in the
    VMs' allocations; drift notes name VMs and consumers, so only their number is kept.
    Traits are kept: the plan needs them (an operator's CUSTOM_ names stay visible)."""
    names: dict[str, str] = {}
    for h in sorted(hosts, key=lambda h: h["name"]):
        provs = h.get("providers") or {}
        for i, old in enumerate(sorted(provs)):
            names[old] = f"{h['name']}-rp{i + 1}"
        if provs:
            h["providers"] = {names[k]: v for k, v in provs.items()}
        if h.get("drift"):
            h["drift"] = ["(anonymized)"] * len(h["drift"])
    for v in vms:
        allocs = v.get("allocations") or {}
        if allocs:
            # the root provider is named after the host
            v["allocations"] = {names.get(k, v["host"]): a for k, a in allocs.items()}
