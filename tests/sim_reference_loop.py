"""The simulator's event loop as it was before it became a state object with a handler per event
kind: a frozen copy of `sim/loop.py` at commit c35e689 (one function, `run_loop`, with closures),
the oracle of `tests/test_sim_engine_equivalence.py` for what the older reference
(`tests/sim_reference_engine.py`) does not have: rollbacks and the canary (issue 8).

Do not optimise or extend it. The engine must give the same runs as this one; a change of the
simulator's semantics is made in both (or this oracle retired) on purpose, never to make the
comparison pass. It runs in Python only (its `COMPILED` variants are the interpreted ones).

The original module docstring follows.

The event loop of one run (see `sim.engine` for the semantics it implements).

It is kept apart, in a module of functions only, so that it can also be compiled with mypyc (a
C extension built from this very file when rollwave is installed, see setup.py); `sim.engine`
uses that copy only while it was built from this file's current text, else this one. Both give
the same runs (tests/test_sim_engine_equivalence.py runs both against the reference engine).
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect_left, insort
from collections import Counter, defaultdict
from itertools import compress, count
from typing import Any, Final, cast

import numpy as np

from planner.capacity import format_amount
from sim.prepare import NO_TRANSFER, OUTCOME_CODE, Prepared, Transfer
from sim.results import Breach, Failure, SimResult
from sim.state import OFF, HeadroomState, W

# Event kinds (ints for speed; Final: constants in the compiled loop, not global lookups).
_WAVE: Final = 0
_DRAIN: Final = 1
_END: Final = 2
_FAIL: Final = 3
_RETRY: Final = 4
_STOPPED: Final = 5
_UPGRADED: Final = 6
_ENABLE: Final = 7
_CRASH: Final = 8
_ROLLEDBACK: Final = 9
_SOAK_END: Final = 10
# Host states.
NORMAL: Final = 0
MAINT: Final = 1
DONE_DOWN: Final = 2
CRASHED: Final = 3
MAX_DETAILED_BREACHES: Final = 200


FIELD: Final = (1 << W) - 1  # one class's field of a packed vector (sim.state)
# True in the copy mypyc compiled (its functions have no Python code object). A few scans are
# written two ways: a plain loop, fastest compiled, and one run by C built-ins, fastest in Python.
COMPILED: Final = not hasattr(lambda: None, "__code__")


def set_available(st: HeadroomState, h: int, flag: bool) -> None:
    """`HeadroomState.set_available`, the same steps, here so that the compiled loop runs them
    compiled: a run takes every host of the plan down and back (tests/test_sim_loop_parts.py
    checks that both agree)."""
    avail = st.avail
    if avail[h] == flag:
        return
    g = st.group_of[h]
    if g < 0:
        avail[h] = flag
        return
    cap, total, caps = st.cap[h], st.total[g], st.caps[g]
    r, top = st.room[h], st.top
    pos = r - top if r & top == top else st._positive(h)  # what h adds to its group's free
    if flag:
        avail[h] = True
        st.free_p[g] += pos
        for c in range(len(cap)):
            total[c] += cap[c]
            insort(caps[c], cap[c])
    else:
        st.free_p[g] -= pos
        for c in range(len(cap)):
            total[c] -= cap[c]
            lst = caps[c]
            del lst[bisect_left(lst, cap[c])]
        avail[h] = False
    req, k, pct = st.required[g], st.k, st.pct
    packed = 0
    for c in range(len(req)):
        lst = caps[c]
        need_k = sum(lst[-k:]) if k > 0 and lst else 0
        need_r = math.ceil(total[c] * pct / 100.0 - 1e-9)
        v = need_k if need_k > need_r else need_r
        req[c] = v
        packed |= v << (W * c)
    st.req_p[g] = packed


Event = tuple[float, int, int, int, int]  # (time, sequence number, kind, subject, token)


def unpacked(x: int, n: int) -> list[int]:
    """`sim.state.unpack` (offset fields), here to run compiled: the headroom checks unpack a
    group's free capacity at every change of it."""
    return [((x >> (W * c)) & FIELD) - OFF for c in range(n)]


class _Ev:
    """A heap entry of the compiled loop: a native struct (no boxed float or ints to make)."""

    def __init__(self, t: float, seq: int, kind: int, a: int, b: int) -> None:
        self.t = t
        self.seq = seq
        self.kind = kind
        self.a = a
        self.b = b


def heap_push(heap: list[object], ev: Event) -> None:
    """heapq.heappush for the compiled loop: entries compared on their time and sequence number
    natively, not as tuples by the interpreter (sequence numbers differ: heapq's order)."""
    t, s = ev[0], ev[1]
    item = _Ev(t, s, ev[2], ev[3], ev[4])
    pos = len(heap)
    heap.append(item)
    while pos > 0:
        up = (pos - 1) >> 1
        pobj = heap[up]
        pe = cast(_Ev, pobj)
        if t < pe.t or (t == pe.t and s < pe.seq):
            heap[pos] = pobj
            pos = up
        else:
            break
    heap[pos] = item


def heap_pop(heap: list[object]) -> Event:
    """heapq.heappop for the compiled loop (see heap_push)."""
    last = heap.pop()
    top = cast(_Ev, heap[0]) if heap else cast(_Ev, last)
    if heap:
        le = cast(_Ev, last)
        lt, ls = le.t, le.seq
        n = len(heap)
        pos = 0
        c = 1
        while c < n:
            cobj = heap[c]
            ce = cast(_Ev, cobj)
            r = c + 1
            if r < n:
                robj = heap[r]
                re = cast(_Ev, robj)
                if re.t < ce.t or (re.t == ce.t and re.seq < ce.seq):
                    c, cobj, ce = r, robj, re
            if ce.t < lt or (ce.t == lt and ce.seq < ls):
                heap[pos] = cobj
                pos = c
                c = 2 * c + 1
            else:
                break
        heap[pos] = last
    return (top.t, top.seq, top.kind, top.a, top.b)


if not COMPILED:  # interpreted, heapq's own C functions are the faster (the calls bind here)
    globals().update(heap_push=heapq.heappush, heap_pop=heapq.heappop)


def _sub_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, stream]).generate_state(1)[0])


def run_loop(
    prep: Prepared, seed: int, record: bool, crash: tuple[float, float] | None
) -> SimResult:
    model = prep.model
    inv = prep.inv
    H = len(prep.hosts)
    N = len(prep.m_vm)
    hosts = prep.hosts
    vms = inv.vms

    # Random draws, each kind from its own stream (so runs agree until they diverge).
    rng_up = np.random.Generator(np.random.PCG64(_sub_seed(seed, 0)))
    up_dur = np.zeros(H)
    dists = prep.dists
    dist_of = np.array(prep.dist_of_host)
    for k, dist in enumerate(dists):
        sel = np.flatnonzero(dist_of == k)
        if sel.size:
            up_dur[sel] = dist.sample(rng_up, sel.size)
    up_dur_l: list[float] = np.maximum(up_dur, 0.0).tolist()
    rng_uf = np.random.Generator(np.random.PCG64(_sub_seed(seed, 1)))
    up_fail: list[bool] = (rng_uf.random(H) < model.upgrade_failure_p).tolist()
    # Streams of their own, drawn only when used: runs without them are unchanged.
    rb_dur: list[float] = [0.0] * H
    if model.rollback or model.canary_hosts:
        rng_rb = np.random.Generator(np.random.PCG64(_sub_seed(seed, 5)))
        rb_dur = np.maximum(model.upgrade_rollback.sample(rng_rb, H), 0.0).tolist()
    canary_fails = (
        model.canary_hosts > 0
        and model.canary_failure_p > 0
        and random.Random(_sub_seed(seed, 6)).random() < model.canary_failure_p
    )
    p_mig = model.migration_failure_p
    failing = p_mig > 0 and N > 0  # some attempts fail (fails[mi] of migration mi's)
    inf = math.inf
    retries = model.migration_retries
    if p_mig > 0 and N:
        rng_mf = np.random.Generator(np.random.PCG64(_sub_seed(seed, 2)))
        geo = rng_mf.geometric(1.0 - p_mig, N) - 1 if p_mig < 1 else np.full(N, retries + 1)
        fails: list[int] = np.minimum(geo, retries + 1).tolist()
        frac_rng = random.Random(_sub_seed(seed, 4))
    else:
        fails = [0] * N
        frac_rng = random.Random(0)

    st = (
        prep.state0.copy()
        if prep.state0 is not None
        else HeadroomState(prep.capacity, prep.plan.policy.headroom)
    )
    release = st.remove
    group_of = st.group_of
    demand = prep.demand
    vm_group = prep.vm_group
    group_max = prep.group_max
    gcount: dict[tuple[int, int], int] = defaultdict(int, prep.group_count0)
    vm_host = prep.capacity.vm_host.tolist()
    avail0 = [bool(a) for a in prep.capacity.available]
    ha_avail0 = [h.available for h in inv.hosts]  # any role: enabled and up
    dest_ok = list(avail0)  # may receive VMs now: compute, enabled, up, not in maintenance
    open_ = list(avail0)  # dest_ok and fewer than k_in migrations coming in
    is_open = open_.__getitem__
    hstate = [NORMAL] * H
    k_out, k_in = prep.k_out, prep.k_in
    out_busy = [0] * H
    in_busy = [0] * H
    m_src, m_dst, m_vm = prep.m_src, prep.m_dst, prep.m_vm
    m_dur, m_moves = prep.m_dur, prep.m_moves
    mig_start = [math.nan] * N
    mig_end = [math.nan] * N
    mig_state = [-1] * N
    attempts = [0] * N  # failed attempts so far
    tries = [0] * N
    mig_bytes = [0.0] * N
    mig_down = [0.0] * N
    token = [0] * N
    in_flight: set[int] = set()
    # The ints 0 .. max(H, N) - 1 as objects: compiled, a set.add(box[i]) stores the object,
    # where set.add(i) would allocate a new one (i is a machine int there).
    box: list[Any] = list(range(max(H, N)))
    lost_vm: set[int] = set()

    heap: list[object] = []  # Events (heap_push, heap_pop)
    seq = 0
    popped = 0  # effective heap events (with the migration starts, sum(tries): the events)

    breaches: list[Breach] = []
    breach_counts: Counter[str] = Counter()
    in_breach: set[tuple[Any, ...]] = set()
    headroom_breach_start: dict[int, list[float]] = defaultdict(list)  # group -> breach times
    n_classes = len(prep.classes)
    class_range = range(n_classes)
    st_avail = st.avail
    # Packed vectors (sim.state): room per host, free and required per group, demand per VM.
    room, free_p, req_p, all_ok = st.room, st.free_p, st.req_p, st.top
    dem_p, dem_mask = prep.demand_p, prep.demand_mask
    m_bytes_all, m_outcome_all, m_down_all = prep.m_bytes, prep.m_outcome, prep.m_down
    track = crash is not None  # in-flight migrations matter only to a crash (and a stall)
    # Dynamic NIC sharing: who runs on each host, and each running migration's progress.
    dyn = prep.dynamic
    nic = prep.nic
    transfer = prep.transfer
    by_share = prep.by_share
    m_kind = prep.m_kind
    overhead = model.orchestration_overhead_s
    run_out: list[set[int]] = [set() for _ in range(H)] if dyn else []
    run_in: list[set[int]] = [set() for _ in range(H)] if dyn else []
    dirty: set[int] = set()
    # Per host, at the last rebalance: migrations running out of it, minus those running in (a
    # host sends, as a source in maintenance, or receives, never both at once).
    last_net = [0] * H
    cur_bw = list(prep.m_bw) if dyn else []
    cur_tr: list[Transfer] = [NO_TRANSFER] * N if dyn else []
    x0 = [0.0] * N if dyn else []  # when its transfer starts (after the overhead)
    seg_t = [0.0] * N if dyn else []  # progress is counted up to here
    prog = [0.0] * N if dyn else []  # fraction of the transfer done
    target = [1.0] * N if dyn else []  # fraction at which it ends (or fails)
    ekind = [_END] * N if dyn else []
    bw_acc = [0.0] * N if dyn else []  # share x seconds, for its mean share
    min_slack: list[list[int]] = [[1 << 62] * n_classes for _ in st.groups]
    # Free capacity only falls at migration starts, so the least slack between two other changes
    # is the one after the last start: starts only flag their group (min_pending), and the
    # slack is taken before any other change of free or required capacity (note_min).
    min_pending = [False] * len(st.groups)
    samples: list[tuple[float, int, int, int, int]] = []
    failures: list[Failure] = []
    timeline: list[tuple[Any, ...]] | None = [] if record else None
    tl = timeline.append if timeline is not None else None

    def breach(
        t: float, kind: str, key: tuple[Any, ...], message: str, objs: tuple[str, ...]
    ) -> None:
        breach_counts[kind] += 1
        if len(breaches) < MAX_DETAILED_BREACHES:
            breaches.append(Breach(t, kind, message, objs))
        if tl is not None:
            tl((t, "breach", None, None, None, None, f"{kind}: {message}"))

    def note_min(g: int) -> None:
        """Take group g's slack into its minimum if starts changed it since it was last taken
        (before anything else changes g's free or required capacity)."""
        if min_pending[g]:
            min_pending[g] = False
            free, req, ms = unpacked(st.free_p[g], n_classes), st.required[g], min_slack[g]
            for c in class_range:
                slack = free[c] - req[c]
                if slack < ms[c]:
                    ms[c] = slack

    def check_group(t: float, g: int) -> None:
        free, req, ms = unpacked(st.free_p[g], n_classes), st.required[g], min_slack[g]
        min_pending[g] = False
        for c in range(n_classes):
            slack = free[c] - req[c]
            if slack < ms[c]:
                ms[c] = slack
            if slack < 0:
                bk = ("headroom", g, c)
                if bk not in in_breach:
                    in_breach.add(bk)
                    headroom_breach_start[g].append(t)
                    rc = prep.classes[c]
                    breach(
                        t,
                        "headroom",
                        bk,
                        f"{st.groups[g]}: {rc} free {format_amount(rc, free[c])} < "
                        f"{format_amount(rc, req[c])} required",
                        (st.groups[g], rc),
                    )
            elif in_breach:
                in_breach.discard(("headroom", g, c))

    def sample_all(t: float) -> None:
        for g in range(len(st.groups)):
            check_group(t, g)
            if record:
                sample_group(t, g)

    def sample_group(t: float, g: int) -> None:
        free, req = unpacked(st.free_p[g], n_classes), st.required[g]
        for c in class_range:
            samples.append((t, g, c, free[c], req[c]))

    def check_ha(t: float, changed: list[int]) -> None:
        for i in changed:
            name, members, need = prep.ha[i]
            up = sum(1 for h in members if hstate[h] == NORMAL and ha_avail0[h])
            bk = ("ha", i)
            if up < need:
                if bk not in in_breach:
                    in_breach.add(bk)
                    breach(
                        t,
                        "ha_group",
                        bk,
                        f"HA group {name}: {up} of {len(members)} hosts available, "
                        f"min_available is {need}",
                        (name,),
                    )
            else:
                in_breach.discard(bk)

    def set_down(h: int, new_state: int) -> None:
        hstate[h] = new_state
        dest_ok[h] = False
        open_[h] = False
        if group_of[h] >= 0:
            note_min(group_of[h])
        set_available(st, h, False)

    # --- initial state -------------------------------------------------------------------------
    for h in range(H):
        over = st.over(h)
        if over:
            breach(
                0.0,
                "capacity",
                ("cap", h),
                f"{hosts[h]} over capacity in " + ", ".join(prep.classes[c] for c in over),
                (hosts[h],),
            )
    for (g, h), n in gcount.items():
        if n > group_max[g]:
            breach(
                0.0,
                "anti_affinity",
                ("aa", g, h),
                f"server group {prep.group_ids[g]}: {n} members on {hosts[h]}",
                (prep.group_ids[g], hosts[h]),
            )
    check_ha(0.0, list(range(len(prep.ha))))
    sample_all(0.0)

    n_waves = len(prep.waves)
    last = 0.0  # time of the last event that changed something
    wave_start = [math.nan] * n_waves
    wave_end = [math.nan] * n_waves
    wave_left = [0] * n_waves
    host_wave: dict[int, int] = {}
    pending = [0] * H
    # Per source host, its migrations still to start in plan order: (migration, VM, destination),
    # their destinations alone (qdst), and how many of their VMs are not on it (skips: lost in a
    # crash, left elsewhere by a failure, or moved by another migration in the wave).
    queue: list[list[tuple[int, int, int]]] = [[] for _ in range(H)]
    qdst: list[list[int]] = [[] for _ in range(H)]
    skips = [0] * H
    entry = prep.m_entry
    m_dup = prep.m_dup
    host_failed: set[int] = set()
    host_status: dict[int, str] = {}
    host_times: dict[int, tuple[float, float, float]] = {}
    maint_start: dict[int, float] = {}
    upgrade_start: dict[int, float] = {}
    stop_down: dict[int, float] = {}
    stop_begin: dict[int, float] = {}
    # Per destination: the sources with a migration waiting for it.
    waiting_on: list[set[int]] = [set() for _ in range(H)]
    waves_done = 0
    now = 0.0
    rolled_back: set[int] = set()
    rollback_total = 0.0
    upgraded_order: list[int] = []  # hosts back upgraded, in order (the canary's are the first)
    # The canary moves VMs onto its hosts: compute hosts in service, never controllers.
    canary_host_ok = [
        prep.inv.host(name).is_compute and prep.inv.host(name).enabled for name in hosts
    ]
    canary_state = 0 if model.canary_hosts > 0 else 2  # 0 pending, 1 soaking/rolling back, 2 over
    canary: list[int] = []
    canary_left = 0
    canary_next = -1  # the wave that waits for the canary
    soak_total = 0.0

    if n_waves:
        heap_push(heap, (0.0, seq, _WAVE, 0, 0))
        seq += 1
    crash_u = 0.0
    if crash is not None:
        heap_push(heap, (crash[0], seq, _CRASH, 0, 0))
        seq += 1
        crash_u = crash[1]

    def host_done(h: int, t: float, status: str) -> None:
        nonlocal waves_done, seq, canary_state, canary_next
        if h in host_status:
            return
        host_status[h] = status
        if status == "upgraded" and canary_host_ok[h]:
            upgraded_order.append(h)
        host_times[h] = (maint_start.get(h, t), upgrade_start.get(h, math.nan), t)
        w = host_wave[h]
        wave_left[w] -= 1
        if wave_left[w] == 0:
            wave_end[w] = t
            waves_done += 1
            if tl is not None:
                tl((t, "wave_end", w + 1, None, None, None, None))
            sample_all(t)
            if (
                canary_state == 0
                and upgraded_order
                and (len(upgraded_order) >= model.canary_hosts or w + 1 == n_waves)
            ):
                # The canary: its hosts soak; nothing starts meanwhile.
                canary_state = 1
                canary.extend(upgraded_order[: model.canary_hosts])
                canary_next = w + 1
                if tl is not None:
                    names = ", ".join(hosts[c] for c in canary)
                    tl((t, "soak_start", w + 1, None, None, None, f"canary: {names}"))
                heap_push(heap, (t + model.soak_s, seq, _SOAK_END, w, 0))
                seq += 1
            elif w + 1 < n_waves:
                heap_push(heap, (t, seq, _WAVE, w + 1, 0))
                seq += 1

    def drained(h: int, t: float) -> None:
        nonlocal seq
        if hstate[h] != MAINT:
            return
        if h in host_failed:
            # back in service, not upgraded
            heap_push(heap, (t + model.enable_s, seq, _ENABLE, h, 0))
            seq += 1
            return
        upgrade_start[h] = t
        g = group_of[h]
        if record and g >= 0:  # its VMs have landed: the group's low point before h is back
            sample_group(t, g)
        if tl is not None:
            tl((t, "upgrade_start", host_wave[h] + 1, hosts[h], None, None, None))
        heap_push(heap, (t + up_dur_l[h], seq, _UPGRADED, h, 0))
        seq += 1

    def leave(mi: int) -> None:
        """Migration mi no longer uses its NICs (ended, failed or cancelled)."""
        s, d = m_src[mi], m_dst[mi]
        run_out[s].discard(mi)
        run_in[d].discard(mi)
        dirty.add(s)
        dirty.add(d)

    def reshare(mi: int, share: float, t: float) -> None:
        """Running migration mi goes on at `share`: the progress made (the fraction of its
        transfer done) is kept, the rest goes at the new speed: its end event moves."""
        nonlocal seq
        old = cur_tr[mi].total_s - overhead
        base = seg_t[mi] if seg_t[mi] > x0[mi] else x0[mi]
        if t > base:
            bw_acc[mi] += cur_bw[mi] * (t - base)
            if old != math.inf:
                prog[mi] += (t - base) / old
        seg_t[mi] = t if t > x0[mi] else x0[mi]
        tr = transfer(mi, share)
        cur_bw[mi] = share
        cur_tr[mi] = tr
        new = tr.total_s - overhead
        token[mi] += 1
        if new != math.inf:
            rest = target[mi] - prog[mi]
            at = seg_t[mi] + (rest if rest > 0 else 0.0) * new
            heap_push(heap, (at, seq, ekind[mi], mi, token[mi]))
            seq += 1
        else:
            in_flight.add(mi)  # never ends now: a stall names it

    def requeue(s: int, mi: int) -> None:
        """Migration mi waits again at the head of its source's queue."""
        queue[s].insert(0, entry[mi])
        qdst[s].insert(0, m_dst[mi])
        if vm_host[m_vm[mi]] != s:
            skips[s] += 1

    def try_start(h: int, t: float) -> None:
        """Start h's first startable migrations (plan order) while h has free slots; note the
        destinations it waits for."""
        nonlocal seq
        q = queue[h]
        if not q:
            return
        slots = k_out - out_busy[h]
        if slots <= 0:
            return
        qd = qdst[h]
        hb = box[h]
        i = 0
        n = len(q)
        while i < n:
            if skips[h]:  # entry by entry
                mi, v, d = q[i]
                if vm_host[v] != h:
                    # Lost in a crash, or not on this host (an earlier migration of it failed):
                    # nothing to move off this host.
                    q.pop(i)
                    qd.pop(i)
                    n -= 1
                    skips[h] -= 1
                    mig_state[mi] = OUTCOME_CODE["lost" if v in lost_vm else "skipped"]
                    finish_one(h, t)
                    continue
                if not open_[d]:
                    waiting_on[d].add(hb)
                    i += 1
                    continue
            else:  # every VM is here: the first entry whose destination has room, found in C
                # (a slice copy is cheaper than islice, which pays a step per item it yields)
                if COMPILED:
                    j = i
                    while j < n and not open_[qd[j]]:
                        j += 1
                else:
                    j = next(compress(count(i), map(is_open, qd[i:] if i else qd)), n)
                if j > i:  # h waits for the destinations before it
                    for d in qd[i:j]:
                        waiting_on[d].add(hb)
                    if j == n:
                        break
                    i = j
                mi, v, d = q[i]
            q.pop(i)
            qd.pop(i)
            n -= 1
            # Start mi (a state change and checks: an event of its own).
            ob = out_busy[h] = out_busy[h] + 1
            ib = in_busy[d] = in_busy[d] + 1
            if ib >= k_in:
                open_[d] = False
            gd = group_of[d]
            counted = gd >= 0 and st_avail[d]
            dp = dem_p[v]
            before = room[d]
            after = room[d] = before - dp
            mask = dem_mask[v]
            if after & mask == mask:  # room left in every class it needs: free falls by it
                if counted:
                    free_p[gd] -= dp
            else:
                if counted:
                    free_p[gd] -= st.freed(before, after)
                bk = ("cap", d)
                if bk not in in_breach:
                    in_breach.add(bk)
                    breach(
                        t,
                        "capacity",
                        bk,
                        f"{hosts[d]} over capacity in "
                        + ", ".join(prep.classes[c] for c in st.over(d))
                        + f" with {vms[v].id} arriving",
                        (hosts[d], vms[v].id),
                    )
            g = vm_group[v]
            if g >= 0:
                gcount[(g, d)] += 1
                if gcount[(g, d)] > group_max[g]:
                    breach(
                        t,
                        "anti_affinity",
                        ("aa", g, d),
                        f"server group {prep.group_ids[g]}: {gcount[(g, d)]} members on "
                        f"{hosts[d]} while {vms[v].id} migrates",
                        (prep.group_ids[g], hosts[d]),
                    )
            if counted:  # the full check when a class is short; else only note the minimum
                if (free_p[gd] - req_p[gd]) & all_ok != all_ok:
                    check_group(t, gd)
                else:
                    min_pending[gd] = True
            if tries[mi] == 0:
                mig_start[mi] = t
            elif dyn:  # a new attempt: its transfer starts again (first attempts find these)
                prog[mi] = 0.0
                bw_acc[mi] = 0.0
                target[mi] = 1.0
                ekind[mi] = _END
            tries[mi] += 1
            mb = box[mi]
            if dyn:
                run_out[h].add(mb)
                run_in[d].add(mb)
                # Its share of both NICs (out_busy and in_busy count the running migrations).
                sa = nic[h] / ob
                sb = nic[d] / ib
                share = sa if sa < sb else sb
                try:
                    tr = by_share[share][m_kind[mi]]
                except KeyError:
                    tr = None
                if tr is None:
                    tr = transfer(mi, share)
                cur_bw[mi] = share
                cur_tr[mi] = tr
                x0[mi] = seg_t[mi] = t + overhead
                dirty.add(hb)
                dirty.add(box[d])
                dur = tr.total_s
            else:
                dur = m_dur[mi]
            if tl is not None:
                tl(
                    (
                        t,
                        "migration_start",
                        prep.m_wave[mi] + 1,
                        hosts[h],
                        mi,
                        hosts[d],
                        attempts[mi] + 1,
                    )
                )
            if dur == inf:
                in_flight.add(mb)  # it never ends: a stall names it
            else:
                if track:
                    in_flight.add(mb)
                if failing and attempts[mi] < fails[mi]:
                    u = frac_rng.random()
                    if dyn:  # fails at that fraction of its transfer, whatever the bandwidth does
                        target[mi] = u
                        ekind[mi] = _FAIL
                        at = t + overhead + u * (dur - overhead)
                        heap_push(heap, (at, seq, _FAIL, mi, token[mi]))
                    else:
                        heap_push(heap, (t + u * dur, seq, _FAIL, mi, token[mi]))
                else:
                    heap_push(heap, (t + dur, seq, _END, mi, token[mi]))
                seq += 1
            slots -= 1
            if slots == 0:
                return

    def wake(d: int, t: float) -> None:
        """Destination d has room again (a slot freed, or it is back): retry who waited for it."""
        ws = waiting_on[d]
        if not ws:
            return
        waiting_on[d] = set()
        order = sorted(ws) if len(ws) > 1 else list(ws)
        for i, h in enumerate(order):
            if in_busy[d] >= k_in:  # full again: the others go on waiting for it
                waiting_on[d].update(order[i:])
                return
            if out_busy[h] < k_out:  # a source with no free slot rescans when one frees
                try_start(h, t)

    def release_dst(mi: int) -> None:
        d, v = m_dst[mi], m_vm[mi]
        if group_of[d] >= 0:
            note_min(group_of[d])
        release(d, demand[v])
        g = vm_group[v]
        if g >= 0:
            gcount[(g, d)] -= 1
        gd = group_of[d]
        if gd >= 0 and st.avail[d]:
            check_group(now, gd)
        if in_breach:
            cap_recovered(d)

    def cap_recovered(h: int) -> None:
        """A host over capacity that is within it again: a later overflow is a new breach."""
        bk = ("cap", h)
        if bk in in_breach and not st.over(h):
            in_breach.discard(bk)

    def finish_one(h: int, t: float) -> None:
        pending[h] -= 1
        if pending[h] == 0:
            drained(h, t)

    def lose_vms_on(h: int, t: float) -> list[int]:
        lost = [j for j, hh in enumerate(vm_host) if hh == h and j not in lost_vm]
        for j in lost:
            lost_vm.add(j)
        return lost

    def record_failure(
        t: float, kind: str, h: int, vm: int | None, detail: str, fits: bool = True
    ) -> None:
        failures.append(
            Failure(
                t, kind, hosts[h], vms[vm].id if vm is not None else None, detail, group_of[h], fits
            )
        )
        if tl is not None:
            tl((t, "failure", None, hosts[h], None, None, f"{kind}: {detail}"))
        if kind != "crash":  # a crash samples once its effects are applied
            sample_all(t)

    # --- the loop ------------------------------------------------------------------------------
    while heap:
        t, _, kind, a, b = heap_pop(heap)
        now = t
        if kind == _END:
            mi = a
            if b != token[mi]:
                continue
            mb = box[mi]
            if track:
                in_flight.discard(mb)
            s, d, v = m_src[mi], m_dst[mi], m_vm[mi]
            out_busy[s] -= 1
            in_busy[d] -= 1
            open_[d] = dest_ok[d]
            mig_end[mi] = t
            if dyn:
                tr = cur_tr[mi]
                run_out[s].discard(mb)
                run_in[d].discard(mb)
                dirty.add(box[s])
                dirty.add(box[d])
                sg = seg_t[mi]
                if sg != x0[mi]:  # reshared since its transfer began: its mean share, reported
                    if t > sg:
                        bw_acc[mi] += cur_bw[mi] * (t - sg)
                    cur_bw[mi] = bw_acc[mi] / (t - x0[mi])
                moved, down, code = tr.moves, tr.downtime_s, tr.outcome
                mig_bytes[mi] = tr.bytes  # an end is final: set once
            else:
                moved, down, code = m_moves[mi], m_down_all[mi], m_outcome_all[mi]
                mig_bytes[mi] = m_bytes_all[mi]
            mig_state[mi] = code
            if moved:
                cur = vm_host[v]
                gc = group_of[cur]
                if gc >= 0 and st_avail[cur]:
                    note_min(gc)
                    release(cur, demand[v])
                    check_group(t, gc)
                else:  # the source is in maintenance: its usage only, no headroom to update
                    room[cur] += dem_p[v]
                g = vm_group[v]
                if g >= 0:
                    gcount[(g, cur)] -= 1
                if in_breach:
                    cap_recovered(cur)
                vm_host[v] = d
                if m_dup[mi]:  # another migration of v may wait in cur's queue: a skip now
                    skips[cur] = sum(1 for _, u, _ in queue[cur] if vm_host[u] != cur)
                mig_down[mi] = down
            else:
                release_dst(mi)
                host_failed.add(s)
                record_failure(
                    t,
                    "timeout",
                    s,
                    v,
                    f"{vms[v].id} did not converge; Nova's completion timeout "
                    f"aborted it after {t - mig_start[mi]:.0f} s; left on {hosts[s]}",
                )
            if tl is not None:
                tl((t, "migration_end", prep.m_wave[mi] + 1, hosts[s], mi, hosts[d], None))
            pending[s] -= 1
            if pending[s] == 0:
                drained(s, t)
            if queue[s]:
                try_start(s, t)
            if waiting_on[d]:
                wake(d, t)
        elif kind == _FAIL:
            mi = a
            if b != token[mi]:
                continue
            if track:
                in_flight.discard(mi)
            s, d, v = m_src[mi], m_dst[mi], m_vm[mi]
            out_busy[s] -= 1
            in_busy[d] -= 1
            open_[d] = dest_ok[d]
            if dyn:
                leave(mi)
            release_dst(mi)
            attempts[mi] += 1
            if tl is not None:
                tl(
                    (
                        t,
                        "migration_failed",
                        prep.m_wave[mi] + 1,
                        hosts[s],
                        mi,
                        hosts[d],
                        attempts[mi],
                    )
                )
            if attempts[mi] <= retries and hstate[s] == MAINT:
                heap_push(heap, (t + model.retry_delay_s, seq, _RETRY, mi, 0))
                seq += 1
            else:
                mig_end[mi] = t
                mig_state[mi] = OUTCOME_CODE["failed"]
                host_failed.add(s)
                record_failure(
                    t,
                    "migration",
                    s,
                    v,
                    f"{vms[v].id} failed {attempts[mi]} time(s); left on {hosts[s]}, "
                    f"which cannot be upgraded",
                )
                finish_one(s, t)
            try_start(s, t)
            wake(d, t)
        elif kind == _RETRY:
            s = m_src[a]
            if hstate[s] != MAINT:  # its host crashed meanwhile
                mig_state[a] = OUTCOME_CODE["lost" if m_vm[a] in lost_vm else "skipped"]
                continue
            requeue(s, a)
            try_start(s, t)
        elif kind == _WAVE:
            w = a
            whosts, queues, stops = prep.waves[w]
            wave_start[w] = t
            wave_left[w] = len(whosts)
            if tl is not None:
                tl((t, "wave_start", w + 1, None, None, None, None))
            changed_ha: set[int] = set()
            live_hosts = []
            for h in whosts:
                host_wave[h] = w
                if hstate[h] != NORMAL:
                    # Crashed or failed earlier: nothing to do; its VMs went down with it.
                    for mi in queues.get(h, ()):
                        gone = m_vm[mi] in lost_vm
                        mig_state[mi] = OUTCOME_CODE["lost" if gone else "skipped"]
                    host_done(h, t, "down")
                    continue
                maint_start[h] = t
                set_down(h, MAINT)
                changed_ha.update(prep.host_ha[h])
                live_hosts.append(h)
                if tl is not None:
                    tl((t, "host_disable", w + 1, hosts[h], None, None, None))
            check_ha(t, sorted(changed_ha))
            sample_all(t)
            if live_hosts:
                heap_push(heap, (t + model.disable_s, seq, _DRAIN, w, 0))
                seq += 1
        elif kind == _DRAIN:
            whosts, queues, stops = prep.waves[a]
            if all(hstate[h] != MAINT for h in whosts):
                continue  # its hosts crashed while being disabled: the wave is over already
            for h in whosts:
                if hstate[h] != MAINT:
                    continue
                # (map copies references; compiled, a comprehension would rebuild each tuple)
                mis = queues.get(h, ())
                q = list(map(entry.__getitem__, mis))
                queue[h] = q
                qdst[h] = list(map(m_dst.__getitem__, mis))
                sk = 0
                for mi in mis:
                    if vm_host[m_vm[mi]] != h:
                        sk += 1
                skips[h] = sk
                sv = [j for j in stops.get(h, ()) if j not in lost_vm]
                pending[h] = len(q) + (1 if sv else 0)
                if sv:
                    for j in sv:
                        stop_begin[j] = t
                    wait = model.shutdown_s if any(prep.stop_active[j] for j in sv) else 0.0
                    heap_push(heap, (t + wait, seq, _STOPPED, h, 0))
                    seq += 1
                if pending[h] == 0:
                    drained(h, t)
            for h in whosts:
                if hstate[h] == MAINT:
                    try_start(h, t)
        elif kind == _STOPPED:
            if hstate[a] != MAINT:
                continue  # the host crashed while its VMs shut down: nothing happens now
            finish_one(a, t)
        elif kind == _UPGRADED:
            h = a
            if hstate[h] != MAINT:
                continue
            if up_fail[h] and model.rollback:
                record_failure(
                    t,
                    "upgrade",
                    h,
                    None,
                    f"{hosts[h]} failed its upgrade; rolled back ({rb_dur[h]:.0f} s)",
                )
                rolled_back.add(h)
                rollback_total += rb_dur[h]
                if tl is not None:
                    tl((t, "rollback_start", host_wave[h] + 1, hosts[h], None, None, None))
                heap_push(heap, (t + rb_dur[h], seq, _ROLLEDBACK, h, 0))
                seq += 1
            elif up_fail[h]:
                hstate[h] = DONE_DOWN
                record_failure(
                    t, "upgrade", h, None, f"{hosts[h]} failed its upgrade and stays down"
                )
                for j in prep.waves[host_wave[h]][2].get(h, ()):
                    lost_vm.add(j)
                host_done(h, t, "upgrade-failed")
            else:
                heap_push(heap, (t + model.enable_s, seq, _ENABLE, h, 1))
                seq += 1
        elif kind == _ROLLEDBACK:
            h = a
            if hstate[h] != MAINT:
                continue
            if tl is not None:
                tl((t, "rollback_end", host_wave[h] + 1, hosts[h], None, None, None))
            heap_push(heap, (t + model.enable_s, seq, _ENABLE, h, 0))
            seq += 1
        elif kind == _SOAK_END:
            soak_total += model.soak_s
            if tl is not None:
                verdict = "failed: rolling back" if canary_fails else "passed"
                tl((t, "soak_end", a + 1, None, None, None, f"canary {verdict}"))
            if canary_fails:
                record_failure(
                    t,
                    "canary",
                    canary[0],
                    None,
                    "the canary failed its checks; rolling back "
                    + ", ".join(hosts[c] for c in canary),
                )
                changed: set[int] = set()
                for c in canary:
                    if hstate[c] != NORMAL:
                        continue
                    set_down(c, MAINT)
                    changed.update(prep.host_ha[c])
                    rolled_back.add(c)
                    rollback_total += rb_dur[c]
                    canary_left += 1
                    if tl is not None:
                        tl((t, "rollback_start", host_wave[c] + 1, hosts[c], None, None, None))
                    heap_push(heap, (t + model.disable_s + rb_dur[c], seq, _ROLLEDBACK, c, 0))
                    seq += 1
                check_ha(t, sorted(changed))
                sample_all(t)
            if canary_left == 0:
                canary_state = 2
                if canary_next < n_waves:
                    heap_push(heap, (t, seq, _WAVE, canary_next, 0))
                    seq += 1
        elif kind == _ENABLE:
            h = a
            if hstate[h] != MAINT:
                continue
            hstate[h] = NORMAL
            dest_ok[h] = avail0[h]
            open_[h] = avail0[h] and in_busy[h] < k_in
            if avail0[h]:
                if group_of[h] >= 0:
                    note_min(group_of[h])
                set_available(st, h, True)
            check_ha(t, prep.host_ha[h])
            g = group_of[h]
            if g >= 0:
                check_group(t, g)
                if record:
                    sample_group(t, g)
            if canary_state == 1 and h in canary and h in host_status:
                # A canary host back at its old version: the run goes on once all are.
                host_status[h] = "rolled-back"
                if tl is not None:
                    tl((t, "host_enable", host_wave[h] + 1, hosts[h], None, None, "rolled-back"))
                canary_left -= 1
                if canary_left == 0:
                    canary_state = 2
                    if canary_next < n_waves:
                        heap_push(heap, (t, seq, _WAVE, canary_next, 0))
                        seq += 1
                wake(h, t)
                continue
            for j in prep.waves[host_wave[h]][2].get(h, ()):
                if j in stop_begin and j not in lost_vm:
                    stop_down[j] = (
                        t + (model.boot_s if prep.stop_active[j] else 0.0) - stop_begin[j]
                    )
            if tl is not None:
                tl(
                    (
                        t,
                        "host_enable",
                        host_wave[h] + 1,
                        hosts[h],
                        None,
                        None,
                        "upgraded" if b else "rolled-back" if h in rolled_back else "not-upgraded",
                    )
                )
            host_done(
                h, t, "upgraded" if b else "rolled-back" if h in rolled_back else "not-upgraded"
            )
            wake(h, t)
        elif kind == _CRASH:
            if waves_done >= n_waves:
                continue  # the upgrade is over: not its concern
            cands = [
                h for h in range(H) if prep.capacity.compute[h] and hstate[h] in (NORMAL, MAINT)
            ]
            if not cands:
                continue
            h = cands[min(len(cands) - 1, int(crash_u * len(cands)))]
            was = hstate[h]
            lost = lose_vms_on(h, t)
            g = group_of[h]
            need = [0] * len(prep.classes)
            for j in lost:
                for c, n in enumerate(demand[j]):
                    need[c] += n
            set_down(h, CRASHED)
            fits = bool(g < 0) or all(f >= n for f, n in zip(st.free_of(g), need, strict=True))
            record_failure(
                t, "crash", h, None, f"{hosts[h]} crashed with {len(lost)} VM(s) on it", fits
            )
            touched: set[int] = set()
            for mi in sorted(in_flight):
                if m_src[mi] == h or m_dst[mi] == h:
                    touched.add(m_src[mi])
                    token[mi] += 1
                    in_flight.discard(mi)
                    s, d = m_src[mi], m_dst[mi]
                    out_busy[s] -= 1
                    in_busy[d] -= 1
                    open_[d] = dest_ok[d]
                    if dyn:
                        leave(mi)
                    if m_src[mi] == h:
                        release_dst(mi)
                        mig_end[mi] = t
                        mig_state[mi] = OUTCOME_CODE["lost"]
                    else:
                        # The destination is gone: the attempt fails; it waits for a destination.
                        release_dst(mi)
                        requeue(s, mi)
            if was == MAINT:
                for mi, _, _ in queue[h]:
                    mig_state[mi] = OUTCOME_CODE["lost"]
                # Its migrations not started yet (its drain had not begun, or they waited):
                for mi in prep.waves[host_wave[h]][1].get(h, ()):
                    if mig_state[mi] < 0 and tries[mi] == 0:
                        mig_state[mi] = OUTCOME_CODE["lost" if m_vm[mi] in lost_vm else "skipped"]
                queue[h] = []
                qdst[h] = []
                skips[h] = 0
                host_done(h, t, "crashed")
            for j in lost:
                vm_host[j] = -1
            check_ha(t, prep.host_ha[h])
            sample_all(t)
            for s in sorted(touched):
                try_start(s, t)
            for d in [d for d in range(H) if waiting_on[d]]:
                wake(d, t)
        if dirty:
            # Rebalance: the running migrations on the hosts whose counts changed get their
            # new share. Counts are final here, so a migration seen twice is unchanged the
            # second time; the order (set order, out then in) fixes the order of ties in the heap.
            for h in dirty:
                n = out_busy[h] - in_busy[h]
                if n == last_net[h]:
                    continue  # same count as at the last rebalance: same shares
                last_net[h] = n
                if n > 0:
                    sa = nic[h] / n
                    for mi in run_out[h]:
                        d = m_dst[mi]
                        sb = nic[d] / in_busy[d]
                        share = sa if sa < sb else sb
                        if share != cur_bw[mi]:
                            reshare(mi, share, t)
                elif n < 0:
                    sb = nic[h] / -n
                    for mi in run_in[h]:
                        s = m_src[mi]
                        sa = nic[s] / out_busy[s]
                        share = sa if sa < sb else sb
                        if share != cur_bw[mi]:
                            reshare(mi, share, t)
            dirty.clear()
        last = t  # reached only by events that were not stale
        popped += 1

    for g in range(len(st.groups)):
        note_min(g)
    makespan = last
    stalled = waves_done < n_waves
    stall = None
    if stalled:
        stall = _stall_report(prep, queue, in_flight, hstate, avail0, last)
        if tl is not None:
            tl((last, "stall", None, None, None, None, stall["reason"]))
    # Absorbed: its VMs fitted at that moment and its group's headroom held from then on.
    for f in failures:
        later = any(tb >= f.t for tb in headroom_breach_start.get(f.group, ()))
        still = any(k[0] == "headroom" and k[1] == f.group for k in in_breach)
        f.absorbed = f.fits and not later and not (still and f.group >= 0)
    lb = lower_bound(prep, up_dur_l)
    return SimResult(
        seed=seed,
        makespan_s=makespan,
        completed=not stalled,
        stalled=stalled,
        stall=stall,
        events=popped + sum(tries),  # a migration start is an event of its own
        heap_events=popped,
        wave_start=wave_start,
        wave_end=wave_end,
        mig_start=mig_start,
        mig_end=mig_end,
        mig_state=mig_state,
        mig_attempts=tries,
        mig_bytes=mig_bytes,
        mig_down=mig_down,
        mig_bw=cur_bw if dyn else list(prep.m_bw),
        host_status=host_status,
        host_times=host_times,
        stop_down=stop_down,
        failures=failures,
        breaches=breaches,
        breach_counts=breach_counts,
        headroom_samples=samples,
        min_slack=min_slack,
        lower_bound_s=lb,
        plan_lower_bound_s=plan_lower_bound(prep, up_dur_l),
        vms_lost=len(lost_vm),
        timeline=timeline,
        rollback_s=rollback_total,
        soak_s=soak_total,
        canary_hosts=tuple(hosts[c] for c in canary),
        canary_failed=bool(canary and canary_fails),
    )


def _stall_report(
    prep: Prepared,
    queue: list[list[tuple[int, int, int]]],
    in_flight: set[int],
    hstate: list[int],
    avail0: list[bool],
    t: float,
) -> dict[str, Any]:
    hosts = prep.hosts
    waiting = []
    for h, q in enumerate(queue):
        for mi, _, _ in q:
            d = prep.m_dst[mi]
            why = (
                "crashed"
                if hstate[d] == CRASHED
                else "down after a failed upgrade"
                if hstate[d] == DONE_DOWN
                else "in maintenance"
                if hstate[d] == MAINT
                else "disabled or down in the inventory"
                if not avail0[d]
                else "busy"
            )
            waiting.append(
                {
                    "vm": prep.inv.vms[prep.m_vm[mi]].id,
                    "from": hosts[h],
                    "to": hosts[d],
                    "why": f"destination {why}",
                }
            )
    never = [
        {
            "vm": prep.inv.vms[prep.m_vm[mi]].id,
            "from": hosts[prep.m_src[mi]],
            "to": hosts[prep.m_dst[mi]],
            "why": "never completes: does not converge and the completion timeout is off",
        }
        for mi in sorted(in_flight)
    ]
    items = never + waiting
    first = items[0] if items else None
    reason = f"no event left at {t:.0f} s with {len(items)} migration(s) pending" + (
        f"; e.g. {first['vm']} {first['from']} -> {first['to']}: {first['why']}" if first else ""
    )
    return {"t_s": round(t, 3), "reason": reason, "pending": items[:50], "count": len(items)}


def plan_lower_bound(prep: Prepared, up_dur: list[float]) -> float:
    """This plan's own bound: its waves run one after another, so the makespan is at least the sum
    over waves of their slowest host's p_h (failure-free, with this run's upgrade times)."""
    m = prep.model
    total = _soak(prep)
    for whosts, _, stops in prep.waves:
        worst = 0.0
        for h in whosts:
            drain = prep.lb_drain.get(h, 0.0)
            if any(prep.stop_active[j] for j in stops.get(h, ())):
                drain = max(drain, m.shutdown_s)
            up = 0.0 if h in prep.lb_not_upgraded else up_dur[h]
            worst = max(worst, m.disable_s + drain + up + m.enable_s)
        total += worst
    return total


def lower_bound(prep: Prepared, up_dur: list[float]) -> float:
    """The simulator's own bound (`sim.lowerbound`): computed once per run from the run's upgrade
    times, it is not the loop's semantics this oracle checks (with `policy.first` it has grown
    the chain that selector forces)."""
    from sim import lowerbound

    return lowerbound.lower_bound(prep, up_dur)


def _soak(prep: Prepared) -> float:
    """The soak a failure-free run certainly makes: a canary, and a host that gets upgraded."""
    m = prep.model
    if m.canary_hosts <= 0 or m.soak_s <= 0:
        return 0.0
    upgraded = any(h not in prep.lb_not_upgraded for whosts, _, _ in prep.waves for h in whosts)
    return m.soak_s if upgraded else 0.0
