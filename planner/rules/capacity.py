"""Capacity: no host holds more than its effective capacity in any class (Placement's
`floor((total - reserved) * ratio)`). Usage only grows on destinations, so at a wave's end only
the hosts that received VMs are judged; before any wave, every host."""

from __future__ import annotations

import numpy as np

from planner.capacity import format_amount
from planner.rules.base import Family, Out, State, Violation, WaveStep


def _cloud(state: State, out: Out) -> None:
    m = state.model
    over = m.over_capacity()
    for i, c in zip(*np.nonzero(over), strict=True):
        rc = m.classes[c]
        host = m.host_names[i]
        out.append(
            Violation(
                "inventory.capacity",
                f"{host} holds {format_amount(rc, m.used[i, c])} of {rc}, more than its effective "
                f"capacity {format_amount(rc, m.cap[i, c])}",
                objects=(host,),
                numbers={"used": int(m.used[i, c]), "capacity": int(m.cap[i, c])},
            )
        )


def _moved(state: State, step: WaveStep, out: Out) -> None:
    m = state.model
    for host in sorted({dst for dst, _ in step.moved.values()}):
        i = m.host_index[host]
        for c in np.flatnonzero(m.used[i] > m.cap[i]):
            rc = m.classes[c]
            out.append(
                Violation(
                    "capacity",
                    f"{host}: {rc} used {format_amount(rc, m.used[i, c])} > effective capacity "
                    f"{format_amount(rc, m.cap[i, c])}",
                    step.index,
                    (host,),
                    {"used": int(m.used[i, c]), "capacity": int(m.cap[i, c])},
                )
            )


FAMILY = Family(
    name="capacity",
    rules={
        "capacity": "no host holds more than its effective capacity in any class",
        "inventory.capacity": "the inventory has no host over capacity",
    },
    cloud=_cloud,
    moved=_moved,
)
