"""The simulator's event engine as it was before the dynamic NIC sharing was made fast: a frozen
copy of `sim/engine.py` (commit 59e259a), the oracle of `tests/test_sim_engine_equivalence.py`.

Do not optimise or extend it. The optimised engine must give the same runs (times, bytes,
downtime, outcomes, events) as this one; a change of the simulator's semantics is made in both
(or this oracle retired) on purpose, never to make the comparison pass. It carries its own copy of
`sim.state.HeadroomState` as it was (lists; it inlines and mutates them). (One edit since: it
calls `Prepared.transfer` where it looked up a private cache that is gone. And a fix of the
semantics, made in both: a stale shutdown end or drain start, after its host crashed, is not an
event; a host crashing before its drain began marks its migrations lost or skipped.)

The original module docstring follows.

The discrete-event simulation of executing a plan, on a heapq event loop of its own.

Executor semantics, wave after wave: disable the wave's hosts; after `disable_s` start their
migrations, in the plan's order per source host, at most k_out at once per source
(`max_concurrent_live_migrations`) and k_in at once per destination (`max_inbound_migrations`),
a destination only while it is enabled and up; stop in place the VMs the plan stops; a host whose
VMs are all gone is upgraded at once (its own duration, drawn per run), then enabled after
`enable_s`; the next wave starts when every host of this one is done.

Bandwidth: each host's NIC (each direction) is split evenly among the migrations that can run on
it at once in the wave: a migration gets min(live_migration_bandwidth, NIC_src / c_out(src),
NIC_dst / c_in(dst)), where c_out(src) = min(k_out, what src sends, each destination counting at
most k_in) and c_in(dst) likewise. So a migration's duration, downtime and bytes are fixed
before the run (`prepare`) and shared by every Monte Carlo run; the run itself is only
scheduling, failures and invariants.

Events: every event popped from the heap that changes something (stale ones, e.g. the end of a
migration cancelled by a crash, are skipped and not counted) plus every migration start. The
makespan is the time of the last such event.

Invariants, checked at every event that can change them, with the simulated time of a breach:
capacity on the destination (an in-flight VM counts on both its source and destination), hard
anti-affinity (likewise), HA groups' min_available, and headroom per policy (`sim.state`, equal to
`capacity.headroom`). Ties in time are broken by insertion order: the same seed gives the same run.
"""

from __future__ import annotations

import gc
import heapq
import math
import random
from bisect import bisect_left, insort
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from planner.capacity import CapacityModel, format_amount, scope_groups
from planner.policy import Headroom
from sim.prepare import NO_TRANSFER, OUTCOME_CODE, OUTCOME_NAMES, Prepared, Transfer, prepare

__all__ = ["OUTCOME_NAMES", "Breach", "Failure", "Prepared", "SimResult", "prepare", "simulate"]


class HeadroomState:  # sim/state.py's, as it was (lists)
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


# Event kinds (ints for speed).
_WAVE, _DRAIN, _END, _FAIL, _RETRY, _STOPPED, _UPGRADED, _ENABLE, _CRASH = range(9)
# Host states.
NORMAL, MAINT, DONE_DOWN, CRASHED = 0, 1, 2, 3
MAX_DETAILED_BREACHES = 200


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------
@dataclass
class Breach:
    t: float
    kind: str  # capacity, anti_affinity, ha_group, headroom
    message: str
    objects: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "t_s": round(self.t, 3),
            "kind": self.kind,
            "message": self.message,
            "objects": list(self.objects),
        }


@dataclass
class Failure:
    t: float
    kind: str  # migration, upgrade, crash, timeout
    host: str
    vm: str | None
    detail: str
    group: int  # scope group of the host (-1: none)
    fits: bool = True  # its VMs fit in the group's free capacity at that moment
    absorbed: bool = True  # filled in at the end: fits and headroom held from then on

    def to_dict(self) -> dict[str, Any]:
        return {
            "t_s": round(self.t, 3),
            "kind": self.kind,
            "host": self.host,
            "vm": self.vm,
            "detail": self.detail,
            "absorbed": self.absorbed,
        }


@dataclass
class SimResult:
    seed: int
    makespan_s: float
    completed: bool
    stalled: bool
    stall: dict[str, Any] | None
    events: int  # effective heap events + migration starts
    heap_events: int  # effective heap events only
    wave_start: list[float]
    wave_end: list[float]
    mig_start: list[float]
    mig_end: list[float]
    mig_state: list[int]  # final outcome code per migration; -1: never started
    mig_attempts: list[int]
    mig_bytes: list[float]
    mig_down: list[float]
    mig_bw: list[float]  # bytes/s: its mean NIC share over its transfer
    host_status: dict[int, str]
    host_times: dict[int, tuple[float, float, float]]  # maintenance start, upgrade start, end
    stop_down: dict[int, float]  # VM -> downtime of a stop in place
    failures: list[Failure]
    breaches: list[Breach]
    breach_counts: Counter[str]
    headroom_samples: list[tuple[float, int, int, int, int]]  # t, group, class, free, required
    min_slack: list[list[int]]  # per scope group and class: the least free - required seen
    lower_bound_s: float  # any plan (lower-bounds.md)
    plan_lower_bound_s: float  # this plan's waves, one after another
    vms_lost: int
    timeline: list[tuple[Any, ...]] | None

    @property
    def breached(self) -> bool:
        return bool(self.breach_counts)

    @property
    def headroom_breached(self) -> bool:
        return self.breach_counts.get("headroom", 0) > 0

    @property
    def total_downtime_s(self) -> float:
        return sum(self.mig_down) + sum(self.stop_down.values())


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
def draw_crash(prep: Prepared, seed: int) -> tuple[float, float] | None:
    """(time fraction or absolute window draw, host draw) for this seed, or None: no crash."""
    m = prep.model
    if m.crash_p <= 0:
        return None
    rng = random.Random(_sub_seed(seed, 3))
    if rng.random() >= m.crash_p:
        return None
    return rng.random(), rng.random()


def simulate(prep: Prepared, seed: int = 0, *, record: bool = True) -> SimResult:
    """One run. With a host crash in the model, the crash time is uniform over the run (or the
    model's window): the run is made once without it to learn its length, then again with it;
    both runs are the same until the crash."""
    crash = draw_crash(prep, seed)
    if crash is None:
        return _run(prep, seed, record, None)
    u_time, u_host = crash
    window = prep.model.crash_window_s
    if window is None:
        ref = _run(prep, seed, False, None)
        t = u_time * ref.makespan_s
    else:
        t = window[0] + u_time * (window[1] - window[0])
    return _run(prep, seed, record, (t, u_host))


def _sub_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, stream]).generate_state(1)[0])


def _run(prep: Prepared, seed: int, record: bool, crash: tuple[float, float] | None) -> SimResult:
    # The loop allocates millions of small tuples and no reference cycles: the cyclic collector
    # would only rescan the (large, long-lived) inventory and plan again and again.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _run_loop(prep, seed, record, crash)
    finally:
        if enabled:
            gc.enable()


def _run_loop(
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
    p_mig = model.migration_failure_p
    retries = model.migration_retries
    if p_mig > 0 and N:
        rng_mf = np.random.Generator(np.random.PCG64(_sub_seed(seed, 2)))
        geo = rng_mf.geometric(1.0 - p_mig, N) - 1 if p_mig < 1 else np.full(N, retries + 1)
        fails: list[int] = np.minimum(geo, retries + 1).tolist()
        frac_rng = random.Random(_sub_seed(seed, 4))
    else:
        fails = [0] * N
        frac_rng = random.Random(0)

    st = HeadroomState(prep.capacity, prep.plan.policy.headroom)
    release = st.remove
    group_of = st.group_of
    demand = prep.demand
    vm_group = prep.vm_group
    group_max = prep.group_max
    gcount: dict[tuple[int, int], int] = defaultdict(int)
    vm_host = prep.capacity.vm_host.tolist()
    for j, g in enumerate(vm_group):
        if g >= 0:
            gcount[(g, vm_host[j])] += 1
    avail0 = [bool(a) for a in prep.capacity.available]
    ha_avail0 = [h.available for h in inv.hosts]  # any role: enabled and up
    dest_ok = list(avail0)  # may receive VMs now: compute, enabled, up, not in maintenance
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
    lost_vm: set[int] = set()

    heap: list[tuple[float, int, int, int, int]] = []
    seq = 0
    push = heapq.heappush
    pop = heapq.heappop
    events = 0
    popped = 0

    breaches: list[Breach] = []
    breach_counts: Counter[str] = Counter()
    in_breach: set[tuple[Any, ...]] = set()
    headroom_breach_start: dict[int, list[float]] = defaultdict(list)  # group -> breach times
    n_classes = len(prep.classes)
    class_range = range(n_classes)
    st_avail, st_free, st_req = st.avail, st.free, st.required
    st_used, st_cap = st.used, st.cap
    m_bytes_all, m_outcome_all, m_down_all = prep.m_bytes, prep.m_outcome, prep.m_down
    track = crash is not None  # in-flight migrations matter only to a crash (and a stall)
    # Dynamic NIC sharing: who runs on each host, and each running migration's progress.
    dyn = prep.dynamic
    nic = prep.nic
    transfer = prep.transfer
    overhead = model.orchestration_overhead_s
    run_out: list[set[int]] = [set() for _ in range(H)] if dyn else []
    run_in: list[set[int]] = [set() for _ in range(H)] if dyn else []
    dirty: set[int] = set()
    last_out = [0] * H  # running counts per host at the last rebalance
    last_in = [0] * H
    cur_bw = list(prep.m_bw) if dyn else []
    cur_tr: list[Transfer] = [NO_TRANSFER] * N if dyn else []
    x0 = [0.0] * N if dyn else []  # when its transfer starts (after the overhead)
    seg_t = [0.0] * N if dyn else []  # progress is counted up to here
    prog = [0.0] * N if dyn else []  # fraction of the transfer done
    target = [1.0] * N if dyn else []  # fraction at which it ends (or fails)
    ekind = [_END] * N if dyn else []
    bw_acc = [0.0] * N if dyn else []  # share x seconds, for its mean share
    min_slack: list[list[int]] = [[1 << 62] * n_classes for _ in st.groups]
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

    def check_group(t: float, g: int) -> None:
        free, req, ms = st.free[g], st.required[g], min_slack[g]
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
        free, req = st_free[g], st_req[g]
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
        st.set_available(h, False)

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
    queue: dict[int, list[int]] = {}
    host_failed: set[int] = set()
    host_status: dict[int, str] = {}
    host_times: dict[int, tuple[float, float, float]] = {}
    maint_start: dict[int, float] = {}
    upgrade_start: dict[int, float] = {}
    stop_down: dict[int, float] = {}
    stop_begin: dict[int, float] = {}
    waiting_on: dict[int, set[int]] = {}  # destination -> sources with a migration waiting for it
    waves_done = 0
    now = 0.0

    if n_waves:
        push(heap, (0.0, seq, _WAVE, 0, 0))
        seq += 1
    crash_u = 0.0
    if crash is not None:
        push(heap, (crash[0], seq, _CRASH, 0, 0))
        seq += 1
        crash_u = crash[1]

    def host_done(h: int, t: float, status: str) -> None:
        nonlocal waves_done, seq
        if h in host_status:
            return
        host_status[h] = status
        host_times[h] = (maint_start.get(h, t), upgrade_start.get(h, math.nan), t)
        w = host_wave[h]
        wave_left[w] -= 1
        if wave_left[w] == 0:
            wave_end[w] = t
            waves_done += 1
            if tl is not None:
                tl((t, "wave_end", w + 1, None, None, None, None))
            sample_all(t)
            if w + 1 < n_waves:
                push(heap, (t, seq, _WAVE, w + 1, 0))
                seq += 1

    def drained(h: int, t: float) -> None:
        nonlocal seq
        if hstate[h] != MAINT:
            return
        if h in host_failed:
            push(heap, (t + model.enable_s, seq, _ENABLE, h, 0))  # back in service, not upgraded
            seq += 1
            return
        upgrade_start[h] = t
        g = group_of[h]
        if record and g >= 0:  # its VMs have landed: the group's low point before h is back
            sample_group(t, g)
        if tl is not None:
            tl((t, "upgrade_start", host_wave[h] + 1, hosts[h], None, None, None))
        push(heap, (t + up_dur_l[h], seq, _UPGRADED, h, 0))
        seq += 1

    def start(mi: int, t: float) -> None:
        nonlocal seq, events
        events += 1  # a migration start is an event of its own (state change, checks)
        s, d, v = m_src[mi], m_dst[mi], m_vm[mi]
        out_busy[s] += 1
        in_busy[d] += 1
        dem = demand[v]
        used_d, cap_d = st_used[d], st_cap[d]
        gd = group_of[d]
        counted = gd >= 0 and st_avail[d]
        free = st_free[gd] if counted else None
        fits = True
        for c in class_range:  # HeadroomState.add, inlined: the hottest code of the run
            n = dem[c]
            if n:
                before = cap_d[c] - used_d[c]
                used_d[c] += n
                if before < n:
                    fits = False
                    if free is not None and before > 0:
                        free[c] -= before
                elif free is not None:
                    free[c] -= n
        if not fits:
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
        if counted:
            # Free capacity only falls here: track the minimum; the full check on a shortfall.
            free_g, req, ms = st_free[gd], st_req[gd], min_slack[gd]
            for c in class_range:
                sl = free_g[c] - req[c]
                if sl < ms[c]:
                    ms[c] = sl
                if sl < 0:
                    check_group(t, gd)
                    break
        if tries[mi] == 0:
            mig_start[mi] = t
        tries[mi] += 1
        if dyn:
            ro = run_out[s]
            ri = run_in[d]
            ro.add(mi)
            ri.add(mi)
            share = min(nic[s] / len(ro), nic[d] / len(ri))
            tr = transfer(mi, share)
            cur_bw[mi] = share
            cur_tr[mi] = tr
            x0[mi] = seg_t[mi] = t + overhead
            prog[mi] = 0.0
            bw_acc[mi] = 0.0
            dirty.add(s)
            dirty.add(d)
            dur = tr.total_s
        else:
            dur = m_dur[mi]
        if track or dur == math.inf:
            in_flight.add(mi)
        if tl is not None:
            tl(
                (
                    t,
                    "migration_start",
                    prep.m_wave[mi] + 1,
                    hosts[s],
                    mi,
                    hosts[d],
                    attempts[mi] + 1,
                )
            )
        if attempts[mi] < fails[mi] and dur != math.inf:
            u = frac_rng.random()
            if dyn:  # fails at that fraction of its transfer, whatever the bandwidth does
                target[mi] = u
                ekind[mi] = _FAIL
                push(heap, (t + overhead + u * (dur - overhead), seq, _FAIL, mi, token[mi]))
            else:
                push(heap, (t + u * dur, seq, _FAIL, mi, token[mi]))
            seq += 1
        elif dur != math.inf:
            if dyn:
                target[mi] = 1.0
                ekind[mi] = _END
            push(heap, (t + dur, seq, _END, mi, token[mi]))
            seq += 1

    def leave(mi: int) -> None:
        """Migration mi no longer uses its NICs (ended, failed or cancelled)."""
        s, d = m_src[mi], m_dst[mi]
        run_out[s].discard(mi)
        run_in[d].discard(mi)
        dirty.add(s)
        dirty.add(d)

    def rebalance(t: float) -> None:
        """Running migrations on the hosts whose count changed get their new share: progress so
        far is kept, the rest goes at the new speed (its end event is moved)."""
        nonlocal seq
        # Set iteration order is deterministic for the same operations: no need to sort.
        hs = list(dirty)
        dirty.clear()
        todo: list[int] = []
        outs, ins, shares = run_out, run_in, cur_bw
        for h in hs:
            ro = outs[h]
            ri = ins[h]
            n_out = len(ro)
            n_in = len(ri)
            if n_out == last_out[h] and n_in == last_in[h]:
                continue  # same counts as at the last rebalance: same shares
            last_out[h] = n_out
            last_in[h] = n_in
            if ro:
                todo.extend(ro)
            if ri:
                todo.extend(ri)
        if len(todo) > 1:
            todo = list(dict.fromkeys(todo))
        for mi in todo:
            s, d = m_src[mi], m_dst[mi]
            sa = nic[s] / len(outs[s])
            sb = nic[d] / len(ins[d])
            share = sa if sa < sb else sb
            if share == shares[mi]:
                continue
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
                push(heap, (at, seq, ekind[mi], mi, token[mi]))
                seq += 1
            else:
                in_flight.add(mi)  # never ends now: a stall names it

    def try_start(h: int, t: float) -> None:
        """Start h's first startable migrations (plan order) while h has free slots; note the
        destinations it waits for."""
        q = queue.get(h)
        if not q:
            return
        slots = k_out - out_busy[h]
        if slots <= 0:
            return
        ok, busy, where, which, to, waits = dest_ok, in_busy, vm_host, m_vm, m_dst, waiting_on
        i = 0
        n = len(q)
        while i < n:
            mi = q[i]
            if where[which[mi]] != h:
                # Lost in a crash, or not on this host (an earlier migration of it failed):
                # nothing to move off this host.
                del q[i]
                n -= 1
                mig_state[mi] = OUTCOME_CODE["lost" if which[mi] in lost_vm else "skipped"]
                finish_one(h, t)
                continue
            d = to[mi]
            if ok[d] and busy[d] < k_in:
                del q[i]
                n -= 1
                start(mi, t)
                slots -= 1
                if slots == 0:
                    return
            else:
                w = waits.get(d)
                if w is None:
                    waits[d] = {h}
                else:
                    w.add(h)
                i += 1

    def wake(d: int, t: float) -> None:
        """Destination d has room again (a slot freed, or it is back): retry who waited for it."""
        ws = waiting_on.pop(d, None)
        if not ws:
            return
        order = sorted(ws) if len(ws) > 1 else list(ws)
        for i, h in enumerate(order):
            if in_busy[d] >= k_in:  # full again: the others go on waiting for it
                rest = waiting_on.get(d)
                if rest is None:
                    waiting_on[d] = set(order[i:])
                else:
                    rest.update(order[i:])
                return
            if out_busy[h] < k_out:  # a source with no free slot rescans when one frees
                try_start(h, t)

    def release_dst(mi: int) -> None:
        d, v = m_dst[mi], m_vm[mi]
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
        t, _, kind, a, b = pop(heap)
        now = t
        if kind == _END:
            mi = a
            if b != token[mi]:
                continue
            if track:
                in_flight.discard(mi)
            s, d, v = m_src[mi], m_dst[mi], m_vm[mi]
            out_busy[s] -= 1
            in_busy[d] -= 1
            mig_end[mi] = t
            if dyn:
                tr = cur_tr[mi]
                run_out[s].discard(mi)
                run_in[d].discard(mi)
                dirty.add(s)
                dirty.add(d)
                if t > seg_t[mi]:
                    bw_acc[mi] += cur_bw[mi] * (t - seg_t[mi])
                if t > x0[mi]:
                    cur_bw[mi] = bw_acc[mi] / (t - x0[mi])  # its mean share, for the report
                moved, down, code = tr.moves, tr.downtime_s, tr.outcome
                mig_bytes[mi] += tr.bytes
            else:
                moved, down, code = m_moves[mi], m_down_all[mi], m_outcome_all[mi]
                mig_bytes[mi] += m_bytes_all[mi]
            mig_state[mi] = code
            if moved:
                cur = vm_host[v]
                gc = group_of[cur]
                if gc >= 0 and st_avail[cur]:
                    release(cur, demand[v])
                    check_group(t, gc)
                else:  # the source is in maintenance: its usage only, no headroom to update
                    used_c, dem = st_used[cur], demand[v]
                    for c in class_range:
                        used_c[c] -= dem[c]
                g = vm_group[v]
                if g >= 0:
                    gcount[(g, cur)] -= 1
                if in_breach:
                    cap_recovered(cur)
                vm_host[v] = d
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
            if queue.get(s):
                try_start(s, t)
            if d in waiting_on:
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
                push(heap, (t + model.retry_delay_s, seq, _RETRY, mi, 0))
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
            queue.setdefault(s, []).insert(0, a)
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
                push(heap, (t + model.disable_s, seq, _DRAIN, w, 0))
                seq += 1
        elif kind == _DRAIN:
            whosts, queues, stops = prep.waves[a]
            if all(hstate[h] != MAINT for h in whosts):
                continue  # its hosts crashed while being disabled: the wave is over already
            for h in whosts:
                if hstate[h] != MAINT:
                    continue
                q = list(queues.get(h, ()))
                queue[h] = q
                sv = [j for j in stops.get(h, ()) if j not in lost_vm]
                pending[h] = len(q) + (1 if sv else 0)
                if sv:
                    for j in sv:
                        stop_begin[j] = t
                    wait = model.shutdown_s if any(prep.stop_active[j] for j in sv) else 0.0
                    push(heap, (t + wait, seq, _STOPPED, h, 0))
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
            if up_fail[h]:
                hstate[h] = DONE_DOWN
                record_failure(
                    t, "upgrade", h, None, f"{hosts[h]} failed its upgrade and stays down"
                )
                for j in prep.waves[host_wave[h]][2].get(h, ()):
                    lost_vm.add(j)
                host_done(h, t, "upgrade-failed")
            else:
                push(heap, (t + model.enable_s, seq, _ENABLE, h, 1))
                seq += 1
        elif kind == _ENABLE:
            h = a
            if hstate[h] != MAINT:
                continue
            hstate[h] = NORMAL
            dest_ok[h] = avail0[h]
            if avail0[h]:
                st.set_available(h, True)
            check_ha(t, prep.host_ha[h])
            g = group_of[h]
            if g >= 0:
                check_group(t, g)
                if record:
                    sample_group(t, g)
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
                        "upgraded" if b else "not-upgraded",
                    )
                )
            host_done(h, t, "upgraded" if b else "not-upgraded")
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
            fits = bool(g < 0) or all(st.free[g][c] >= need[c] for c in range(len(need)))
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
                    if dyn:
                        leave(mi)
                    if m_src[mi] == h:
                        release_dst(mi)
                        mig_end[mi] = t
                        mig_state[mi] = OUTCOME_CODE["lost"]
                    else:
                        # The destination is gone: the attempt fails; it waits for a destination.
                        release_dst(mi)
                        queue.setdefault(s, []).insert(0, mi)
            if was == MAINT:
                for mi in queue.get(h, ()):
                    mig_state[mi] = OUTCOME_CODE["lost"]
                # Its migrations not started yet (its drain had not begun, or they waited):
                for mi in prep.waves[host_wave[h]][1].get(h, ()):
                    if mig_state[mi] < 0 and tries[mi] == 0:
                        mig_state[mi] = OUTCOME_CODE["lost" if m_vm[mi] in lost_vm else "skipped"]
                queue[h] = []
                host_done(h, t, "crashed")
            for j in lost:
                vm_host[j] = -1
            check_ha(t, prep.host_ha[h])
            sample_all(t)
            for s in sorted(touched):
                try_start(s, t)
            for d in sorted(waiting_on):
                wake(d, t)
        if dirty:
            rebalance(t)
        last = t  # reached only by events that were not stale
        events += 1
        popped += 1

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
        events=events,
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
    )


def _stall_report(
    prep: Prepared,
    queue: dict[int, list[int]],
    in_flight: set[int],
    hstate: list[int],
    avail0: list[bool],
    t: float,
) -> dict[str, Any]:
    hosts = prep.hosts
    waiting = []
    for h in sorted(queue):
        for mi in queue[h]:
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
    total = 0.0
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
