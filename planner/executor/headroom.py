"""Headroom sampled during a wave, on the executor's own model of the state between snapshots: a
VM in flight counts on its destination (Placement holds both ends), a failed one returns to its
source, the wave's hosts are down until they are back. The least slack seen goes in the run's
final check; a breach is journaled and shown once per group and class."""

from __future__ import annotations

from typing import Any

import numpy as np

from planner.capacity import CapacityModel, headroom
from planner.executor.context import RunContext
from planner.executor.states import Ev, Op, VmRun
from planner.inventory import Inventory
from planner.policy import Policy


class HeadroomWatch:
    """The model of the state between snapshots, and the least slack seen."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self._cap: CapacityModel | None = None
        self._down: np.ndarray[Any, np.dtype[np.bool_]] | None = None
        self._policy: Policy = ctx.policy
        self._breached: set[tuple[str, str]] = set()
        self.min_slack: dict[str, int] = {}

    def start(self, view: Inventory, vpolicy: Policy, hosts: list[str]) -> None:
        """A wave (or a rollback) begins on `view`, with `hosts` down."""
        self._cap = CapacityModel(view)
        self._policy = vpolicy
        self._down = np.zeros(len(self._cap.host_names), dtype=bool)
        for h in hosts:
            i = self._cap.host_index.get(h)
            if i is not None:
                self._down[i] = True
        self.sample()

    def move(self, v: VmRun, *, forward: bool, gone: bool = False) -> None:
        """An in-flight VM counts on its destination (Placement holds both ends); a failed one
        returns to its source."""
        cap = self._cap
        if cap is None or v.vm not in cap.vm_index:
            return
        j = cap.vm_index[v.vm]
        target = v.dst if forward and not gone else v.src
        if target in cap.host_index and int(cap.vm_host[j]) != cap.host_index[target]:
            cap.move(j, cap.host_index[target])
        if forward:
            self.sample()

    def host_down(self, h: str) -> None:
        """A host enters maintenance (pipelined: one at a time, during the run)."""
        if self._cap is not None and self._down is not None and h in self._cap.host_index:
            self._down[self._cap.host_index[h]] = True
            self.sample()

    def host_back(self, h: str) -> None:
        if self._cap is not None and self._down is not None and h in self._cap.host_index:
            self._down[self._cap.host_index[h]] = False
            self.sample()

    def sample(self) -> None:
        if self._cap is None:
            return
        rows = headroom(self._cap, self._policy.headroom, self._down)
        for r in rows:
            key = f"{r.group}/{r.rc}"
            self.min_slack[key] = min(self.min_slack.get(key, r.slack), r.slack)
            if not r.ok and (r.group, r.rc) not in self._breached:
                self._breached.add((r.group, r.rc))
                msg = f"{r.group}: {r.rc} free {r.free} < {r.required} required"
                self.ctx.log(Ev.NOTE, Op.HEADROOM, ok=False, group=r.group, rc=r.rc, message=msg)
                self.ctx.ui.warn(f"headroom: {msg}")
            elif r.ok:
                self._breached.discard((r.group, r.rc))
