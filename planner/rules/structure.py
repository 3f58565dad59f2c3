"""The plan's structure: made for this inventory file, waves numbered and not empty, every name
known, every host to upgrade in exactly one wave. Every planner writes such plans by
construction; the checker still judges them (a plan is a file anyone may edit)."""

from __future__ import annotations

from planner.rules import method
from planner.rules.base import Family, Out, PlanCheck, Violation, shown


def _digest(pc: PlanCheck, out: Out) -> None:
    plan, digest = pc.plan, pc.digest
    if digest is not None and plan.inventory_sha256 != digest:
        made_for = (
            f"inventory sha256 {plan.inventory_sha256[:12]}..."
            if plan.inventory_sha256
            else "no recorded inventory (its inventory_sha256 is empty)"
        )
        out.append(
            Violation(
                "digest",
                f"the plan was made for {made_for}, this inventory file is {digest[:12]}...",
                objects=(plan.inventory_sha256, digest),
            )
        )


def _wave_index(pc: PlanCheck, out: Out) -> None:
    for pos, w in enumerate(pc.plan.waves, start=1):
        if w.index != pos:
            out.append(
                Violation(
                    "wave_index",
                    f"wave at position {pos} has index {w.index}; waves are numbered 1, 2, 3, ...",
                    wave=w.index,
                    numbers={"position": pos, "index": w.index},
                )
            )
        if not w.hosts:
            out.append(Violation("wave_index", "wave has no hosts", wave=w.index))


def _unknown(pc: PlanCheck, out: Out) -> None:
    inv = pc.inv
    for w in pc.plan.waves:
        for h in w.hosts:
            if not inv.has_host(h):
                out.append(Violation("unknown", f"unknown host {h!r} in the wave", w.index, (h,)))
        for m in w.migrations:
            if not inv.has_vm(m.vm):
                out.append(
                    Violation("unknown", f"unknown VM {m.vm!r} in a migration", w.index, (m.vm,))
                )
            for h in (m.src, m.dst):
                if not inv.has_host(h):
                    out.append(
                        Violation(
                            "unknown",
                            f"migration of {m.vm} names unknown host {h!r}",
                            w.index,
                            (h,),
                        )
                    )
        for s in w.stops:
            if not inv.has_vm(s.vm):
                out.append(Violation("unknown", f"unknown VM {s.vm!r} in a stop", w.index, (s.vm,)))
            if not inv.has_host(s.host):
                out.append(
                    Violation("unknown", f"stop names unknown host {s.host!r}", w.index, (s.host,))
                )


def _coverage(pc: PlanCheck, out: Out) -> None:
    inv, plan = pc.inv, pc.plan
    to_upgrade = {h.name for h in method.to_upgrade(inv, plan.policy)}
    seen: dict[str, int] = {}
    for w in plan.waves:
        for h in w.hosts:
            if h in seen:
                out.append(
                    Violation(
                        "coverage",
                        f"{h} is upgraded twice (waves {seen[h]} and {w.index})",
                        w.index,
                        (h,),
                    )
                )
                continue
            seen[h] = w.index
            if inv.has_host(h) and h not in to_upgrade:
                version = inv.host(h).version
                out.append(
                    Violation(
                        "coverage",
                        f"{h} already runs the target version {version}; it must not be in a wave",
                        w.index,
                        (h,),
                    )
                )
    missing = sorted(to_upgrade - set(seen))
    if missing:
        out.append(
            Violation(
                "coverage",
                f"{len(missing)} host(s) to upgrade are in no wave: {shown(missing, 10)}",
                objects=tuple(missing),
                numbers={"missing": len(missing)},
            )
        )


def _plan(pc: PlanCheck, out: Out) -> None:
    _digest(pc, out)
    _wave_index(pc, out)
    _unknown(pc, out)
    _coverage(pc, out)


FAMILY = Family(
    name="structure",
    rules={
        "digest": "the plan was made for this inventory file (sha256 of its bytes)",
        "wave_index": "waves are numbered 1, 2, 3, ... in order and none is empty",
        "unknown": "every host and VM the plan names exists in the inventory",
        "coverage": "every host to upgrade (not left out) is in exactly one wave; no other host is",
    },
    plan=_plan,
    policy_keys={"target_version": "str?"},
)
