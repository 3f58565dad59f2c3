"""The live cloud as the planner must see it for the rest of a run, the remaining plan, drift,
re-planning and a new destination for one VM. The checker is the judge of all of them.

The planning view of a live snapshot:
- hosts this run upgraded, and hosts it gave up on, count as upgraded (`version` = the target),
  so that no wave is planned for them. A host given up on but back in service stays a valid
  destination; one left disabled or down is not (it is not available);
- hosts this run disabled and is still working on count as enabled: it will enable them, and the
  wave that holds them counts them down anyway;
- hosts whose upgrade this run began but has not concluded (a run cut during the upgrade
  command or the wait after it) count as not upgraded even when the cloud already reports the
  target: the run has not seen the command succeed nor the service come back, and resumes them;
- a VM being live-migrated (status MIGRATING) counts as ACTIVE, on its source until Nova says
  otherwise.
Without a target version in the policy, a synthetic label stands for "upgraded by this run".
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from planner.checker import CheckReport, Violation, check_plan
from planner.errors import InfeasibleError
from planner.inventory import Inventory
from planner.plan import Method, Migration, Plan, Stop, Wave
from planner.policy import Policy
from solver.greedy import GreedyState

SYNTHETIC_TARGET = "rollwave:upgraded"
UNFINISHED = "rollwave:upgrade-unfinished"


@dataclass(frozen=True)
class Progress:
    """What the run has done, as the view needs it."""

    upgraded: frozenset[str]  # by this run
    excluded: frozenset[str]  # given up on (not upgraded, or failed)
    ours_in_progress: frozenset[str]  # disabled by this run, to be enabled again by it
    mid_upgrade: frozenset[str] = frozenset()  # upgrade begun by this run, not concluded


def planning_view(live: Inventory, policy: Policy, progress: Progress) -> tuple[Inventory, Policy]:
    target = policy.target_version or SYNTHETIC_TARGET
    done = progress.upgraded | progress.excluded
    hosts = []
    for h in live.hosts:
        if h.name in done:
            h = replace(h, version=target)
        elif h.name in progress.mid_upgrade and h.version == target:
            h = replace(h, version=UNFINISHED)
        if h.name in progress.ours_in_progress and not h.enabled:
            h = replace(h, enabled=True, disabled_reason=None)
        hosts.append(h)
    vms = tuple(replace(v, status="ACTIVE") if v.status == "MIGRATING" else v for v in live.vms)
    view = Inventory(
        cloud=live.cloud,
        taken_at=live.taken_at,
        hosts=tuple(hosts),
        vms=vms,
        server_groups=live.server_groups,
        ha_groups=live.ha_groups,
    )
    return view, policy.with_changes(target_version=target)


def remaining_plan(
    schedule: list[Wave],
    k: int,
    policy: Policy,
    *,
    terminal: set[str],
    done_moves: set[tuple[int, str]],
    skipped: set[str],
) -> Plan:
    """The plan still to execute from wave k (1-based, execution order), renumbered from 1:
    wave k without its finished hosts, and every wave without its migrations already done
    (`done_moves`: (wave, vm); the canary moves some of the next wave's early)."""
    waves: list[Wave] = []
    for w in schedule[k - 1 :]:
        hosts = tuple(h for h in w.hosts if h not in terminal)
        if not hosts:
            continue
        migs = tuple(
            m
            for m in w.migrations
            if m.src in hosts and (w.index, m.vm) not in done_moves and m.vm not in skipped
        )
        stops = tuple(s for s in w.stops if s.host in hosts)
        waves.append(Wave(len(waves) + 1, hosts, migs, stops))
    return Plan(inventory_sha256="", policy=policy, waves=tuple(waves))


def split_violations(
    report: CheckReport, current_present: bool
) -> tuple[list[Violation], list[Violation]]:
    """(violations that concern the wave about to run or the whole plan, later waves' ones)."""
    now, later = [], []
    for v in report.violations:
        if v.wave is None or (current_present and v.wave == 1):
            now.append(v)
        else:
            later.append(v)
    return now, later


def renumber(waves: tuple[Wave, ...] | list[Wave], start: int) -> list[Wave]:
    return [Wave(start + i, w.hosts, w.migrations, w.stops) for i, w in enumerate(waves)]


def solve_remaining(view: Inventory, policy: Policy, *, time_limit: float = 30.0) -> Plan:
    """A plan for every host of the view still to upgrade: the CP-SAT solver (the greedy planner
    its fallback), within `time_limit` seconds. The one place that picks the planner."""
    from solver.solve import SolveOptions, solve

    return solve(view, policy, SolveOptions(time_limit=time_limit), inventory_sha256="").plan


def replan(view: Inventory, policy: Policy, *, time_limit: float = 30.0) -> Plan:
    """Re-plan from the live state; the result is re-checked (the solver is never trusted
    blindly). Raises InfeasibleError with the reasons when no plan exists."""
    plan = solve_remaining(view, policy, time_limit=time_limit)
    report = check_plan(view, plan)
    if not report.ok:
        raise InfeasibleError(
            [f"the re-planned schedule breaks a rule: {v}" for v in report.violations[:5]],
            proven=False,
        )
    return plan


def find_destination(
    view: Inventory,
    policy: Policy,
    vm_id: str,
    wave_hosts: tuple[str, ...],
    others: tuple[Migration, ...],
    stops: tuple[Stop, ...],
    *,
    avoid: set[str],
    only: set[str] | None = None,
    tries: int = 12,
) -> tuple[str, str] | None:
    """Another destination for one VM leaving a wave host, from the live state: the greedy
    planner's preference (upgraded hosts first, then room and balance), each candidate judged
    by the checker on the wave as it would then be (`others`: the wave's other moves still to
    come). (host, method) or None when no host passes."""
    if not view.has_vm(vm_id):
        return None
    vm = view.vm(vm_id)
    method: Method = "live" if vm.migration == "live" and vm.status == "ACTIVE" else "cold"
    if vm.migration == "none":
        return None
    st = GreedyState(view, policy)
    m = st.model
    for o in others:
        if view.has_vm(o.vm) and view.has_host(o.dst) and view.vm(o.vm).host != o.dst:
            st.move(m.vm_index[o.vm], m.host_index[o.dst])
    in_wave = np.zeros(len(m.host_names), dtype=bool)
    for h in wave_hosts:
        if h in m.host_index:
            in_wave[m.host_index[h]] = True
    j = m.vm_index[vm_id]
    src = m.host_index[vm.host]
    ok = st.eligible(vm, j, in_wave)
    ok[src] = False
    for h in avoid:
        if h in m.host_index:
            ok[m.host_index[h]] = False
    if only is not None:
        keep = np.zeros_like(ok)
        for h in only:
            if h in m.host_index:
                keep[m.host_index[h]] = True
        ok &= keep
    for _ in range(tries):
        d = st.choose(j, ok, src, m.demand[j])
        if d < 0:
            return None
        cand = m.host_names[d]
        trial = Plan(
            inventory_sha256="",
            policy=policy,
            waves=(Wave(1, wave_hosts, (*others, Migration(vm_id, vm.host, cand, method)), stops),),
        )
        rep = check_plan(view, trial)
        # This one-wave plan leaves later waves' hosts out, and the order of waves is not its
        # concern: only the wave's own rules judge the candidate.
        bad = [v for v in rep.violations if v.wave == 1]
        if not bad:
            return cand, method
        ok[d] = False
    return None
