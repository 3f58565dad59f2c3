"""The solver's encodings of every rule family, one module each, keyed like `planner.rules`.

`ENCODINGS[name]` says, for each model (`base.MODELS`: the greedy planner, the wave model, the
placement phase, the exact model), how that model keeps the family: its hooks, `Builtin` (the
model's own algorithm keeps it, and where) or `Relaxed` (it does not; the checker re-judges).
The models call the hooks in the order of `planner.rules.FAMILIES` (`hooks(model)`)."""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from typing import Any

from planner.inventory import Inventory
from planner.policy import Policy
from planner.rules import FAMILIES, Family, family_of
from solver.context import Context
from solver.rules import (
    affinity,
    aggregates,
    anti_affinity,
    az,
    capacity,
    cloud_headroom,
    clouds,
    evacuation,
    ha_group,
    headroom,
    method,
    migrations_per_wave,
    order,
    placement,
    project_windows,
    remedy,
    schedule,
    structure,
    version,
    wave_size,
)
from solver.rules.base import (
    MODELS,
    Builtin,
    Encodings,
    ExactHooks,
    FillHooks,
    GreedyHooks,
    PlacementHooks,
    Relaxed,
    WaveHooks,
)

ENCODINGS: dict[str, Encodings] = {
    e.family: e
    for e in (
        m.ENCODINGS
        for m in (
            structure,
            clouds,
            capacity,
            wave_size,
            migrations_per_wave,
            ha_group,
            order,
            schedule,
            project_windows,
            evacuation,
            method,
            remedy,
            version,
            az,
            aggregates,
            placement,
            headroom,
            cloud_headroom,
            anti_affinity,
            affinity,
        )
    )
}


def hooks(model: str, inv: Inventory | None = None, policy: Policy | None = None) -> list[Any]:
    """The hooks of `model` of every family that has some, in the registry's order; with `inv`
    and `policy`, of the families that can bind there (`Family.active`) only."""
    out = []
    for f in FAMILIES:
        if inv is not None and policy is not None and not f.active(inv, policy):
            continue
        enc = ENCODINGS[f.name].of(model)
        if not isinstance(enc, (Builtin, Relaxed)):
            out.append(enc)
    return out


def details(ctx: Context, key: str) -> str | None:
    """The numbers behind a proof's family `key` (headroom's: free, required, the host whose
    going down leaves the least slack), or None."""
    family = family_of(key)
    enc = ENCODINGS[family.name] if family is not None else None
    return enc.details(ctx, key) if enc is not None and enc.details is not None else None


def greedy_hooks(inv: Inventory, policy: Policy) -> list[GreedyHooks]:
    return hooks("greedy", inv, policy)


def wave_hooks(inv: Inventory, policy: Policy) -> list[WaveHooks]:
    return hooks("waves", inv, policy)


def placement_hooks(inv: Inventory, policy: Policy) -> list[PlacementHooks]:
    return hooks("placement", inv, policy)


def exact_hooks(inv: Inventory, policy: Policy) -> list[ExactHooks]:
    return hooks("exact", inv, policy)


# A family's checker hooks: a family with any of them judges plans, so every model must keep it
# or say why it need not.
CHECK_HOOKS = ("plan", "cloud", "down", "wave", "migrations", "stops", "moved", "group", "after")
HOOK_TYPES = {
    "greedy": GreedyHooks,
    "waves": WaveHooks,
    "placement": PlacementHooks,
    "exact": ExactHooks,
}


def gaps(
    families: tuple[Family, ...] = FAMILIES, encodings: dict[str, Encodings] | None = None
) -> list[str]:
    """Each family with a check, and model, that has no encoding and says neither that the
    model keeps the family by itself (`Builtin`) nor that it relaxes it (`Relaxed`), with a
    reason; empty when every model accounts for every family."""
    encodings = ENCODINGS if encodings is None else encodings
    out = []
    for f in families:
        if not any(getattr(f, hook) is not None for hook in CHECK_HOOKS):
            continue
        enc = encodings.get(f.name)
        if enc is None:
            out.append(f"{f.name}: no encodings in any model")
            continue
        for model in MODELS:
            e = enc.of(model)
            if isinstance(e, (Builtin, Relaxed)):
                if not e.reason.strip():
                    out.append(f"{f.name}: the {model} model gives no reason")
            elif not isinstance(e, HOOK_TYPES[model]) or not _has_hooks(e):
                out.append(f"{f.name}: the {model} model has no encoding")
    return out


def _has_hooks(hooks: Any) -> bool:
    values = [getattr(hooks, k.name) for k in dataclass_fields(hooks)]
    subs = [v for v in values if isinstance(v, FillHooks)]
    return any(v is not None and not isinstance(v, FillHooks) for v in values) or any(
        _has_hooks(v) for v in subs
    )


# The models a planner's plan comes from: the CP-SAT planner is the wave model and placement.
PLANNER_MODELS = {"cpsat": ("waves", "placement"), "greedy": ("greedy",), "exact": ("exact",)}


def relaxed(planner: str, inv: Inventory, policy: Policy) -> list[tuple[str, str]]:
    """(family, reason) for each family that can bind on this cloud (`Family.active`) and that
    every model of `planner` relaxes: its plan keeps the family only because the checker judged
    it."""
    out = []
    for f in FAMILIES:
        if not f.active(inv, policy):
            continue
        encs = [ENCODINGS[f.name].of(m) for m in PLANNER_MODELS.get(planner, ())]
        if encs and all(isinstance(e, Relaxed) for e in encs):
            # each reason once (the models of a planner often relax a family for one reason)
            reasons = "; ".join(dict.fromkeys(e.reason for e in encs if isinstance(e, Relaxed)))
            out.append((f.name, reasons))
    return out


__all__ = [
    "ENCODINGS",
    "MODELS",
    "PLANNER_MODELS",
    "details",
    "gaps",
    "hooks",
    "relaxed",
]
