"""Headroom as a function of which hosts are down, per headroom group: the wave phase's view.

When a host goes down its VMs leave, but (while they stay in its headroom group) the group's
total demand does not change. So the free capacity of a group at the end of a wave depends only
on which of its hosts are down, on the VMs of unavailable hosts evacuated so far and on the demand
shifted between groups:

    free(g, w) = free_now(g) - sum over available hosts of g down in w of (cap - stuck)
                 - movable demand of unavailable hosts of g upgraded by w
                 - net demand moved into g by w

and the requirement is `capacity.headroom`'s: the k largest effective capacities of the group's
available hosts that are up, or reserve_percent of their total. `evaluate` computes both for a
whole wave sequence with numpy; the CP-SAT wave model states the same equations linearly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from planner.capacity import BoolArray, IntArray, required_headroom
from solver.context import Context


@dataclass(frozen=True)
class Aggregates:
    ctx: Context
    # (G+1, H) membership of available hosts per group (row G: the pseudo-group)
    members: BoolArray
    base_free: IntArray  # (G+1, C) free capacity of each group's available hosts, now
    down_weight: IntArray  # (H, C) what a host takes from its group's free when down
    total_cap: IntArray  # (G+1, C)
    # per (g, c): available hosts of the group by effective capacity, largest first
    order: tuple[tuple[IntArray, ...], ...]

    @property
    def G(self) -> int:
        return self.ctx.G


def build_aggregates(ctx: Context, pad: IntArray | None = None) -> Aggregates:
    """With `pad`, each host to upgrade counts as taking that much more (per class) from its
    group when down: room left for packing VMs onto real hosts, which aggregates ignore."""
    G, C, H = ctx.G, ctx.C, ctx.H
    members = np.zeros((G + 1, H), dtype=bool)
    for g in range(G + 1):
        members[g] = ctx.available & (ctx.group_of == g)
    free0 = np.maximum(ctx.model.free, 0)
    base_free = np.stack([free0[members[g]].sum(axis=0) for g in range(G + 1)]).astype(np.int64)
    down_weight = np.where(ctx.available[:, None], ctx.cap - ctx.stuck_demand, 0).astype(np.int64)
    if pad is not None:
        down_weight = down_weight + np.where((ctx.available & ctx.is_todo)[:, None], pad, 0)
    total_cap = np.stack([ctx.cap[members[g]].sum(axis=0) for g in range(G + 1)]).astype(np.int64)
    order = tuple(
        tuple(
            np.flatnonzero(members[g])[np.argsort(-ctx.cap[members[g], c], kind="stable")].astype(
                np.int64
            )
            for c in range(C)
        )
        for g in range(G + 1)
    )
    return Aggregates(ctx, members, base_free.reshape(G + 1, C), down_weight, total_cap, order)


def required(agg: Aggregates, g: int, c: int, down: BoolArray) -> int:
    """Headroom required in group g, class c, with the hosts of `down` down: the core's rule
    (`capacity.required_headroom`) over the group's available hosts that are up."""
    ctx = agg.ctx
    rule = ctx.policy.headroom
    if rule.reserve_percent > 0:
        caps = ctx.cap[agg.members[g] & ~down, c]
    elif rule.failures <= 0:
        return 0
    else:
        # Only the k largest matter: walk the group's hosts, largest first, skipping those down.
        top: list[int] = []
        for h in agg.order[g][c]:
            if not down[h]:
                top.append(int(ctx.cap[h, c]))
                if len(top) == rule.failures:
                    break
        caps = np.asarray(top, dtype=np.int64)
    need_k, need_r = required_headroom(caps, rule)
    return max(need_k, need_r)


def evaluate(
    agg: Aggregates, waves: Sequence[Sequence[int]], shift: IntArray | None = None
) -> tuple[IntArray, IntArray]:
    """(free, required), each (W, G, C), at the end of every wave, assuming evacuees stay in
    their group except for `shift` (W, G+1, C): net demand moved into each group in each wave."""
    ctx = agg.ctx
    G, C = ctx.G, ctx.C
    W = len(waves)
    free = np.zeros((W, G, C), dtype=np.int64)
    req = np.zeros((W, G, C), dtype=np.int64)
    cum = agg.base_free[:G].copy()
    for w, hosts in enumerate(waves):
        down = np.zeros(ctx.H, dtype=bool)
        idx = np.asarray(hosts, dtype=np.int64)
        down[idx] = True
        # unavailable hosts: their movable VMs now sit on the group's available hosts
        for h in idx:
            g = int(ctx.group_of[h])
            if 0 <= g < G and not ctx.available[h]:
                cum[g] -= ctx.mov_demand[h]
        if shift is not None:
            cum -= shift[w, :G]
        now = cum.copy()
        for h in idx:
            g = int(ctx.group_of[h])
            if 0 <= g < G and ctx.available[h]:
                now[g] -= agg.down_weight[h]
        free[w] = now
        for g in range(G):
            for c in range(C):
                req[w, g, c] = required(agg, g, c, down)
    return free, req


class WaveBudget:
    """Incremental headroom test while a wave is being filled host by host (the heuristic)."""

    def __init__(self, agg: Aggregates, evacuated: IntArray) -> None:
        self.agg = agg
        ctx = agg.ctx
        self.free = agg.base_free[: ctx.G] - evacuated  # (G, C) before anyone goes down
        self.down = np.zeros(ctx.H, dtype=bool)
        self.req = np.array(
            [[required(agg, g, c, self.down) for c in range(ctx.C)] for g in range(ctx.G)],
            dtype=np.int64,
        ).reshape(ctx.G, ctx.C)

    def try_add(self, h: int) -> bool:
        """Take host h down too if headroom still holds (then keep it down)."""
        ctx = self.agg.ctx
        g = int(ctx.group_of[h])
        if not (0 <= g < ctx.G):
            self.down[h] = True
            return True
        if not ctx.available[h]:
            # Its VMs join the group's available hosts.
            new_free = self.free[g] - ctx.mov_demand[h]
            if np.any(new_free < self.req[g]):
                return False
            self.free[g] = new_free
            self.down[h] = True
            return True
        new_free = self.free[g] - self.agg.down_weight[h]
        self.down[h] = True
        new_req = np.array(
            [required(self.agg, g, c, self.down) for c in range(ctx.C)], dtype=np.int64
        )
        if np.any(new_free < new_req):
            self.down[h] = False
            return False
        self.free[g] = new_free
        self.req[g] = new_req
        return True
