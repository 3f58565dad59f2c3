"""Remedies: what is done with a VM whose live migration is predicted not to finish by itself, or
to take longer than `max_migration_s` (policy `non_converging`, in order of preference:
force-complete, cold, stop, refuse), and the bound `max_downtime_s` on any remedy's downtime.

Without estimates the checker judges what the plan says: `force_complete_after_s` only on a live
migration (`force_complete`); a migration's remedy matches its method (`force-complete` live,
`cold` cold) and the policy's `non_converging` allows it, as it must a stop's `remedy: stop`
(`remedy`; allow_stop is the method family's `stop` rule). With estimates (`check --model`):
a live migration predicted not to finish, with no remedy, is a warning (`non_converging`); a
live migration without remedy predicted over `max_migration_s` (`max_migration`) and a remedy
whose predicted downtime exceeds `max_downtime_s` (`max_downtime`) are violations.

Proofs name the family `remedy`. No lower bounds yet: they need the predictions, which the
planner does not make yet.
"""

from __future__ import annotations

from planner.estimates import How, VmEstimate
from planner.inventory import Inventory
from planner.plan import Migration, Stop
from planner.policy import DEFAULT_NON_CONVERGING, Policy
from planner.rules.base import Family, Numbered, State, Violation, WaveStep, Words, vm_label

KEY = "remedy"
MB = 1e6


def words(p: Policy) -> Words:
    limit = "" if p.max_downtime_s is None else f", max_downtime_s {p.max_downtime_s:g}"
    return Words(
        KEY,
        f"non_converging {', '.join(p.non_converging)}{limit}",
        "another remedy in non_converging (cold, stop with allow_stop) or a larger "
        "max_downtime_s (or none)",
    )


def active(inv: Inventory, p: Policy) -> bool:
    """The family binds a planner only when the policy asks for something beyond the default
    (force-complete, no limits): without estimates no rule of it can bind a plan it writes."""
    return (
        p.non_converging != DEFAULT_NON_CONVERGING
        or p.max_migration_s is not None
        or p.max_downtime_s is not None
    )


def how(m: Migration) -> How | None:
    """How the plan moves the VM, as the estimates price it; None for a cold migration that is
    not a remedy (a SHUTOFF or cold-only VM: nothing to remedy)."""
    if m.remedy == "cold":
        return "cold"
    if m.remedy == "force-complete" or m.force_complete_after_s is not None:
        return "force-complete"
    return "live" if m.method == "live" else None


def _rate(e: VmEstimate) -> str:
    return f"dirty rate {e.dirty_B_s / MB:.0f} MB/s against {e.bandwidth_B_s / MB:.0f} MB/s"


# -- the check ----------------------------------------------------------------------------------
def _migrations(
    state: State, step: WaveStep, moves: list[tuple[int, Migration]], out: Numbered
) -> None:
    inv, p, w = state.inv, state.policy, step.index
    est = state.estimates
    for i, m in moves:
        if m.force_complete_after_s is None and m.remedy is None and est is None:
            continue  # the common case: a plain migration, nothing to judge
        label = vm_label(inv, m.vm)
        if m.force_complete_after_s is not None and m.method != "live":
            out.append(
                (
                    i,
                    Violation(
                        "force_complete",
                        f"{label} is a {m.method} migration; force_complete_after_s "
                        f"({m.force_complete_after_s:g} s) applies to live migrations only",
                        w,
                        (m.vm,),
                        {"force_complete_after_s": m.force_complete_after_s},
                    ),
                )
            )
        if m.remedy is not None:
            need = "cold" if m.remedy == "cold" else "live"
            if m.method != need:
                out.append(
                    (
                        i,
                        Violation(
                            KEY,
                            f"{label} has remedy {m.remedy}, which needs method {need}, "
                            f"not {m.method}",
                            w,
                            (m.vm,),
                        ),
                    )
                )
            if m.remedy not in p.non_converging:
                out.append((i, _not_allowed(label, m.vm, m.remedy, p, w)))
        if est is not None and (e := est.vms.get(m.vm)) is not None:
            _predicted(state, label, m, e, w, i, out)


def _predicted(
    state: State, label: str, m: Migration, e: VmEstimate, w: int, i: int, out: Numbered
) -> None:
    p = state.policy
    way = how(m)
    if way == "live":
        if not e.finishes:
            state.warnings.append(
                Violation(
                    "non_converging",
                    f"{label} is predicted not to finish its live migration ({e.live_outcome} "
                    f"after {e.live_s:.0f} s; {_rate(e)}) and has no remedy",
                    w,
                    (m.vm,),
                    {
                        "live_s": e.live_s,
                        "dirty_B_s": e.dirty_B_s,
                        "bandwidth_B_s": e.bandwidth_B_s,
                    },
                )
            )
        if p.max_migration_s is not None and e.live_s > p.max_migration_s:
            out.append(
                (
                    i,
                    Violation(
                        "max_migration",
                        f"{label}'s live migration is predicted to take {e.live_s:.0f} s, over "
                        f"max_migration_s {p.max_migration_s:g}, and has no remedy",
                        w,
                        (m.vm,),
                        {"live_s": e.live_s, "max": p.max_migration_s},
                    ),
                )
            )
    elif way is not None:
        _downtime(p, label, m.vm, way, e, w, i, out)


def _downtime(
    p: Policy, label: str, vm: str, way: How, e: VmEstimate, w: int, i: int, out: Numbered
) -> None:
    down = e.downtime_s(way)
    if p.max_downtime_s is not None and down > p.max_downtime_s:
        out.append(
            (
                i,
                Violation(
                    "max_downtime",
                    f"{label}'s remedy {way} is predicted to keep it down {down:.1f} s, over "
                    f"max_downtime_s {p.max_downtime_s:g}",
                    w,
                    (vm,),
                    {"downtime_s": down, "max": p.max_downtime_s},
                ),
            )
        )


def _not_allowed(label: str, vm: str, remedy: str, p: Policy, w: int) -> Violation:
    return Violation(
        KEY,
        f"{label} has remedy {remedy}, which the policy's non_converging "
        f"({', '.join(p.non_converging)}) does not allow",
        w,
        (vm,),
    )


def _stops(state: State, step: WaveStep, stops: list[tuple[int, Stop]], out: Numbered) -> None:
    p, w, est = state.policy, step.index, state.estimates
    for i, s in stops:
        if s.remedy != "stop":
            continue
        label = vm_label(state.inv, s.vm)
        if "stop" not in p.non_converging:
            out.append((i, _not_allowed(label, s.vm, "stop", p, w)))
        if est is not None and (e := est.vms.get(s.vm)) is not None:
            _downtime(p, label, s.vm, "stop", e, w, i, out)


FAMILY = Family(
    name=KEY,
    rules={
        "force_complete": "force_complete_after_s only on a live migration",
        KEY: "a remedy matches its method (force-complete live, cold cold) and the policy's "
        "non_converging allows it (stop: and allow_stop)",
        "non_converging": "with estimates, a warning: a live migration predicted not to finish "
        "has a remedy",
        "max_migration": "with estimates: a live migration without remedy is predicted within "
        "max_migration_s",
        "max_downtime": "with estimates: a remedy's predicted downtime is within max_downtime_s",
    },
    migrations=_migrations,
    stops=_stops,
    owns=lambda key: key == KEY,
    active=active,
    # non_converging: one remedy per value here (a list reads from the policy file)
    policy_keys={
        "non_converging": "str",
        "max_migration_s": "float?",
        "max_downtime_s": "float?",
    },
)
