"""Placement's own limits: a VM lands only on a host whose traits and allocation units Placement
accepts for it (`planner.placement`: the flavor's `trait:X=required|forbidden`, the inventories'
min_unit, max_unit and step_size, the nested provider of the same type for a vGPU's VGPU).
Capacity itself is the capacity family's. Proofs name the VMs of one set of needs
`placement:<needs>`. Before any wave, the hosts whose Placement usages disagree with their VMs'
allocations (the snapshot's drift notes) are warnings: the plan counts what Placement counts.
A VM no other host accepts is the solver's pre-check's to report (`solver.precheck`, with this
family's words), as for AZ and aggregate pins."""

from __future__ import annotations

from planner.inventory import Inventory
from planner.placement import acceptance, has_limits, vm_refusal
from planner.plan import Migration
from planner.policy import Policy
from planner.rules.base import (
    Family,
    Numbered,
    Out,
    PlanCheck,
    State,
    Violation,
    WaveStep,
    Words,
    vm_label,
)


def words(needs: str) -> Words:
    return Words(
        f"placement:{needs}",
        f"Placement's acceptance of the VMs that need {needs} (traits, units, provider type)",
        f"give more hosts what those VMs need ({needs}), or change their flavors' trait specs",
    )


def _plan(pc: PlanCheck, out: Out) -> None:
    for h in pc.inv.hosts:
        for note in h.drift:
            pc.warnings.append(
                Violation("inventory.placement_drift", f"{h.name}: {note}", objects=(h.name,))
            )


def _migrations(
    state: State, step: WaveStep, moves: list[tuple[int, Migration]], out: Numbered
) -> None:
    inv = state.inv
    acc = acceptance(inv)
    if not acc.active:
        return
    for i, m in moves:
        vm = inv.vm(m.vm)
        why = vm_refusal(inv, vm, inv.host(m.dst))
        if why is not None:
            out.append(
                (
                    i,
                    Violation(
                        "placement",
                        f"Placement would refuse {vm_label(inv, m.vm)} on {m.dst}: {why}",
                        step.index,
                        (m.vm, m.dst),
                    ),
                )
            )


def _active(inv: Inventory, policy: Policy) -> bool:
    return has_limits(inv) or any(h.drift for h in inv.hosts)


FAMILY = Family(
    name="placement",
    rules={
        "placement": "a VM lands only where Placement accepts its traits and allocation units",
        "inventory.placement_drift": (
            "(warning) a host's Placement usages disagree with its VMs' allocations"
        ),
    },
    plan=_plan,
    migrations=_migrations,
    owns=lambda key: key.startswith("placement:"),
    active=_active,
)
