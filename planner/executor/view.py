"""The live cloud as the planner must see it for the rest of a run, the remaining plan, drift
and re-planning (through the `Replanner` port). The checker is the judge of all of them.

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

from planner.checker import CheckReport, Violation, check_plan
from planner.errors import InfeasibleError
from planner.executor.ports import Replanner
from planner.inventory import Inventory
from planner.plan import Plan, Wave
from planner.policy import Policy

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


def replan(
    replanner: Replanner, view: Inventory, policy: Policy, *, time_limit: float = 30.0
) -> Plan:
    """Re-plan from the live state through the `replanner`; the result is re-checked (a
    planner is never trusted blindly). Raises InfeasibleError with the reasons when no plan
    exists."""
    plan = replanner.replan(view, policy, time_limit_s=time_limit)
    report = check_plan(view, plan)
    if not report.ok:
        raise InfeasibleError(
            [f"the re-planned schedule breaks a rule: {v}" for v in report.violations[:5]],
            proven=False,
        )
    return plan
