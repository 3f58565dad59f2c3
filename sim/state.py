"""Capacity and headroom kept incrementally, event by event.

The simulator changes one host's usage (a migration starts or ends) or one host's availability
(maintenance, enable, crash) at a time. Recomputing `capacity.headroom` after each change would
cost O(hosts) per event; this state updates only what changed and gives the same numbers: per scope
group and class, free = sum of max(capacity - used, 0) over available hosts, and required =
max(the k largest capacities, ceil(reserve% of their total)). `tests/test_sim_state.py` checks it
against `capacity.CapacityModel` + `capacity.headroom` on random states.

Vectors over the resource classes are packed in one Python int (`pack`): class c in bits
[64c, 64c + 64), holding value + 2^62. A migration's start then changes a host's room and its
group's free capacity with one subtraction each instead of a loop over the classes, and "is any
class short" is one mask test: a field's bit 62 is set exactly when its value is >= 0. Values
must stay within +-2^62 (about 4.6e18), far beyond any cloud's capacity.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Sequence

from planner.capacity import CapacityModel, scope_groups
from planner.policy import Headroom

W = 64  # bits per class
OFF = 1 << 62  # offset of a field's value
_FIELD = (1 << W) - 1


def pack(values: Sequence[int], offset: bool = True) -> int:
    """Values as one int, class c in bits [64c, 64c + 64); with `offset`, each field holds its
    value + 2^62 (any sign), without it the value itself (>= 0)."""
    x = 0
    for c, v in enumerate(values):
        x |= (v + OFF if offset else v) << (W * c)
    return x


def unpack(x: int, n: int, offset: bool = True) -> list[int]:
    """The n values `pack` packed."""
    sub = OFF if offset else 0
    return [((x >> (W * c)) & _FIELD) - sub for c in range(n)]


def sign_mask(values: Sequence[int]) -> int:
    """Bit 62 of the field of each class whose value is > 0: `x & m == m` then says that every
    such class of the offset-packed x is >= 0."""
    m = 0
    for c, v in enumerate(values):
        if v > 0:
            m |= OFF << (W * c)
    return m


class HeadroomState:
    """Room (capacity - usage) per host and class, availability per host, and the headroom sums
    per scope group, the vectors packed (`room`, `free_p`: offset; `req_p`: plain)."""

    def __init__(self, model: CapacityModel, rule: Headroom) -> None:
        names, group = scope_groups(model.inventory, rule.scope)
        self.groups: tuple[str, ...] = tuple(names)
        self.classes: tuple[str, ...] = model.classes
        self.k = rule.failures
        self.pct = rule.reserve_percent
        C = len(self.classes)
        self.n_classes = C
        self.top = pack([0] * C)  # bit 62 of every field: all values >= 0
        self.cap: list[list[int]] = model.cap.tolist()
        used: list[list[int]] = model.used.tolist()
        self.room: list[int] = [
            pack([c - u for c, u in zip(cap, us, strict=True)])
            for cap, us in zip(self.cap, used, strict=True)
        ]
        self.group_of: list[int] = [int(g) for g in group]
        self.avail: list[bool] = [bool(a) for a in model.available]
        G = len(self.groups)
        self.free_p: list[int] = [self.top] * G
        self.total: list[list[int]] = [[0] * C for _ in range(G)]
        self.caps: list[list[list[int]]] = [[[] for _ in range(C)] for _ in range(G)]
        for h, g in enumerate(self.group_of):
            if g >= 0 and self.avail[h]:
                self._join(h, g)
        self.required: list[list[int]] = [
            [self._required(g, c) for c in range(C)] for g in range(G)
        ]
        self.req_p: list[int] = [pack(r, offset=False) for r in self.required]

    # -- views ----------------------------------------------------------------------------------
    @property
    def used(self) -> list[list[int]]:
        """Usage per host and class (a copy)."""
        C = self.n_classes
        return [
            [c - r for c, r in zip(cap, unpack(room, C), strict=True)]
            for cap, room in zip(self.cap, self.room, strict=True)
        ]

    @property
    def free(self) -> list[list[int]]:
        """Free capacity per group and class (a copy)."""
        return [unpack(f, self.n_classes) for f in self.free_p]

    def free_of(self, g: int) -> list[int]:
        return unpack(self.free_p[g], self.n_classes)

    def room_of(self, h: int) -> list[int]:
        return unpack(self.room[h], self.n_classes)

    # -- internals ------------------------------------------------------------------------------
    def copy(self) -> HeadroomState:
        """An independent copy (the engine copies a prepared initial state for each run)."""
        new = object.__new__(HeadroomState)
        new.__dict__.update(self.__dict__)
        new.room = self.room[:]
        new.avail = self.avail[:]
        new.free_p = self.free_p[:]
        new.req_p = self.req_p[:]
        new.required = [r[:] for r in self.required]
        new.total = [t[:] for t in self.total]
        new.caps = [[lst[:] for lst in per_class] for per_class in self.caps]
        return new

    def _positive(self, h: int) -> int:
        """Packed (plain) max(room, 0) of host h: what it adds to its group's free capacity."""
        r = self.room[h]
        if r & self.top == self.top:  # no class over capacity
            return r - self.top
        return pack([max(x, 0) for x in self.room_of(h)], offset=False)

    def _join(self, h: int, g: int) -> None:
        cap, total, caps = self.cap[h], self.total[g], self.caps[g]
        self.free_p[g] += self._positive(h)
        for c in range(len(cap)):
            total[c] += cap[c]
            insort(caps[c], cap[c])

    def _leave(self, h: int, g: int) -> None:
        cap, total, caps = self.cap[h], self.total[g], self.caps[g]
        self.free_p[g] -= self._positive(h)
        for c in range(len(cap)):
            total[c] -= cap[c]
            lst = caps[c]
            del lst[bisect_left(lst, cap[c])]

    def _required(self, g: int, c: int) -> int:
        lst = self.caps[g][c]
        need_k = sum(lst[-self.k :]) if self.k > 0 and lst else 0
        need_r = math.ceil(self.total[g][c] * self.pct / 100.0 - 1e-9)
        return max(need_k, need_r)

    def freed(self, hi: int, lo: int) -> int:
        """Packed (plain) per class max(hi, 0) - max(lo, 0), for rooms hi >= lo: what a host's
        free capacity loses when its room falls from hi to lo."""
        C = self.n_classes
        return pack(
            [max(a, 0) - max(b, 0) for a, b in zip(unpack(hi, C), unpack(lo, C), strict=True)],
            offset=False,
        )

    def _counted(self, h: int) -> int:
        """h's group if h's room counts in its free capacity, else -1."""
        g = self.group_of[h]
        return g if g >= 0 and self.avail[h] else -1

    # -- changes --------------------------------------------------------------------------------
    def add(self, h: int, demand: Sequence[int]) -> bool:
        """Usage of h grows by demand; False when a class it needs is now over capacity."""
        return self.add_packed(h, pack(demand, offset=False), sign_mask(demand))

    def add_packed(self, h: int, dp: int, mask: int) -> bool:
        """`add` with the demand packed (plain) and its `sign_mask`."""
        before = self.room[h]
        after = self.room[h] = before - dp
        g = self._counted(h)
        if after & mask == mask:  # every class it needs still has room: free falls by it
            if g >= 0:
                self.free_p[g] -= dp
            return True
        if g >= 0:
            self.free_p[g] -= self.freed(before, after)
        return False

    def remove(self, h: int, demand: Sequence[int]) -> None:
        self.remove_packed(h, pack(demand, offset=False), sign_mask(demand))

    def remove_packed(self, h: int, dp: int, mask: int) -> None:
        before = self.room[h]
        after = self.room[h] = before + dp
        g = self._counted(h)
        if g < 0:
            return
        if before & mask == mask:  # it had room in every class it used: free rises by it
            self.free_p[g] += dp
            return
        self.free_p[g] += self.freed(after, before)

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
            # _required for each class, inlined: this runs twice per host in every simulated run.
            req, caps, total, k, pct = (
                self.required[g],
                self.caps[g],
                self.total[g],
                self.k,
                self.pct,
            )
            for c in range(len(req)):
                lst = caps[c]
                need_k = sum(lst[-k:]) if k > 0 and lst else 0
                need_r = math.ceil(total[c] * pct / 100.0 - 1e-9)
                req[c] = need_k if need_k > need_r else need_r
            self.req_p[g] = pack(req, offset=False)
        else:
            self.avail[h] = flag

    # -- queries --------------------------------------------------------------------------------
    def group_ok(self, g: int) -> bool:
        return (self.free_p[g] - self.req_p[g]) & self.top == self.top

    def short(self, g: int) -> list[int]:
        """Classes of group g whose free capacity is below the requirement."""
        free, req = self.free_of(g), self.required[g]
        return [c for c in range(len(req)) if free[c] < req[c]]

    def over(self, h: int) -> list[int]:
        return [c for c, r in enumerate(self.room_of(h)) if r < 0]
