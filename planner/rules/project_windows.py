"""Per-project maintenance windows side by side (the policy's `project_windows`, see
planner.project_windows): every cross-cloud move of a VM of a windowed project is scheduled in
the plan's `schedule.crossings`, in exactly one opening of its own project's windows
(`project_window`): the scheduled window starts inside an opening of those windows and ends by
its close, not before the schedule's start. A plan without a schedule fails it when such a move
exists (`plan --start` writes one). Silent on in-place plans (the windows mean nothing there) and
on policies without project windows.
"""

from __future__ import annotations

from planner.plan import CROSS_CLOUD, ScheduledCrossing
from planner.rules.base import Family, Out, PlanCheck, Violation, shown
from planner.windows import Window, openings

KEY = "project_window"


def _inside(
    c: ScheduledCrossing, pc: PlanCheck, named: dict[str, tuple[Window, ...]], out: Out
) -> bool:
    """The scheduled window inside an opening of its project's windows (else a violation)."""
    s = pc.plan.schedule
    where = f"crossing window of project {c.project} ({c.start.isoformat()} to {c.end.isoformat()})"
    why = None
    if c.project not in named:
        why = "the policy has no project_windows for that project"
    elif not c.start < c.end:
        why = "it does not end after it starts"
    elif s is not None and c.start < s.start:
        why = f"it starts before the schedule ({s.start.isoformat()})"
    else:
        o = next(openings(named[c.project], c.start), None)
        if o is None or o[0] != c.start:
            why = "the project's windows are closed then" + (
                f" (next open {o[0].isoformat()})" if o is not None else ""
            )
        elif c.end > o[1]:
            why = f"the project's windows close at {o[1].isoformat()}"
    if why is not None:
        out.append(Violation(KEY, f"{where}: {why}", objects=(c.project, c.start.isoformat())))
    return why is None


def _plan(pc: PlanCheck, out: Out) -> None:
    plan = pc.plan
    if not plan.side_by_side or not plan.policy.project_windows:
        return
    named = dict(plan.policy.project_windows)
    project_of: dict[str, str] = {}
    for _, m in plan.migrations():
        if m.method == CROSS_CLOUD and pc.inv.has_vm(m.vm):
            p = pc.inv.vm(m.vm).project
            if p in named:
                project_of[m.vm] = p
    crossings = plan.schedule.crossings if plan.schedule is not None else ()
    seen: set[str] = set()
    for c in crossings:
        _inside(c, pc, named, out)
        for vm in c.vms:
            if vm in seen:
                out.append(Violation(KEY, f"VM {vm} is scheduled to cross twice", objects=(vm,)))
            elif project_of.get(vm) != c.project:
                out.append(
                    Violation(
                        KEY,
                        f"VM {vm} is scheduled in a crossing window of project {c.project}, but "
                        "it is no cross-cloud move of a VM of that project",
                        objects=(vm, c.project),
                    )
                )
            seen.add(vm)
    missing = [vm for vm in project_of if vm not in seen]
    if missing:
        how = (
            "the plan has no schedule (plan --start writes one)"
            if plan.schedule is None
            else "in no scheduled window of their project's windows"
        )
        out.append(
            Violation(
                KEY,
                f"{len(missing)} cross-cloud move(s) of VMs of projects with windows, {how}: "
                f"{shown(missing, 10)}",
                objects=tuple(missing),
                numbers={"missing": len(missing)},
            )
        )


FAMILY = Family(
    name=KEY,
    rules={
        KEY: "side by side: every cross-cloud move of a VM of a project with windows is scheduled "
        "inside one opening of its project's windows",
    },
    plan=_plan,
    owns=lambda key: key == KEY,
    active=lambda inv, p: bool(p.project_windows),
)
