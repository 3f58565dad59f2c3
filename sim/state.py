"""Capacity and headroom kept incrementally, event by event.

The simulator changes one host's usage (a migration starts or ends) or one host's availability
(maintenance, enable, crash) at a time. Recomputing `capacity.headroom` after each change would
cost O(hosts) per event; this state updates only what changed and gives the same numbers: per scope
group and class, free = sum of max(capacity - used, 0) over available hosts, and required =
max(the k largest capacities, ceil(reserve% of their total)). `tests/test_sim_state.py` checks it
against `capacity.CapacityModel` + `capacity.headroom` on random states.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort

from planner.capacity import CapacityModel, scope_groups
from planner.policy import Headroom


class HeadroomState:
    """Usage per host and class, availability per host, and the headroom sums per scope group."""

    def __init__(self, model: CapacityModel, rule: Headroom) -> None:
        names, group = scope_groups(model.inventory, rule.scope)
        self.groups: tuple[str, ...] = tuple(names)
        self.classes: tuple[str, ...] = model.classes
        self.k = rule.failures
        self.pct = rule.reserve_percent
        self.cap: list[list[int]] = model.cap.tolist()
        self.used: list[list[int]] = model.used.tolist()
        self.group_of: list[int] = [int(g) for g in group]
        self.avail: list[bool] = [bool(a) for a in model.available]
        G, C = len(self.groups), len(self.classes)
        self.free: list[list[int]] = [[0] * C for _ in range(G)]
        self.total: list[list[int]] = [[0] * C for _ in range(G)]
        self.caps: list[list[list[int]]] = [[[] for _ in range(C)] for _ in range(G)]
        for h, g in enumerate(self.group_of):
            if g >= 0 and self.avail[h]:
                self._join(h, g)
        self.required: list[list[int]] = [
            [self._required(g, c) for c in range(C)] for g in range(G)
        ]

    # -- internals ------------------------------------------------------------------------------
    def _join(self, h: int, g: int) -> None:
        cap, used, free, total, caps = (
            self.cap[h],
            self.used[h],
            self.free[g],
            self.total[g],
            self.caps[g],
        )
        for c in range(len(cap)):
            f = cap[c] - used[c]
            if f > 0:
                free[c] += f
            total[c] += cap[c]
            insort(caps[c], cap[c])

    def _leave(self, h: int, g: int) -> None:
        cap, used, free, total, caps = (
            self.cap[h],
            self.used[h],
            self.free[g],
            self.total[g],
            self.caps[g],
        )
        for c in range(len(cap)):
            f = cap[c] - used[c]
            if f > 0:
                free[c] -= f
            total[c] -= cap[c]
            lst = caps[c]
            del lst[bisect_left(lst, cap[c])]

    def _required(self, g: int, c: int) -> int:
        lst = self.caps[g][c]
        need_k = sum(lst[-self.k :]) if self.k > 0 and lst else 0
        need_r = math.ceil(self.total[g][c] * self.pct / 100.0 - 1e-9)
        return max(need_k, need_r)

    # -- changes --------------------------------------------------------------------------------
    def add(self, h: int, demand: list[int]) -> bool:
        """Usage of h grows by demand; False when h is now over capacity in some class."""
        cap, used = self.cap[h], self.used[h]
        g = self.group_of[h]
        free = self.free[g] if g >= 0 and self.avail[h] else None
        ok = True
        for c, n in enumerate(demand):
            if n:
                before = cap[c] - used[c]
                used[c] += n
                if before < n:
                    ok = False
                    if free is not None and before > 0:
                        free[c] -= before  # free was max(before, 0), now 0
                elif free is not None:
                    free[c] -= n
        return ok

    def remove(self, h: int, demand: list[int]) -> None:
        cap, used = self.cap[h], self.used[h]
        g = self.group_of[h]
        free = self.free[g] if g >= 0 and self.avail[h] else None
        for c, n in enumerate(demand):
            if n:
                before = cap[c] - used[c]
                used[c] -= n
                if free is not None:
                    after = before + n
                    if before >= 0:
                        free[c] += n
                    elif after > 0:
                        free[c] += after

    def set_available(self, h: int, flag: bool) -> None:
        if self.avail[h] == flag:
            return
        g = self.group_of[h]
        if g >= 0:
            if flag:
                self.avail[h] = True
                self._join(h, g)
            else:
                self._leave(h, g)
                self.avail[h] = False
            req = self.required[g]
            for c in range(len(req)):
                req[c] = self._required(g, c)
        else:
            self.avail[h] = flag

    # -- queries --------------------------------------------------------------------------------
    def group_ok(self, g: int) -> bool:
        free, req = self.free[g], self.required[g]
        return all(free[c] >= req[c] for c in range(len(req)))

    def short(self, g: int) -> list[int]:
        """Classes of group g whose free capacity is below the requirement."""
        free, req = self.free[g], self.required[g]
        return [c for c in range(len(req)) if free[c] < req[c]]

    def over(self, h: int) -> list[int]:
        cap, used = self.cap[h], self.used[h]
        return [c for c in range(len(cap)) if used[c] > cap[c]]
