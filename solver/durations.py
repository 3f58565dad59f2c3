"""Durations shape the waves: a pass over solved waves that lowers the sum of their predicted
lock-step durations (a wave lasts as long as its slowest host) and keeps the number of waves and
every migration.

It swaps hosts of the same kind between waves: the slowest host of a wave goes to a wave that
is longer anyway, and a quicker host of its kind comes back, so long drains end up together.
Hosts of one kind (role, AZ, rack when the policy limits racks, effective capacities,
aggregates, version, state, HA groups and the policy's first/last selectors) are
interchangeable for every rule about which hosts are down together. A swap of E (the earlier
wave, lo) and L (the later, hi) changes places, not migrations: each takes its own evacuees
and stops along, and from wave lo on, the VMs the plan sends to E (upgraded) go to L (now
upgraded) instead and those it sends to L after hi go to E, so each ends as the other would
have. It is made only when:

- nothing goes to L from wave lo until hi (it would land on a host no longer there to drain),
  and neither host sends VMs to the other;
- every destination of E's evacuees is upgraded before lo, after hi, or never (a VM lands where
  the plan's later waves expect it); an evacuee of L whose destination is upgraded between lo
  and hi goes instead to a host of that destination's AZ upgraded before lo (the latest
  first) with room for it from lo on;
- no member of a hard affinity group is sent elsewhere (its members move together);
- every host whose usage changes holds it at every wave's end (per resource class, no fuller
  than the fullest host as solved, and at most max_server_per_host members of each hard
  anti-affinity group), and the cap on a wave's migrations still holds.

The predictions come in as plain data (`planner.estimates.Estimates`, and how each VM is moved);
the pass never imports the simulator. The planner re-checks its plan with the checker, as every
plan, and falls back to the waves as solved should the checker refuse it.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from planner.estimates import Estimates, How
from planner.inventory import Host, Inventory
from planner.pipelined import maintenance_of
from planner.placement import accepts
from planner.plan import Migration, Plan, Stop
from planner.policy import Policy, selector_matches

MAX_ROUNDS = 30  # passes over the waves (the effort; on 1,000 hosts 50 converge, 1% better)
MAX_TRIED = 40  # destinations tried for an evacuee that must go elsewhere


@dataclass(frozen=True)
class Shaped:
    plan: Plan
    before_s: float  # the sum of the waves' predicted durations as solved
    after_s: float  # and after the pass
    swaps: int
    refused: Mapping[str, int] = field(default_factory=dict)  # swaps tried and refused, by why


def host_durations(
    inv: Inventory,
    plan: Plan,
    est: Estimates,
    how: Mapping[str, How],
    shutdown_s: float = 0.0,
) -> dict[str, float]:
    """Each host's predicted maintenance in its wave, end to end (`planner.pipelined.
    maintenance_of`: disable, drain, the upgrade's median, enable)."""
    return {h: m.total_s for h, m in maintenance_of(inv, plan, est, how, shutdown_s).items()}


def _kind(inv: Inventory, policy: Policy, h: Host) -> tuple[object, ...]:
    caps = tuple(sorted((rc, h.effective(rc)) for rc in h.capacity))
    ha = tuple(sorted(g.name for g in inv.ha_groups if h.name in g.hosts))
    sel = tuple(selector_matches(s, h) for s in (*policy.first, *policy.last))
    rack = h.rack if policy.max_hosts_per_wave_per_rack is not None else None
    return (
        h.role,
        h.az,
        rack,
        caps,
        tuple(sorted(h.aggregates)),
        h.version,
        h.enabled,
        h.up,
        ha,
        sel,
    )


Profile = tuple[np.ndarray, dict[str, np.ndarray]]


class _Usage:
    """Each host's usage at every wave's end, kept as the plan changes: per resource class, and
    per hard anti-affinity group its members (at most max_server_per_host; kept apart, for the
    few hosts and groups concerned)."""

    def __init__(self, inv: Inventory, plan: Plan, full: bool = False) -> None:
        classes = inv.resource_classes
        ci = {rc: i for i, rc in enumerate(classes)}
        self.W = W = max(1, len(plan.waves))
        self.hi = {h.name: i for i, h in enumerate(inv.hosts)}
        n, c = len(inv.hosts), len(classes)
        self.demand: dict[str, np.ndarray] = {}
        for v in inv.vms:
            d = np.zeros(c, dtype=np.int64)
            for rc, x in inv.demand(v).items():
                d[ci[rc]] = x
            self.demand[v.id] = d
        start = np.zeros((n, c), dtype=np.int64)
        for v in inv.vms:
            start[self.hi[v.host]] += self.demand[v.id]
        for h in inv.hosts:  # what Placement counts that no VM accounts for stays
            for rc, x in h.other_usage.items():
                start[self.hi[h.name], ci[rc]] += x
        self.cap = np.zeros((n, c), dtype=np.int64)
        for h in inv.hosts:
            for rc in classes:
                self.cap[self.hi[h.name], ci[rc]] = h.effective(rc) if h.is_compute else 0
        # Hard anti-affinity: each member's group, each group's most per host, and per
        # (group, host) its members at every wave's end (made when first needed).
        self.group = {
            v.id: v.server_group
            for v in inv.vms
            if v.server_group is not None
            and inv.has_group(v.server_group)
            and inv.group(v.server_group).hard
            and inv.group(v.server_group).anti
        }
        self.gmax = {g.id: g.max_server_per_host for g in inv.server_groups}
        self.g0: dict[tuple[str, int], int] = defaultdict(int)
        for vm, g in self.group.items():
            self.g0[(g, self.hi[inv.vm(vm).host])] += 1
        self.gused: dict[tuple[str, int], np.ndarray] = {}
        self.ghost: dict[int, set[str]] = defaultdict(set)
        # used[h, k]: at the end of wave k (cumulative); room[h]: its least free room from
        # each wave on (a cache, dropped when the host's usage changes).
        ms = [(k, m) for k, w in enumerate(plan.waves) for m in w.migrations]
        delta = np.zeros((n, W, c), dtype=np.int64)
        if ms:
            ks = np.array([k for k, _ in ms])
            src = np.array([self.hi[m.src] for _, m in ms])
            dst = np.array([self.hi[m.dst] for _, m in ms])
            dem = np.array([self.demand[m.vm] for _, m in ms]).reshape(len(ms), c)
            np.add.at(delta, (src, ks), -dem)
            np.add.at(delta, (dst, ks), dem)
        self.used = start[:, None, :] + delta.cumsum(axis=1)
        self.room: dict[int, np.ndarray] = {}
        for k, m in ms:
            if (grp := self.group.get(m.vm)) is not None:
                self._g(grp, self.hi[m.src])[k:] -= 1
                self._g(grp, self.hi[m.dst])[k:] += 1
        # No host gets fuller than the fullest is as solved (the planner's balance kept).
        with np.errstate(divide="ignore", invalid="ignore"):
            cap = self.cap[:, None, :]
            util = np.where(cap > 0, self.used / np.maximum(cap, 1), 0.0)
        worst = float(util.max(initial=0.0))
        self.limit = np.minimum(self.cap, np.floor(self.cap * worst)).astype(np.int64)
        # `full`: up to each host's effective capacity (the balance as solved not kept)
        self.balanced = not full or bool((self.limit == self.cap).all())
        if full:
            self.limit = self.cap.copy()

    def _g(self, g: str, h: int) -> np.ndarray:
        arr = self.gused.get((g, h))
        if arr is None:
            arr = self.gused[(g, h)] = np.full(self.W, self.g0.get((g, h), 0), dtype=np.int64)
            self.ghost[h].add(g)
        return arr

    def _shift(self, vm: str, k: int, frm: int, to: int, sign: int) -> None:
        d = self.demand[vm] * sign
        self.used[frm, k:] -= d
        self.used[to, k:] += d
        self.room.pop(frm, None)
        self.room.pop(to, None)
        g = self.group.get(vm)
        if g is not None:
            self._g(g, frm)[k:] -= sign
            self._g(g, to)[k:] += sign

    def move(self, k: int, m: Migration, sign: int) -> None:
        self._shift(m.vm, k, self.hi[m.src], self.hi[m.dst], sign)

    def redirect(self, k: int, vm: str, old: str, new: str) -> None:
        """A migration of wave k goes to `new` instead of `old` (same source, same wave)."""
        self._shift(vm, k, self.hi[old], self.hi[new], 1)

    def profile(self, host: str) -> Profile:
        """The host's usage at every wave's end (waves x classes), and its groups' members."""
        h = self.hi[host]
        return self.used[h].copy(), {g: self._g(g, h).copy() for g in self.ghost.get(h, ())}

    def holds(self, host: str, before: Profile) -> bool:
        """Within its limits at every wave's end, or no fuller than `before` where it was not."""
        h = self.hi[host]
        now = self.used[h]
        if not ((now <= self.limit[h]) | (now <= before[0])).all():
            return False
        for g in self.ghost.get(h, ()):
            cur = self.gused[(g, h)]
            was = before[1].get(g)
            ok = cur <= self.gmax[g]
            if was is not None:
                ok |= cur <= was
            if not ok.all():
                return False
        return True

    def takes(self, host: str, lo: int, extra: np.ndarray, group: tuple[str, int] | None) -> bool:
        """The host has room for `extra` more at every wave's end from lo on (and for `group`:
        that many more members of that group)."""
        h = self.hi[host]
        room = self.room.get(h)
        if room is None:
            free = self.limit[h] - self.used[h]
            room = self.room[h] = np.minimum.accumulate(free[::-1], axis=0)[::-1]
        if not (room[lo] >= extra).all():
            return False
        if group is None:
            return True
        g, more = group
        return bool((self._g(g, h)[lo:] + more <= self.gmax[g]).all())


def shape(
    inv: Inventory,
    plan: Plan,
    est: Estimates,
    how: Mapping[str, How],
    shutdown_s: float = 0.0,
) -> Shaped:
    """The plan with hosts swapped between waves to lower the sum of the waves' predicted
    durations; same waves count, same VMs moved in each (each evacuee with its host)."""
    policy = plan.policy
    dur = host_durations(inv, plan, est, how, shutdown_s)
    W = len(plan.waves)
    waves = [list(w.hosts) for w in plan.waves]
    wave_of = {h: k for k, hs in enumerate(waves) for h in hs}
    moves: list[Migration] = [m for w in plan.waves for m in w.migrations]
    mwave = [k for k, w in enumerate(plan.waves) for _ in w.migrations]
    out, inn = _by_host(moves)
    counts = [len(w.migrations) for w in plan.waves]
    in_group = _in_affinity_groups(inv, moves)
    kind_of = _kinds(inv, policy, wave_of)
    usage = _Usage(inv, plan)
    cap = policy.max_migrations_per_wave
    # Where an evacuee may go instead: available compute hosts by AZ and wave (in name order,
    # kept as hosts swap), and those never upgraded.
    bucket, never = _destinations(inv, wave_of, W)
    aggs = {h.name: set(h.aggregates) for h in inv.hosts}
    longest = [max((dur[h] for h in hs), default=0.0) for hs in waves]

    wave_max = longest.__getitem__  # kept up to date as hosts swap

    refused: Counter[str] = Counter()

    def changes(a: str, b: str) -> list[tuple[int, Migration, int]] | None:
        """The migrations a swap of a and b rewrites (index, new, its wave), or None when it
        may not."""
        i, j = wave_of[a], wave_of[b]
        lo, hi = min(i, j), max(i, j)
        early, late = (a, b) if i < j else (b, a)
        new: list[tuple[int, Migration, int]] = []
        pending: dict[str, np.ndarray] = {}
        pending_g: dict[tuple[str, str], int] = {}
        for x, to in ((early, hi), (late, lo)):
            for mi in out[x]:
                m = moves[mi]
                wd = wave_of.get(m.dst)
                if m.dst == early:
                    refused["evacuee to the other"] += 1
                    return None
                if m.dst == late or (wd is not None and lo <= wd <= hi):
                    if x == early:
                        refused["evacuee to a host between"] += 1
                        return None
                    if mi in in_group:  # its group's members go to one host together
                        refused["affinity"] += 1
                        return None
                    # L's evacuee now leaves at lo: somewhere upgraded by then instead
                    d = _elsewhere(m, lo, pending, pending_g)
                    if d is None:
                        refused["no other destination"] += 1
                        return None
                    m = replace(m, dst=d)
                new.append((mi, m, to))
        for x, y in ((early, late), (late, early)):
            for mi in inn[x]:
                k = mwave[mi]
                if k < lo or moves[mi].src in (a, b):
                    continue  # arrived before: drained with its host
                if x == late and k < hi:
                    refused["arrival before upgrade"] += 1
                    return None  # L was not upgraded then
                new.append((mi, replace(moves[mi], dst=y), k))
        if cap is not None:
            na = sum(1 for mi in out[a] if mwave[mi] == i)
            nb = sum(1 for mi in out[b] if mwave[mi] == j)
            if counts[i] - na + nb > cap or counts[j] - nb + na > cap:
                refused["max_migrations_per_wave"] += 1
                return None
        return new

    def _elsewhere(
        m: Migration,
        lo: int,
        pending: dict[str, np.ndarray],
        pending_g: dict[tuple[str, str], int],
    ) -> str | None:
        """A destination for m's VM upgraded before wave lo (or never), in its old
        destination's AZ, that holds it from lo on; None if none does (first few tried)."""
        vm = inv.vm(m.vm)
        need = usage.demand[m.vm]
        az = inv.host(m.dst).az
        tried = 0
        waves_az: list[list[str]] = bucket.get(az) or [[] for _ in range(W)]
        # the latest upgraded (the emptiest) first, those never upgraded last
        latest = (d for k in range(lo - 1, -1, -1) for d in waves_az[k])
        for d in itertools.chain(latest, never.get(az, ())):
            if d == m.src:
                continue
            if vm.allowed_aggregates and not set(vm.allowed_aggregates) & aggs[d]:
                continue
            if set(vm.forbidden_aggregates) & aggs[d] or not accepts(inv, vm, d):
                continue
            tried += 1
            if tried > MAX_TRIED:
                return None
            extra = pending.get(d, 0) + need
            grp = None
            if (g := usage.group.get(m.vm)) is not None:
                grp = (g, pending_g.get((g, d), 0) + 1)
            if usage.takes(d, lo, extra, grp):
                pending[d] = extra
                if grp is not None:
                    pending_g[(grp[0], d)] = grp[1]
                return d
        return None

    def apply(
        a: str, b: str, new: list[tuple[int, Migration, int]]
    ) -> list[tuple[int, Migration, int]]:
        """Swap a and b, rewriting `new`; what undoes it (applied the same way)."""
        i, j = wave_of[a], wave_of[b]
        undo = []
        for mi, m, to in new:
            old, k = moves[mi], mwave[mi]
            undo.append((mi, old, k))
            if k == to and old.src == m.src:
                usage.redirect(k, m.vm, old.dst, m.dst)  # its source's usage stays
            else:
                usage.move(k, old, -1)
                usage.move(to, m, 1)
            if old.dst != m.dst:
                inn[old.dst].remove(mi)
                inn[m.dst].append(mi)
            moves[mi], mwave[mi] = m, to
            counts[k] -= 1
            counts[to] += 1
        waves[i][waves[i].index(a)] = b
        waves[j][waves[j].index(b)] = a
        wave_of[a], wave_of[b] = j, i
        az = inv.host(a).az  # b's too: one kind
        if az in bucket:
            for k, out_, in_ in ((i, a, b), (j, b, a)):
                hs = bucket[az][k]
                if out_ in hs:
                    hs.remove(out_)
                    hs.append(in_)
                    hs.sort(reverse=True)
        for k in (i, j):
            longest[k] = max((dur[h] for h in waves[k]), default=0.0)
        return undo

    def try_swap(a: str, b: str) -> bool:
        new = changes(a, b)
        if new is None:
            return False
        hosts = {a, b} | {m.dst for _, m, _ in new} | {moves[mi].dst for mi, _, _ in new}
        before = {h: usage.profile(h) for h in hosts}
        undo = apply(a, b, new)
        if all(usage.holds(h, before[h]) for h in hosts):
            return True
        apply(a, b, undo)
        refused["capacity"] += 1
        return False

    before_s = sum(wave_max(k) for k in range(W))
    swaps = 0
    # Two orders of the waves a host may go to: the longest first (the biggest gain), then the
    # nearest first (fewest evacuees to re-home); alternated until neither finds a swap.
    orders: list[Callable[[int, int], tuple[float, int]]] = [
        lambda i, j: (-wave_max(j), j),
        lambda i, j: (float(abs(j - i)), j),
    ]
    idle = 0
    for r in range(MAX_ROUNDS):
        key = orders[r % 2]
        improved = False
        for i in sorted(range(W), key=wave_max):  # short waves first: their slowest host leaves
            a = max(waves[i], key=lambda h: (dur[h], h))
            if a not in kind_of:
                continue
            rest = sorted((dur[h] for h in waves[i] if h != a), reverse=True)
            floor = rest[0] if rest else 0.0
            for j in sorted(range(W), key=lambda j, i=i: key(i, j)):  # type: ignore[misc]
                if j == i or wave_max(j) < dur[a]:
                    continue  # a would make that wave longer
                cands = sorted(
                    (b for b in waves[j] if kind_of.get(b) == kind_of[a] and dur[b] < dur[a]),
                    key=lambda b: (max(floor, dur[b]), b),
                )
                if any(try_swap(a, b) for b in cands):
                    swaps += 1
                    improved = True
                    break
        idle = 0 if improved else idle + 1
        if idle == len(orders):
            break
    after_s = sum(wave_max(k) for k in range(W))
    if not swaps:
        return Shaped(plan, before_s, before_s, 0, dict(refused))
    shaped = _rebuilt(plan, moves, mwave, waves, wave_of)
    return Shaped(shaped, before_s, after_s, swaps, dict(refused))


def _in_affinity_groups(inv: Inventory, moves: list[Migration]) -> set[int]:
    """The migrations of members of hard affinity groups: they move together to one host, so none
    is sent elsewhere alone (all arriving at a host are sent to the other together). Hard
    anti-affinity is counted with the usage, per host and wave."""
    together = {g.id for g in inv.server_groups if g.hard and not g.anti}
    return {i for i, m in enumerate(moves) if inv.vm(m.vm).server_group in together}


def _by_host(moves: list[Migration]) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """The migrations' indexes by source and by destination."""
    out: dict[str, list[int]] = defaultdict(list)
    inn: dict[str, list[int]] = defaultdict(list)
    for i, m in enumerate(moves):
        out[m.src].append(i)
        inn[m.dst].append(i)
    return out, inn


def _kinds(inv: Inventory, policy: Policy, wave_of: Mapping[str, int]) -> dict[str, object]:
    """Each host of the plan with its kind, where another host of the plan is of that kind (the
    hosts that may swap waves)."""
    kinds: dict[tuple[object, ...], list[str]] = defaultdict(list)
    for h in inv.hosts:
        if h.name in wave_of:
            kinds[_kind(inv, policy, h)].append(h.name)
    return {h: k for k, hs in kinds.items() for h in hs if len(hs) > 1}


def _destinations(
    inv: Inventory, wave_of: Mapping[str, int], W: int
) -> tuple[dict[str | None, list[list[str]]], dict[str | None, list[str]]]:
    """Available compute hosts by AZ and wave (in reverse name order), and by AZ those never
    upgraded."""
    bucket: dict[str | None, list[list[str]]] = defaultdict(lambda: [[] for _ in range(W)])
    never: dict[str | None, list[str]] = defaultdict(list)
    for h in sorted(inv.compute_hosts, key=lambda h: h.name, reverse=True):
        if h.available:
            k = wave_of.get(h.name)
            (never[h.az] if k is None else bucket[h.az][k]).append(h.name)
    return bucket, never


def _rebuilt(
    plan: Plan,
    moves: list[Migration],
    mwave: list[int],
    waves: list[list[str]],
    wave_of: Mapping[str, int],
) -> Plan:
    """The plan's waves rebuilt in the plan's order of migrations; stops go with their hosts."""
    W = len(plan.waves)
    ms: list[list[Migration]] = [[] for _ in range(W)]
    for mi, m in enumerate(moves):
        ms[mwave[mi]].append(m)
    ss: list[list[Stop]] = [[] for _ in range(W)]
    for w in plan.waves:
        for st in w.stops:
            ss[wave_of[st.host]].append(st)
    new_waves = [
        replace(w, hosts=tuple(sorted(waves[k])), migrations=tuple(ms[k]), stops=tuple(ss[k]))
        for k, w in enumerate(plan.waves)
    ]
    return replace(plan, waves=tuple(new_waves))
