"""AZ pins: a VM pinned to an AZ lands in that AZ. Proofs name the pins of one AZ `az:<AZ>`."""

from __future__ import annotations

from planner.plan import Migration
from planner.rules.base import Family, Out, State, Violation, WaveStep, Words, vm_label


def words(az: str) -> Words:
    return Words(
        f"az:{az}",
        f"the AZ pin of the VMs pinned to {az}",
        f"let some VMs pinned to {az} run in another AZ (or add capacity to {az})",
    )


def _migration(state: State, step: WaveStep, m: Migration, out: Out) -> None:
    vm = state.inv.vm(m.vm)
    if vm.az is None:
        return
    dst = state.inv.host(m.dst)
    if dst.az != vm.az:
        out.append(
            Violation(
                "az",
                f"{vm_label(state.inv, m.vm)} is pinned to AZ {vm.az}; {m.dst} is in {dst.az}",
                step.index,
                (m.vm, m.dst),
            )
        )


FAMILY = Family(
    name="az",
    rules={"az": "a VM pinned to an AZ stays in it"},
    migration=_migration,
    owns=lambda key: key.startswith("az:"),
)
