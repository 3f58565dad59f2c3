"""Predictions: the migration model's estimates for a cloud (`planner.estimates.Estimates`), the
remedy each VM gets under the policy's `non_converging`, and a plan annotated with both
(`rollwave plan --model`, and every plan: without a model file, Nova's defaults on 10 GbE).

The figures come from the simulator's own functions (`sim.migration.live_migration`,
`cold_migration`) called exactly as the simulator calls them (`sim.prepare.Prepared.transfer`):
the same memory, dirty rate, disk, Nova and QEMU settings, live_migration_bandwidth cap and
switch-over bandwidth. A migration's bandwidth is its source NIC (line rate x efficiency) shared
by the `k_out` live migrations that source runs at once (the model's or the policy's
max_concurrent_live_migrations): with k_out = 1, what the simulator gives a migration alone on
its link, to the last bit (a test holds them to it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from planner.admission import AdmissionState
from planner.bounds import lower_bounds
from planner.errors import InfeasibleError
from planner.estimates import Estimates, HostEstimate, How, VmEstimate
from planner.inventory import VM, Inventory
from planner.pipelined import Maintenance, maintenance_of, replay
from planner.plan import DOWN_METHODS, Migration, Plan, Predicted, Wave
from planner.policy import Policy, selector_matches
from planner.rules import remedy as remedy_rule
from planner.rules.method import COLD_STATES, method_for, to_upgrade
from sim.migration import GIB, MIB, cold_migration, live_migration
from sim.model import Distribution, SimModel
from sim.prepare import forced_at

Z95 = 1.6448536269514722  # the standard normal's 95th percentile
DRAWS = 512  # upgrade times drawn per host for a wave's expected duration
PIPELINED_DRAWS = 4  # draws of every host's upgrade time for the pipelined prediction
MB = 1e6


@dataclass(frozen=True)
class Physics:
    """The estimates and what the plan's `predicted` needs beyond them: the bytes and outcome of
    a force-completed migration and the bytes of a cold one, per VM; the model's guest
    timings."""

    est: Estimates
    forced_bytes: Mapping[str, float]
    forced_outcome: Mapping[str, str]
    cold_bytes: Mapping[str, float]
    shutdown_s: float
    boot_s: float
    model: SimModel = field(repr=False)


# ---------------------------------------------------------------------------------------------
# Estimates from the model
# ---------------------------------------------------------------------------------------------
def k_out_of(policy: Policy, model: SimModel) -> int:
    """Live migrations at once out of one source: the model's Nova option (0: no limit), else
    the policy's."""
    k = model.max_concurrent_live_migrations
    if k is None:
        return policy.max_concurrent_live_migrations
    return k if k > 0 else 1 << 30


def quantile(d: Distribution, q: float) -> float:
    """The q-quantile (0.5 or 0.95) of an upgrade duration."""
    z = 0.0 if q == 0.5 else Z95
    if d.kind == "fixed":
        return d.a
    if d.kind == "uniform":
        return d.a + q * (d.b - d.a)
    if d.kind == "triangular":
        lo, mode, hi = d.a, d.b, d.c
        if hi <= lo:
            return lo
        f = (mode - lo) / (hi - lo)
        if q <= f:
            return lo + math.sqrt(q * (hi - lo) * (mode - lo))
        return hi - math.sqrt((1 - q) * (hi - lo) * (hi - mode))
    return d.a * math.exp(d.b * z)


def forced_after(memory: float, disk: float, bandwidth: float) -> float:
    """When to force-complete: once the disk and one full pass of memory are sent (by then a
    guest that dirties memory faster than it is sent has shown it), in whole seconds."""
    return float(max(1, math.ceil((disk + memory) / bandwidth)))


def predict(inv: Inventory, policy: Policy, model: SimModel) -> Physics:
    """Every VM's and host's estimates under `model` (the same figures the simulator computes;
    VMs of the same kind on NICs of the same speed share one computation)."""
    k = k_out_of(policy, model)
    share_k = k if k < 1 << 30 else 1
    hosts = {h.name: h for h in inv.hosts}
    nic = {h.name: model.nic_bytes_s(h) for h in inv.hosts}
    sw = model.switchover_gbps * 1e9 / 8 if model.switchover_gbps else None
    cache: dict[tuple[Any, ...], tuple[VmEstimate, float, str, float]] = {}
    vms: dict[str, VmEstimate] = {}
    forced_bytes: dict[str, float] = {}
    forced_outcome: dict[str, str] = {}
    cold_bytes: dict[str, float] = {}
    for v in inv.vms:
        share = nic[v.host] / share_k
        key = (v.memory_mb, v.dirty_rate_mb_s, v.local_disk_gb, v.status, share)
        got = cache.get(key)
        if got is None:
            got = cache[key] = _vm(v, share, sw, model)
        e, fb, fo, cb = got
        vms[v.id] = e  # its kind's; named below, once its stop's downtime is known
        forced_bytes[v.id], forced_outcome[v.id], cold_bytes[v.id] = fb, fo, cb
    host_est = {}
    for h in inv.hosts:
        d = model.upgrade_distribution(hosts[h.name])
        host_est[h.name] = HostEstimate(
            h.name, quantile(d, 0.5), quantile(d, 0.95), model.disable_s, model.enable_s
        )
    est = Estimates(
        vms=vms,
        hosts=host_est,
        overhead_s=model.orchestration_overhead_s,
        max_inbound=model.max_inbound_migrations,
        k_out=k,
        nic_B_s=nic,
        model=model.source or "defaults",
    )
    # A stop's downtime: its host's maintenance with its other VMs drained as they would go
    # (live, or force-completed when live would not finish), plus the guest's shutdown and boot.
    stop_down = {h.name: _stop_downtime(est, h.name, inv.vms_on(h.name), model) for h in inv.hosts}
    est = replace(
        est,
        vms={v.id: replace(vms[v.id], vm=v.id, stop_downtime_s=stop_down[v.host]) for v in inv.vms},
    )
    return Physics(
        est, forced_bytes, forced_outcome, cold_bytes, model.shutdown_s, model.boot_s, model
    )


def _vm(
    v: VM, share: float, sw: float | None, model: SimModel
) -> tuple[VmEstimate, float, str, float]:
    """One VM at `share` bytes/s, as `sim.prepare.Prepared._compute` computes its transfer."""
    memory = v.memory_mb * MIB
    disk = v.local_disk_gb * GIB
    dirty = model.dirty_rate(v.dirty_rate_mb_s)
    bw = min(model.bandwidth_cap, share)
    kw: dict[str, Any] = {
        "disk": disk,
        "nova": model.nova,
        "qemu": model.qemu,
        "switchover_bandwidth": sw if sw is not None else share,
        "memory_mib": v.memory_mb,
        "disk_gib": v.local_disk_gb,
    }
    live = live_migration(memory, dirty, bw, **kw)
    after = forced_after(memory, disk, bw)
    # the executor forces earlier when a poll sees no progress: when the simulator says it does
    forced = live_migration(
        memory, dirty, bw, force_after_s=forced_at(after, dirty, bw, disk, model), **kw
    )
    cold = cold_migration(
        disk, share, running=v.status == "ACTIVE", shutdown_s=model.shutdown_s, boot_s=model.boot_s
    )
    e = VmEstimate(
        vm=v.id,
        live_s=live.total_s,
        live_downtime_s=live.downtime_s if live.moved else 0.0,
        live_bytes=live.bytes,
        live_outcome=live.outcome,
        converges=live.converges,
        dirty_B_s=dirty,
        bandwidth_B_s=bw,
        cold_s=cold.total_s,
        cold_downtime_s=cold.downtime_s,
        forced_after_s=after,
        forced_s=forced.total_s,
        forced_downtime_s=forced.downtime_s,
        stop_downtime_s=0.0,
    )
    return e, forced.bytes, forced.outcome, cold.bytes


def natural(e: VmEstimate) -> How:
    """How a VM goes when nothing else is asked: live, or force-completed if live would not
    finish (the default remedy)."""
    return "live" if e.finishes else "force-complete"


def _stop_downtime(est: Estimates, host: str, vms: Iterable[VM], model: SimModel) -> float:
    movers = [v.id for v in vms if method_for(v) is not None]
    how = {v: natural(est.vms[v]) for v in movers}
    h = est.hosts[host]
    drain = max(est.drain_s(host, movers, how), model.shutdown_s)
    return h.disable_s + drain + h.upgrade_s + h.enable_s + model.boot_s


# ---------------------------------------------------------------------------------------------
# Remedies
# ---------------------------------------------------------------------------------------------
def why(e: VmEstimate, policy: Policy) -> str | None:
    """Why a live migration needs a remedy (None: it does not)."""
    if not e.finishes:
        return (
            f"is predicted not to finish its live migration ({e.live_outcome} after "
            f"{e.live_s:.0f} s)"
        )
    if policy.max_migration_s is not None and e.live_s > policy.max_migration_s:
        return (
            f"is predicted to take {e.live_s:.0f} s to live-migrate, over max_migration_s "
            f"{policy.max_migration_s:g}"
        )
    return None


def choose_remedies(inv: Inventory, policy: Policy, est: Estimates) -> dict[str, How]:
    """Each VM that would live-migrate and needs a remedy -> the first remedy of
    `non_converging` that is allowed and whose predicted downtime fits `max_downtime_s`. Raises
    InfeasibleError naming every VM that has none (or reaches `refuse`)."""
    chosen: dict[str, How] = {}
    problems: list[str] = []
    upgraded = {h.name for h in to_upgrade(inv, policy)}
    limit = policy.max_downtime_s
    for v in inv.vms:
        if v.host not in upgraded or method_for(v, inv, policy) != "live":
            continue
        e = est.vms[v.id]
        reason = why(e, policy)
        if reason is None:
            continue
        tried: list[str] = []
        for r in policy.non_converging:
            if r == "refuse":
                tried.append("refuse")
                break
            if r == "cold" and v.status not in COLD_STATES:
                tried.append(f"cold: Nova cold-migrates no {v.status} VM")
                continue
            if r == "stop" and _affinity(inv, v):
                tried.append("stop: its hard affinity group moves together")
                continue
            down = e.downtime_s(r)
            if limit is None or down <= limit:
                chosen[v.id] = r
                break
            tried.append(f"{r} {down:.1f} s of downtime")
        else:
            tried.append("no remedy left")
        if v.id not in chosen:
            label = f"VM {v.name} ({v.id}) on {v.host}"
            fits = "" if limit is None else f"; max_downtime_s {limit:g}"
            problems.append(
                f"{label} {reason}: dirty rate {e.dirty_B_s / MB:.0f} MB/s against "
                f"{e.bandwidth_B_s / MB:.0f} MB/s; non_converging: {', '.join(tried)}{fits}"
            )
    if problems:
        words = remedy_rule.words(policy)
        head = f"{words.rule}: {len(problems)} VM(s) have no remedy (relax: {words.relax})"
        raise InfeasibleError(
            [head, *problems[:50]], blame=[words.blame(relaxing_alone=True, numbers=problems[0])]
        )
    return chosen


def _affinity(inv: Inventory, v: VM) -> bool:
    if v.server_group is None:
        return False
    g = inv.group(v.server_group)
    return g.hard and not g.anti and len(inv.members(g.id)) > 1


def remedied_inventory(inv: Inventory, remedies: Mapping[str, How]) -> Inventory:
    """The inventory as the solver must see it: a VM remedied cold migrates cold, one stopped
    in place cannot move (the solver plans its stop). The digest stays the original's."""
    if not any(r in ("cold", "stop") for r in remedies.values()):
        return inv
    kind = {"cold": "cold", "stop": "none"}
    vms = tuple(
        replace(v, migration=kind[remedies[v.id]])  # type: ignore[arg-type]
        if remedies.get(v.id) in kind
        else v
        for v in inv.vms
    )
    return replace(inv, vms=vms)


# ---------------------------------------------------------------------------------------------
# The plan, annotated
# ---------------------------------------------------------------------------------------------
def how_of(m: Migration, remedies: Mapping[str, How]) -> How:
    r = remedies.get(m.vm)
    if m.method in DOWN_METHODS:
        return "cold"
    return "force-complete" if r == "force-complete" else "live"


def predicted(ph: Physics, m: Migration, how: How) -> Predicted:
    e, o = ph.est.vms[m.vm], ph.est.overhead_s
    if how == "cold":
        return Predicted(e.cold_downtime_s, o + e.cold_s, ph.cold_bytes[m.vm], "cold")
    if how == "force-complete":
        return Predicted(
            e.forced_downtime_s, o + e.forced_s, ph.forced_bytes[m.vm], ph.forced_outcome[m.vm]
        )
    return Predicted(e.live_downtime_s, o + e.live_s, e.live_bytes, e.live_outcome)


def wave_s(
    ph: Physics, inv: Inventory, w: Wave, remedies: Mapping[str, How]
) -> tuple[float, dict[str, float]]:
    """The wave's predicted lock-step duration and each host's maintenance (disable, drain
    k_out at a time, longest first, the upgrade's median, enable). A lock-step wave lasts as
    long as its slowest host, and upgrade times vary (the model's distribution, drawn per host
    as the simulator draws them): its duration is the mean over `DRAWS` draws (a fixed seed:
    the same plan, the same figure) of the slowest host's, more than the slowest median when
    many hosts go together."""
    est = ph.est
    by_src: dict[str, list[str]] = {h: [] for h in w.hosts}
    how: dict[str, How] = {}
    for m in w.migrations:
        by_src.setdefault(m.src, []).append(m.vm)
        how[m.vm] = how_of(m, remedies)
    stopping = {s.host for s in w.stops if inv.vm(s.vm).status == "ACTIVE"}
    per: dict[str, float] = {}
    for host, vms in by_src.items():
        h = est.hosts[host]
        drain = est.drain_s(host, vms, how)
        if host in stopping:
            drain = max(drain, ph.shutdown_s)
        per[host] = h.disable_s + drain + h.upgrade_s + h.enable_s
    if not per:
        return 0.0, per
    rng = np.random.default_rng(w.index)
    draws = np.stack(
        [
            ph.model.upgrade_distribution(inv.host(host)).sample(rng, DRAWS)
            + (x - est.hosts[host].upgrade_s)
            for host, x in per.items()
        ]
    )
    return float(draws.max(axis=0).mean()), per


def annotate(inv: Inventory, plan: Plan, ph: Physics, remedies: Mapping[str, How]) -> Plan:
    """The plan with each migration's prediction and remedy, each stop's, and each wave's
    predicted duration."""
    waves = []
    for w in plan.waves:
        migs = []
        for m in w.migrations:
            how = how_of(m, remedies)
            r = remedies.get(m.vm)
            e = ph.est.vms[m.vm]
            migs.append(
                replace(
                    m,
                    remedy="force-complete"
                    if how == "force-complete"
                    else ("cold" if r == "cold" else None),
                    force_complete_after_s=e.forced_after_s if how == "force-complete" else None,
                    predicted=predicted(ph, m, how),
                )
            )
        total, per = wave_s(ph, inv, w, remedies)
        stops = []
        for s in w.stops:
            active = inv.vm(s.vm).status == "ACTIVE"
            down = per.get(s.host, 0.0) + ph.boot_s if active else 0.0
            stops.append(
                replace(
                    s,
                    remedy="stop" if remedies.get(s.vm) == "stop" else None,
                    predicted=Predicted(down),
                )
            )
        waves.append(replace(w, migrations=tuple(migs), stops=tuple(stops), predicted_s=total))
    return replace(plan, waves=tuple(waves))


def least_maintenance(
    inv: Inventory, policy: Policy, ph: Physics, remedies: Mapping[str, How]
) -> dict[str, float]:
    """Each host to upgrade: p_h, the least time it is out = disable + its drain's bound (its own
    VMs leave at least once: the longest, and their sum over k_out slots) + the upgrade's median
    + enable."""
    est = ph.est
    p: dict[str, float] = {}
    for host in to_upgrade(inv, policy):
        times = []
        stop = False
        for v in inv.vms_on(host.name):
            kind = method_for(v, inv, policy)
            r = remedies.get(v.id)
            if kind is None or r == "stop":
                stop = stop or v.status == "ACTIVE"
                continue
            how: How = (
                "cold"
                if kind in ("cold", "shelve", "evacuate") or r == "cold"
                else ("force-complete" if r == "force-complete" else "live")
            )
            times.append(est.move_s(v.id, how))
        drain = max(max(times, default=0.0), sum(times) / est.k_out)
        if stop:
            drain = max(drain, ph.shutdown_s)
        h = est.hosts[host.name]
        p[host.name] = h.disable_s + drain + h.upgrade_s + h.enable_s
    return p


def _spread(inv: Inventory, policy: Policy, p: Mapping[str, float]) -> float:
    """max_h p_h, and sum_h p_h over the hosts that may be down at once (compute hosts: also
    over those the headroom lets go at once)."""
    if not p:
        return 0.0
    m_all = policy.max_hosts_per_wave
    m_cap = lower_bounds(inv, policy).max_compute_hosts_down
    m_comp = max(1, min(m_all, m_cap) if m_cap else m_all)
    compute = [x for h, x in p.items() if inv.host(h).is_compute]
    return max(max(p.values()), sum(p.values()) / m_all, sum(compute) / m_comp if compute else 0.0)


def makespan_lower_bound(
    inv: Inventory, policy: Policy, ph: Physics, remedies: Mapping[str, How]
) -> float:
    """A lower bound on any plan's makespan (lock-step or pipelined) with these predictions:
    every host to upgrade is out for at least p_h (`least_maintenance`), so the makespan is at
    least max_h p_h, and sum_h p_h over the hosts that may be down at once."""
    return _spread(inv, policy, least_maintenance(inv, policy, ph, remedies))


def lockstep_lower_bound(
    inv: Inventory, policy: Policy, ph: Physics, remedies: Mapping[str, How]
) -> float:
    """A lower bound on any lock-step plan's makespan: besides `makespan_lower_bound`, the hosts
    `first` selects need waves of their own. They take at least W_F waves (max_hosts_per_wave
    of them a wave, and of each HA group at most its members less min_available); no other host
    may be in a wave before the last of those, so the first W_F - 1 waves hold only them and
    last at least the W_F - 1 smallest of their p_h; the other hosts come after, spread as
    `makespan_lower_bound` spreads them."""
    p = least_maintenance(inv, policy, ph, remedies)
    anyplan = _spread(inv, policy, p)
    first = {h for h in p if any(selector_matches(sel, inv.host(h)) for sel in policy.first)}
    if not first or len(first) == len(p):
        return anyplan
    w_first = -(-len(first) // policy.max_hosts_per_wave)
    for g in inv.ha_groups:
        members = first & set(g.hosts)
        down = max(1, len(g.hosts) - g.min_available)
        w_first = max(w_first, -(-len(members) // down))
    solo = sum(sorted(p[h] for h in first)[: w_first - 1])
    rest = {h: x for h, x in p.items() if h not in first}
    return max(anyplan, solo + _spread(inv, policy, rest))


def summary(
    inv: Inventory, plan: Plan, policy: Policy, ph: Physics, remedies: Mapping[str, How]
) -> dict[str, Any]:
    """The plan summary's predicted fields."""
    counts = {"force-complete": 0, "cold": 0, "stop": 0}
    for r in remedies.values():
        if r in counts:
            counts[r] += 1
    downs = [
        pr.downtime_s
        for w in plan.waves
        for pr in (*(m.predicted for m in w.migrations), *(s.predicted for s in w.stops))
        if pr is not None
    ]
    lockstep = sum(w.predicted_s or 0.0 for w in plan.waves)
    return {
        "remedies": counts,
        "predicted_downtime_s": {
            "total": round(sum(downs), 3),
            "worst": round(max(downs, default=0.0), 3),
        },
        "predicted_makespan_s": {
            "lockstep": round(lockstep, 3),
            "pipelined": round(pipelined_makespan(inv, plan, ph, remedies), 3),
        },
        "makespan_lower_bound_s": round(makespan_lower_bound(inv, policy, ph, remedies), 3),
        "lockstep_lower_bound_s": round(lockstep_lower_bound(inv, policy, ph, remedies), 3),
        "pipelined_lower_bound_s": round(pipelined_lower_bound(inv, policy, ph, remedies), 3),
    }


def _drawn_upgrades(
    inv: Inventory, plan: Plan, ph: Physics, remedies: Mapping[str, How]
) -> tuple[dict[str, Maintenance], list[str], list[Any]]:
    """Each host's predicted maintenance, and PIPELINED_DRAWS draws of its upgrade time less
    the median (a fixed seed: the same plan, the same figures)."""
    how = {m.vm: how_of(m, remedies) for _, m in plan.migrations()}
    base = maintenance_of(inv, plan, ph.est, how, ph.shutdown_s)
    names = sorted(base)
    rng = np.random.default_rng(0)
    draws = [
        ph.model.upgrade_distribution(inv.host(h)).sample(rng, PIPELINED_DRAWS)
        - ph.est.hosts[h].upgrade_s
        for h in names
    ]
    return base, names, draws


def expected_maintenance(
    inv: Inventory, plan: Plan, ph: Physics, remedies: Mapping[str, How]
) -> dict[str, Maintenance]:
    """Each host's predicted maintenance with its upgrade's mean over the same draws as
    `pipelined_makespan` (what `plan --start` schedules a pipelined plan with)."""
    base, names, draws = _drawn_upgrades(inv, plan, ph, remedies)
    return {
        h: Maintenance(base[h].drain_s, base[h].total_s + float(np.mean(d)))
        for h, d in zip(names, draws, strict=True)
    }


def pipelined_makespan(
    inv: Inventory, plan: Plan, ph: Physics, remedies: Mapping[str, How]
) -> float:
    """The plan's predicted makespan run pipelined: admission control replayed over each host's
    predicted maintenance (`planner.pipelined`), deterministic: the mean over PIPELINED_DRAWS
    draws of every host's upgrade time (a fixed seed, as `wave_s` draws them: the same plan, the
    same figure), each replay failure-free."""
    base, names, draws = _drawn_upgrades(inv, plan, ph, remedies)
    if not base:
        return 0.0
    total = 0.0
    piped = replace(plan, policy=replace(plan.policy, execution="pipelined"))
    state = AdmissionState.of(inv, piped)  # built once, copied per draw
    for i in range(PIPELINED_DRAWS):
        drawn = {
            h: Maintenance(base[h].drain_s, base[h].total_s + float(d[i]))
            for h, d in zip(names, draws, strict=True)
        }
        total += replay(inv, piped, drawn, state=state).makespan_s
    return total / PIPELINED_DRAWS


def pipelined_lower_bound(
    inv: Inventory, policy: Policy, ph: Physics, remedies: Mapping[str, How]
) -> float:
    """A lower bound on the makespan run pipelined: `lockstep_lower_bound`'s argument holds
    for it too. Admission keeps every host `first` does not select out of maintenance until
    every host it selects has entered (order_first), and at most c of those are out at once
    (the wave size, and per HA group its members less min_available). Intervals of which at
    most c overlap split into c chains, so when the last of the n first hosts enters, the n - c
    that have ended include a chain of ceil(n / c) - 1 one after another: at least the sum of
    that many smallest p_h. The other hosts all come after, spread over the hosts that may be
    down at once."""
    return lockstep_lower_bound(inv, policy, ph, remedies)
