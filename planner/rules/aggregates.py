"""Aggregates: a VM with `allowed_aggregates` lands on a host in at least one of them, and never
on a host in one of its `forbidden_aggregates` (both derived by `snapshot` from flavors' aggregate
extra specs and tenant isolation, or given). Proofs name the VMs bound to one set of aggregates
`aggregates:<a, b>`, those kept out of some `aggregates:not <a, b>`."""

from __future__ import annotations

from collections.abc import Sequence

from planner.plan import Migration
from planner.rules.base import Family, Numbered, State, Violation, WaveStep, Words, vm_label


def words(aggregates: Sequence[str]) -> Words:
    names = ", ".join(sorted(set(aggregates)))
    return Words(
        f"aggregates:{names}",
        f"the aggregates of the VMs bound to aggregates {names}",
        f"widen the aggregates those VMs may use (or add hosts to {names})",
    )


def words_out(aggregates: Sequence[str]) -> Words:
    names = ", ".join(sorted(set(aggregates)))
    return Words(
        f"aggregates:not {names}",
        f"the isolation of aggregates {names} from the VMs kept out of them",
        f"let those VMs' projects into {names} (filter_tenant_id), or add hosts outside them",
    )


def _migrations(
    state: State, step: WaveStep, moves: list[tuple[int, Migration]], out: Numbered
) -> None:
    inv = state.inv
    for i, m in moves:
        vm = inv.vm(m.vm)
        if not vm.allowed_aggregates and not vm.forbidden_aggregates:
            continue
        dst = inv.host(m.dst)
        banned = set(vm.forbidden_aggregates) & set(dst.aggregates)
        if banned:
            out.append(
                (
                    i,
                    Violation(
                        "aggregates",
                        f"{vm_label(inv, m.vm)} may not run in aggregates "
                        f"{', '.join(sorted(banned))}; {m.dst} is in them",
                        step.index,
                        (m.vm, m.dst),
                    ),
                )
            )
            continue
        if vm.allowed_aggregates and not set(vm.allowed_aggregates) & set(dst.aggregates):
            out.append(
                (
                    i,
                    Violation(
                        "aggregates",
                        f"{vm_label(inv, m.vm)} may only run in aggregates "
                        f"{', '.join(vm.allowed_aggregates)}; {m.dst} is in "
                        f"{', '.join(dst.aggregates) or 'none'}",
                        step.index,
                        (m.vm, m.dst),
                    ),
                )
            )


FAMILY = Family(
    name="aggregates",
    rules={
        "aggregates": "a VM with allowed_aggregates lands in one of them, never in a forbidden one"
    },
    migrations=_migrations,
    owns=lambda key: key.startswith("aggregates:"),
)
