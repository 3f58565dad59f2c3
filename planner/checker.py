"""The plan checker: the one judge of every plan, whoever wrote it.

It replays a plan wave by wave against the inventory (`rules.base.walk`), without the solver (as
BtrPlace's ReconfigurationPlanChecker does), and reports every violation with its wave, rule,
objects and numbers. Since nothing leaves a host outside the wave during a wave, the end-of-wave
state bounds every in-flight state, so the state rules are checked at each wave's end.

The rules themselves live in their families (`planner.rules`, one module each); this module is
the replay loop that calls their hooks in the registry's order (`rules.base.Family` says when),
and the plan's metrics. `RULES` lists every rule with a one-line meaning.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from planner import bounds
from planner.documents import gc_paused
from planner.estimates import Estimates
from planner.inventory import Inventory, ServerGroup
from planner.plan import DOWN_METHODS, Plan
from planner.policy import Policy
from planner.rules import FAMILIES, RULES
from planner.rules.base import (
    Numbered,
    Out,
    PlanCheck,
    State,
    Violation,
    WaveStep,
    vm_label,
    walk,
)

__all__ = [
    "RULES",
    "CheckReport",
    "State",
    "Violation",
    "check_inventory",
    "check_plan",
    "plan_summary",
    "vm_label",
]


@dataclass(frozen=True)
class CheckReport:
    violations: tuple[Violation, ...]
    warnings: tuple[Violation, ...]
    metrics: Mapping[str, Any]

    @property
    def ok(self) -> bool:
        return not self.violations

    def by_rule(self) -> Counter[str]:
        return Counter(v.rule for v in self.violations)

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.ok,
            "violations": [v.to_dict() for v in self.violations],
            "warnings": [v.to_dict() for v in self.warnings],
            "metrics": dict(self.metrics),
        }


# ---------------------------------------------------------------------------------------------
# The families' hooks, per phase, in the registry's order
# ---------------------------------------------------------------------------------------------
StartHook = Callable[[State, WaveStep, Out], None]


def _down_at(hook: Callable[[State, set[str], int | None, Out], None]) -> StartHook:
    return lambda state, step, out: hook(state, step.hosts, step.index, out)


_PLAN = [f.plan for f in FAMILIES if f.plan is not None]
_CLOUD = [f.cloud for f in FAMILIES if f.cloud is not None]
_DOWN = [f.down for f in FAMILIES if f.down is not None]
# At a wave's start: each family's `wave` hook, then its `down` hook.
_START: list[StartHook] = [
    hook
    for f in FAMILIES
    for hook in (f.wave, _down_at(f.down) if f.down is not None else None)
    if hook is not None
]
_MIGRATIONS = [f.migrations for f in FAMILIES if f.migrations is not None]
_STOPS = [f.stops for f in FAMILIES if f.stops is not None]
_MOVED = [f.moved for f in FAMILIES if f.moved is not None]
_GROUP = [f.group for f in FAMILIES if f.group is not None]
_AFTER = [f.after for f in FAMILIES if f.after is not None]


def _groups(state: State, groups: list[ServerGroup], step: WaveStep | None, out: Out) -> None:
    for g in groups:
        for hook in _GROUP:
            hook(state, g, step, out)


# ---------------------------------------------------------------------------------------------
# The whole check
# ---------------------------------------------------------------------------------------------
def check_inventory(inv: Inventory, policy: Policy) -> list[Violation]:
    """What is wrong with the cloud before any plan: over-capacity, headroom or HA already broken,
    hard server groups already violated."""
    state = State(inv, policy)
    out: Out = []
    for cloud in _CLOUD:
        cloud(state, out)
    for down in _DOWN:
        down(state, set(), None, out)
    _groups(state, list(inv.server_groups), None, out)
    return out


def _check_wave(state: State, step: WaveStep, out: Out) -> None:
    """Every rule of one wave: its start, each migration and stop, the moves, its end."""
    inv = state.inv
    for start in _START:
        start(state, step, out)
    # Migration by migration, then stop by stop, whichever family finds what.
    found: Numbered = []
    moves = step.migrations()
    for migrations in _MIGRATIONS:
        migrations(state, step, moves, found)
    _in_order(found, out)
    stops = step.stops()
    for stop in _STOPS:
        stop(state, step, stops, found)
    _in_order(found, out)
    step.apply()
    for moved in _MOVED:
        moved(state, step, out)
    _groups(state, [inv.group(g) for g in step.groups()], step, out)
    for after in _AFTER:
        after(state, step, out)


def _in_order(found: Numbered, out: Out) -> None:
    """Move `found` to `out` by number (stable: families in the registry's order)."""
    if found:
        found.sort(key=lambda f: f[0])
        out.extend(v for _, v in found)
        found.clear()


def check_plan(
    inv: Inventory,
    plan: Plan,
    *,
    digest: str | None = None,
    estimates: Estimates | None = None,
) -> CheckReport:
    """Replay `plan` on `inv`; `digest` (default: the inventory file's) must match the plan's.
    With `estimates` (the migration model's predictions, `check --model`), the rules that need
    them judge too (predicted durations and downtimes against the policy's limits)."""
    # The replay builds hundreds of thousands of small acyclic objects (a step per wave, a tuple
    # per move): the cyclic collector's repeated full scans would cost more than the check.
    with gc_paused():
        return _check_plan(inv, plan, digest, estimates)


def _check_plan(
    inv: Inventory, plan: Plan, digest: str | None, estimates: Estimates | None
) -> CheckReport:
    policy = plan.policy
    violations: Out = []
    pc = PlanCheck(inv, plan, digest if digest is not None else inv.digest, estimates)
    for check in _PLAN:
        check(pc, violations)
    violations += check_inventory(inv, policy)

    state = State(inv, policy, estimates, plan)
    per_wave: list[dict[str, Any]] = []
    moves_per_vm: Counter[str] = Counter()
    min_slack: dict[str, float] = {}
    worst_util = 0.0
    for step in walk(state, plan):
        _check_wave(state, step, violations)
        wave = step.wave
        for vm, *_ in step.moves:
            moves_per_vm[vm] += 1
        # metrics of this wave
        for r in step.headroom_rows():
            if r.required > 0:
                key = f"{r.group}/{r.rc}"
                min_slack[key] = min(min_slack.get(key, float("inf")), r.free / r.required)
        util = state.model.utilisation()
        if util.size:
            worst_util = max(worst_util, float(util[state.model.available].max(initial=0.0)))
        per_wave.append(
            {
                "index": wave.index,
                "hosts": len(wave.hosts),
                "migrations": len(wave.migrations),
                # live: the guest keeps running (live-forced too); cold: it does not (shelve
                # and evacuate too, planner.plan.DOWN_METHODS)
                "live": sum(1 for m in wave.migrations if m.method in ("live", "live-forced")),
                "cold": sum(1 for m in wave.migrations if m.method in DOWN_METHODS),
                "stops": len(wave.stops),
            }
        )

    warnings = _soft_group_warnings(state) + _summary_warnings(plan, moves_per_vm)
    warnings += pc.warnings + state.warnings
    metrics = _metrics(inv, plan, moves_per_vm, per_wave, min_slack, worst_util, warnings)
    # The inventory's problems first, then the plan's, then wave by wave (stable within).
    violations.sort(key=lambda v: (0 if v.rule.startswith("inventory.") else 1, v.wave or 0))
    return CheckReport(tuple(violations), tuple(warnings), metrics)


def _soft_group_warnings(state: State) -> list[Violation]:
    out = []
    for g in state.inv.server_groups:
        if g.hard:
            continue
        members = [v.id for v in state.inv.members(g.id)]
        hosts = Counter(state.host_of[v] for v in members)
        if g.anti and any(n > g.max_server_per_host for n in hosts.values()):
            out.append(
                Violation(
                    "soft_anti_affinity",
                    f"soft anti-affinity group {g.name or g.id} shares hosts at the end",
                    objects=(g.id,),
                )
            )
        if not g.anti and len(hosts) > 1:
            out.append(
                Violation(
                    "soft_affinity",
                    f"soft affinity group {g.name or g.id} is split over "
                    f"{len(hosts)} hosts at the end",
                    objects=(g.id,),
                )
            )
    return out


def _summary_warnings(plan: Plan, moves: Counter[str]) -> list[Violation]:
    out = []
    s = plan.summary
    actual = {"waves": len(plan.waves), "migrations": sum(len(w.migrations) for w in plan.waves)}
    for key, value in actual.items():
        if key in s and s[key] != value:
            out.append(Violation("summary", f"summary says {key} = {s[key]}, the plan has {value}"))
    return out


def _metrics(
    inv: Inventory,
    plan: Plan,
    moves: Counter[str],
    per_wave: list[dict[str, Any]],
    min_slack: dict[str, float],
    worst_util: float,
    warnings: list[Violation],
) -> dict[str, Any]:
    migrations = sum(len(w.migrations) for w in plan.waves)
    moved = len(moves)
    lb = bounds.lower_bounds(inv, plan.policy)
    out: dict[str, Any] = {
        "waves": len(plan.waves),
        "hosts_upgraded": len(plan.hosts),
        "migrations": migrations,
        "live_migrations": sum(w["live"] for w in per_wave),
        "cold_migrations": sum(w["cold"] for w in per_wave),
        "stops": sum(w["stops"] for w in per_wave),
        "vms_moved": moved,
        "vms_moved_more_than_once": sum(1 for n in moves.values() if n > 1),
        "migrations_per_moved_vm": round(migrations / moved, 4) if moved else 0.0,
        "max_utilisation": round(worst_util, 4),
        "min_headroom_ratio": {k: round(v, 4) for k, v in sorted(min_slack.items())},
        "soft_group_warnings": sum(1 for w in warnings if w.rule.startswith("soft_")),
        "lower_bounds": lb.to_dict(),
        "per_wave": per_wave,
    }
    if lb.waves:
        out["wave_gap"] = round(len(plan.waves) / lb.waves - 1.0, 4)
    if lb.migrations:
        out["migration_gap"] = round(migrations / lb.migrations - 1.0, 4)
    return out


SUMMARY_KEYS = (
    "waves",
    "hosts_upgraded",
    "migrations",
    "live_migrations",
    "cold_migrations",
    "stops",
    "vms_moved",
    "vms_moved_more_than_once",
    "migrations_per_moved_vm",
    "lower_bounds",
    "wave_gap",
    "migration_gap",
)


def plan_summary(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The part of the checker's metrics a plan file records as its `summary`."""
    return {k: metrics[k] for k in SUMMARY_KEYS if k in metrics}
