"""AZ pins: a VM pinned to an AZ lands in that AZ. Proofs name the pins of one AZ `az:<AZ>`.

Side by side, the new cloud's AZs are the old ones' names through the plan's AZ map (two old
AZs may merge into one): a move onto a compute of the new cloud is judged through the map, and
a cross-cloud move is left to the family `clouds` (`sbs_az`), its one home."""

from __future__ import annotations

from planner.plan import CROSS_CLOUD, Migration
from planner.rules.base import Family, Numbered, State, Violation, WaveStep, Words, vm_label
from planner.rules.clouds import membership


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
    mem = membership(state)
    amap: dict[str, str] = dict((state.plan.az_map if state.plan is not None else None) or {})
    for i, m in moves:
        vm = inv.vm(m.vm)
        if vm.az is None:
            continue
        dst = inv.host(m.dst)
        if mem is not None and m.method == CROSS_CLOUD:
            continue  # `sbs_az`
        want, got = vm.az, dst.az
        if mem is not None and mem.new_compute_at_start(m.dst, step.index):
            want = amap.get(vm.az, vm.az)  # inside the new cloud: its AZ names
            got = amap.get(dst.az, dst.az) if dst.az is not None else None
        if got == want:
            continue
        out.append(
            (
                i,
                Violation(
                    "az",
                    f"{vm_label(inv, m.vm)} is pinned to AZ {vm.az}; {m.dst} is in {dst.az}"
                    + (f" ({got} in the new cloud)" if got != dst.az else ""),
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
