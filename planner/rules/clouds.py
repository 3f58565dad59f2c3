"""Two clouds (side-by-side plans, `Plan.mode`): which host is in which cloud, and what may
move between them. Silent on in-place plans, which have none of it (`sbs_mode` says so if one
does).

- `sbs_mode`: host roles, cross-cloud moves and an AZ map only in a side-by-side plan; there,
  every host of a wave has a role and roles name only the wave's hosts.
- `sbs_controllers`: the new control plane is an HA group from the start: at least
  `MIN_NEW_CONTROLLERS` compute hosts take the role new-controller, all in one wave, no later
  than the first new compute.
- `sbs_move`: a cross-cloud move goes from a host of the old cloud to a compute that joined the
  new cloud in an earlier wave (only into the new cloud); a live or cold move stays inside one
  cloud. (A VM whose migration is none may cross: stop, copy and boot need no Nova migration;
  the family `method` keeps it from moving inside the old cloud.)
- `sbs_az`: the AZ map names every AZ of the inventory, and a pinned VM crosses to a host whose
  AZ maps to the map of its pin.
- `sbs_empty`: a host leaves the old cloud empty (not even a stopped VM on it).
- `sbs_old_control`: an old controller leaves only once the old cloud holds no VM.
- `sbs_end`: every VM ends on a compute of the new cloud, moved there (in a cross-cloud move or
  a move inside the new cloud).

Anti-affinity needs no rule of its own: a host is in one cloud at a time, so the family
`anti_affinity` counting members per host counts them per cloud (a group split across the two
clouds is two groups, each kept on distinct hosts).
"""

from __future__ import annotations

from planner.inventory import Inventory
from planner.plan import CROSS_CLOUD, Plan
from planner.rules.base import (
    Family,
    Out,
    PlanCheck,
    State,
    Violation,
    WaveStep,
    shown,
    vm_label,
)
from planner.sidebyside import (
    MIN_NEW_CONTROLLERS,
    Membership,
    final_hosts,
    has_side_by_side_parts,
)


def membership(state: State) -> Membership | None:
    """The side-by-side plan's membership (None for an in-place plan), computed once."""
    plan = state.plan
    if plan is None or not plan.side_by_side:
        return None
    found: Membership | None = state.memo.get("clouds")
    if found is None:
        found = state.memo["clouds"] = Membership.of(plan)
    return found


# -- the plan as a whole -----------------------------------------------------------------------
def _mode(plan: Plan, out: Out) -> None:
    if not plan.side_by_side:
        parts = has_side_by_side_parts(plan)
        if parts:
            out.append(
                Violation(
                    "sbs_mode",
                    f"an in-place plan has {' and '.join(parts)} (only a plan with mode "
                    "side-by-side may)",
                )
            )
        return
    for w in plan.waves:
        missing = [h for h in w.hosts if h not in w.roles]
        if missing:
            out.append(
                Violation(
                    "sbs_mode",
                    f"{len(missing)} host(s) of the wave have no role: {shown(missing, 5)}",
                    w.index,
                    tuple(missing),
                )
            )
        extra = sorted(set(w.roles) - set(w.hosts))
        if extra:
            out.append(
                Violation(
                    "sbs_mode",
                    f"roles name host(s) not in the wave: {shown(extra, 5)}",
                    w.index,
                    tuple(extra),
                )
            )


def _controllers(inv: Inventory, plan: Plan, mem: Membership, out: Out) -> None:
    ctl = mem.with_role("new-controller")
    waves = sorted(set(ctl.values()))
    if len(ctl) < MIN_NEW_CONTROLLERS:
        out.append(
            Violation(
                "sbs_controllers",
                f"the new control plane has {len(ctl)} controller(s); an HA group needs at "
                f"least {MIN_NEW_CONTROLLERS}",
                waves[0] if waves else None,
                tuple(sorted(ctl)),
                {"controllers": len(ctl), "min": MIN_NEW_CONTROLLERS},
            )
        )
    if len(waves) > 1:
        out.append(
            Violation(
                "sbs_controllers",
                f"the new controllers join in waves {', '.join(map(str, waves))}; they form one "
                "HA group from the start (one wave)",
                waves[1],
                tuple(sorted(ctl)),
            )
        )
    for h in sorted(ctl):
        if inv.has_host(h) and not inv.host(h).is_compute:
            out.append(
                Violation(
                    "sbs_controllers",
                    f"{h} is a controller of the old cloud; the new controllers are freed "
                    "compute hosts (the old cloud needs its own until it is empty)",
                    ctl[h],
                    (h,),
                )
            )
    computes = mem.with_role("new-compute")
    if computes and waves:
        first = min(computes.values())
        early = sorted(h for h, i in computes.items() if i < waves[0])
        if first < waves[0]:
            out.append(
                Violation(
                    "sbs_controllers",
                    f"{shown(early, 5)} join(s) the new cloud in wave {first}, before its "
                    f"controllers (wave {waves[0]})",
                    first,
                    tuple(early),
                )
            )


def _moves(inv: Inventory, plan: Plan, mem: Membership, out: Out) -> None:
    for w in plan.waves:
        for m in w.migrations:
            if not (inv.has_vm(m.vm) and inv.has_host(m.src) and inv.has_host(m.dst)):
                continue  # structure's `unknown`
            label = vm_label(inv, m.vm)
            why = ""
            if m.method == CROSS_CLOUD:
                if not mem.old_at_start(m.src, w.index):
                    why = f"its source {m.src} is not in the old cloud"
                elif not mem.new_compute_at_start(m.dst, w.index):
                    why = f"{m.dst} is not a compute of the new cloud at the wave's start"
            elif mem.old_at_start(m.src, w.index) != mem.old_at_start(m.dst, w.index):
                why = f"a {m.method} migration stays inside one cloud ({m.src} -> {m.dst})"
            elif not mem.old_at_start(m.dst, w.index) and not mem.new_compute_at_start(
                m.dst, w.index
            ):
                why = f"{m.dst} is not a compute of the new cloud"
            if why:
                out.append(
                    Violation(
                        "sbs_move",
                        f"{label}: {m.method} move {m.src} -> {m.dst}: {why}",
                        w.index,
                        (m.vm, m.src, m.dst),
                    )
                )


def _az(inv: Inventory, plan: Plan, out: Out) -> None:
    az_map = plan.az_map
    if az_map is not None:
        azs = sorted({h.az for h in inv.hosts if h.az} | {v.az for v in inv.vms if v.az})
        missing = [a for a in azs if a not in az_map]
        if missing:
            out.append(
                Violation(
                    "sbs_az",
                    f"the AZ map has no name in the new cloud for {shown(missing, 5)}",
                    objects=tuple(missing),
                )
            )
    amap: dict[str, str] = dict(az_map or {})
    for w in plan.waves:
        for m in w.migrations:
            if m.method != CROSS_CLOUD or not (inv.has_vm(m.vm) and inv.has_host(m.dst)):
                continue
            pin, there = inv.vm(m.vm).az, inv.host(m.dst).az
            if pin is None:
                continue
            want = amap.get(pin, pin)
            got = amap.get(there, there) if there is not None else None
            if got != want:
                out.append(
                    Violation(
                        "sbs_az",
                        f"{vm_label(inv, m.vm)} is pinned to {pin} ({want} in the new cloud); "
                        f"{m.dst} is in {got}",
                        w.index,
                        (m.vm, m.dst),
                    )
                )


def _end(inv: Inventory, plan: Plan, mem: Membership, out: Out) -> None:
    where = final_hosts({v.id: v.host for v in inv.vms}, plan, (v.id for v in inv.vms))
    # In the new cloud: moved, in its last move, onto a compute of the new cloud (a VM left on
    # a host that joins is not: `sbs_empty`).
    left = sorted(v for v, (h, i) in where.items() if not mem.new_compute_at_start(h, i))
    if left:
        out.append(
            Violation(
                "sbs_end",
                f"{len(left)} VM(s) do not end on a compute of the new cloud: "
                f"{shown([vm_label(inv, v) for v in left], 5)}",
                objects=tuple(left),
                numbers={"vms": len(left)},
            )
        )


def _plan(pc: PlanCheck, out: Out) -> None:
    plan = pc.plan
    _mode(plan, out)
    if not plan.side_by_side:
        return
    mem = Membership.of(plan)
    _controllers(pc.inv, plan, mem, out)
    _moves(pc.inv, plan, mem, out)
    _az(pc.inv, plan, out)
    _end(pc.inv, plan, mem, out)


# -- at each wave's end --------------------------------------------------------------------------
def _after(state: State, step: WaveStep, out: Out) -> None:
    mem = membership(state)
    if mem is None:
        return
    inv = state.inv
    for h in sorted(step.hosts):
        vms = sorted(state.on_host.get(h, ()))
        if vms:
            out.append(
                Violation(
                    "sbs_empty",
                    f"{h} leaves the old cloud with {len(vms)} VM(s) on it: "
                    f"{shown([vm_label(inv, v) for v in vms], 5)}",
                    step.index,
                    (h, *vms),
                )
            )
    leaving = sorted(h for h in step.hosts if inv.has_host(h) and not inv.host(h).is_compute)
    if leaving:
        gone = mem.left_upto(step.index)
        old_vms = sum(1 for h, vms in state.on_host.items() if h not in gone and vms)
        if old_vms:
            out.append(
                Violation(
                    "sbs_old_control",
                    f"old controller(s) {', '.join(leaving)} leave while {old_vms} host(s) of "
                    "the old cloud still run VMs",
                    step.index,
                    tuple(leaving),
                    {"hosts_with_vms": old_vms},
                )
            )


FAMILY = Family(
    name="clouds",
    rules={
        "sbs_mode": "roles, cross-cloud moves and an AZ map only in a side-by-side plan; there "
        "every host of a wave has a role",
        "sbs_controllers": f"side by side: at least {MIN_NEW_CONTROLLERS} freed compute hosts "
        "become the new controllers, in one wave, no later than the first new compute",
        "sbs_move": "side by side: a cross-cloud move only from the old cloud into a compute "
        "that joined the new cloud earlier; live and cold moves stay inside one cloud",
        "sbs_az": "side by side: the AZ map names every AZ; a pinned VM crosses into its "
        "pin's AZ through the map",
        "sbs_empty": "side by side: a host leaves the old cloud empty",
        "sbs_old_control": "side by side: an old controller leaves only once the old cloud "
        "holds no VM",
        "sbs_end": "side by side: every VM ends on a compute of the new cloud",
    },
    plan=_plan,
    after=_after,
)
