"""Version order: no migration from a host that runs the target version (from the start, or
upgraded in an earlier wave) to one that does not; Nova refuses newer -> older. Every planner
keeps it by construction: a VM leaves only a host of the current wave, never an upgraded one."""

from __future__ import annotations

from planner.plan import Migration
from planner.rules.base import Family, Out, State, Violation, WaveStep, vm_label


def _migration(state: State, step: WaveStep, m: Migration, out: Out) -> None:
    current = state.host_of[m.vm]
    if current in state.upgraded and m.dst not in state.upgraded:
        out.append(
            Violation(
                "version",
                f"{vm_label(state.inv, m.vm)}: {current} is upgraded, {m.dst} is not (Nova "
                "refuses newer -> older)",
                step.index,
                (m.vm, current, m.dst),
            )
        )


FAMILY = Family(
    name="version",
    rules={"version": "no migration from an upgraded host to one that is not upgraded"},
    migration=_migration,
)
