"""Aggregates: a VM with `allowed_aggregates` lands on a host in at least one of them. Proofs
name the VMs bound to one set of aggregates `aggregates:<a, b>`."""

from __future__ import annotations

from collections.abc import Sequence

from planner.plan import Migration
from planner.rules.base import Family, Out, State, Violation, WaveStep, Words, vm_label


def words(aggregates: Sequence[str]) -> Words:
    names = ", ".join(sorted(set(aggregates)))
    return Words(
        f"aggregates:{names}",
        f"the aggregates of the VMs bound to aggregates {names}",
        f"widen the aggregates those VMs may use (or add hosts to {names})",
    )


def _migration(state: State, step: WaveStep, m: Migration, out: Out) -> None:
    vm = state.inv.vm(m.vm)
    if not vm.allowed_aggregates:
        return
    dst = state.inv.host(m.dst)
    if not set(vm.allowed_aggregates) & set(dst.aggregates):
        out.append(
            Violation(
                "aggregates",
                f"{vm_label(state.inv, m.vm)} may only run in aggregates "
                f"{', '.join(vm.allowed_aggregates)}; {m.dst} is in "
                f"{', '.join(dst.aggregates) or 'none'}",
                step.index,
                (m.vm, m.dst),
            )
        )


FAMILY = Family(
    name="aggregates",
    rules={"aggregates": "a VM with allowed_aggregates lands in one of them"},
    migration=_migration,
    owns=lambda key: key.startswith("aggregates:"),
)
