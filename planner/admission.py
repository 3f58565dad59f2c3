"""Admission control: may this host enter maintenance now? One function for every caller that runs
a plan host by host (the simulator on its simulated state, the executor on the live one).

The plan's waves are what the checker proves safe one after another (lock-step). Pipelined, a host
of a later wave may start while others are still in maintenance, if, with the hosts in maintenance
now plus this one, every rule still holds on the state as it will be once their evacuees have
landed:

- `size`, `size_az`, `size_rack`: at most max_hosts_per_wave hosts in maintenance at once (and the
  per-AZ / per-rack limits);
- `order_first`, `order_last`: a host policy.first does not select waits until every host it
  selects has entered maintenance; a host policy.last selects, until every other host has;
- `order`: a host waits until every host of an earlier wave that sends it VMs has drained, and
  its own evacuees' destinations are up, not in maintenance, and, when they are hosts of earlier
  waves (upgraded there), back in service;
- `ha:<group>`: the HA group keeps min_available hosts available;
- `migrations_per_wave`: the migrations of the hosts in maintenance still to finish, this host's
  included, at most max_migrations_per_wave;
- `capacity`: every destination holds what it has and what is coming to it;
- `headroom:<group>:<rc>`: N+k headroom over the hosts available, with the arrivals counted.

`execution: lockstep` is admission that also waits for every host of the earlier waves to be back
(`lockstep`).

The caller keeps an `AdmissionState` (`AdmissionState.of(inventory, plan)`), asks `admit(state,
host)`, and tells the state what happened: `enter` (the host was disabled), `drained` (its
migrations are all over), `leave` (back in service), `stayed` (a migration ended with its VM still
on the source), `lost` (the host crashed). Each call is cheap: the state keeps per scope group the
sorted capacities and the free capacity of the hosts available, so a question costs the host's own
migrations, not the cloud.
"""

from __future__ import annotations

import copy
import math
from bisect import bisect_left, insort
from collections import defaultdict
from dataclasses import dataclass
from typing import Final

from planner.capacity import CapacityModel, format_amount
from planner.inventory import Inventory
from planner.plan import Plan
from planner.policy import select_hosts
from planner.rules import headroom as headroom_family
from planner.rules import migrations_per_wave as mpw_family
from planner.rules import wave_size as size_family
from planner.rules.order import FIRST, LAST, tier_of

# A host's state, as admission sees it.
PENDING: Final = 0  # in the plan, not entered yet
IN: Final = 1  # in maintenance, its migrations running
DRAINED: Final = 2  # in maintenance, nothing left to move off it
DONE: Final = 3  # back in service
LOST: Final = 4  # crashed, or never coming back
OUTSIDE: Final = 5  # not in the plan


@dataclass(frozen=True, slots=True)
class Admit:
    """The host may enter maintenance now."""

    host: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """Not now: the rule that says no (a family's key, as proofs name it) and why, in words."""

    host: str
    rule: str
    words: str
    # The host whose change of state may lift it ("": any change may): until that host enters
    # maintenance, drains, comes back or is lost, asking again gives the same answer.
    until: str = ""

    def __str__(self) -> str:
        return f"{self.rule}: {self.words}"


class AdmissionState:
    """What admission needs to know, kept up to date by the caller (see the module's docstring).
    Build it with `AdmissionState.of`."""

    def __init__(self, inv: Inventory, plan: Plan) -> None:
        policy = self.policy = plan.policy
        cm = CapacityModel(inv)
        self.names: tuple[str, ...] = cm.host_names
        self.index: dict[str, int] = cm.host_index
        self.classes: tuple[str, ...] = cm.classes
        H, C = len(self.names), len(self.classes)
        self.cap: list[list[int]] = cm.cap.tolist()
        self.used: list[list[int]] = cm.used.tolist()  # as once every admitted move has landed
        self.demand: list[list[int]] = cm.demand.tolist()
        self.vm_index = cm.vm_index
        hosts = inv.hosts
        self.status: list[int] = [OUTSIDE] * H
        self.wave: list[int] = [-1] * H
        self.lockstep = policy.execution == "lockstep"
        self.wave_hosts: list[list[int]] = []
        self.wave_left: list[int] = []  # per wave: its hosts not back yet
        # Per source host: its planned migrations (VM, destination), its wave's.
        self.moves: list[list[tuple[int, int]]] = [[] for _ in range(H)]
        # Per host: the hosts of earlier waves that send it VMs and have not drained.
        self.senders: list[set[int]] = [set() for _ in range(H)]
        for wi, w in enumerate(plan.waves):
            members = [self.index[h] for h in dict.fromkeys(w.hosts) if h in self.index]
            self.wave_hosts.append(members)
            self.wave_left.append(len(members))
            for h in members:
                if self.wave[h] < 0:
                    self.wave[h] = wi
                    self.status[h] = PENDING
            for m in w.migrations:
                s, d = self.index.get(m.src), self.index.get(m.dst)
                v = self.vm_index.get(m.vm)
                if s is None or d is None or v is None:
                    continue
                self.moves[s].append((v, d))
        # Per source host, what its evacuees add to each destination (per class), and those
        # destinations: fixed by the plan, summed once.
        self.inc: list[dict[int, list[int]]] = [{} for _ in range(H)]
        for s in range(H):
            acc = self.inc[s]
            for v, d in self.moves[s]:
                if self.wave[d] > self.wave[s] >= 0:
                    self.senders[d].add(s)
                row = acc.get(d)
                if row is None:
                    acc[d] = list(self.demand[v])
                else:
                    for c, n in enumerate(self.demand[v]):
                        row[c] += n
        self.n_moves: list[int] = [len(m) for m in self.moves]
        self._own = True  # moves, inc, n_moves not shared with a copy (see `_forget`)
        # Per source host, its destinations of later waves (which wait for it to drain).
        self.feeds: list[list[int]] = [
            [d for d in self.inc[s] if self.wave[d] > self.wave[s] >= 0] for s in range(H)
        ]
        # Refusals that stand while one host stays in some states: host -> (that host, those
        # states as a bit mask, the refusal); asked again, admission answers from here.
        self.memo: dict[int, tuple[int, int, Refusal]] = {}
        # Wave size, per AZ and rack.
        self.n_in = 0
        self.max_in = policy.max_hosts_per_wave
        self.scoped: list[tuple[str, int, list[str | None], dict[str | None, int]]] = [
            (attr, limit, [getattr(h, attr) for h in hosts], defaultdict(int))
            for attr, limit in size_family.limits(policy)
        ]
        # Order tiers: pending hosts per tier.
        first, last = select_hosts(inv, policy.first), select_hosts(inv, policy.last)
        self.tier: list[int] = [tier_of(n, first, last) for n in self.names]
        self.tier_pending: list[int] = [0, 0, 0]
        # per tier, its hosts of the plan in plan order (whom a tier's refusal waits for)
        self.tier_hosts: list[list[int]] = [[], [], []]
        for wi, members in enumerate(self.wave_hosts):
            for h in members:
                if self.wave[h] == wi:  # a host's first wave only
                    self.tier_hosts[self.tier[h]].append(h)
        for h in range(H):
            if self.status[h] == PENDING:
                self.tier_pending[self.tier[h]] += 1
        # HA groups: members available (enabled, up, not in maintenance).
        self.avail0: list[bool] = [h.available for h in hosts]
        self.ha: list[tuple[str, list[int], int]] = [
            (g.name, [self.index[h] for h in g.hosts if h in self.index], g.min_available)
            for g in inv.ha_groups
        ]
        self.ha_of: list[list[int]] = [[] for _ in range(H)]
        self.ha_up: list[int] = []
        for i, (_, members, _) in enumerate(self.ha):
            for h in members:
                self.ha_of[h].append(i)
            self.ha_up.append(sum(1 for h in members if self.avail0[h]))
        # Migrations of the hosts in maintenance still to finish.
        self.in_flight = 0
        self.max_mig = policy.max_migrations_per_wave
        # Headroom per scope group: the available hosts' capacities (sorted, per class), their
        # total and their free capacity (sum of max(cap - used, 0)).
        self.rule = policy.headroom
        names, group = cm.scope_groups(policy.headroom.scope)
        self.groups: tuple[str, ...] = names
        self.group_of: list[int] = [int(g) for g in group]
        self.counted: list[bool] = [
            bool(a) and g >= 0 for a, g in zip(cm.available, group, strict=True)
        ]
        # countable: a compute host of a scope group, enabled and up (counted when available).
        self.countable: list[bool] = list(self.counted)
        G = len(names)
        self.caps: list[list[list[int]]] = [[[] for _ in range(C)] for _ in range(G)]
        self.total: list[list[int]] = [[0] * C for _ in range(G)]
        self.free: list[list[int]] = [[0] * C for _ in range(G)]
        for h in range(H):
            if self.counted[h]:
                self._join(h)

    @classmethod
    def of(cls, inv: Inventory, plan: Plan) -> AdmissionState:
        """The state before the plan's first host enters maintenance."""
        return cls(inv, plan)

    def copy(self) -> AdmissionState:
        """An independent copy (what the plan fixes is shared): build once, copy per run."""
        new = copy.copy(self)
        new.status = list(self.status)
        new.used = [list(u) for u in self.used]
        new.senders = [set(x) for x in self.senders]
        new.wave_left = list(self.wave_left)
        new.scoped = [(a, n, vals, defaultdict(int, cnt)) for a, n, vals, cnt in self.scoped]
        new.tier_pending = list(self.tier_pending)
        new.ha_up = list(self.ha_up)
        new.counted = list(self.counted)
        new.countable = list(self.countable)
        new.caps = [[list(x) for x in g] for g in self.caps]
        new.total = [list(x) for x in self.total]
        new.free = [list(x) for x in self.free]
        new.memo = {}
        new._own = self._own = False
        return new

    # -- what the caller reports ------------------------------------------------------------------
    def enter(self, host: str) -> None:
        """The host is disabled: in maintenance, its evacuees on their way."""
        h = self.index[host]
        self.memo.pop(h, None)
        self.status[h] = IN
        self.n_in += 1
        for _, _, values, count in self.scoped:
            count[values[h]] += 1
        self.tier_pending[self.tier[h]] -= 1
        if self.avail0[h]:
            for i in self.ha_of[h]:
                self.ha_up[i] -= 1
        self.in_flight += self.n_moves[h]
        if self.counted[h]:
            self._part(h)
        # (inline: a host of the big plans sends to tens of destinations, a run admits thousands)
        used, cap, counted, group_of, free = (
            self.used,
            self.cap,
            self.counted,
            self.group_of,
            self.free,
        )
        mine = used[h]
        C = len(mine)
        for d, dem in self.inc[h].items():
            ud, cd = used[d], cap[d]
            fr = free[group_of[d]] if counted[d] else None
            for c in range(C):
                n = dem[c]
                if n:
                    mine[c] -= n
                    b = cd[c] - ud[c]
                    ud[c] += n
                    if fr is not None:
                        a = b - n
                        fr[c] -= (b if b > 0 else 0) - (a if a > 0 else 0)

    def drained(self, host: str) -> None:
        """Nothing left to move off the host (its migrations ended, moved or not)."""
        h = self.index[host]
        if self.status[h] != IN:
            return
        self.status[h] = DRAINED
        self.in_flight -= self.n_moves[h]
        for d in self.feeds[h]:
            self.senders[d].discard(h)

    def leave(self, host: str) -> None:
        """The host is back in service (upgraded or rolled back)."""
        h = self.index[host]
        if self.status[h] == IN:
            self.drained(host)
        if self.status[h] != DRAINED:
            return
        self.status[h] = DONE
        self._out(h)
        if self.avail0[h]:
            for i in self.ha_of[h]:
                self.ha_up[i] += 1
        if self.countable[h] and not self.counted[h]:
            self._join(h)

    def lost(self, host: str) -> None:
        """The host crashed: it is no longer available, and never comes back in this run."""
        h = self.index[host]
        was = self.status[h]
        if was == LOST:
            return
        if was == PENDING:
            self.tier_pending[self.tier[h]] -= 1
            self.wave_left[self.wave[h]] -= 1
        if was == IN:
            self.drained(host)
        if was in (IN, DRAINED):
            self._out(h)
        elif self.avail0[h]:
            for i in self.ha_of[h]:
                self.ha_up[i] -= 1
        if self.counted[h] and was not in (IN, DRAINED):
            self._part(h)
        self.counted[h] = self.countable[h] = False
        self.status[h] = LOST
        for d in range(len(self.senders)):
            self.senders[d].discard(h)

    def stayed(self, vm: str, src: str, dst: str) -> None:
        """A migration ended with its VM still on its source (aborted, or failed for good)."""
        v = self.vm_index[vm]
        dem = self.demand[v]
        d = self.index[dst]
        self._add(d, dem, -1)
        self._add(self.index[src], dem, 1)
        self._forget(v, d)

    def _forget(self, v: int, d: int) -> None:
        """VM v never reached d: d's own move of it (planned in a later wave) is not made, nor
        the moves after that one, so they add nothing to their destinations (counted, they would
        hold room there for ever: a later host refused for capacity with nothing in maintenance,
        a stalled run). Each such d waits for the host that was to send it v: not entered yet."""
        while self.status[d] == PENDING:
            mine = self.moves[d]
            at = next((i for i, (u, _) in enumerate(mine) if u == v), -1)
            if at < 0:
                return
            if not self._own:  # the plan's moves are shared by the copies: this run's own now
                self.moves, self.inc = list(self.moves), list(self.inc)
                self.n_moves = list(self.n_moves)
                self._own = True
            e = mine[at][1]
            self.moves[d] = mine[:at] + mine[at + 1 :]
            self.n_moves[d] -= 1
            inc = {x: list(row) for x, row in self.inc[d].items()}
            row = inc[e]
            for c, n in enumerate(self.demand[v]):
                row[c] -= n
            if not any(row):
                del inc[e]
            self.inc[d] = inc
            d = e

    # -- helpers ----------------------------------------------------------------------------------
    def _out(self, h: int) -> None:
        self.n_in -= 1
        for _, _, values, count in self.scoped:
            count[values[h]] -= 1
        w = self.wave[h]
        if w >= 0:
            self.wave_left[w] -= 1

    def _room(self, h: int, c: int) -> int:
        r = self.cap[h][c] - self.used[h][c]
        return r if r > 0 else 0

    def _join(self, h: int) -> None:
        g = self.group_of[h]
        for c in range(len(self.classes)):
            insort(self.caps[g][c], self.cap[h][c])
            self.total[g][c] += self.cap[h][c]
            self.free[g][c] += self._room(h, c)
        self.counted[h] = True

    def _part(self, h: int) -> None:
        g = self.group_of[h]
        for c in range(len(self.classes)):
            lst = self.caps[g][c]
            del lst[bisect_left(lst, self.cap[h][c])]
            self.total[g][c] -= self.cap[h][c]
            self.free[g][c] -= self._room(h, c)
        self.counted[h] = False

    def _add(self, h: int, dem: list[int], sign: int) -> None:
        """`dem` more (sign 1) or less (-1) counts on h; its group's free capacity follows."""
        used, cap = self.used[h], self.cap[h]
        if not self.counted[h]:
            for c in range(len(dem)):
                used[c] += sign * dem[c]
            return
        free = self.free[self.group_of[h]]
        for c in range(len(dem)):
            n = dem[c]
            if n:
                before = cap[c] - used[c]
                used[c] += sign * n
                after = cap[c] - used[c]
                free[c] += (after if after > 0 else 0) - (before if before > 0 else 0)

    def required(self, g: int, c: int, without: list[int]) -> int:
        """The headroom group g requires in class c, its available hosts less `without` (hosts
        of g counted now): `planner.capacity.required_headroom` on the sorted capacities, kept
        incrementally (the k largest from the top of the list)."""
        lst = self.caps[g][c]
        k = self.rule.failures
        total = self.total[g][c]
        need_k = 0
        if not without:
            if k > 0 and lst:
                need_k = sum(lst[-k:]) if k > 1 else lst[-1]
        else:
            out = sorted((self.cap[x][c] for x in without), reverse=True)
            total -= sum(out)
            if k > 0 and lst:  # the k largest once `out` is taken away (each value once)
                top = lst[-(k + len(out)) :]
                for x in out:
                    del top[bisect_left(top, x)]
                need_k = sum(top[-k:])
        need_r = math.ceil(total * self.rule.reserve_percent / 100.0 - 1e-9)
        return need_k if need_k > need_r else need_r


def admit(state: AdmissionState, host: str) -> Admit | Refusal:
    """Whether `host` may enter maintenance now, on the state the caller keeps (see the module's
    docstring for the rules, in the order they are asked)."""
    st = state
    h = st.index.get(host)
    if h is None or st.status[h] != PENDING:
        return Refusal(host, "state", "not a host of the plan waiting for its maintenance")
    w = st.wave[h]
    if st.lockstep:
        for e in range(w):
            if st.wave_left[e]:
                return Refusal(host, "lockstep", f"execution lockstep: wave {e + 1} is not over")
    if st.n_in >= st.max_in:
        return Refusal(
            host,
            "size",
            f"{st.n_in} hosts in maintenance, {size_family.words(st.policy).rule}",
        )
    for attr, limit, values, count in st.scoped:
        key = values[h]
        if key is not None and count[key] >= limit:
            return Refusal(
                host,
                f"size_{attr}",
                f"{count[key]} hosts of {attr} {key} in maintenance, "
                f"{size_family.words_per(attr, limit).rule}",
            )
    tier = st.tier[h]
    # (both stand until the tier's last host waiting enters, or is lost: the caller parks it)
    if tier != FIRST and st.tier_pending[FIRST]:
        return Refusal(
            host,
            "order_first",
            f"{st.tier_pending[FIRST]} host(s) policy.first selects have not entered maintenance",
            _last_pending(st, FIRST),
        )
    if tier == LAST and st.tier_pending[1]:
        return Refusal(
            host,
            "order_last",
            f"policy.last selects it: {st.tier_pending[1]} other host(s) have not entered "
            "maintenance",
            _last_pending(st, 1),
        )
    memo = st.memo.get(h)
    if memo is not None:
        b, stands, refusal = memo
        if (stands >> st.status[b]) & 1:
            return refusal
    if st.senders[h]:
        s = min(st.senders[h])
        why = f"{st.names[s]} (wave {st.wave[s] + 1}) still has VMs to send it"
        return _hang(st, h, s, why, _SENDING)
    for d in st.inc[h]:
        sd = st.status[d]
        if sd in (IN, DRAINED, LOST) or not st.avail0[d]:
            inside = sd in (IN, DRAINED)
            why = "is in maintenance" if inside else "is down"
            stands = _INSIDE if inside else 1 << sd
            return _hang(st, h, d, f"its evacuees' destination {st.names[d]} {why}", stands)
        if sd == PENDING and st.wave[d] < w:
            return _hang(
                st,
                h,
                d,
                f"its evacuees' destination {st.names[d]} (wave {st.wave[d] + 1}) is not "
                "upgraded yet",
                _NOT_BACK,
            )
    if st.avail0[h]:
        for i in st.ha_of[h]:
            name, members, need = st.ha[i]
            if st.ha_up[i] - 1 < need:
                return Refusal(
                    host,
                    f"ha:{name}",
                    f"HA group {name}: {st.ha_up[i]} of {len(members)} hosts available, "
                    f"min_available is {need}",
                )
    if st.max_mig is not None and st.in_flight + st.n_moves[h] > st.max_mig:
        return Refusal(
            host,
            mpw_family.KEY,
            f"{st.in_flight} migrations of the hosts in maintenance still to finish, "
            f"{st.n_moves[h]} more would pass {mpw_family.words(st.policy).rule}",
        )
    # A wave's hosts one at a time never need more than the wave at once, which the checker
    # proved: a wave-mate still up adds its whole capacity to the free capacity (its VMs are
    # still home) and at most that to what N+k or reserve_percent require.
    return _room_for(st, host, h) or Admit(host)


def _last_pending(st: AdmissionState, tier: int) -> str:
    """The tier's last host (plan order) still waiting to enter: while it waits, so does every
    host the tier's order refuses."""
    for x in reversed(st.tier_hosts[tier]):
        if st.status[x] == PENDING:
            return st.names[x]
    return ""


# The states of the host an `order` refusal hangs on in which it still stands (bit masks): a
# sender until it drains, a destination of an earlier wave until it is back, one in maintenance
# until it is back (asked again meanwhile, the answer comes from the memo).
_SENDING: Final = (1 << PENDING) | (1 << IN)
_INSIDE: Final = (1 << IN) | (1 << DRAINED)
_NOT_BACK: Final = (1 << PENDING) | _INSIDE


def _hang(st: AdmissionState, h: int, on: int, words: str, stands: int) -> Refusal:
    """An `order` refusal that stands while host `on` is in one of the states `stands`
    (remembered)."""
    r = Refusal(st.names[h], "order", words, st.names[on])
    st.memo[h] = (on, stands, r)
    return r


def _room_for(st: AdmissionState, host: str, h: int) -> Refusal | None:
    """Capacity on the destinations and headroom per scope group with h down and its evacuees
    landed, or the refusal that says why not."""
    classes = st.classes
    C = len(classes)
    counted, group_of = st.counted, st.group_of
    change: dict[int, list[int]] = {}  # per scope group: its change of free capacity
    for d, inc in st.inc[h].items():
        cap, used = st.cap[d], st.used[d]
        row: list[int] | None = None
        if counted[d]:
            gd = group_of[d]
            row = change.get(gd)
            if row is None:
                row = change[gd] = [0] * C
        for c in range(C):
            n = inc[c]
            if n:
                if used[c] + n > cap[c]:
                    rc = classes[c]
                    return Refusal(
                        host,
                        "capacity",
                        f"{st.names[d]} would hold {format_amount(rc, used[c] + n)} of "
                        f"{format_amount(rc, cap[c])} {rc}",
                    )
                if row is not None:  # it fits: free capacity falls by all of it
                    row[c] -= n
    out: list[int] = []
    if counted[h]:
        g = group_of[h]
        row = change.get(g)
        if row is None:
            row = change[g] = [0] * C
        for c in range(C):
            row[c] -= st._room(h, c)
        out = [h]
    for g, row in change.items():
        gone = out if out and group_of[h] == g else []
        for c in range(C):
            free = st.free[g][c] + row[c]
            need = st.required(g, c, gone)
            if free < need:
                rc = classes[c]
                words = headroom_family.words(st.policy, st.groups[g], rc)
                return Refusal(
                    host,
                    words.key,
                    f"{words.rule}: {format_amount(rc, free)} free would be below "
                    f"{format_amount(rc, need)} required",
                )
    return None
