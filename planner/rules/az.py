"""AZ pins: a VM pinned to an AZ lands in that AZ. Proofs name the pins of one AZ `az:<AZ>`."""

from __future__ import annotations

from planner.plan import Migration
from planner.rules.base import Family, Numbered, State, Violation, WaveStep, Words, vm_label


def words(az: str) -> Words:
    return Words(
        f"az:{az}",
        f"the AZ pin of the VMs pinned to {az}",
        f"let some VMs pinned to {az} run in another AZ (or add capacity to {az})",
    )


def _migrations(
    state: State, step: WaveStep, moves: list[tuple[int, Migration]], out: Numbered
) -> None:
    inv = state.inv
    for i, m in moves:
        vm = inv.vm(m.vm)
        if vm.az is None:
            continue
        dst = inv.host(m.dst)
        if dst.az != vm.az:
            out.append(
                (
                    i,
                    Violation(
                        "az",
                        f"{vm_label(inv, m.vm)} is pinned to AZ {vm.az}; {m.dst} is in {dst.az}",
                        step.index,
                        (m.vm, m.dst),
                    ),
                )
            )


FAMILY = Family(
    name="az",
    rules={"az": "a VM pinned to an AZ stays in it"},
    migrations=_migrations,
    owns=lambda key: key.startswith("az:"),
)
