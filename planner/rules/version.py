"""Version order: no migration from a host that runs the target version (from the start, or
upgraded in an earlier wave) to one that does not; Nova refuses newer -> older. Every planner
keeps it by construction: a VM leaves only a host of the current wave, never an upgraded one."""

from __future__ import annotations

from planner.plan import Migration
from planner.rules.base import Family, Numbered, State, Violation, WaveStep, vm_label


def _migrations(
    state: State, step: WaveStep, moves: list[tuple[int, Migration]], out: Numbered
) -> None:
    upgraded, host_of = state.upgraded, state.host_of
    for i, m in moves:
        current = host_of[m.vm]
        if current in upgraded and m.dst not in upgraded:
            out.append(
                (
                    i,
                    Violation(
                        "version",
                        f"{vm_label(state.inv, m.vm)}: {current} is upgraded, {m.dst} is not "
                        "(Nova refuses newer -> older)",
                        step.index,
                        (m.vm, current, m.dst),
                    ),
                )
            )


FAMILY = Family(
    name="version",
    rules={"version": "no migration from an upgraded host to one that is not upgraded"},
    migrations=_migrations,
)
