"""The state of one run of the event loop (`sim.loop` has its handlers): hosts, VMs, migrations,
queues, the headroom state and the invariants' bookkeeping, the event heap and the result.

`RunState` holds it all, with the helpers every handler shares: scheduling an event (`push`), the
timeline (`log`), the invariant checks (capacity, anti-affinity, HA groups, headroom) and the
result. `sim.loop.Run` adds one handler per event kind. The event kinds are numbered here.

Compiled with mypyc together with `sim.loop` (see setup.py and `sim.loop`'s docstring): keep it
typed, `Final` constants, no dynamic tricks. Helpers the loop calls per event live here, not in
`sim.state`, so that they run compiled (copies checked in tests/test_sim_loop_parts.py).
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect_left, insort
from collections import Counter, defaultdict
from typing import Any, Final, cast, final

from planner.admission import AdmissionState
from planner.capacity import format_amount
from planner.inventory import VM
from sim.calendar import Calendar
from sim.draws import draw
from sim.lowerbound import lower_bound, plan_lower_bound
from sim.prepare import NO_TRANSFER, Prepared, Transfer
from sim.results import Breach, Failure, SimResult
from sim.state import OFF, HeadroomState, W

# Event kinds (ints for speed; Final: constants in the compiled loop, not global lookups). A new
# kind: its number here, its handler in sim.loop.Run, a branch of Run.loop, and its `push`.
_WAVE: Final = 0  # a wave starts: its hosts are disabled (a: the wave)
_DRAIN: Final = 1  # its hosts are disabled: their migrations and stops start (a: the wave)
_END: Final = 2  # a migration ends (a: the migration, b: its token)
_FAIL: Final = 3  # a migration's attempt fails (a: the migration, b: its token)
_RETRY: Final = 4  # a failed migration is tried again (a: the migration)
_STOPPED: Final = 5  # a host's stopped VMs are shut down (a: the host)
_UPGRADED: Final = 6  # a host's upgrade ends, or fails (a: the host)
_ENABLE: Final = 7  # a host is enabled (a: the host, b: 1 upgraded, 0 not)
_CRASH: Final = 8  # a random host crashes
_ROLLEDBACK: Final = 9  # a host's rollback ends (a: the host)
_SOAK_END: Final = 10  # the canary's soak ends (a: the wave after which it soaked)
_HDRAIN: Final = 11  # pipelined: an admitted host is disabled, its drain starts (a: the host)
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


class RunState:
    """One run's state and the helpers its handlers share (see the module's docstring)."""

    def __init__(
        self, prep: Prepared, seed: int, record: bool, crash: tuple[float, float] | None
    ) -> None:
        model = prep.model
        self.prep = prep
        self.seed = seed
        self.record = record
        self.timeline: list[tuple[Any, ...]] | None = [] if record else None
        H = len(prep.hosts)
        N = len(prep.m_vm)
        self.hosts: tuple[str, ...] = prep.hosts
        self.vms: tuple[VM, ...] = prep.inv.vms
        # The run's random draws (sim.draws), each kind from its own stream.
        dr = draw(prep, seed)
        self.up_dur: list[float] = dr.up_dur
        self.up_fail: list[bool] = dr.up_fail
        self.rb_dur: list[float] = dr.rb_dur
        self.canary_fails: bool = dr.canary_fails
        self.fails: list[int] = dr.fails
        self.frac_rng: random.Random = dr.frac_rng
        self.failing: bool = model.migration_failure_p > 0 and N > 0  # some attempts fail
        self.retries: int = model.migration_retries
        self.enable_s: float = model.enable_s
        self.crash_u: float = crash[1] if crash is not None else 0.0
        self.crash_t: float = crash[0] if crash is not None else -1.0

        # Hosts, VMs and the headroom state.
        st = (
            prep.state0.copy()
            if prep.state0 is not None
            else HeadroomState(prep.capacity, prep.plan.policy.headroom)
        )
        self.st: HeadroomState = st
        self.group_of: list[int] = st.group_of
        self.demand: list[list[int]] = prep.demand
        self.vm_group: list[int] = prep.vm_group
        self.group_max: list[int] = prep.group_max
        self.gcount: dict[tuple[int, int], int] = defaultdict(int, prep.group_count0)
        self.vm_host: list[int] = prep.capacity.vm_host.tolist()
        self.avail0: list[bool] = [bool(a) for a in prep.capacity.available]
        self.ha_avail0: list[bool] = [h.available for h in prep.inv.hosts]  # enabled and up
        self.dest_ok: list[bool] = list(self.avail0)  # compute, enabled, up, not in maintenance
        self.open_: list[bool] = list(self.avail0)  # dest_ok and fewer than k_in coming in
        self.hstate: list[int] = [NORMAL] * H
        self.k_out: int = prep.k_out
        self.k_in: int = prep.k_in
        self.out_busy: list[int] = [0] * H
        self.in_busy: list[int] = [0] * H
        # Packed vectors (sim.state): room per host, free and required per group, demand per VM.
        self.st_avail: list[bool] = st.avail
        self.room: list[int] = st.room
        self.free_p: list[int] = st.free_p
        self.req_p: list[int] = st.req_p
        self.all_ok: int = st.top
        self.dem_p: list[int] = prep.demand_p
        self.dem_mask: list[int] = prep.demand_mask
        self.n_classes: int = len(prep.classes)

        # Migrations: the plan's, and what becomes of them.
        self.m_src: list[int] = prep.m_src
        self.m_dst: list[int] = prep.m_dst
        self.m_vm: list[int] = prep.m_vm
        self.m_dur: list[float] = prep.m_dur
        self.mig_start: list[float] = [math.nan] * N
        self.mig_end: list[float] = [math.nan] * N
        self.mig_state: list[int] = [-1] * N
        self.attempts: list[int] = [0] * N  # failed attempts so far
        self.tries: list[int] = [0] * N
        self.mig_bytes: list[float] = [0.0] * N
        self.mig_down: list[float] = [0.0] * N
        self.token: list[int] = [0] * N  # its events carry it: a newer one makes them stale
        self.in_flight: set[int] = set()
        self.track: bool = crash is not None  # in flight matters only to a crash (and a stall)
        # The ints 0 .. max(H, N) - 1 as objects: compiled, a set.add(box[i]) stores the object,
        # where set.add(i) would allocate a new one (i is a machine int there).
        self.box: list[Any] = list(range(max(H, N)))
        self.lost_vm: set[int] = set()

        # Dynamic NIC sharing: who runs on each host, and each running migration's progress.
        dyn = self.dyn = prep.dynamic
        self.nic: list[float] = prep.nic
        self.by_share: dict[float, list[Transfer | None]] = prep.by_share
        self.m_kind: list[int] = prep.m_kind
        self.overhead: float = model.orchestration_overhead_s
        self.run_out: list[set[int]] = [set() for _ in range(H)] if dyn else []
        self.run_in: list[set[int]] = [set() for _ in range(H)] if dyn else []
        self.dirty: set[int] = set()  # hosts whose running migrations changed
        # Per host, at the last rebalance: migrations running out of it, minus those running in
        # (a host sends, as a source in maintenance, or receives, never both at once).
        self.last_net: list[int] = [0] * H
        self.cur_bw: list[float] = list(prep.m_bw) if dyn else []
        self.cur_tr: list[Transfer] = [NO_TRANSFER] * N if dyn else []
        self.x0: list[float] = [0.0] * N if dyn else []  # its transfer starts (after overhead)
        self.seg_t: list[float] = [0.0] * N if dyn else []  # progress is counted up to here
        self.prog: list[float] = [0.0] * N if dyn else []  # fraction of the transfer done
        self.target: list[float] = [1.0] * N if dyn else []  # fraction where it ends (or fails)
        self.ekind: list[int] = [_END] * N if dyn else []
        self.bw_acc: list[float] = [0.0] * N if dyn else []  # share x seconds: its mean share

        # The events.
        self.heap: list[object] = []  # Events (heap_push, heap_pop)
        self.seq = 0
        self.popped = 0  # effective heap events (with the migration starts: the events)
        self.now = 0.0
        self.last = 0.0  # time of the last event that changed something

        # Invariants and samples.
        self.breaches: list[Breach] = []
        self.breach_counts: Counter[str] = Counter()
        self.in_breach: set[tuple[Any, ...]] = set()
        self.headroom_breach_start: dict[int, list[float]] = defaultdict(list)  # group -> times
        self.min_slack: list[list[int]] = [[1 << 62] * self.n_classes for _ in st.groups]
        # Free capacity only falls at migration starts, so the least slack between two other
        # changes is the one after the last start: starts only flag their group (min_pending),
        # and the slack is taken before any other change of free or required capacity
        # (note_min).
        self.min_pending: list[bool] = [False] * len(st.groups)
        self.samples: list[tuple[float, int, int, int, int]] = []
        self.failures: list[Failure] = []

        # Waves and hosts.
        n_waves = self.n_waves = len(prep.waves)
        self.wave_start: list[float] = [math.nan] * n_waves
        self.wave_end: list[float] = [math.nan] * n_waves
        self.wave_left: list[int] = [0] * n_waves
        self.waves_done = 0
        self.host_wave: dict[int, int] = {}
        self.pending: list[int] = [0] * H  # per host in maintenance: migrations and stops left
        # Per source host, its migrations still to start in plan order: (migration, VM,
        # destination), their destinations alone (qdst), and how many of their VMs are not on
        # it (skips: lost in a crash, left elsewhere by a failure, or moved by another migration
        # in the wave).
        self.queue: list[list[tuple[int, int, int]]] = [[] for _ in range(H)]
        self.qdst: list[list[int]] = [[] for _ in range(H)]
        self.skips: list[int] = [0] * H
        self.entry: list[tuple[int, int, int]] = prep.m_entry
        self.m_dup: list[bool] = prep.m_dup
        # Per destination: the sources with a migration waiting for it.
        self.waiting_on: list[set[int]] = [set() for _ in range(H)]
        self.host_failed: set[int] = set()
        self.host_status: dict[int, str] = {}
        self.host_times: dict[int, tuple[float, float, float]] = {}
        self.maint_start: dict[int, float] = {}
        self.upgrade_start: dict[int, float] = {}
        self.stop_down: dict[int, float] = {}
        self.stop_begin: dict[int, float] = {}

        # Rollbacks and the canary.
        self.rolled_back: set[int] = set()
        self.rollback_total = 0.0
        self.upgraded_order: list[int] = []  # hosts back upgraded, in order (canary's first)
        # The canary moves VMs onto its hosts: compute hosts in service, never controllers.
        self.canary_host_ok: list[bool] = [
            prep.inv.host(name).is_compute and prep.inv.host(name).enabled for name in self.hosts
        ]
        self.canary_state = 0 if model.canary_hosts > 0 else 2  # 0 pending, 1 on, 2 over
        self.canary: list[int] = []
        self.canary_left = 0
        self.canary_next = -1  # the wave that waits for the canary
        self.soak_total = 0.0

        # Pipelined execution: hosts admitted one by one (planner.admission), in plan order.
        self.pipelined: bool = prep.pipelined
        self.adm: AdmissionState | None = prep.adm0.copy() if prep.adm0 is not None else None
        # (wave, host) not admitted yet, in plan order (a host's first wave only).
        self.cand: list[tuple[int, int]] = []
        if prep.pipelined:
            seen: set[int] = set()
            for w in range(n_waves):
                for h in prep.waves[w][0]:
                    if h not in seen:
                        seen.add(h)
                        self.cand.append((w, h))
                        self.wave_left[w] += 1
        self.admitting = False  # admit_more is running (re-entered: it runs again)
        self.again = False
        self.refused: dict[int, str] = {}  # per host waiting: its last refusal
        # Hosts refused until another host changes state (Refusal.until): not asked meanwhile.
        self.parked_on: list[int] = [-1] * H
        self.parked: list[list[int]] = [[] for _ in range(H)] if prep.pipelined else []
        self.refusals: Counter[str] = Counter()  # refusals by rule (a host's changes of reason)
        # Maintenance windows (sim.calendar): None, always open; the times a wait ends, scheduled.
        self.cal: Calendar | None = prep.calendar
        self.wakes: set[float] = set()

    # --- helpers: migrations that end without landing ------------------------------------------
    @final  # not overridden: a direct call in the compiled loop
    def requeue(self, s: int, mi: int) -> None:
        """Migration mi waits again at the head of its source's queue."""
        self.queue[s].insert(0, self.entry[mi])
        self.qdst[s].insert(0, self.m_dst[mi])
        if self.vm_host[self.m_vm[mi]] != s:
            self.skips[s] += 1

    @final  # not overridden: a direct call in the compiled loop
    def release_dst(self, mi: int) -> None:
        """Migration mi's VM no longer counts on its destination (the attempt failed, or was
        aborted)."""
        d, v = self.m_dst[mi], self.m_vm[mi]
        gd = self.group_of[d]
        if gd >= 0:
            self.note_min(gd)
        self.st.remove(d, self.demand[v])
        g = self.vm_group[v]
        if g >= 0:
            self.gcount[(g, d)] -= 1
        if gd >= 0 and self.st.avail[d]:
            self.check_group(self.now, gd)
        if self.in_breach:
            self.cap_recovered(d)

    # --- helpers: dynamic NIC shares -------------------------------------------------------------
    @final  # not overridden: a direct call in the compiled loop
    def leave(self, mi: int) -> None:
        """Migration mi no longer uses its NICs (ended, failed or cancelled)."""
        s, d = self.m_src[mi], self.m_dst[mi]
        self.run_out[s].discard(mi)
        self.run_in[d].discard(mi)
        self.dirty.add(s)
        self.dirty.add(d)

    @final  # not overridden: a direct call in the compiled loop
    def rebalance(self, t: float) -> None:
        """The running migrations on the hosts whose counts changed get their new share. Counts
        are final here, so a migration seen twice is unchanged the second time; the order (set
        order, out then in) fixes the order of ties in the heap."""
        out_busy, in_busy, nic, m_src, m_dst = (
            self.out_busy,
            self.in_busy,
            self.nic,
            self.m_src,
            self.m_dst,
        )
        cur_bw, last_net = self.cur_bw, self.last_net
        for h in self.dirty:
            n = out_busy[h] - in_busy[h]
            if n == last_net[h]:
                continue  # same count as at the last rebalance: same shares
            last_net[h] = n
            if n > 0:
                sa = nic[h] / n
                for mi in self.run_out[h]:
                    d = m_dst[mi]
                    sb = nic[d] / in_busy[d]
                    share = sa if sa < sb else sb
                    if share != cur_bw[mi]:
                        self.reshare(mi, share, t)
            elif n < 0:
                sb = nic[h] / -n
                for mi in self.run_in[h]:
                    s = m_src[mi]
                    sa = nic[s] / out_busy[s]
                    share = sa if sa < sb else sb
                    if share != cur_bw[mi]:
                        self.reshare(mi, share, t)
        self.dirty.clear()

    @final  # not overridden: a direct call in the compiled loop
    def reshare(self, mi: int, share: float, t: float) -> None:
        """Running migration mi goes on at `share`: the progress made (the fraction of its
        transfer done) is kept, the rest goes at the new speed: its end event moves."""
        overhead, seg_t, x0, prog = self.overhead, self.seg_t, self.x0, self.prog
        old = self.cur_tr[mi].total_s - overhead
        base = seg_t[mi] if seg_t[mi] > x0[mi] else x0[mi]
        if t > base:
            self.bw_acc[mi] += self.cur_bw[mi] * (t - base)
            if old != math.inf:
                prog[mi] += (t - base) / old
        seg_t[mi] = t if t > x0[mi] else x0[mi]
        tr = self.prep.transfer(mi, share)
        self.cur_bw[mi] = share
        self.cur_tr[mi] = tr
        new = tr.total_s - overhead
        self.token[mi] += 1
        if new != math.inf:
            rest = self.target[mi] - prog[mi]
            at = seg_t[mi] + (rest if rest > 0 else 0.0) * new
            self.push(at, self.ekind[mi], mi, self.token[mi])
        else:
            self.in_flight.add(mi)  # never ends now: a stall names it

    # --- maintenance windows --------------------------------------------------------------------
    @final
    def wait_window(self, t: float, w: int, h: int) -> bool:
        """Whether host h (pipelined; h < 0: wave w's hosts, lock-step) must wait for a window
        to enter maintenance at t: it is closed, or closes before the P95 maintenance ends. The
        end of the wait is scheduled: a _WAVE event (w, or -1 pipelined: admit more)."""
        cal = self.cal
        assert cal is not None
        at = cal.host_fit(h, t) if h >= 0 else cal.wave_fit(self.prep.waves[w][0], t)
        if at == t:
            return False
        if h >= 0:
            why = "window: " + (
                f"waits for the opening at {cal.at(at).isoformat()}"
                if at < math.inf
                else "no opening of its windows is long enough"
            )
            if self.refused.get(h) != why:
                self.refused[h] = why
                self.refusals["window"] += 1
                if self.record:
                    self.log(t, "admission_refused", w + 1, self.hosts[h], None, None, why)
        elif self.record:
            self.log(t, "window_wait", w + 1, None, None, None, cal.at(at).isoformat())
        if at < math.inf and (h < 0 or at not in self.wakes):
            self.wakes.add(at)
            self.push(at, _WAVE, w if h < 0 else -1, 0)
        return True

    # --- scheduling and the timeline -------------------------------------------------------------
    def push(self, t: float, kind: int, a: int, b: int) -> None:
        heap_push(self.heap, (t, self.seq, kind, a, b))
        self.seq += 1

    def log(
        self, t: float, event: str, wave: Any, host: Any, vm: Any, to: Any, detail: Any
    ) -> None:
        """A timeline row (only when recording: check `record` first, to build no arguments)."""
        if self.timeline is not None:
            self.timeline.append((t, event, wave, host, vm, to, detail))

    # --- helpers: hosts --------------------------------------------------------------------------
    def set_down(self, h: int, new_state: int) -> None:
        self.hstate[h] = new_state
        self.dest_ok[h] = False
        self.open_[h] = False
        if self.group_of[h] >= 0:
            self.note_min(self.group_of[h])
        set_available(self.st, h, False)

    # --- helpers: invariants ---------------------------------------------------------------------
    def breach(self, t: float, kind: str, message: str, objs: tuple[str, ...]) -> None:
        self.breach_counts[kind] += 1
        if len(self.breaches) < MAX_DETAILED_BREACHES:
            self.breaches.append(Breach(t, kind, message, objs))
        if self.record:
            self.log(t, "breach", None, None, None, None, f"{kind}: {message}")

    def cap_recovered(self, h: int) -> None:
        """A host over capacity that is within it again: a later overflow is a new breach."""
        bk = ("cap", h)
        if bk in self.in_breach and not self.st.over(h):
            self.in_breach.discard(bk)

    def note_min(self, g: int) -> None:
        """Take group g's slack into its minimum if starts changed it since it was last taken
        (before anything else changes g's free or required capacity)."""
        if self.min_pending[g]:
            self.min_pending[g] = False
            free, req, ms = (
                unpacked(self.free_p[g], self.n_classes),
                self.st.required[g],
                self.min_slack[g],
            )
            for c in range(self.n_classes):
                slack = free[c] - req[c]
                if slack < ms[c]:
                    ms[c] = slack

    def check_group(self, t: float, g: int) -> None:
        """Group g's headroom: its least slack, and a breach where a class is short."""
        n_classes = self.n_classes
        free, req, ms = unpacked(self.free_p[g], n_classes), self.st.required[g], self.min_slack[g]
        self.min_pending[g] = False
        in_breach = self.in_breach
        for c in range(n_classes):
            slack = free[c] - req[c]
            if slack < ms[c]:
                ms[c] = slack
            if slack < 0:
                bk = ("headroom", g, c)
                if bk not in in_breach:
                    in_breach.add(bk)
                    self.headroom_breach_start[g].append(t)
                    rc, group = self.prep.classes[c], self.st.groups[g]
                    self.breach(
                        t,
                        "headroom",
                        f"{group}: {rc} free {format_amount(rc, free[c])} < "
                        f"{format_amount(rc, req[c])} required",
                        (group, rc),
                    )
            elif in_breach:
                in_breach.discard(("headroom", g, c))

    def check_ha(self, t: float, changed: list[int]) -> None:
        hstate, ha_avail0 = self.hstate, self.ha_avail0
        for i in changed:
            name, members, need = self.prep.ha[i]
            up = sum(1 for h in members if hstate[h] == NORMAL and ha_avail0[h])
            bk = ("ha", i)
            if up < need:
                if bk not in self.in_breach:
                    self.in_breach.add(bk)
                    self.breach(
                        t,
                        "ha_group",
                        f"HA group {name}: {up} of {len(members)} hosts available, "
                        f"min_available is {need}",
                        (name,),
                    )
            else:
                self.in_breach.discard(bk)

    def sample_all(self, t: float) -> None:
        for g in range(len(self.st.groups)):
            self.check_group(t, g)
            if self.record:
                self.sample_group(t, g)

    def sample_group(self, t: float, g: int) -> None:
        free, req = unpacked(self.free_p[g], self.n_classes), self.st.required[g]
        for c in range(self.n_classes):
            self.samples.append((t, g, c, free[c], req[c]))

    def record_failure(
        self, t: float, kind: str, h: int, vm: int | None, detail: str, fits: bool = True
    ) -> None:
        vm_id = self.vms[vm].id if vm is not None else None
        self.failures.append(Failure(t, kind, self.hosts[h], vm_id, detail, self.group_of[h], fits))
        if self.record:
            self.log(t, "failure", None, self.hosts[h], None, None, f"{kind}: {detail}")
        if kind != "crash":  # a crash samples once its effects are applied
            self.sample_all(t)

    # --- the result ------------------------------------------------------------------------------
    def result(self) -> SimResult:
        prep = self.prep
        for g in range(len(self.st.groups)):
            self.note_min(g)
        last = self.last
        stalled = self.waves_done < self.n_waves
        stall = None
        if stalled:
            stall = self.stall_report()
            if self.record:
                self.log(last, "stall", None, None, None, None, stall["reason"])
        # Absorbed: its VMs fitted at that moment and its group's headroom held from then on.
        for f in self.failures:
            later = any(tb >= f.t for tb in self.headroom_breach_start.get(f.group, ()))
            still = any(k[0] == "headroom" and k[1] == f.group for k in self.in_breach)
            f.absorbed = f.fits and not later and not (still and f.group >= 0)
        return SimResult(
            seed=self.seed,
            makespan_s=last,
            completed=not stalled,
            stalled=stalled,
            stall=stall,
            events=self.popped + sum(self.tries),  # a migration start is an event of its own
            heap_events=self.popped,
            wave_start=self.wave_start,
            wave_end=self.wave_end,
            mig_start=self.mig_start,
            mig_end=self.mig_end,
            mig_state=self.mig_state,
            mig_attempts=self.tries,
            mig_bytes=self.mig_bytes,
            mig_down=self.mig_down,
            mig_bw=self.cur_bw if self.dyn else list(prep.m_bw),
            host_status=self.host_status,
            host_times=self.host_times,
            stop_down=self.stop_down,
            failures=self.failures,
            breaches=self.breaches,
            breach_counts=self.breach_counts,
            headroom_samples=self.samples,
            min_slack=self.min_slack,
            lower_bound_s=lower_bound(prep, self.up_dur),
            plan_lower_bound_s=plan_lower_bound(prep, self.up_dur),
            vms_lost=len(self.lost_vm),
            timeline=self.timeline,
            rollback_s=self.rollback_total,
            soak_s=self.soak_total,
            canary_hosts=tuple(self.hosts[c] for c in self.canary),
            canary_failed=bool(self.canary and self.canary_fails),
            execution="pipelined" if self.pipelined else "lockstep",
            refusals=self.refusals,
        )

    def stall_report(self) -> dict[str, Any]:
        """What is pending when no event is left, and why."""
        prep, hosts, hstate, avail0 = self.prep, self.hosts, self.hstate, self.avail0
        waiting = []
        for h, q in enumerate(self.queue):
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
                vm = self.vms[prep.m_vm[mi]].id
                waiting.append(
                    {"vm": vm, "from": hosts[h], "to": hosts[d], "why": f"destination {why}"}
                )
        never = [
            {
                "vm": self.vms[prep.m_vm[mi]].id,
                "from": hosts[prep.m_src[mi]],
                "to": hosts[prep.m_dst[mi]],
                "why": "never completes: does not converge and the completion timeout is off",
            }
            for mi in sorted(self.in_flight)
        ]
        held = [
            {"host": hosts[h], "wave": w + 1, "why": f"not admitted: {self.refused.get(h, '-')}"}
            for w, h in self.cand
        ]
        items = never + waiting + held
        first = items[0] if items else None
        t = self.last
        what = f"{len(never) + len(waiting)} migration(s)" + (
            f" and {len(held)} host(s) not admitted" if held else ""
        )
        eg = ""
        if first and "vm" in first:
            eg = f"; e.g. {first['vm']} {first['from']} -> {first['to']}: {first['why']}"
        elif first:
            eg = f"; e.g. {first['host']}: {first['why']}"
        reason = f"no event left at {t:.0f} s with {what} pending{eg}"
        return {"t_s": round(t, 3), "reason": reason, "pending": items[:50], "count": len(items)}
