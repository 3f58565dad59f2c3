"""Preparing a plan for simulation: names resolved, concurrency and NIC shares sized, every
migration's duration, downtime and bytes computed (once per plan and model; shared by every
Monte Carlo run), and the lower bounds' ingredients.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from planner import bounds
from planner.admission import AdmissionState
from planner.capacity import CapacityModel, scope_groups
from planner.errors import InputError, Problem
from planner.inventory import Inventory
from planner.plan import DOWN_METHODS, Plan
from sim.calendar import Calendar
from sim.lowerbound import first_chain
from sim.migration import GIB, MIB, cold_migration, live_migration
from sim.model import Distribution, SimModel
from sim.state import HeadroomState, pack, sign_mask

# Migration outcomes: the live ones, then "cold", "failed" (retries exhausted) and "lost" (crash).
OUTCOME_NAMES = (
    "converged",
    "post-copy",
    "paused",
    "aborted",
    "never",
    "cold",
    "failed",
    "lost",
    "skipped",
    # the executor's fallback when its force-complete does not take (failures.force_complete):
    # the live migration aborted, then cold to the same host, or the VM stays on its source
    "fallback-cold",
    "fallback-stayed",
)
# A live migration's outcomes when the executor's force-complete took.
FORCED = ("post-copy", "paused")
OUTCOME_CODE = {n: i for i, n in enumerate(OUTCOME_NAMES)}


# ---------------------------------------------------------------------------------------------
# Preparation: everything that does not depend on the seed
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Transfer:
    """One migration at one bandwidth share."""

    total_s: float  # including the orchestration overhead
    downtime_s: float
    bytes: float
    outcome: int  # into OUTCOME_NAMES
    moves: bool  # the VM ends on the destination
    flag: bool  # does not converge by pre-copy


NO_TRANSFER = Transfer(0.0, 0.0, 0.0, 0, True, False)


@dataclass
class Prepared:
    inv: Inventory
    plan: Plan
    model: SimModel
    hosts: tuple[str, ...]
    classes: tuple[str, ...]
    capacity: CapacityModel
    k_out: int
    k_in: int  # a large number when unlimited
    # VMs
    demand: list[list[int]]
    demand_p: list[int]  # packed (sim.state.pack, plain)
    demand_mask: list[int]  # sim.state.sign_mask of each VM's demand
    vm_group: list[int]  # hard anti-affinity group index, -1: none
    group_max: list[int]
    group_ids: list[str]
    # migrations, flattened in plan order
    m_vm: list[int]
    m_src: list[int]
    m_dst: list[int]
    m_wave: list[int]  # position of the wave (0-based)
    m_cold: list[bool]
    m_dur: list[float]  # including the orchestration overhead
    m_down: list[float]
    m_bytes: list[float]
    m_outcome: list[int]  # into OUTCOME_NAMES
    m_moves: list[bool]  # the VM ends on the destination
    m_flag: list[bool]  # does not converge by pre-copy (dirty rate >= bandwidth)
    m_bw: list[float]  # bytes/s
    # waves: (host indices, {host: [migration indices]}, {host: [vm indices stopped]})
    waves: list[tuple[list[int], dict[int, list[int]], dict[int, list[int]]]]
    dists: list[Distribution]
    dist_of_host: list[int]  # index into dists
    groups: tuple[str, ...]  # headroom scope groups (AZs, or "cloud")
    ha: list[tuple[str, list[int], int]]
    host_ha: list[list[int]]
    stop_active: list[bool]  # per VM: running when stopped (it pays shutdown and boot)
    lb_drain: dict[int, float]  # per wave host: drain-time lower bound
    lb_bytes: float
    lb_not_upgraded: set[int]  # hosts a deterministic timeout abort keeps from their upgrade
    m_eff_all: int
    m_eff_compute: int
    nic: list[float] = field(default_factory=list)  # bytes/s per host and direction
    dynamic: bool = False  # share NICs among the migrations running now (else: static shares)
    plan_file: str = "<plan>"
    check_violations: list[str] = field(default_factory=list)
    check_count: int = 0
    # A migration's transfer depends on its VM only through these (memory, dirty rate, disk,
    # status, method): migrations of the same kind share their transfers at every share.
    m_kind: list[int] = field(default_factory=list)
    m_entry: list[tuple[int, int, int]] = field(default_factory=list)  # (mi, VM, destination)
    # The plan's remedies: per migration its force_complete_after_s and remedy; the VMs the plan
    # stops in place as a remedy (`remedy: stop`).
    m_force: list[float | None] = field(default_factory=list)
    m_remedy: list[str | None] = field(default_factory=list)
    stop_remedy: frozenset[int] = frozenset()
    # Execution: pipelined (hosts admitted one by one, planner.admission) or lock-step (wave
    # after wave). A model with a canary runs lock-step: the canary soaks between waves.
    pipelined: bool = False
    # Admission's state before the run (pipelined; each run works on a copy).
    adm0: AdmissionState | None = field(default=None, repr=False)
    m_dup: list[bool] = field(default_factory=list)  # its wave migrates its VM more than once
    kinds: list[tuple[Any, ...]] = field(default_factory=list)
    # share (bytes/s) -> per kind, its transfer at that share (None: not computed yet). Filled
    # as runs need them and kept: every later run (and Monte Carlo worker) reuses them.
    by_share: dict[float, list[Transfer | None]] = field(default_factory=dict, repr=False)
    # The state before the run (each run works on a copy), and the members of each hard
    # anti-affinity group per host: {(group, host): count}.
    state0: HeadroomState | None = field(default=None, repr=False)
    group_count0: dict[tuple[int, int], int] = field(default_factory=dict, repr=False)
    # Maintenance windows in simulated time (`sim.calendar`; None: always open).
    calendar: Calendar | None = field(default=None, repr=False)
    # The lower bound's `first` chain (sim.lowerbound.first_chain): the plan's hosts
    # policy.first selects, and how many of their maintenances pass one after another before
    # any other host starts.
    lb_first: tuple[int, ...] = ()
    lb_first_chain: int = 0

    def transfer(self, mi: int, share: float) -> Transfer:
        """Migration mi with `share` bytes/s of its NICs (live_migration_bandwidth applies to
        live migrations; the switch-over and cold copies use the whole share)."""
        tab = self.by_share.get(share)
        if tab is None:
            tab = self.by_share[share] = [None] * len(self.kinds)
        k = self.m_kind[mi]
        got = tab[k]
        if got is None:
            got = tab[k] = self._compute(self.kinds[k], share)
        return got

    def _compute(self, kind: tuple[Any, ...], share: float) -> Transfer:
        memory_mb, dirty_rate_mb_s, local_disk_gb, status, cold, force, _ = kind
        model = self.model
        disk = local_disk_gb * GIB
        overhead = model.orchestration_overhead_s
        if cold:
            cr = cold_migration(
                disk,
                share,
                running=status == "ACTIVE",
                shutdown_s=model.shutdown_s,
                boot_s=model.boot_s,
            )
            return Transfer(
                overhead + cr.total_s, cr.downtime_s, cr.bytes, OUTCOME_CODE["cold"], True, False
            )
        sw = model.switchover_gbps * 1e9 / 8 if model.switchover_gbps else share
        bw = min(model.bandwidth_cap, share)
        dirty = model.dirty_rate(dirty_rate_mb_s)
        at = None if force is None else forced_at(force, dirty, bw, disk, model)
        live = partial(
            live_migration,
            memory_mb * MIB,
            dirty,
            bw,
            disk=disk,
            nova=model.nova,
            qemu=model.qemu,
            switchover_bandwidth=sw,
            memory_mib=memory_mb,
            disk_gib=local_disk_gb,
        )
        lr = live(force_after_s=at)
        if at is not None and model.force_complete != "takes" and lr.outcome in FORCED:
            # The executor's force came and did not take: as planner/executor/force.py reacts.
            if model.force_complete == "refused":
                return self._fallback(at, bw, kind, share)
            unforced = live(force_after_s=None)
            if dirty < bw or unforced.total_s <= no_progress_seen(at, model):
                lr = unforced  # its memory still falls (no stall is seen), or Nova ended it first
            else:
                return self._fallback(no_progress_seen(at, model), bw, kind, share)
        return Transfer(
            overhead + lr.total_s,
            lr.downtime_s if lr.moved else 0.0,
            lr.bytes,
            OUTCOME_CODE[lr.outcome],
            lr.moved,
            lr.flagged,
        )

    def _fallback(self, t: float, bw: float, kind: tuple[Any, ...], share: float) -> Transfer:
        """The executor's fallback `t` seconds into a live migration whose force did not take:
        it aborts it (the bytes sent so far are spent), then migrates the VM cold to the same
        host when the policy and the VM allow (`cold_ok`), else the VM stays on its source."""
        _, _, local_disk_gb, status, _, _, cold_ok = kind
        model = self.model
        overhead = model.orchestration_overhead_s
        if not cold_ok:
            return Transfer(overhead + t, 0.0, bw * t, OUTCOME_CODE["fallback-stayed"], False, True)
        cr = cold_migration(
            local_disk_gb * GIB,
            share,
            running=status == "ACTIVE",
            shutdown_s=model.shutdown_s,
            boot_s=model.boot_s,
        )
        return Transfer(
            2 * overhead + t + cr.total_s,
            cr.downtime_s,
            bw * t + cr.bytes,
            OUTCOME_CODE["fallback-cold"],
            True,
            True,
        )


def no_progress_seen(forced_s: float, model: SimModel) -> float:
    """When the executor sees that a force accepted at `forced_s` did not take: its first read
    after the force is the new low, and `force_stall_s` later without a lower one it gives up
    on it (planner/executor/force.py; reads every `executor.poll_s`)."""
    poll = model.poll_s
    return forced_s + poll + math.ceil(model.force_stall_s / poll - 1e-9) * poll


def forced_at(
    planned_s: float, dirty: float, bandwidth: float, disk: float, model: SimModel
) -> float:
    """When the executor force-completes a live migration planned to be force-completed
    `planned_s` after it started (seconds of the migration's own clock, without the orchestration
    overhead): then, or earlier once its remaining memory has reached no new low for
    `executor.force_stall_s` (planner/executor/force.py). The executor reads the progress every
    `executor.poll_s` from the start and follows the memory once the disk is copied (block
    migration copies it first, at `bandwidth`). In the model the remaining memory falls all
    along while the guest dirties less than the bandwidth (auto-converge only slows the
    dirtying), and stays at the guest's memory from the first memory pass on when it dirties as
    fast or faster: its low is the first read of the memory phase, and the stall is seen at the
    first read `force_stall_s` after that. A planned time within the disk copy is deferred to
    that first read: nothing is forced while the disk is copied."""
    poll = model.poll_s
    t0 = disk / bandwidth if disk > 0 else 0.0
    first = max(1, math.ceil(t0 / poll - 1e-9)) * poll  # the first read of the memory phase
    if planned_s < t0:
        planned_s = first  # nothing is forced while the disk is copied
    if dirty < bandwidth:
        return planned_s
    return min(planned_s, first + math.ceil(model.force_stall_s / poll - 1e-9) * poll)


def prepare(
    inv: Inventory,
    plan: Plan,
    model: SimModel,
    *,
    plan_file: str = "<plan>",
    check: bool = True,
    digest: str | None = None,
) -> Prepared:
    """Resolve names, size bandwidths and compute every migration's duration, downtime and bytes.
    Names the plan's unknown hosts and VMs as input errors (file and place)."""
    _resolve_names(inv, plan, plan_file)
    cm = CapacityModel(inv)
    hosts = cm.host_names
    hidx = cm.host_index
    vidx = cm.vm_index
    policy = plan.policy
    k_nova = model.max_concurrent_live_migrations
    # None: the plan's policy; Nova's 0: no limit.
    k_out = policy.max_concurrent_live_migrations if k_nova is None else (k_nova or 1 << 30)
    k_in = model.max_inbound_migrations or 1 << 30

    group_ids = [g.id for g in inv.server_groups if g.hard and g.anti]
    gi = {g: i for i, g in enumerate(group_ids)}
    group_max = [inv.group(g).max_server_per_host for g in group_ids]
    vm_group = [gi.get(v.server_group, -1) if v.server_group else -1 for v in inv.vms]
    demand = cm.demand.tolist()

    fl = _flatten(plan, hidx, vidx)
    m_vm, m_src, m_dst, m_wave, m_cold, waves = fl.vm, fl.src, fl.dst, fl.wave, fl.cold, fl.waves

    # Bandwidth shares and the migrations themselves.
    nic = [model.nic_bytes_s(h) for h in inv.hosts]
    # How many can run at once on each end: a host's limit, and what the other ends allow.
    pair_n: Counter[tuple[int, int, int]] = Counter(zip(m_wave, m_src, m_dst, strict=True))
    out_n: Counter[tuple[int, int]] = Counter()
    in_n: Counter[tuple[int, int]] = Counter()
    for (wp, s, d), n in pair_n.items():
        out_n[(wp, s)] += min(k_in, n)
        in_n[(wp, d)] += min(k_out, n)
    N = len(m_vm)
    dynamic = model.sharing == "dynamic"
    per_wave_vm = Counter(zip(m_wave, m_vm, strict=True))
    kind_of: dict[tuple[Any, ...], int] = {}
    m_kind = []
    for mi in range(N):
        v = inv.vms[m_vm[mi]]
        force = None if m_cold[mi] else fl.force[mi]
        # the fallback of a force that does not take may go cold (as the executor's VmRun)
        cold_ok = force is not None and "cold" in policy.non_converging and v.migration != "none"
        key = (
            v.memory_mb, v.dirty_rate_mb_s, v.local_disk_gb, v.status, m_cold[mi], force, cold_ok
        )  # fmt: skip
        m_kind.append(kind_of.setdefault(key, len(kind_of)))
    # The static share is also the least a dynamic share can be (no more than c_out run on the
    # source at once, nor c_in on the destination); alone on both NICs is the most.
    m_static = [
        min(nic[s] / min(k_out, out_n[(wp, s)]), nic[d] / min(k_in, in_n[(wp, d)]))
        for s, d, wp in zip(m_src, m_dst, m_wave, strict=True)
    ]
    if dynamic:  # alone on both NICs: the fastest it can go (what the lower bound needs)
        m_share = [min(nic[s], nic[d]) for s, d in zip(m_src, m_dst, strict=True)]
    else:
        m_share = m_static

    dists: list[Distribution] = []
    dist_of_host = []
    for host in inv.hosts:
        dd = model.upgrade_distribution(host)
        if dd not in dists:
            dists.append(dd)
        dist_of_host.append(dists.index(dd))

    ha = [(g.name, [hidx[h] for h in g.hosts if h in hidx], g.min_available) for g in inv.ha_groups]
    host_ha: list[list[int]] = [[] for _ in hosts]
    for i, (_, members, _) in enumerate(ha):
        for h in members:
            host_ha[h].append(i)

    lb = bounds.lower_bounds(inv, policy)
    m_cap = lb.max_compute_hosts_down
    mhpw = policy.max_hosts_per_wave
    m_eff_compute = min(mhpw, m_cap) if m_cap else mhpw

    prep = Prepared(
        inv=inv,
        plan=plan,
        model=model,
        hosts=hosts,
        classes=cm.classes,
        capacity=cm,
        k_out=k_out,
        k_in=k_in,
        demand=demand,
        demand_p=[pack(d, offset=False) for d in demand],
        demand_mask=[sign_mask(d) for d in demand],
        vm_group=vm_group,
        group_max=group_max,
        group_ids=group_ids,
        m_vm=m_vm,
        m_src=m_src,
        m_dst=m_dst,
        m_wave=m_wave,
        m_cold=m_cold,
        m_dur=[0.0] * N,
        m_down=[0.0] * N,
        m_bytes=[0.0] * N,
        m_outcome=[0] * N,
        m_moves=[True] * N,
        m_flag=[False] * N,
        m_bw=m_share,
        waves=waves,
        dists=dists,
        dist_of_host=dist_of_host,
        groups=tuple(scope_groups(inv, policy.headroom.scope)[0]),
        ha=ha,
        host_ha=host_ha,
        stop_active=[v.status == "ACTIVE" for v in inv.vms],
        lb_drain={},
        lb_bytes=0.0,
        lb_not_upgraded=set(),
        m_eff_all=mhpw,
        m_eff_compute=max(1, m_eff_compute),
        plan_file=plan_file,
        nic=nic,
        dynamic=dynamic,
        m_kind=m_kind,
        kinds=list(kind_of),
        m_entry=list(zip(range(N), m_vm, m_dst, strict=True)),
        m_force=[None if c else f for c, f in zip(m_cold, fl.force, strict=True)],
        m_remedy=fl.remedy,
        stop_remedy=frozenset(fl.stop_remedy),
        pipelined=policy.execution == "pipelined" and model.canary_hosts == 0,
        adm0=(
            AdmissionState.of(inv, plan)
            if policy.execution == "pipelined" and model.canary_hosts == 0
            else None
        ),
        m_dup=[per_wave_vm[(w, v)] > 1 for w, v in zip(m_wave, m_vm, strict=True)],
        state0=HeadroomState(cm, policy.headroom),
        group_count0=dict(
            Counter((g, h) for g, h in zip(vm_group, cm.vm_host.tolist(), strict=True) if g >= 0)
        ),
    )
    for mi in range(N):
        tr = prep.transfer(mi, m_share[mi])
        prep.m_dur[mi] = tr.total_s
        prep.m_down[mi] = tr.downtime_s
        prep.m_bytes[mi] = tr.bytes
        prep.m_outcome[mi] = tr.outcome
        prep.m_moves[mi] = tr.moves
        prep.m_flag[mi] = tr.flag
    _drain_bounds(prep, m_static if dynamic else None)
    prep.lb_first, prep.lb_first_chain = first_chain(
        inv, policy, prep.hosts, [h for w in prep.waves for h in w[0]]
    )
    if check:
        from planner.checker import check_plan

        report = check_plan(inv, plan, digest=digest)
        prep.check_count = len(report.violations)
        prep.check_violations = [str(v) for v in report.violations[:20]]
    return prep


@dataclass
class _Flat:
    """The plan's migrations flattened in plan order, and its waves by host index."""

    vm: list[int] = field(default_factory=list)
    src: list[int] = field(default_factory=list)
    dst: list[int] = field(default_factory=list)
    wave: list[int] = field(default_factory=list)
    cold: list[bool] = field(default_factory=list)
    force: list[float | None] = field(default_factory=list)  # force_complete_after_s
    remedy: list[str | None] = field(default_factory=list)
    stop_remedy: list[int] = field(default_factory=list)  # VMs stopped as a remedy
    # (host indices, {host: [migration indices]}, {host: [vm indices stopped]})
    waves: list[tuple[list[int], dict[int, list[int]], dict[int, list[int]]]] = field(
        default_factory=list
    )


def _flatten(plan: Plan, hidx: dict[str, int], vidx: dict[str, int]) -> _Flat:
    out = _Flat()
    for wpos, w in enumerate(plan.waves):
        whosts = list(dict.fromkeys(hidx[h] for h in w.hosts))
        queues: dict[int, list[int]] = {h: [] for h in whosts}
        stops: dict[int, list[int]] = {h: [] for h in whosts}
        for m in w.migrations:
            mi = len(out.vm)
            s = hidx[m.src]
            out.vm.append(vidx[m.vm])
            out.src.append(s)
            out.dst.append(hidx[m.dst])
            out.wave.append(wpos)
            out.cold.append(m.method in DOWN_METHODS)
            out.force.append(m.force_complete_after_s)
            out.remedy.append(m.remedy)
            queues.setdefault(s, []).append(mi)
            if s not in stops:
                stops[s] = []
                whosts.append(s)
        for st in w.stops:
            h = hidx[st.host]
            stops.setdefault(h, []).append(vidx[st.vm])
            if st.remedy == "stop":
                out.stop_remedy.append(vidx[st.vm])
            queues.setdefault(h, [])
            if h not in whosts:
                whosts.append(h)
        out.waves.append((whosts, queues, stops))
    return out


def _drain_bounds(prep: Prepared, slowest: list[float] | None) -> None:
    """Lower-bound ingredients (lower-bounds.md) from the migrations' durations, replaying the
    plan without random failures: a migration that Nova's timeout aborts leaves its VM in place
    (its host is then not upgraded, and a later migration of that VM from elsewhere is skipped).

    With dynamic shares (`slowest`: each migration's least share) the durations are those alone
    on both NICs, the shortest; but a migration aborted by the timeout runs for a fixed time, so
    it sends more bytes the faster it goes: bytes count at whichever end of the range is less,
    and a migration that would move at one end and not at the other leaves both its host (not
    upgraded) and its VM (where later migrations of it are skipped) undecided, counted neither way.
    """
    where: list[int | None] = list(prep.capacity.vm_host.tolist())
    dur, byts_of, moves = prep.m_dur, prep.m_bytes, prep.m_moves
    if slowest is not None:
        slow = [prep.transfer(mi, sh) for mi, sh in enumerate(slowest)]
        dur = [min(a, b.total_s) for a, b in zip(dur, slow, strict=True)]
        byts_of = [min(a, b.bytes) for a, b in zip(byts_of, slow, strict=True)]
    per_host: dict[int, list[int]] = defaultdict(list)
    for whosts, queues, _ in prep.waves:
        for h in whosts:
            for mi in queues.get(h, ()):
                v = prep.m_vm[mi]
                if where[v] != h:
                    continue  # skipped in the run too (or maybe: counted as skipped)
                per_host[h].append(mi)
                sure = slowest is None or moves[mi] == slow[mi].moves
                if moves[mi] and sure:
                    where[v] = prep.m_dst[mi]
                else:
                    prep.lb_not_upgraded.add(h)
                    if not sure:
                        where[v] = None
    total = 0.0
    for h, mis in per_host.items():
        durs = [dur[mi] for mi in mis if math.isfinite(dur[mi])]
        byts = sum(byts_of[mi] for mi in mis if math.isfinite(byts_of[mi]))
        total += byts
        if durs:
            prep.lb_drain[h] = max(max(durs), sum(durs) / prep.k_out, byts / prep.nic[h])
    prep.lb_bytes = total / max(prep.nic) if prep.nic else 0.0


def _resolve_names(inv: Inventory, plan: Plan, file: str) -> None:
    problems: list[Problem] = []
    hosts = {h.name: h for h in inv.hosts}
    vms = {v.id for v in inv.vms}
    for i, w in enumerate(plan.waves):
        for j, h in enumerate(w.hosts):
            if h not in hosts:
                problems.append(Problem(f"waves[{i}].hosts[{j}]", f"unknown host {h!r}"))
        for j, m in enumerate(w.migrations):
            if m.vm in vms and m.src in hosts and m.dst in hosts and hosts[m.dst].is_compute:
                continue
            loc = f"waves[{i}].migrations[{j}]"
            if m.vm not in vms:
                problems.append(Problem(f"{loc}.vm", f"unknown VM {m.vm!r}"))
            for key, h in (("from", m.src), ("to", m.dst)):
                if h not in hosts:
                    problems.append(Problem(f"{loc}.{key}", f"unknown host {h!r}"))
            if m.dst in hosts and not hosts[m.dst].is_compute:
                problems.append(Problem(f"{loc}.to", f"{m.dst!r} is a controller"))
        for j, s in enumerate(w.stops):
            loc = f"waves[{i}].stops[{j}]"
            if s.vm not in vms:
                problems.append(Problem(f"{loc}.vm", f"unknown VM {s.vm!r}"))
            if s.host not in hosts:
                problems.append(Problem(f"{loc}.host", f"unknown host {s.host!r}"))
    if problems:
        raise InputError(file, problems)
